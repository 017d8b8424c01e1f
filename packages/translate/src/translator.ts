/**
 * The translator: (config snapshot, registry snapshot, proxy) -> every xDS resource the proxy is
 * sent. Generation is pure: the same inputs give the same resources, in the same order.
 *
 * ## Incremental cache
 * A {@link Translator} remembers what it built and reuses it while its inputs are the same objects
 * (snapshots are immutable and structurally shared, see types.ts):
 *
 * | what | key | reused while |
 * |---|---|---|
 * | proxy scope (visible services, VS/DR lookup) | (namespace, Sidecar, DR-selector match) | same ConfigSnapshot and `registry.services` |
 * | outbound listeners + route configurations | (scope key, proxy kind, DNS domain, labels if any VS matches on sourceLabels) | same ConfigSnapshot and `registry.services` |
 * | one virtual host's routes (`routesFor`) | (proxy kind, namespace, DNS domain, labels if sourceLabels, service, port) | same Service, port, VirtualService, and the same services and DestinationRules the build looked up (recorded while it ran) |
 * | materialized outbound part (`translateParts`' shared half) | (outbound key, locality if a load assignment uses it) | same ConfigSnapshot, `registry.services` and `registry.endpoints` |
 * | inbound part | (kind, namespace, labels, inbound ports, IPs for gRPC) | same ConfigSnapshot, `registry.services` and `registry.endpoints` |
 * | cluster | (cluster name, proxy kind, DestinationRule name, proxy namespace with a TLS hook) | same `Service` object, same DestinationRule object and, with a TLS hook, the same service accounts of the service's endpoints |
 * | ClusterLoadAssignment | (cluster name, proxy kind, DestinationRule name, proxy locality when locality LB applies) | same `Service`, same DestinationRule, same endpoint list |
 * | prepared `lb_endpoints` entries | endpoint list, service port | forever (WeakMap on the immutable list) |
 *
 * So an endpoint change (a new RegistrySnapshot with one new endpoint list) rebuilds only that
 * service's ClusterLoadAssignments (and, with an `upstreamTls` hook, its clusters when the set of
 * its endpoints' service accounts changed: the upstream SAN check names them); a DestinationRule change rebuilds that host's clusters and
 * CLAs plus the listener/route set (whose hash policies may change); any config change rebuilds
 * scopes and listener/route sets, and clusters/CLAs whose DestinationRule object changed; within a
 * route set, only the virtual hosts whose inputs changed are rebuilt (the others keep their objects).
 */
import {
  accessLoggingEnabled,
  type DestinationRuleConfig,
  type PeerAuthenticationConfig,
  type VirtualServiceConfig,
} from '@meridian/api';
import type { EnvoyJson, JsonValue, ProxyInfo } from '@meridian/envoy';
import { partWithAccessLog } from './access-log.js';
import { buildAuthzFilters, formatAuthzFinding, hasPolicies, selectAuthorizationPolicies } from './authz.js';
import {
  buildFixedClusters,
  buildInboundCluster,
  buildOutboundCluster,
  effectivePolicy,
  failoverEnabled,
} from './cluster.js';
import { virtualHostDomains } from './domains.js';
import { buildLoadAssignment, type PreparedCache } from './endpoint.js';
import { serviceAccountsOf } from './identity.js';
import {
  grpcClientListener,
  grpcServerListener,
  type InboundAuthz,
  type InboundPort,
  inboundHttpPolicy,
  outboundHttpListener,
  outboundTcpListener,
  virtualInboundListener,
  virtualOutboundListener,
} from './listener.js';
import { mtlsInboundFilterChains, mtlsUpstreamTls, peerAuthenticationsKey } from './mtls.js';
import { buildRoutes, destinationCluster, type RouteContext } from './route.js';
import { buildScope, type ProxyScope, selectSidecar } from './scope.js';
import { partWithTracing, proxyTracing } from './tracing.js';
import type {
  ConfigSnapshot,
  Endpoint,
  InboundResources,
  NamedResource,
  OutboundResources,
  ProxyParts,
  ProxyResources,
  RegistrySnapshot,
  Service,
  ServicePort,
  TranslateOptions,
} from './types.js';
import { clusterName, compareStrings, isHttpProtocol, labelsMatch } from './util.js';

/** Counters of what the last translations built and reused (for tests and the benchmark). */
export interface TranslatorStats {
  scopesBuilt: number;
  routeSetsBuilt: number;
  clustersBuilt: number;
  clustersReused: number;
  loadAssignmentsBuilt: number;
  loadAssignmentsReused: number;
}

/** A built cluster; the cache holds one per (name, proxy kind, DestinationRule name, proxy
 * namespace with a TLS hook). */
interface ClusterEntry {
  readonly kind: string;
  /** The proxy namespace it was built for (`''` without an upstreamTls hook). */
  readonly namespace: string;
  readonly service: Service;
  readonly dr: DestinationRuleConfig | undefined;
  /** The endpoint list it was built from (only DNS clusters, which inline their endpoints). */
  readonly endpoints: readonly Endpoint[] | undefined;
  /** The service accounts key it was built with (`''` without an upstreamTls hook). */
  readonly accounts: string;
  readonly resource: NamedResource;
  /** The next entry of the same name. */
  next: ClusterEntry | undefined;
}

/** A built load assignment; the cache holds one per (name, gRPC or not, DestinationRule name,
 * proxy network, place: the proxy's locality and labels when the assignment depends on them). */
interface LoadAssignmentEntry {
  readonly grpc: boolean;
  readonly network: string;
  readonly place: string;
  readonly service: Service;
  readonly dr: DestinationRuleConfig | undefined;
  readonly endpoints: readonly Endpoint[];
  readonly resource: NamedResource;
  /** The next entry of the same name. */
  next: LoadAssignmentEntry | undefined;
}

/** Puts `entry` in a cache of entries chained by name, in place of `old` (when set). */
function putEntry<T extends { next: T | undefined }>(
  cache: Map<string, T>,
  name: string,
  entry: T,
  old: T | undefined,
): void {
  const head = cache.get(name);
  if (!old || !head) {
    entry.next = head;
    cache.set(name, entry);
    return;
  }
  entry.next = old.next;
  if (head === old) {
    cache.set(name, entry);
    return;
  }
  for (let e = head; e.next; e = e.next) {
    if (e.next === old) {
      e.next = entry;
      return;
    }
  }
}

/** Whether two DestinationRules (or none) have the same namespace and name. */
function sameRuleName(a: DestinationRuleConfig | undefined, b: DestinationRuleConfig | undefined): boolean {
  if (a === b) return true;
  if (!a || !b) return false;
  return a.metadata.namespace === b.metadata.namespace && a.metadata.name === b.metadata.name;
}

interface OutboundSet {
  readonly listeners: readonly NamedResource[];
  readonly routes: readonly NamedResource[];
  /** (service, port, subset) triples whose clusters the proxy needs. */
  readonly clusters: readonly ClusterRef[];
}

interface ClusterRef {
  readonly name: string;
  readonly service: Service;
  readonly port: ServicePort;
  readonly subset: string;
  readonly dr: DestinationRuleConfig | undefined;
}

/** Cached routes of one virtual host and what they were built from (see `routesFor`). */
interface RouteEntry {
  readonly service: Service;
  readonly port: ServicePort;
  readonly vs: VirtualServiceConfig | undefined;
  /** Services the build looked up by host, and what it found: host, result, host, result, ... */
  readonly services: readonly (string | Service | undefined)[];
  /** DestinationRules the build looked up by host, and what it found, likewise. */
  readonly rules: readonly (string | DestinationRuleConfig | undefined)[];
  readonly routes: EnvoyJson[];
  /** The virtual host's name, `<hostname>:<port>`. */
  readonly name: string;
  /** The sidecar virtual host last made of these routes: unchanged hosts keep their identity. */
  vh: EnvoyJson | undefined;
}

/** The virtual host of `entry`'s routes with `domains`, the same object while they are the same. */
function virtualHost(entry: RouteEntry, domains: readonly string[]): EnvoyJson {
  const last = entry.vh;
  if (last && sameStrings(last.domains as string[], domains)) return last;
  const json: EnvoyJson = {
    name: entry.name,
    domains: domains as string[],
    routes: entry.routes,
    include_request_attempt_count: true,
  };
  entry.vh = json;
  return json;
}

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The context routes are built in: looks services and DestinationRules up for the build and records
 * what it asked and found (what `routesFor` checks before reusing the routes).
 */
class RouteBuild implements RouteContext {
  services: (string | Service | undefined)[] = NONE;
  rules: (string | DestinationRuleConfig | undefined)[] = NONE;

  constructor(
    readonly proxy: ProxyInfo,
    readonly service: Service,
    readonly port: ServicePort,
    readonly grpc: boolean,
    readonly domainSuffix: string,
    private readonly serviceIndex: ReadonlyMap<string, Service>,
    private readonly scope: ProxyScope,
  ) {}

  serviceFor(host: string): Service | undefined {
    const found = this.serviceIndex.get(host);
    if (this.services === NONE) this.services = [host, found];
    else this.services.push(host, found);
    return found;
  }

  destinationRuleFor(host: string): DestinationRuleConfig | undefined {
    const found = this.scope.destinationRuleFor(host);
    if (this.rules === NONE) this.rules = [host, found];
    else this.rules.push(host, found);
    return found;
  }
}

/** No lookups (shared, never written). */
const NONE: never[] = Object.freeze([]) as unknown as never[];

/** One sidecar virtual host before the domains of a route configuration are de-duplicated. */
interface VirtualHostInput {
  readonly domains: readonly string[];
  readonly entry: RouteEntry;
}

type EndpointsMap = RegistrySnapshot['endpoints'];

/** An outbound key's materialized parts (see `materializedFor`). */
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

/** Indexes of the refs whose service's endpoint list is not the same object in `after`. */
function changedRefs(m: MaterializedOutbound, before: EndpointsMap, after: EndpointsMap): number[] {
  const out: number[] = [];
  for (const [host, first] of m.refsByHost) {
    if (before.get(host) === after.get(host)) continue;
    for (let i = first; i >= 0; i = m.nextOfHost[i]!) out.push(i);
  }
  return out;
}

/** `items` sorted by name (a stable sort), and where each item went. */
function sortWithPositions(items: readonly NamedResource[]): {
  sorted: NamedResource[];
  positions: Int32Array;
} {
  const names = items.map((r) => r.name);
  const order = Array.from(items.keys());
  if (!sortedBy(names)) order.sort((a, b) => compareStrings(names[a]!, names[b]!) || a - b);
  const positions = new Int32Array(items.length);
  const sorted = new Array<NamedResource>(items.length);
  for (let to = 0; to < order.length; to++) {
    const from = order[to]!;
    positions[from] = to;
    sorted[to] = items[from]!;
  }
  return { sorted, positions };
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

/**
 * `[...built, ...extra]` sorted by name (stably) and where each item went, given the order of
 * `built` by name: a merge with `extra` when it is sorted.
 */
function mergeInOrder(
  built: readonly NamedResource[],
  order: Int32Array,
  extra: readonly NamedResource[],
): { sorted: NamedResource[]; positions: Int32Array } {
  if (!sortedByName(extra)) return sortWithPositions([...built, ...extra]);
  const n = built.length;
  const sorted = new Array<NamedResource>(n + extra.length);
  const positions = new Int32Array(n + extra.length);
  let i = 0;
  let j = 0;
  for (let k = 0; k < sorted.length; k++) {
    // Ties take `built`'s first, as a stable sort of the concatenation does.
    if (j >= extra.length || (i < n && byName(built[order[i]!]!, extra[j]!) <= 0)) {
      const from = order[i++]!;
      sorted[k] = built[from]!;
      positions[from] = k;
    } else {
      sorted[k] = extra[j]!;
      positions[n + j++] = k;
    }
  }
  return { sorted, positions };
}

/** Whether `names` is in order (so a stable sort by them changes nothing). */
function sortedBy(names: readonly string[]): boolean {
  for (let i = 1; i < names.length; i++) if (compareStrings(names[i - 1]!, names[i]!) > 0) return false;
  return true;
}

const EMPTY_ENDPOINTS: readonly Endpoint[] = Object.freeze([]);

/** Whether the load assignments of `refs` depend on where the proxy is (see loadAssignmentFor). */
function localityDependence(
  refs: readonly ClusterRef[],
  grpc: boolean,
): { locality: boolean; labels: boolean } {
  let locality = false;
  let labels = false;
  for (const ref of refs) {
    if (!clusterUsesEds(ref, grpc)) continue;
    const policy = effectivePolicy(ref.dr, ref.subset, ref.port.port);
    const lb = policy.loadBalancer?.localityLbSetting;
    if ((lb?.distribute?.length ?? 0) > 0 || failoverEnabled(policy)) {
      locality = true;
      if (lb?.failoverPriority?.length) labels = true;
    }
  }
  return { locality, labels };
}

/** Both parts as one {@link ProxyResources}, each list sorted by name. */
export function mergeParts(parts: ProxyParts): ProxyResources {
  const { outbound, inbound } = parts;
  return {
    listeners: mergeByName(outbound.listeners, inbound.listeners),
    routes: [...outbound.routes],
    clusters: mergeByName(outbound.clusters, inbound.clusters),
    endpoints: [...outbound.endpoints],
    ...(inbound.warnings ? { warnings: inbound.warnings } : {}),
  };
}

function byName(a: NamedResource, b: NamedResource): number {
  return compareStrings(a.name, b.name);
}

function sortedByName(list: readonly NamedResource[]): boolean {
  for (let i = 1; i < list.length; i++) if (byName(list[i - 1]!, list[i]!) > 0) return false;
  return true;
}

/** `[...a, ...b]` stably sorted by name: a merge when both are sorted (as the parts' lists are). */
function mergeByName(a: readonly NamedResource[], b: readonly NamedResource[]): NamedResource[] {
  if (b.length === 0 && sortedByName(a)) return [...a];
  if (!sortedByName(a) || !sortedByName(b)) return [...a, ...b].sort(byName);
  const out = new Array<NamedResource>(a.length + b.length);
  let i = 0;
  let j = 0;
  let k = 0;
  // Ties take `a`'s first, as a stable sort of the concatenation does.
  while (i < a.length && j < b.length) out[k++] = byName(a[i]!, b[j]!) <= 0 ? a[i++]! : b[j++]!;
  while (i < a.length) out[k++] = a[i++]!;
  while (j < b.length) out[k++] = b[j++]!;
  return out;
}

function named(name: string, resource: EnvoyJson): NamedResource {
  return { name, resource };
}

/** Translates snapshots to per-proxy resources, reusing unchanged parts (see the module comment). */
export class Translator {
  /** Istio's root namespace: its policies (AuthorizationPolicy, PeerAuthentication, ...) apply mesh-wide. */
  readonly rootNamespace: string;
  private readonly domainSuffix: string;
  private config: ConfigSnapshot | undefined;
  private services: readonly Service[] | undefined;
  private readonly scopes = new Map<string, ProxyScope>();
  private readonly outbound = new Map<string, OutboundSet>();
  /** Routes per (proxy kind, namespace, domain, labels if sourceLabels) then service hostname, one
   * entry per port, see routesFor; kept across config changes. */
  private readonly routeCache = new Map<string, Map<string, RouteEntry[]>>();
  /** Materialized outbound parts per outbound key (cleared with `outbound` and on endpoint changes). */
  private materialized = new Map<string, MaterializedOutbound>();
  /** The previous config's materialized parts: adopted when an outbound key's cluster references
   * are the same (a VirtualService edit changes routes, not clusters or load assignments). */
  private previousMaterialized = new Map<string, MaterializedOutbound>();
  /** Inbound parts per inbound key (cleared with `outbound` and on endpoint changes). */
  private readonly inbound = new Map<string, InboundResources>();
  /** Built clusters and load assignments by name (see the entries for what else tells them apart). */
  private readonly clusters = new Map<string, ClusterEntry>();
  private readonly loadAssignments = new Map<string, LoadAssignmentEntry>();
  /** Prepared `lb_endpoints` entries per endpoint list and port, shared by a service's CLAs. */
  private readonly prepared: PreparedCache = new WeakMap();
  private usesSourceLabels = false;
  /** What was built and reused since construction. */
  readonly stats: TranslatorStats = {
    scopesBuilt: 0,
    routeSetsBuilt: 0,
    clustersBuilt: 0,
    clustersReused: 0,
    loadAssignmentsBuilt: 0,
    loadAssignmentsReused: 0,
  };

  /** The options clusters are built with: `upstreamTls` is the `mtls` one when `mtls` is set. */
  private readonly options: TranslateOptions;
  /** The config snapshot's PeerAuthentications (read by the `mtls` hooks) and their key (rebase). */
  private peerAuthentications: readonly PeerAuthenticationConfig[] = [];
  private peerAuthenticationsKey = '';

  constructor(options: TranslateOptions = {}) {
    this.rootNamespace = options.rootNamespace ?? 'istio-system';
    this.domainSuffix = options.domainSuffix ?? 'cluster.local';
    const mtls = options.mtls;
    if (mtls && (options.upstreamTls || options.inboundFilterChains))
      throw new TypeError(
        'TranslateOptions.mtls cannot be combined with TranslateOptions.upstreamTls or inboundFilterChains',
      );
    if (mtls && !mtls.trustDomain) throw new TypeError('TranslateOptions.mtls.trustDomain is empty');
    this.options = mtls
      ? {
          ...options,
          upstreamTls: (c) => mtlsUpstreamTls(c, this.peerAuthentications, mtls, this.rootNamespace),
          inboundFilterChains: (c) =>
            mtlsInboundFilterChains(c, this.peerAuthentications, mtls, this.rootNamespace),
        }
      : options;
  }

  /** Every resource `proxy` is sent, each list sorted by name. Never throws on validated input. */
  translate(config: ConfigSnapshot, registry: RegistrySnapshot, proxy: ProxyInfo): ProxyResources {
    return mergeParts(this.translateParts(config, registry, proxy));
  }

  /**
   * The proxy's resources in two parts: the outbound part, shared (the same object) by every proxy
   * with the same outbound view while its inputs are the same objects, and the workload's own inbound
   * part. {@link translate} is their merge; the replica encodes the shared part once per view.
   */
  translateParts(config: ConfigSnapshot, registry: RegistrySnapshot, proxy: ProxyInfo): ProxyParts {
    this.rebase(config, registry);
    const scopeKey = this.scopeKey(config, proxy);
    const scope = this.scopeFor(scopeKey, config, registry, proxy);
    const grpc = proxy.kind === 'grpc';
    const outboundKey = this.outboundKey(scopeKey, proxy);
    const outbound = this.outboundFor(outboundKey, scope, proxy, grpc);
    const parts = {
      outbound: this.materializedFor(outboundKey, outbound, scope, registry, proxy, grpc),
      inbound: this.inboundFor(config, registry, proxy, grpc),
    };
    return withTelemetry(parts, config, registry, proxy, this.rootNamespace);
  }

  /**
   * The outbound part with its clusters and load assignments, cached per outbound key (listeners,
   * routes and clusters) and, for load assignments that depend on where the proxy is (locality load
   * balancing, failover priority), per place. An endpoint change patches only the clusters and load
   * assignments of the services whose endpoint lists changed (copy on write); the rest keeps its
   * objects, so unchanged types keep their arrays and the replica their encoded maps.
   */
  private materializedFor(
    outboundKey: string,
    outbound: OutboundSet,
    scope: ProxyScope,
    registry: RegistrySnapshot,
    proxy: ProxyInfo,
    grpc: boolean,
  ): OutboundResources {
    let m = this.materialized.get(outboundKey);
    if (!m) {
      const previous = this.previousMaterialized.get(outboundKey);
      if (previous && sameRefs(previous.refs, outbound.clusters)) {
        m = previous;
        this.materialized.set(outboundKey, m);
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
      this.materialized.set(outboundKey, m);
    }
    const current = registry.endpoints;
    let shared = m.shared;
    if (!shared) {
      const built: NamedResource[] = [];
      for (const ref of m.refs) built.push(this.clusterFor(ref, proxy, grpc));
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
      let clusters: NamedResource[] | undefined;
      for (const i of changedRefs(m, shared.builtWith, current)) {
        const c = this.clusterFor(m.refs[i]!, proxy, grpc);
        const at = shared.positions[i]!;
        if (shared.clusters[at] === c) continue;
        clusters ??= [...shared.clusters];
        clusters[at] = c;
      }
      shared = { ...shared, clusters: clusters ?? shared.clusters, builtWith: current };
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
        sorted.push(this.loadAssignmentFor(ref, registry, proxy, grpc));
      }
      p = { endpoints: sorted, positions: claPositions, builtWith: current, out: undefined };
      m.byPlace.set(place, p);
    } else if (p.builtWith !== current) {
      let endpoints: NamedResource[] | undefined;
      for (const i of changedRefs(m, p.builtWith, current)) {
        const at = p.positions[i]!;
        if (at < 0) continue;
        const cla = this.loadAssignmentFor(m.refs[i]!, registry, proxy, grpc);
        if (p.endpoints[at] === cla) continue;
        endpoints ??= [...p.endpoints];
        endpoints[at] = cla;
      }
      p.builtWith = current;
      if (endpoints) {
        p.endpoints = endpoints;
        p.out = undefined;
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

  private outboundListeners(
    outbound: OutboundSet,
    scope: ProxyScope,
    grpc: boolean,
  ): { listeners: readonly NamedResource[]; listenersFrom: readonly NamedResource[]; allowAny: boolean } {
    const listeners = [...outbound.listeners];
    if (!grpc) listeners.push(named('virtualOutbound', virtualOutboundListener(scope.allowAny)));
    return { listeners: listeners.sort(byName), listenersFrom: outbound.listeners, allowAny: scope.allowAny };
  }

  /**
   * The workload's own listeners and clusters, cached per what they are built from: kind, namespace
   * and labels (policy selection, the inbound TLS hook), inbound ports, and for proxyless gRPC its IPs
   * (one server listener per address).
   */
  private inboundFor(
    config: ConfigSnapshot,
    registry: RegistrySnapshot,
    proxy: ProxyInfo,
    grpc: boolean,
  ): InboundResources {
    const inbound = this.inboundPorts(registry, proxy);
    const key = `${proxy.kind}|${proxy.namespace}|${JSON.stringify(proxy.labels)}|${inbound
      .map((p) => `${p.port}${p.http ? 'h' : 't'}`)
      .join(',')}|${grpc ? proxy.ipAddresses.join(',') : ''}`;
    const cached = this.inbound.get(key);
    if (cached) return cached;
    const listeners: NamedResource[] = [];
    const clusters: NamedResource[] = [];
    const hook = this.options.inboundFilterChains;
    const secure = hook ? (port: number, chain: EnvoyJson) => hook({ proxy, port, chain }) : undefined;
    const policies = selectAuthorizationPolicies(config.authorizationPolicies, proxy, this.rootNamespace);
    const warnings = new Set<string>();
    const authz = (target: 'http' | 'tcp' | 'grpc'): readonly EnvoyJson[] => {
      if (!hasPolicies(policies)) return [];
      const built = buildAuthzFilters(policies, target);
      for (const f of built.findings) warnings.add(formatAuthzFinding(f));
      return built.filters;
    };
    // RequestAuthentication (jwt_authn before RBAC) and RateLimit (after RBAC), listener.ts.
    const policy = inboundHttpPolicy(config, proxy, this.rootNamespace, grpc);
    if (inbound.length > 0) for (const w of policy.warnings) warnings.add(w);
    if (grpc) {
      const hosts = [...new Set(['0.0.0.0', '::', ...proxy.ipAddresses])];
      const grpcAuthz = inbound.length > 0 ? authz('grpc') : [];
      for (const p of inbound) {
        for (const host of hosts) {
          const l = grpcServerListener(host, p.port, secure, grpcAuthz);
          listeners.push(named(l.name as string, l));
        }
      }
    } else {
      for (const p of inbound) {
        const c = buildInboundCluster(p.port, p.http ? 'HTTP' : 'TCP');
        clusters.push(named(c.name as string, c));
      }
      for (const c of policy.clusters) clusters.push(named(c.name as string, c));
      const http = inbound.some((p) => p.http);
      const inboundAuthz: InboundAuthz = {
        http: http ? [...policy.beforeAuthz, ...authz('http'), ...policy.afterAuthz] : [],
        tcp: authz('tcp'),
        ...(http && policy.routes ? { routes: policy.routes } : {}),
      };
      listeners.push(named('virtualInbound', virtualInboundListener(inbound, secure, inboundAuthz)));
    }
    const out: InboundResources = {
      listeners: listeners.sort(byName),
      clusters: clusters.sort(byName),
      ...(warnings.size > 0 ? { warnings: [...warnings].sort(compareStrings) } : {}),
    };
    this.inbound.set(key, out);
    return out;
  }

  /** Drops cached state that depends on the config or the service list when either changes. */
  private rebase(config: ConfigSnapshot, registry: RegistrySnapshot): void {
    // Materialized parts follow endpoint changes by patching (materializedFor); the inbound part's
    // key holds the ports it was built from.
    this.currentEndpoints = registry.endpoints;
    if (this.config === config && this.services === registry.services) return;
    if (this.services !== registry.services) {
      const live = new Set(registry.services);
      dropDead(this.clusters, live);
      dropDead(this.loadAssignments, live);
      for (const byHost of this.routeCache.values()) dropDeadRoutes(byHost, live);
    }
    if (this.options.mtls && this.config !== config) {
      // What mTLS shaped (clusters' UpstreamTlsContext by automatic mTLS, inbound chains) follows the
      // PeerAuthentications; their caches outlive a config snapshot, so a change of the set drops them.
      const key = peerAuthenticationsKey(config.peerAuthentications);
      if (key !== this.peerAuthenticationsKey) {
        this.peerAuthenticationsKey = key;
        this.clusters.clear();
        this.materialized.clear();
      }
      this.peerAuthentications = config.peerAuthentications;
    }
    this.config = config;
    this.services = registry.services;
    this.scopes.clear();
    this.outbound.clear();
    this.previousMaterialized = this.materialized;
    this.materialized = new Map();
    this.inbound.clear();
    this.usesSourceLabels = config.virtualServices.some((vs) =>
      (vs.spec.http ?? []).some((h) => (h.match ?? []).some((m) => m.sourceLabels !== undefined)),
    );
  }

  private scopeKey(config: ConfigSnapshot, proxy: ProxyInfo): string {
    const sidecar = selectSidecar(config, proxy, this.rootNamespace);
    const sidecarKey = sidecar ? `${sidecar.metadata.namespace}/${sidecar.metadata.name}` : '';
    let drKey = '';
    for (const dr of config.destinationRules) {
      const sel = dr.spec.workloadSelector?.matchLabels;
      if (sel && dr.metadata.namespace === proxy.namespace && labelsMatch(sel, proxy.labels)) {
        drKey += `${dr.metadata.name},`;
      }
    }
    return `${proxy.namespace}|${sidecarKey}|${drKey}`;
  }

  private scopeFor(
    key: string,
    config: ConfigSnapshot,
    registry: RegistrySnapshot,
    proxy: ProxyInfo,
  ): ProxyScope {
    let scope = this.scopes.get(key);
    if (!scope) {
      const sidecar = selectSidecar(config, proxy, this.rootNamespace);
      scope = buildScope(config, registry, proxy, sidecar, {
        rootNamespace: this.rootNamespace,
        domainSuffix: this.domainSuffix,
      });
      this.scopes.set(key, scope);
      this.stats.scopesBuilt++;
    }
    return scope;
  }

  private proxyDomain(proxy: ProxyInfo): string {
    return proxy.dnsDomain !== '' ? proxy.dnsDomain : `${proxy.namespace}.svc.${this.domainSuffix}`;
  }

  /** What the outbound listeners, routes and cluster set of a proxy depend on besides the snapshots. */
  private outboundKey(scopeKey: string, proxy: ProxyInfo): string {
    return `${scopeKey}|${proxy.kind}|${this.proxyDomain(proxy)}|${
      this.usesSourceLabels ? JSON.stringify(proxy.labels) : ''
    }`;
  }

  private outboundFor(key: string, scope: ProxyScope, proxy: ProxyInfo, grpc: boolean): OutboundSet {
    let set = this.outbound.get(key);
    if (!set) {
      set = grpc ? this.buildGrpcOutbound(scope, proxy) : this.buildSidecarOutbound(scope, proxy);
      this.outbound.set(key, set);
      this.stats.routeSetsBuilt++;
    }
    return set;
  }

  private portsOf(scope: ProxyScope, svc: Service): readonly ServicePort[] {
    const allowed = scope.allowedPorts.get(svc.hostname);
    const ports = allowed ? svc.ports.filter((p) => allowed.has(p.port)) : svc.ports;
    for (let i = 1; i < ports.length; i++) {
      if (ports[i - 1]!.port > ports[i]!.port) return [...ports].sort((a, b) => a.port - b.port);
    }
    return ports;
  }

  /** Appends the references of a service port's clusters: the default one, then each subset's by
   * name. */
  private clusterRefs(
    scope: ProxyScope,
    svc: Service,
    port: ServicePort,
    grpc: boolean,
    out: ClusterRef[],
  ): void {
    if (grpc && svc.resolution !== 'EDS') return;
    const dr = scope.destinationRuleFor(svc.hostname);
    out.push({
      name: clusterName('outbound', port.port, '', svc.hostname),
      service: svc,
      port,
      subset: '',
      dr,
    });
    const subsets = dr?.spec.subsets;
    if (!subsets?.length) return;
    for (const s of subsetsByName(subsets)) {
      if (!s.name) continue;
      out.push({
        name: clusterName('outbound', port.port, s.name, svc.hostname),
        service: svc,
        port,
        subset: s.name,
        dr,
      });
    }
  }

  private routeContext(
    scope: ProxyScope,
    proxy: ProxyInfo,
    svc: Service,
    port: ServicePort,
    grpc: boolean,
  ): RouteBuild {
    return new RouteBuild(proxy, svc, port, grpc, this.domainSuffix, this.serviceIndexMap(), scope);
  }

  private serviceIndexFor: readonly Service[] | undefined;
  private serviceIndex = new Map<string, Service>();

  private serviceIndexMap(): ReadonlyMap<string, Service> {
    if (this.serviceIndexFor !== this.services) {
      this.serviceIndex = new Map((this.services ?? []).map((s) => [s.hostname, s]));
      this.serviceIndexFor = this.services;
    }
    return this.serviceIndex;
  }

  /** The route cache of one (proxy kind, namespace, domain, labels if any VS matches on them). */
  private routeScope(proxy: ProxyInfo, grpc: boolean): Map<string, RouteEntry[]> {
    const key = `${grpc ? 'g' : 'e'}|${proxy.namespace}|${this.proxyDomain(proxy)}|${
      this.usesSourceLabels ? JSON.stringify(proxy.labels) : ''
    }`;
    let byHost = this.routeCache.get(key);
    if (!byHost) {
      byHost = new Map();
      this.routeCache.set(key, byHost);
    }
    return byHost;
  }

  /**
   * The routes of one service port's virtual host, reused while what they were built from is the
   * same: the service, the VirtualService, and every service and DestinationRule the build looked up
   * (recorded as it ran). So a VirtualService or DestinationRule edit rebuilds only the virtual
   * hosts that read it, and unchanged ones keep their identity (encoded once).
   */
  private routesFor(
    cache: Map<string, RouteEntry[]>,
    scope: ProxyScope,
    proxy: ProxyInfo,
    svc: Service,
    port: ServicePort,
    vs: VirtualServiceConfig | undefined,
    grpc: boolean,
  ): RouteEntry {
    const entries = cache.get(svc.hostname);
    let at = -1;
    if (entries) {
      for (let i = 0; i < entries.length; i++) if (entries[i]!.port.port === port.port) at = i;
      const cached = at < 0 ? undefined : entries[at]!;
      if (
        cached &&
        cached.service === svc &&
        cached.port === port &&
        cached.vs === vs &&
        this.sameLookups(cached, scope)
      )
        return cached;
    }
    const ctx = this.routeContext(scope, proxy, svc, port, grpc);
    const routes = buildRoutes(vs?.spec.http?.length ? vs : undefined, ctx);
    const entry: RouteEntry = {
      service: svc,
      port,
      vs,
      services: ctx.services,
      rules: ctx.rules,
      routes,
      name: `${svc.hostname}:${port.port}`,
      vh: undefined,
    };
    if (!entries) cache.set(svc.hostname, [entry]);
    else if (at < 0) entries.push(entry);
    else entries[at] = entry;
    return entry;
  }

  /** Whether every lookup a route build recorded still finds the same. */
  private sameLookups(entry: RouteEntry, scope: ProxyScope): boolean {
    const index = this.serviceIndexMap();
    const { services, rules } = entry;
    for (let i = 0; i < services.length; i += 2) {
      if (index.get(services[i] as string) !== services[i + 1]) return false;
    }
    for (let i = 0; i < rules.length; i += 2) {
      if (scope.destinationRuleFor(rules[i] as string) !== rules[i + 1]) return false;
    }
    return true;
  }

  private buildSidecarOutbound(scope: ProxyScope, proxy: ProxyInfo): OutboundSet {
    const proxyDomain = this.proxyDomain(proxy);
    const routeCache = this.routeScope(proxy, false);
    const clusters: ClusterRef[] = [];
    const vhostsByPort = new Map<number, VirtualHostInput[]>();
    const tcpListeners = new Map<string, NamedResource>();
    for (const svc of scope.services) {
      const vs = scope.virtualServiceFor(svc.hostname);
      // A sidecar's domains carry no port: the same for each of the service's ports.
      let domains: string[] | undefined;
      for (const port of this.portsOf(scope, svc)) {
        this.clusterRefs(scope, svc, port, false, clusters);
        if (isHttpProtocol(port.protocol)) {
          let list = vhostsByPort.get(port.port);
          if (!list) {
            list = [];
            vhostsByPort.set(port.port, list);
          }
          domains ??= virtualHostDomains(svc, undefined, proxyDomain);
          list.push({ domains, entry: this.routesFor(routeCache, scope, proxy, svc, port, vs, false) });
        } else {
          const address = svc.addresses?.find((a) => a !== '' && !a.includes('/')) ?? '0.0.0.0';
          const name = `${address}_${port.port}`;
          if (tcpListeners.has(name)) continue;
          const tcpTarget = this.tcpTarget(vs, this.routeContext(scope, proxy, svc, port, false));
          tcpListeners.set(
            name,
            named(
              name,
              outboundTcpListener(
                address,
                port.port,
                tcpTarget,
                clusterName('outbound', port.port, '', svc.hostname),
              ),
            ),
          );
        }
      }
    }
    const listeners: NamedResource[] = [];
    const routes: NamedResource[] = [];
    for (const port of [...vhostsByPort.keys()].sort((a, b) => a - b)) {
      const l = outboundHttpListener(port);
      listeners.push(named(l.name as string, l));
      tcpListeners.delete(`0.0.0.0_${port}`);
      const seen = new Set<string>();
      const vhosts: JsonValue[] = [];
      const list = vhostsByPort.get(port) ?? [];
      for (let i = 1; i < list.length; i++) {
        if (compareStrings(list[i - 1]!.entry.name, list[i]!.entry.name) > 0) {
          list.sort((a, b) => compareStrings(a.entry.name, b.entry.name));
          break;
        }
      }
      for (const vh of list) {
        // Domains an earlier virtual host of this port claimed are left out.
        let domains = vh.domains;
        if (domains.some((d) => seen.has(d))) domains = domains.filter((d) => !seen.has(d));
        for (const d of domains) seen.add(d);
        if (domains.length === 0) continue;
        vhosts.push(virtualHost(vh.entry, domains));
      }
      vhosts.push(catchAllVirtualHost(scope.allowAny));
      routes.push(
        named(String(port), {
          name: String(port),
          virtual_hosts: vhosts,
          validate_clusters: false,
          ignore_port_in_host_matching: true,
        }),
      );
    }
    listeners.push(...tcpListeners.values());
    routes.sort(byName);
    return { listeners: listeners.sort(byName), routes, clusters };
  }

  private tcpTarget(
    vs: VirtualServiceConfig | undefined,
    ctx: RouteContext,
  ): string | { name: string; weight: number }[] {
    const fallback = clusterName('outbound', ctx.port.port, '', ctx.service.hostname);
    for (const tcp of vs?.spec.tcp ?? []) {
      const applies =
        !tcp.match?.length ||
        tcp.match.some(
          (m) =>
            (m.port === undefined || m.port === ctx.port.port) &&
            labelsMatch(m.sourceLabels, ctx.proxy.labels),
        );
      if (!applies) continue;
      const all = tcp.route ?? [];
      const dests = all.length === 1 ? all : all.filter((d) => (d.weight ?? 0) > 0);
      if (dests.length === 0) continue;
      const ns = vs?.metadata.namespace ?? ctx.service.namespace;
      if (dests.length === 1) return destinationCluster(dests[0]?.destination ?? {}, ns, ctx).name;
      return dests.map((d) => ({
        name: destinationCluster(d.destination ?? {}, ns, ctx).name,
        weight: d.weight ?? 0,
      }));
    }
    return fallback;
  }

  private buildGrpcOutbound(scope: ProxyScope, proxy: ProxyInfo): OutboundSet {
    const proxyDomain = this.proxyDomain(proxy);
    const routeCache = this.routeScope(proxy, true);
    const clusters: ClusterRef[] = [];
    const listeners: NamedResource[] = [];
    const routes: NamedResource[] = [];
    for (const svc of scope.services) {
      if (svc.resolution !== 'EDS') continue;
      const vs = scope.virtualServiceFor(svc.hostname);
      for (const port of this.portsOf(scope, svc)) {
        this.clusterRefs(scope, svc, port, true, clusters);
        const entry = this.routesFor(routeCache, scope, proxy, svc, port, vs, true);
        const name = entry.name;
        listeners.push(named(name, grpcClientListener(name)));
        routes.push(
          named(name, {
            name,
            virtual_hosts: [
              {
                name,
                domains: virtualHostDomains(svc, port.port, proxyDomain),
                routes: entry.routes,
              },
            ],
          }),
        );
      }
    }
    return { listeners: listeners.sort(byName), routes: routes.sort(byName), clusters };
  }

  private clusterFor(ref: ClusterRef, proxy: ProxyInfo, grpc: boolean): NamedResource {
    const namespace = this.options.upstreamTls ? proxy.namespace : '';
    let cached: ClusterEntry | undefined;
    for (let e = this.clusters.get(ref.name); e && !cached; e = e.next) {
      if (e.kind === proxy.kind && e.namespace === namespace && sameRuleName(e.dr, ref.dr)) cached = e;
    }
    const inline = ref.service.resolution === 'DNS' || ref.service.resolution === 'DNS_ROUND_ROBIN';
    const endpoints = inline && !grpc ? this.endpointsFor(ref.service) : undefined;
    // The TLS hook checks the peer against the service's accounts: a change of that set (not of the
    // endpoints as such) makes a new cluster.
    const accounts = this.options.upstreamTls
      ? serviceAccountsOf(ref.service.namespace, this.endpointsFor(ref.service))
      : undefined;
    const accountsKey = accounts?.key ?? '';
    if (
      cached &&
      cached.service === ref.service &&
      cached.dr === ref.dr &&
      cached.endpoints === endpoints &&
      cached.accounts === accountsKey
    ) {
      this.stats.clustersReused++;
      return cached.resource;
    }
    const resource = named(
      ref.name,
      buildOutboundCluster(
        {
          name: ref.name,
          service: ref.service,
          port: ref.port,
          subset: ref.subset,
          destinationRule: ref.dr,
          proxy,
          grpc,
          options: this.options,
          serviceAccounts: accounts?.list,
        },
        endpoints ? () => this.loadAssignmentJson(ref, endpoints, proxy) : undefined,
      ),
    );
    const entry: ClusterEntry = {
      kind: proxy.kind,
      namespace,
      service: ref.service,
      dr: ref.dr,
      endpoints,
      accounts: accountsKey,
      resource,
      next: undefined,
    };
    putEntry(this.clusters, ref.name, entry, cached);
    this.stats.clustersBuilt++;
    return resource;
  }

  private currentEndpoints: RegistrySnapshot['endpoints'] | undefined;

  private endpointsFor(service: Service): readonly Endpoint[] {
    return this.currentEndpoints?.get(service.hostname) ?? EMPTY_ENDPOINTS;
  }

  private loadAssignmentJson(ref: ClusterRef, endpoints: readonly Endpoint[], proxy: ProxyInfo): EnvoyJson {
    const policy = effectivePolicy(ref.dr, ref.subset, ref.port.port);
    const subsetLabels =
      ref.subset === ''
        ? undefined
        : (ref.dr?.spec.subsets?.find((s) => s.name === ref.subset)?.labels ?? {});
    return buildLoadAssignment({
      clusterName: ref.name,
      service: ref.service,
      port: ref.port,
      endpoints,
      subsetLabels,
      localityLb: policy.loadBalancer?.localityLbSetting,
      failover: failoverEnabled(policy),
      proxy,
      preparedCache: this.prepared,
    });
  }

  private loadAssignmentFor(
    ref: ClusterRef,
    registry: RegistrySnapshot,
    proxy: ProxyInfo,
    grpc: boolean,
  ): NamedResource {
    const endpoints = registry.endpoints.get(ref.service.hostname) ?? EMPTY_ENDPOINTS;
    const policy = effectivePolicy(ref.dr, ref.subset, ref.port.port);
    const lb = policy.loadBalancer?.localityLbSetting;
    const localityDependent = (lb?.distribute?.length ?? 0) > 0 || failoverEnabled(policy);
    const place = localityDependent ? this.placeOf(proxy, (lb?.failoverPriority?.length ?? 0) > 0) : '';
    const network = proxy.network;
    let cached: LoadAssignmentEntry | undefined;
    for (let e = this.loadAssignments.get(ref.name); e && !cached; e = e.next) {
      if (e.grpc === grpc && e.network === network && e.place === place && sameRuleName(e.dr, ref.dr))
        cached = e;
    }
    if (cached && cached.service === ref.service && cached.dr === ref.dr && cached.endpoints === endpoints) {
      this.stats.loadAssignmentsReused++;
      return cached.resource;
    }
    const resource = named(ref.name, this.loadAssignmentJson(ref, endpoints, proxy));
    const entry: LoadAssignmentEntry = {
      grpc,
      network,
      place,
      service: ref.service,
      dr: ref.dr,
      endpoints,
      resource,
      next: undefined,
    };
    putEntry(this.loadAssignments, ref.name, entry, cached);
    this.stats.loadAssignmentsBuilt++;
    return resource;
  }

  private placeFor: ProxyInfo | undefined;
  private placeKeys: [string, string] = ['', ''];

  /** Where the proxy is, as a load assignment that depends on it sees it: its locality, and with
   * failover priority labels also its labels, network and cluster (kept for the last proxy). */
  private placeOf(proxy: ProxyInfo, labels: boolean): string {
    if (this.placeFor !== proxy) {
      const l = proxy.locality;
      const locality = `${l.region}/${l.zone}/${l.subZone}`;
      this.placeKeys = [
        locality,
        `${locality}|${JSON.stringify(proxy.labels)}|${proxy.network}|${proxy.clusterId}`,
      ];
      this.placeFor = proxy;
    }
    return this.placeKeys[labels ? 1 : 0];
  }

  /** The workload's own ports: target ports of endpoints whose address is one of the proxy's IPs. */
  private inboundPorts(registry: RegistrySnapshot, proxy: ProxyInfo): InboundPort[] {
    const ips = proxy.ipAddresses;
    if (ips.length === 0) return [];
    const index = addressIndex(registry);
    const ports = new Map<number, boolean>();
    for (const ip of ips) {
      for (const { service, endpoint } of index.get(ip) ?? []) {
        for (const sp of service.ports) {
          const target = endpoint.ports[sp.name] ?? sp.targetPort ?? sp.port;
          ports.set(target, (ports.get(target) ?? false) || isHttpProtocol(sp.protocol));
        }
      }
    }
    return [...ports.entries()].sort((a, b) => a[0] - b[0]).map(([port, http]) => ({ port, http }));
  }
}

interface AddressEntry {
  readonly service: Service;
  readonly endpoint: Endpoint;
}

/** Endpoints by address, per registry snapshot (built once per services + endpoints pair). */
const addressIndexes = new WeakMap<
  RegistrySnapshot['endpoints'],
  WeakMap<readonly Service[], Map<string, AddressEntry[]>>
>();

function addressIndex(registry: RegistrySnapshot): Map<string, AddressEntry[]> {
  let byServices = addressIndexes.get(registry.endpoints);
  if (!byServices) {
    byServices = new WeakMap();
    addressIndexes.set(registry.endpoints, byServices);
  }
  let index = byServices.get(registry.services);
  if (!index) {
    index = new Map();
    for (const service of registry.services) {
      for (const endpoint of registry.endpoints.get(service.hostname) ?? []) {
        let list = index.get(endpoint.address);
        if (!list) {
          list = [];
          index.set(endpoint.address, list);
        }
        list.push({ service, endpoint });
      }
    }
    byServices.set(registry.services, index);
  }
  return index;
}

/** Drops the cache entries of services no longer in the registry. */
function dropDead<T extends { readonly service: Service; next: T | undefined }>(
  cache: Map<string, T>,
  live: ReadonlySet<Service>,
): void {
  for (const [key, head] of cache) {
    let first: T | undefined;
    let last: T | undefined;
    for (let e: T | undefined = head; e; e = e.next) {
      if (!live.has(e.service)) continue;
      if (last) last.next = e;
      else first = e;
      last = e;
    }
    if (last) last.next = undefined;
    if (first) {
      if (first !== head) cache.set(key, first);
    } else cache.delete(key);
  }
}

/** Drops the route entries of services no longer in the registry. */
function dropDeadRoutes(cache: Map<string, RouteEntry[]>, live: ReadonlySet<Service>): void {
  for (const [key, entries] of cache) {
    if (entries.every((e) => live.has(e.service))) continue;
    const kept = entries.filter((e) => live.has(e.service));
    if (kept.length > 0) cache.set(key, kept);
    else cache.delete(key);
  }
}

/** A DestinationRule's subsets in name order (the list itself when it already is). */
function subsetsByName<T extends { readonly name?: string }>(subsets: readonly T[]): readonly T[] {
  for (let i = 1; i < subsets.length; i++) {
    if (compareStrings(subsets[i - 1]!.name ?? '', subsets[i]!.name ?? '') > 0) {
      return [...subsets].sort((a, b) => compareStrings(a.name ?? '', b.name ?? ''));
    }
  }
  return subsets;
}

/** True when the cluster is EDS (so it has a ClusterLoadAssignment): registry services, unless a
 * DestinationRule makes an Envoy cluster PASSTHROUGH (original destination). */
function clusterUsesEds(ref: ClusterRef, grpc: boolean): boolean {
  if (grpc) return true;
  if (ref.service.resolution !== 'EDS') return false;
  return effectivePolicy(ref.dr, ref.subset, ref.port.port).loadBalancer?.simple !== 'PASSTHROUGH';
}

/** Istio's catch-all virtual host: `allow_any` to PassthroughCluster, or `block_all` answering 502. */
function catchAllVirtualHost(allowAny: boolean): EnvoyJson {
  if (allowAny) {
    return {
      name: 'allow_any',
      domains: ['*'],
      routes: [
        {
          name: 'allow_any',
          match: { prefix: '/' },
          route: {
            cluster: 'PassthroughCluster',
            timeout: '0s',
            max_stream_duration: { max_stream_duration: '0s', grpc_timeout_header_max: '0s' },
          },
        },
      ],
      include_request_attempt_count: true,
    };
  }
  return {
    name: 'block_all',
    domains: ['*'],
    routes: [{ name: 'block_all', match: { prefix: '/' }, direct_response: { status: 502 } }],
    include_request_attempt_count: true,
  };
}

/** Pure one-shot translation (a fresh {@link Translator}, nothing reused). */
export function translateProxy(
  config: ConfigSnapshot,
  registry: RegistrySnapshot,
  proxy: ProxyInfo,
  options: TranslateOptions = {},
): ProxyResources {
  return new Translator(options).translate(config, registry, proxy);
}

/**
 * Issue 17: sidecars' access logs to the replicas (access-log.ts), when the snapshot names them, and
 * Envoy tracing from Telemetry's `tracing` (tracing.ts). Both keep a part shared while their inputs
 * are the same.
 */
function withTelemetry(
  parts: ProxyParts,
  config: ConfigSnapshot,
  registry: RegistrySnapshot,
  proxy: ProxyInfo,
  rootNamespace: string,
): ProxyParts {
  if (proxy.kind === 'grpc') return parts;
  let { outbound, inbound } = parts;
  const telemetries = config.telemetries ?? [];
  const als = config.policyInputs?.accessLogService;
  if (als?.length && accessLoggingEnabled(telemetries, proxy, rootNamespace)) {
    outbound = partWithAccessLog(outbound, als, false);
    inbound = partWithAccessLog(inbound, als, true);
  }
  const tracing = proxyTracing(telemetries, registry, proxy, rootNamespace, config.policyInputs?.tracing);
  if (tracing) {
    outbound = partWithTracing(outbound, tracing);
    inbound = partWithTracing(inbound, tracing);
  }
  return outbound === parts.outbound && inbound === parts.inbound ? parts : { outbound, inbound };
}
