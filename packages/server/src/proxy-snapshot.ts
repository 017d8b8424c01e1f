/**
 * The replica's implementation of xds' XdsSnapshot seam over translate: one immutable (config,
 * registry) pair; each proxy's resources are translated on first request and encoded once. Equal
 * resources share one EncodedResource (content-hashed version, so the same bytes and versions on
 * every replica), and proxies with equal resource sets share one ResourceMap (so SotW response
 * bodies are shared too).
 */
import type { EnvoyJson, ResourceTypeUrl } from '@meridian/envoy';
import { TypeUrl } from '@meridian/envoy';
import type { ConfigSnapshot, NamedResource, RegistrySnapshot, Translator } from '@meridian/translate';
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
      maps = this.#build(proxy);
      this.#perProxy.set(proxy, maps);
    }
    return maps.get(typeUrl);
  }

  #build(proxy: ProxyContext): Map<ResourceTypeUrl, ResourceMap> {
    const out = new Map<ResourceTypeUrl, ResourceMap>();
    try {
      const resources = this.translator.translate(this.config, this.registry, proxy.proxy);
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
