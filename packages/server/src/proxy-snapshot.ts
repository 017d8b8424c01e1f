/**
 * The replica's implementation of xds' XdsSnapshot seam over translate: one immutable (config,
 * registry) pair; each proxy's resources are translated on first request and encoded once. Equal
 * resources share one EncodedResource (content-hashed version, so the same bytes and versions on
 * every replica), and proxies with equal resource sets share one ResourceMap (so SotW response
 * bodies are shared too).
 */
import type { EnvoyJson, ResourceTypeUrl } from '@meridian/envoy';
import { TypeUrl } from '@meridian/envoy';
import {
  type ConfigSnapshot,
  type NamedResource,
  type RegistrySnapshot,
  registryForNetwork,
  type Translator,
} from '@meridian/translate';
import type { EncodedResource, ProxyContext, ResourceCache, ResourceMap, XdsSnapshot } from '@meridian/xds';
import type { Logger } from 'pino';

const TYPES: readonly [ResourceTypeUrl, 'listeners' | 'routes' | 'clusters' | 'endpoints'][] = [
  [TypeUrl.Listener, 'listeners'],
  [TypeUrl.RouteConfiguration, 'routes'],
  [TypeUrl.Cluster, 'clusters'],
  [TypeUrl.ClusterLoadAssignment, 'endpoints'],
];

/** Encoding shared by every snapshot of one replica: resource JSON object -> encoded resource. */
export class Encoder {
  readonly #byObject = new WeakMap<EnvoyJson, EncodedResource>();
  constructor(readonly cache: ResourceCache) {}

  encode(typeUrl: ResourceTypeUrl, r: NamedResource): EncodedResource {
    let e = this.#byObject.get(r.resource);
    if (!e || e.typeUrl !== typeUrl) {
      e = this.cache.intern(typeUrl, r.resource);
      this.#byObject.set(r.resource, e);
    }
    return e;
  }
}

/** One immutable snapshot of what every proxy is sent. */
export class ProxySnapshot implements XdsSnapshot {
  readonly #perProxy = new WeakMap<ProxyContext, Map<ResourceTypeUrl, ResourceMap>>();
  readonly #shared = new Map<string, ResourceMap>();
  readonly #byKey = new Map<string, Map<ResourceTypeUrl, ResourceMap>>();
  #addresses: Set<string> | undefined;
  readonly version: string;

  constructor(
    readonly revision: number,
    readonly config: ConfigSnapshot,
    readonly registry: RegistrySnapshot,
    private readonly translator: Translator,
    private readonly encoder: Encoder,
    private readonly log: Logger,
  ) {
    this.version = String(revision);
  }

  resources(proxy: ProxyContext, typeUrl: ResourceTypeUrl): ResourceMap | undefined {
    let maps = this.#perProxy.get(proxy);
    if (!maps) {
      const key = this.#translationKey(proxy);
      maps = this.#byKey.get(key);
      if (!maps) {
        maps = this.#build(proxy);
        this.#byKey.set(key, maps);
      }
      this.#perProxy.set(proxy, maps);
    }
    return maps.get(typeUrl);
  }

  /**
   * What translation reads of a proxy (translate's translator.ts: kind, namespace, DNS domain,
   * cluster, network, labels, locality, and its IPs only where a registry endpoint has that
   * address, i.e. inbound ports). Proxies with equal keys get the same resources, so a snapshot
   * translates once per key, not once per proxy.
   */
  #translationKey(ctx: ProxyContext): string {
    const p = ctx.proxy;
    if (!this.#addresses) {
      this.#addresses = new Set();
      for (const list of this.registry.endpoints.values())
        for (const e of list) this.#addresses.add(e.address);
    }
    const ips = p.ipAddresses.filter((ip) => this.#addresses!.has(ip));
    return JSON.stringify([
      p.kind,
      p.namespace,
      p.dnsDomain,
      p.clusterId,
      p.network,
      p.labels,
      p.locality,
      ips,
    ]);
  }

  #build(proxy: ProxyContext): Map<ResourceTypeUrl, ResourceMap> {
    const out = new Map<ResourceTypeUrl, ResourceMap>();
    try {
      // Endpoints of other networks through their east-west gateway (issue 7; the key has the network).
      const registry = registryForNetwork(this.registry, proxy.proxy.network);
      const resources = this.translator.translate(this.config, registry, proxy.proxy);
      for (const [typeUrl, field] of TYPES) {
        const entries: EncodedResource[] = resources[field].map((r) => this.encoder.encode(typeUrl, r));
        const signature = `${typeUrl}\n${entries.map((e) => `${e.name}\0${e.version}`).join('\n')}`;
        let map = this.#shared.get(signature);
        if (!map) {
          map = new Map(entries.map((e) => [e.name, e]));
          this.#shared.set(signature, map);
        }
        out.set(typeUrl, map);
      }
    } catch (error) {
      this.log.error({ proxy: proxy.proxy.id, revision: this.revision, err: error }, 'translation failed');
    }
    return out;
  }
}
