/**
 * The materialized outbound part: the outbound set's listeners and routes with the clusters and
 * load assignments of its cluster references, as the one object every proxy with the same outbound
 * view is handed (the replica encodes it once per view). Cached per outbound key and, for load
 * assignments that depend on where the proxy is, per place; an endpoint change patches only the
 * entries of the services whose endpoint lists changed (copy on write), and a config change that
 * leaves an outbound key's cluster references as they were adopts the previous config's part.
 */
import type { ProxyInfo } from '@meridian/envoy';
import { buildFixedClusters } from './cluster.js';
import { type ClusterCache, type ClusterRef, clusterUsesEds, localityDependence } from './cluster-cache.js';
import { virtualOutboundListener } from './listener.js';
import type { OutboundSet } from './outbound.js';
import { byName, mergeInOrder, named, patchList } from './resource-lists.js';
import type { ProxyScope } from './scope.js';
import type { NamedResource, OutboundResources, RegistrySnapshot } from './types.js';
import { compareStrings } from './util.js';

type EndpointsMap = RegistrySnapshot['endpoints'];

/** An outbound key's materialized parts (see `partFor`). */
interface MaterializedOutbound {
  /** Some load assignment depends on the proxy's locality. */
  readonly locality: boolean;
  /** Some load assignment depends on the proxy's labels, network and cluster (failover priority). */
  readonly labels: boolean;
  /** The cluster references of the outbound set; by service hostname, the index of the first of
   * its references, and per index the next one of the same hostname (-1: none). */
  readonly refs: readonly ClusterRef[];
  readonly refsByHost: ReadonlyMap<string, number>;
  readonly nextOfHost: Int32Array;
  /** The refs' indexes in name order (see refOrder). */
  readonly order: Int32Array;
  /** Listeners and clusters: the same for every place. */
  shared:
    | {
        readonly listeners: readonly NamedResource[];
        /** The outbound set's listeners and the scope's allowAny they were built from. */
        readonly listenersFrom: readonly NamedResource[];
        readonly allowAny: boolean;
        readonly clusters: readonly NamedResource[];
        /** refs index -> position in `clusters`. */
        readonly positions: Int32Array;
        readonly builtWith: EndpointsMap;
      }
    | undefined;
  readonly byPlace: Map<string, MaterializedPlace>;
}

/** Load assignments of one place, and the part handed out last. */
interface MaterializedPlace {
  endpoints: readonly NamedResource[];
  /** Refs whose load assignment this place must rebuild on first use (adopted with changed refs). */
  stale: readonly number[] | undefined;
  /** refs index -> position in `endpoints` (-1: not an EDS cluster). */
  readonly positions: Int32Array;
  builtWith: EndpointsMap;
  out: OutboundResources | undefined;
}

/** Whether two cluster reference lists name the same clusters built from the same objects. */
function sameRefs(a: readonly ClusterRef[], b: readonly ClusterRef[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (
      x.name !== y.name ||
      x.service !== y.service ||
      x.port !== y.port ||
      x.subset !== y.subset ||
      x.dr !== y.dr
    )
      return false;
  }
  return true;
}

/** Hostnames whose endpoint list differs between two endpoint maps, per pair of maps. */
const changedHostsMemo = new WeakMap<EndpointsMap, WeakMap<EndpointsMap, readonly string[]>>();

/**
 * The hostnames whose endpoint list is not the same object in `after` as in `before`: computed
 * once per pair of registry snapshots and shared by every outbound part and place patched across it
 * (an endpoint change would otherwise compare every hostname once per place).
 */
function changedHosts(before: EndpointsMap, after: EndpointsMap): readonly string[] {
  let byAfter = changedHostsMemo.get(before);
  const known = byAfter?.get(after);
  if (known) return known;
  const hosts: string[] = [];
  for (const [host, list] of after) if (before.get(host) !== list) hosts.push(host);
  for (const host of before.keys()) if (!after.has(host)) hosts.push(host);
  if (!byAfter) {
    byAfter = new WeakMap();
    changedHostsMemo.set(before, byAfter);
  }
  byAfter.set(after, hosts);
  return hosts;
}

/** Indexes of the refs whose service's endpoint list is not the same object in `after`. */
function changedRefs(m: MaterializedOutbound, before: EndpointsMap, after: EndpointsMap): number[] {
  const out: number[] = [];
  for (const host of changedHosts(before, after)) {
    const first = m.refsByHost.get(host);
    if (first === undefined) continue;
    for (let i = first; i >= 0; i = m.nextOfHost[i]!) out.push(i);
  }
  return out;
}

/**
 * The indexes of `refs` in name order (as a stable sort by name gives them). A name is
 * `outbound|<port>|<subset>|<host>`, and the references of one (port, subset) come in the order of
 * the scope's services, by hostname: so the few distinct `<port>|<subset>|` prefixes are sorted and
 * each one's references kept in their order (checked, and sorted when they are not). A subset name
 * with `|` would break the prefix rule: then every name is sorted.
 */
function refOrder(refs: readonly ClusterRef[]): Int32Array {
  const byPort = new Map<number, Map<string, number[]>>();
  for (let i = 0; i < refs.length; i++) {
    const ref = refs[i]!;
    if (ref.subset.includes('|')) return sortedIndexes(refs.map((r) => r.name));
    let bySubset = byPort.get(ref.port.port);
    if (!bySubset) {
      bySubset = new Map();
      byPort.set(ref.port.port, bySubset);
    }
    const list = bySubset.get(ref.subset);
    if (list) list.push(i);
    else bySubset.set(ref.subset, [i]);
  }
  const groups: { prefix: string; list: number[] }[] = [];
  for (const [port, bySubset] of byPort) {
    for (const [subset, list] of bySubset) groups.push({ prefix: `${port}|${subset}|`, list });
  }
  groups.sort((a, b) => compareStrings(a.prefix, b.prefix));
  const out = new Int32Array(refs.length);
  let k = 0;
  for (const { list } of groups) {
    for (let j = 1; j < list.length; j++) {
      if (compareStrings(refs[list[j - 1]!]!.name, refs[list[j]!]!.name) > 0) {
        list.sort((a, b) => compareStrings(refs[a]!.name, refs[b]!.name) || a - b);
        break;
      }
    }
    for (const i of list) out[k++] = i;
  }
  return out;
}

function sortedIndexes(names: readonly string[]): Int32Array {
  const order = Array.from(names.keys()).sort((a, b) => compareStrings(names[a]!, names[b]!) || a - b);
  return Int32Array.from(order);
}

/** Materialized outbound parts by outbound key (see the module comment). */
export class MaterializedParts {
  /** This config's parts (cleared on a config or service list change, kept across endpoint changes). */
  private current = new Map<string, MaterializedOutbound>();
  /** The previous config's parts: adopted when an outbound key's cluster references are the same
   * (a VirtualService edit changes routes, not clusters or load assignments). */
  private previous = new Map<string, MaterializedOutbound>();

  constructor(private readonly clusters: ClusterCache) {}

  /** Drops every part (what shaped their clusters changed). */
  clear(): void {
    this.current.clear();
  }

  /** A new config or service list: this config's parts become the previous ones, to adopt from. */
  rebase(): void {
    this.previous = this.current;
    this.current = new Map();
  }

  /**
   * The outbound part with its clusters and load assignments, cached per outbound key (listeners,
   * routes and clusters) and, for load assignments that depend on where the proxy is (locality load
   * balancing, failover priority), per place. An endpoint change patches only the clusters and load
   * assignments of the services whose endpoint lists changed (copy on write); the rest keeps its
   * objects, so unchanged types keep their arrays and the replica their encoded maps.
   */
  partFor(
    outboundKey: string,
    outbound: OutboundSet,
    scope: ProxyScope,
    registry: RegistrySnapshot,
    proxy: ProxyInfo,
    grpc: boolean,
  ): OutboundResources {
    let m = this.current.get(outboundKey);
    if (!m) {
      const previous = this.previous.get(outboundKey);
      if (previous && sameRefs(previous.refs, outbound.clusters)) {
        m = previous;
        this.current.set(outboundKey, m);
      } else if (previous) {
        m = this.adoptChanged(previous, outbound.clusters, proxy, grpc);
        if (m) this.current.set(outboundKey, m);
      }
    }
    if (!m) {
      const refs = outbound.clusters;
      const refsByHost = new Map<string, number>();
      const nextOfHost = new Int32Array(refs.length).fill(-1);
      // A service's references are usually one run: link each to the next of its hostname.
      const lastOfHost = new Map<string, number>();
      for (let i = 0; i < refs.length; i++) {
        const host = refs[i]!.service.hostname;
        const previous = i > 0 && refs[i - 1]!.service.hostname === host ? i - 1 : lastOfHost.get(host);
        if (previous === undefined) refsByHost.set(host, i);
        else nextOfHost[previous] = i;
        if (i + 1 < refs.length && refs[i + 1]!.service.hostname !== host) lastOfHost.set(host, i);
      }
      m = {
        ...localityDependence(refs, grpc),
        refs,
        refsByHost,
        nextOfHost,
        order: refOrder(refs),
        shared: undefined,
        byPlace: new Map(),
      };
      this.current.set(outboundKey, m);
    }
    const current = registry.endpoints;
    let shared = m.shared;
    if (!shared) {
      const built: NamedResource[] = [];
      for (const ref of m.refs) built.push(this.clusters.clusterFor(ref, proxy, grpc));
      const fixed = grpc ? [] : buildFixedClusters().map((c) => named(c.name as string, c));
      const { sorted, positions } = mergeInOrder(built, m.order, fixed);
      shared = {
        ...this.outboundListeners(outbound, scope, grpc),
        clusters: sorted,
        positions,
        builtWith: current,
      };
      m.shared = shared;
    }
    if (shared.listenersFrom !== outbound.listeners || shared.allowAny !== scope.allowAny) {
      // Adopted from the previous config: the clusters hold, the listeners are this config's.
      shared = { ...shared, ...this.outboundListeners(outbound, scope, grpc) };
      m.shared = shared;
    }
    if (shared.builtWith !== current) {
      const positions: number[] = [];
      const replacements: NamedResource[] = [];
      for (const i of changedRefs(m, shared.builtWith, current)) {
        const c = this.clusters.clusterFor(m.refs[i]!, proxy, grpc);
        const at = shared.positions[i]!;
        if (shared.clusters[at] === c) continue;
        positions.push(at);
        replacements.push(c);
      }
      const clusters = positions.length
        ? patchList(shared.clusters, positions, replacements)
        : shared.clusters;
      shared = { ...shared, clusters, builtWith: current };
      m.shared = shared;
    }
    const l = proxy.locality;
    const place = `${proxy.network}|${m.locality ? `${l.region}/${l.zone}/${l.subZone}` : ''}|${
      m.labels ? `${JSON.stringify(proxy.labels)}|${proxy.clusterId}` : ''
    }`;
    let p = m.byPlace.get(place);
    if (!p) {
      // Built in name order (the clusters' order), so already sorted.
      const sorted: NamedResource[] = [];
      const claPositions = new Int32Array(m.refs.length).fill(-1);
      for (const i of m.order) {
        const ref = m.refs[i]!;
        if (!clusterUsesEds(ref, grpc)) continue;
        claPositions[i] = sorted.length;
        sorted.push(this.clusters.loadAssignmentFor(ref, registry, proxy, grpc));
      }
      p = {
        endpoints: sorted,
        stale: undefined,
        positions: claPositions,
        builtWith: current,
        out: undefined,
      };
      m.byPlace.set(place, p);
    } else {
      if (p.stale) {
        // Adopted with changed refs: their load assignments, built for this place.
        const stale = p.stale;
        p.stale = undefined;
        this.patchPlace(m, p, stale, registry, proxy, grpc);
      }
      if (p.builtWith !== current) {
        const changed = changedRefs(m, p.builtWith, current);
        p.builtWith = current;
        this.patchPlace(m, p, changed, registry, proxy, grpc);
      }
    }
    if (!p.out || p.out.clusters !== shared.clusters || p.out.listeners !== shared.listeners) {
      p.out = {
        listeners: shared.listeners,
        routes: outbound.routes,
        clusters: shared.clusters,
        endpoints: p.endpoints,
      };
    }
    return p.out;
  }

  /** Rebuilds a place's load assignments of the refs at `indexes` (a patched list when any changed). */
  private patchPlace(
    m: MaterializedOutbound,
    p: MaterializedPlace,
    indexes: readonly number[],
    registry: RegistrySnapshot,
    proxy: ProxyInfo,
    grpc: boolean,
  ): void {
    const positions: number[] = [];
    const replacements: NamedResource[] = [];
    for (const i of indexes) {
      const at = p.positions[i]!;
      if (at < 0) continue;
      const cla = this.clusters.loadAssignmentFor(m.refs[i]!, registry, proxy, grpc);
      if (p.endpoints[at] === cla) continue;
      positions.push(at);
      replacements.push(cla);
    }
    if (positions.length) {
      p.endpoints = patchList(p.endpoints, positions, replacements);
      p.out = undefined;
    }
  }

  /**
   * The previous config's part for cluster references that name the same clusters in the same order
   * but were built from other objects at a few positions (a DestinationRule edit changes its host's
   * references only): its lists patched at those positions, the rest kept, so the replica's encoder
   * updates its maps for those entries instead of encoding every cluster and load assignment again.
   * Undefined when names or their order changed, when where load assignments depend on changed, or
   * when a changed reference moves between EDS and not; then the part is built anew.
   */
  private adoptChanged(
    previous: MaterializedOutbound,
    refs: readonly ClusterRef[],
    proxy: ProxyInfo,
    grpc: boolean,
  ): MaterializedOutbound | undefined {
    if (refs.length !== previous.refs.length) return undefined;
    const changed: number[] = [];
    for (let i = 0; i < refs.length; i++) {
      const a = previous.refs[i]!;
      const b = refs[i]!;
      if (a.name !== b.name) return undefined;
      if (a.service !== b.service || a.port !== b.port || a.subset !== b.subset || a.dr !== b.dr) {
        if (clusterUsesEds(a, grpc) !== clusterUsesEds(b, grpc)) return undefined;
        changed.push(i);
      }
    }
    const dependence = localityDependence(refs, grpc);
    if (dependence.locality !== previous.locality || dependence.labels !== previous.labels) return undefined;
    let shared = previous.shared;
    if (shared) {
      const positions: number[] = [];
      const replacements: NamedResource[] = [];
      for (const i of changed) {
        const c = this.clusters.clusterFor(refs[i]!, proxy, grpc);
        const at = shared.positions[i]!;
        if (shared.clusters[at] === c) continue;
        positions.push(at);
        replacements.push(c);
      }
      if (positions.length)
        shared = { ...shared, clusters: patchList(shared.clusters, positions, replacements) };
    }
    const byPlace = new Map<string, MaterializedPlace>();
    for (const [key, p] of previous.byPlace) {
      const stale = p.stale ? [...new Set([...p.stale, ...changed])] : changed;
      byPlace.set(key, { ...p, stale, out: undefined });
    }
    return { ...previous, refs, shared, byPlace };
  }

  /** The outbound set's listeners, with the sidecar's virtualOutbound, and what they were made of. */
  private outboundListeners(
    outbound: OutboundSet,
    scope: ProxyScope,
    grpc: boolean,
  ): { listeners: readonly NamedResource[]; listenersFrom: readonly NamedResource[]; allowAny: boolean } {
    const listeners = [...outbound.listeners];
    if (!grpc) listeners.push(named('virtualOutbound', virtualOutboundListener(scope.allowAny)));
    return { listeners: listeners.sort(byName), listenersFrom: outbound.listeners, allowAny: scope.allowAny };
  }
}
