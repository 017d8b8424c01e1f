// SDS over xDS: Envoy Secret resources for authenticated proxies, served by @meridian/xds.
//   `default`: the proxy's own key and chain, only for the identity its TLS peer certificate proves;
//   `ROOTCA`:  the trust bundle (several roots during a rotation).
// Keys and certificates come from WorkloadSecrets (rotated at half the lifetime, with jitter); each
// rotation or CA change is announced as an xDS ChangeEvent for the Secret type, and the next push
// serves the new version. Identities nobody asked for during a whole rotation period are dropped.
import { performance } from 'node:perf_hooks';
import { encodeResource, TypeUrl } from '@meridian/envoy';
import type { ChangeEvent, EncodedResource, ProxyContext, ResourceMap, XdsSnapshot } from '@meridian/xds';
import { encodedResource } from '@meridian/xds';
import type { SigningCa } from './authority.js';
import { SDS_DEFAULT_SECRET, SDS_ROOT_SECRET, type WorkloadSecret, type WorkloadSecrets } from './secrets.js';
import { parseSpiffeId } from './spiffe.js';

/** Envoy JSON of the `default` Secret: key and chain inline (as istio-agent's SDS serves them). */
export function tlsCertificateSecretJson(
  s: Pick<WorkloadSecret, 'certChainPem' | 'keyPem'>,
  name = SDS_DEFAULT_SECRET,
) {
  return {
    name,
    tls_certificate: {
      certificate_chain: { inline_bytes: Buffer.from(s.certChainPem).toString('base64') },
      private_key: { inline_bytes: Buffer.from(s.keyPem).toString('base64') },
    },
  };
}

/** Envoy JSON of the `ROOTCA` Secret: the trust bundle as the validation context. */
export function validationContextSecretJson(trustBundlePem: string, name = SDS_ROOT_SECRET) {
  return {
    name,
    validation_context: { trusted_ca: { inline_bytes: Buffer.from(trustBundlePem).toString('base64') } },
  };
}

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
    this.rootSecret = encode(SDS_ROOT_SECRET, validationContextSecretJson(secrets.trustBundlePem()));
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
    this.rootSecret = encode(SDS_ROOT_SECRET, validationContextSecretJson(ca.trustBundle.pem));
    this.rootOnly = new Map([[SDS_ROOT_SECRET, this.rootSecret]]);
    this.secrets.setSigningCa(ca);
    this.onChange(secretChange([SDS_DEFAULT_SECRET, SDS_ROOT_SECRET], 'ca-changed'));
  }

  /** Stops every rotation timer. */
  close(): void {
    for (const e of this.entries.values()) e.cancel();
    this.entries.clear();
  }

  private delivered(uri: string, entry: Entry, s: WorkloadSecret, initial: boolean): void {
    if (s.reason === 'rotation' && !entry.usedSinceDelivery) {
      // Nobody asked for this identity during a whole rotation period: no proxy holds it any more.
      entry.cancel();
      this.entries.delete(uri);
      return;
    }
    entry.usedSinceDelivery = false;
    entry.map = new Map([
      [SDS_DEFAULT_SECRET, encode(SDS_DEFAULT_SECRET, tlsCertificateSecretJson(s))],
      [SDS_ROOT_SECRET, this.rootSecret],
    ]);
    if (!initial && s.reason === 'rotation')
      this.onChange(secretChange([SDS_DEFAULT_SECRET], 'secret-rotation'));
  }
}

function secretChange(names: string[], reason: string): ChangeEvent {
  return {
    full: false,
    types: new Set([TypeUrl.Secret]),
    names: new Map([[TypeUrl.Secret, new Set(names)]]),
    reason: [reason],
    at: performance.now(),
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
