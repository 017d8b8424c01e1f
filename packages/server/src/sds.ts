// SDS over xDS, in the replica rather than @meridian/ca (which issues and rotates, but serves no
// xDS): Envoy Secret resources for
// authenticated proxies, served by @meridian/xds.
//   `default`: the proxy's own key and chain, only for the identity its TLS peer certificate proves;
//   `ROOTCA`:  the trust bundle (several roots during a rotation).
// Keys and certificates come from @meridian/ca's WorkloadSecrets (rotated at half the lifetime, with
// jitter); each rotation or CA change is announced as an xDS ChangeEvent for the Secret type, and the
// next push serves the new version. Identities nobody asked for during a whole rotation period are
// dropped. @meridian/ca knows nothing of xDS: this module is the bridge.
import { performance } from 'node:perf_hooks';
import {
  parseSpiffeId,
  SDS_DEFAULT_SECRET,
  SDS_ROOT_SECRET,
  type SigningCa,
  tlsCertificateSecretJson,
  validationContextSecretJson,
  type WorkloadSecret,
  type WorkloadSecrets,
} from '@meridian/ca';
import { encodeResource, TypeUrl } from '@meridian/envoy';
import type { ChangeEvent, EncodedResource, ProxyContext, ResourceMap, XdsSnapshot } from '@meridian/xds';
import { encodedResource } from '@meridian/xds';

const encode = (name: string, json: unknown): EncodedResource =>
  encodedResource(TypeUrl.Secret, name, encodeResource(TypeUrl.Secret, json));

interface Entry {
  map: ResourceMap;
  cancel: () => void;
  usedSinceDelivery: boolean;
}

/** Builds the Secret resources per proxy; plug it into the replica's snapshot with `withSecrets`. */
export class SdsSecretSource {
  private readonly entries = new Map<string, Entry>();
  private rootPem: string;
  private rootOnly: ResourceMap;
  private rootSecret: EncodedResource;

  /**
   * @param secrets issues and rotates keys for identities (its issuer's CA decides the trust domain)
   * @param onChange called with a Secret ChangeEvent on rotation or CA change (wire it to
   *   `xds.update(snapshot, change)`)
   */
  constructor(
    private readonly secrets: WorkloadSecrets,
    private readonly onChange: (change: ChangeEvent) => void = () => {},
  ) {
    this.rootPem = secrets.trustBundlePem();
    this.rootSecret = encode(SDS_ROOT_SECRET, validationContextSecretJson(this.rootPem));
    this.rootOnly = new Map([[SDS_ROOT_SECRET, this.rootSecret]]);
  }

  /** Identities with a live key (for debug output and tests). */
  get identities(): string[] {
    return [...this.entries.keys()];
  }

  /**
   * The Secret resources of one proxy: `ROOTCA` for every stream; `default` only when the stream's
   * TLS peer certificate proved an Istio SPIFFE identity of this CA's trust domain.
   */
  resources(proxy: ProxyContext): ResourceMap {
    const uri = proxy.authenticatedIdentity;
    const id = uri === undefined ? undefined : parseSpiffeId(uri);
    if (!uri || !id || id.trustDomain !== this.secrets.trustDomain) return this.rootOnly;
    let entry = this.entries.get(uri);
    if (!entry) {
      const created: Entry = { map: this.rootOnly, cancel: () => {}, usedSinceDelivery: true };
      this.entries.set(uri, created);
      let initial = true;
      created.cancel = this.secrets.watch(id, (s) => this.delivered(uri, created, s, initial));
      initial = false;
      entry = created;
    }
    entry.usedSinceDelivery = true;
    return entry.map;
  }

  /** Switches the signing CA (new intermediate or trust bundle): every identity gets a new key and chain. */
  setSigningCa(ca: SigningCa): void {
    this.secrets.setSigningCa(ca);
    this.caChanged();
  }

  /**
   * The signing CA of `secrets` was switched (by whoever owns it: the CA runtime on a reload), and
   * every watched identity re-issued: serves the current trust bundle as `ROOTCA` and announces both
   * secrets.
   */
  caChanged(at = performance.now()): void {
    this.useRoot(this.secrets.trustBundlePem());
    for (const e of this.entries.values())
      if (e.map.get(SDS_ROOT_SECRET) !== this.rootSecret)
        e.map = new Map([...e.map].map(([n, r]) => [n, n === SDS_ROOT_SECRET ? this.rootSecret : r]));
    this.onChange(secretChange([SDS_DEFAULT_SECRET, SDS_ROOT_SECRET], 'ca-changed', at));
  }

  /** Stops every rotation timer. */
  close(): void {
    for (const e of this.entries.values()) e.cancel();
    this.entries.clear();
  }

  private useRoot(pem: string): void {
    if (pem === this.rootPem) return;
    this.rootPem = pem;
    this.rootSecret = encode(SDS_ROOT_SECRET, validationContextSecretJson(pem));
    this.rootOnly = new Map([[SDS_ROOT_SECRET, this.rootSecret]]);
  }

  private delivered(uri: string, entry: Entry, s: WorkloadSecret, initial: boolean): void {
    if (s.reason === 'rotation' && !entry.usedSinceDelivery) {
      // Nobody asked for this identity during a whole rotation period: no proxy holds it any more.
      entry.cancel();
      this.entries.delete(uri);
      return;
    }
    entry.usedSinceDelivery = false;
    // A re-issue after a CA switch carries the new bundle before `caChanged` is told.
    this.useRoot(s.trustBundlePem);
    entry.map = new Map([
      [SDS_DEFAULT_SECRET, encode(SDS_DEFAULT_SECRET, tlsCertificateSecretJson(s))],
      [SDS_ROOT_SECRET, this.rootSecret],
    ]);
    if (!initial && s.reason === 'rotation')
      this.onChange(secretChange([SDS_DEFAULT_SECRET], 'secret-rotation', performance.now()));
  }
}

function secretChange(names: string[], reason: string, at: number): ChangeEvent {
  return {
    full: false,
    types: new Set([TypeUrl.Secret]),
    names: new Map([[TypeUrl.Secret, new Set(names)]]),
    reason: [reason],
    at,
  };
}

/** A snapshot that answers the Secret type from `sds` and every other type from `base`. */
export function withSecrets(base: XdsSnapshot, sds: SdsSecretSource): XdsSnapshot {
  return {
    version: base.version,
    resources: (proxy, typeUrl) =>
      typeUrl === TypeUrl.Secret ? sds.resources(proxy) : base.resources(proxy, typeUrl),
  };
}
