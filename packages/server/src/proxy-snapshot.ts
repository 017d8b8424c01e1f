/**
 * The replica's implementation of xds' XdsSnapshot seam over translate: one immutable (config,
 * registry) pair, the push context of one debounced change. Each proxy's resources are translated on
 * first request from the two parts translate returns (translate's `translateParts`):
 * - the outbound part, one object per outbound view, encoded once into one ResourceMap per type and
 *   kept by the long-lived {@link Encoder} for as long as translate hands out the same object (so an
 *   unchanged view keeps the same maps across snapshots, and streams skip it by identity);
 * - the workload's inbound part (a few listeners and clusters), layered over the outbound maps
 *   (xds' LayeredResourceMap: no copy of the shared map per sidecar); the layered map is interned by
 *   content, so proxies with equal inbound resources share it too.
 * Equal resources share one EncodedResource (content-hashed version, the same bytes and versions on
 * every replica); equal maps are the same object, so SotW response bodies are built once.
 *
 * A translation or encoding failure is never a result: `resources` throws a
 * {@link ProxyTranslationError}, the stream sends nothing for that push and the proxy keeps its last
 * good config (xds' Connection); the next snapshot tries again.
 */
import type { ResourceTypeUrl } from '@meridian/envoy';
import { TypeUrl } from '@meridian/envoy';
import {
  type ConfigSnapshot,
  type NamedResource,
  type OutboundResources,
  patchOf,
  type RegistrySnapshot,
  registryForNetwork,
  type Translator,
} from '@meridian/translate';
import type { EncodedResource, ProxyContext, ResourceCache, ResourceMap, XdsSnapshot } from '@meridian/xds';
import { LayeredResourceMap, ProxyTranslationError } from '@meridian/xds';
import type { Logger } from 'pino';

type PartField = 'listeners' | 'routes' | 'clusters' | 'endpoints';

const TYPES: readonly [ResourceTypeUrl, PartField][] = [
  [TypeUrl.Listener, 'listeners'],
  [TypeUrl.RouteConfiguration, 'routes'],
  [TypeUrl.Cluster, 'clusters'],
  [TypeUrl.ClusterLoadAssignment, 'endpoints'],
];

const EMPTY: readonly NamedResource[] = Object.freeze([]);

/** A map interned by content, with the generation it was last used in (for sweeping). */
interface InternedMap {
  readonly map: ResourceMap;
  readonly id: number;
  used: number;
}

/**
 * Encoding shared by every snapshot of one replica: resource JSON object -> encoded resource, and
 * resource lists -> one interned ResourceMap per distinct content.
 */
export class Encoder {
  readonly #byObject = new WeakMap<object, EncodedResource>();
  /** Resource lists of outbound parts -> their maps (alive as long as translate keeps the list; an
   * endpoint change gives a part a new load-assignment list and keeps the others). */
  readonly #outbound = new WeakMap<readonly NamedResource[], InternedMap>();
  /** Maps by content signature (`type`, then `name\0version` lines). */
  readonly #maps = new Map<string, InternedMap>();
  /** Outbound map + inbound additions -> merged map. */
  readonly #merged = new Map<string, InternedMap>();
  /** An outbound map with a few entries replaced -> the derived map (see #patched). */
  readonly #derived = new Map<string, InternedMap>();
  #generation = 0;
  #nextId = 0;

  constructor(readonly cache: ResourceCache) {}

  encode(typeUrl: ResourceTypeUrl, r: NamedResource): EncodedResource {
    let e = this.#byObject.get(r.resource);
    if (!e || e.typeUrl !== typeUrl) {
      e = this.cache.intern(typeUrl, r.resource);
      this.#byObject.set(r.resource, e);
    }
    return e;
  }

  /** The outbound part's map of one type (encoded and interned on first use). */
  outboundMap(part: OutboundResources, typeUrl: ResourceTypeUrl, field: PartField): InternedMap {
    const list = part[field];
    let m = this.#outbound.get(list);
    if (!m) {
      m =
        this.#patched(typeUrl, list) ??
        this.#intern(
          typeUrl,
          list.map((r) => this.encode(typeUrl, r)),
        );
      this.#outbound.set(list, m);
    }
    m.used = this.#generation;
    return m;
  }

  /**
   * A list translate made by replacing a few items of a list whose map is still here (an endpoint
   * change patches one service's load assignments into a 1,000-entry list): its map is the old map
   * with those entries replaced, derived once per (old map, replacements), so places whose lists
   * had the same map before share one map after. O(changes) to look up, instead of encoding and
   * signing the whole list again.
   */
  #patched(typeUrl: ResourceTypeUrl, list: readonly NamedResource[]): InternedMap | undefined {
    const patch = patchOf(list);
    const base = patch && this.#outbound.get(patch.from);
    if (!patch || !base) return undefined;
    const replaced = patch.positions.map((i) => this.encode(typeUrl, list[i]!));
    const key = `${base.id}\n${replaced.map((e) => `${e.name}\0${e.version}`).join('\n')}`;
    let m = this.#derived.get(key);
    if (!m) {
      const map = new Map(base.map);
      for (const e of replaced) map.set(e.name, e);
      m = { map, id: ++this.#nextId, used: this.#generation };
      this.#derived.set(key, m);
    }
    return m;
  }

  /** `base` plus the inbound `extra` resources (names never collide), interned. */
  merged(typeUrl: ResourceTypeUrl, base: InternedMap, extra: readonly NamedResource[]): ResourceMap {
    if (extra.length === 0) return base.map;
    const added = extra.map((r) => this.encode(typeUrl, r));
    const key = `${base.id}\n${added.map((e) => `${e.name}\0${e.version}`).join('\n')}`;
    let m = this.#merged.get(key);
    if (!m) {
      // Layered, not copied: a sidecar's map holds its few inbound resources over the shared map.
      m = { map: LayeredResourceMap.of(base.map, added), id: ++this.#nextId, used: this.#generation };
      this.#merged.set(key, m);
    }
    m.used = this.#generation;
    return m.map;
  }

  /**
   * Ends a generation: drops maps and encoded resources not used in the last two generations (the
   * current snapshot and the one before still serve streams that have not been pushed yet).
   */
  sweep(): void {
    this.#generation++;
    const keepFrom = this.#generation - 2;
    for (const [k, m] of this.#maps) if (m.used < keepFrom) this.#maps.delete(k);
    for (const [k, m] of this.#merged) if (m.used < keepFrom) this.#merged.delete(k);
    for (const [k, m] of this.#derived) if (m.used < keepFrom) this.#derived.delete(k);
    this.cache.sweep();
  }

  #intern(typeUrl: ResourceTypeUrl, entries: readonly EncodedResource[]): InternedMap {
    const signature = `${typeUrl}\n${entries.map((e) => `${e.name}\0${e.version}`).join('\n')}`;
    let m = this.#maps.get(signature);
    if (!m) {
      m = { map: new Map(entries.map((e) => [e.name, e])), id: ++this.#nextId, used: this.#generation };
      this.#maps.set(signature, m);
    }
    m.used = this.#generation;
    return m;
  }
}

/** One immutable snapshot of what every proxy is sent. */
export class ProxySnapshot implements XdsSnapshot {
  readonly #perProxy = new WeakMap<ProxyContext, Map<ResourceTypeUrl, ResourceMap>>();
  /** Failures of this snapshot per proxy, so a stream's retries in one push do not re-translate. */
  readonly #failed = new WeakMap<ProxyContext, ProxyTranslationError>();
  readonly version: string;

  constructor(
    readonly revision: number,
    readonly config: ConfigSnapshot,
    readonly registry: RegistrySnapshot,
    private readonly translator: Translator,
    private readonly encoder: Encoder,
    private readonly log: Logger,
    /** Builds at the same revision before this one (imported services, the CA loaded): the version
     * is then `<revision>.<n>`, so "synced to this version" always names one content. */
    rebuild = 0,
  ) {
    this.version = rebuild > 0 ? `${revision}.${rebuild}` : String(revision);
  }

  resources(proxy: ProxyContext, typeUrl: ResourceTypeUrl): ResourceMap | undefined {
    let maps = this.#perProxy.get(proxy);
    if (!maps) {
      const failed = this.#failed.get(proxy);
      if (failed) throw failed;
      try {
        maps = this.#build(proxy);
      } catch (error) {
        const failure = new ProxyTranslationError(proxy.proxy.id, this.version, error);
        this.#failed.set(proxy, failure);
        this.log.error(
          { proxy: proxy.proxy.id, revision: this.revision, err: error },
          'translation failed: the proxy keeps its last config',
        );
        throw failure;
      }
      this.#perProxy.set(proxy, maps);
    }
    return maps.get(typeUrl);
  }

  #build(proxy: ProxyContext): Map<ResourceTypeUrl, ResourceMap> {
    // Endpoints of other networks through their east-west gateway (the outbound key has the network).
    const registry = registryForNetwork(this.registry, proxy.proxy.network);
    const { outbound, inbound } = this.translator.translateParts(this.config, registry, proxy.proxy);
    const out = new Map<ResourceTypeUrl, ResourceMap>();
    for (const [typeUrl, field] of TYPES) {
      const base = this.encoder.outboundMap(outbound, typeUrl, field);
      const extra = field === 'listeners' || field === 'clusters' ? inbound[field] : EMPTY;
      out.set(typeUrl, this.encoder.merged(typeUrl, base, extra));
    }
    return out;
  }
}
