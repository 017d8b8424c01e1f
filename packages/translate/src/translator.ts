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

interface ClusterEntry {
  readonly service: Service;
  readonly dr: DestinationRuleConfig | undefined;
  /** The endpoint list it was built from (only DNS clusters, which inline their endpoints). */
  readonly endpoints: readonly Endpoint[] | undefined;
  /** The service accounts key it was built with (`''` without an upstreamTls hook). */
  readonly accounts: string;
  readonly resource: NamedResource;
}

type LoadAssignmentEntry = Omit<ClusterEntry, 'accounts'>;

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
  /** Services the build looked up by host, and what it found. */
  readonly services: readonly (readonly [string, Service | undefined])[];
  /** DestinationRules the build looked up by host, and what it found. */
  readonly rules: readonly (readonly [string, DestinationRuleConfig | undefined])[];
  readonly routes: EnvoyJson[];
}

/** Virtual host objects per routes array and domains: unchanged hosts keep their identity. */
const virtualHosts = new WeakMap<EnvoyJson[], Map<string, EnvoyJson>>();

function virtualHost(name: string, domains: string[], routes: EnvoyJson[]): EnvoyJson {
  let byDomains = virtualHosts.get(routes);
  if (!byDomains) {
    byDomains = new Map();
    virtualHosts.set(routes, byDomains);
  }
  const key = `${name}\n${domains.join('\n')}`;
  let vh = byDomains.get(key);
  if (!vh) {
    vh = { name, domains, routes, include_request_attempt_count: true };
    byDomains.set(key, vh);
  }
  return vh;
}

type EndpointsMap = RegistrySnapshot['endpoints'];

/** An outbound key's materialized parts (see `materializedFor`). */
interface MaterializedOutbound {
  /** Some load assignment depends on the proxy's locality. */
  readonly locality: boolean;
  /** Some load assignment depends on the proxy's labels, network and cluster (failover priority). */
  readonly labels: boolean;
  /** The cluster references of the outbound set, and their indexes by service hostname. */
  readonly refs: readonly ClusterRef[];
  readonly refsByHost: ReadonlyMap<string, readonly number[]>;
  /** Listeners and clusters: the same for every place. */
  shared:
    | {
        readonly listeners: readonly NamedResource[];
        /** The outbound set's listeners and the scope's allowAny they were built from. */
        readonly listenersFrom: readonly NamedResource[];
        readonly allowAny: boolean;
        readonly clusters: readonly NamedResource[];
        /** refs index -> position in `clusters`. */
        readonly positions: readonly number[];
        readonly builtWith: EndpointsMap;
      }
    | undefined;
  readonly byPlace: Map<string, MaterializedPlace>;
}

/** Load assignments of one place, and the part handed out last. */
interface MaterializedPlace {
  endpoints: readonly NamedResource[];
  /** refs index -> position in `endpoints` (EDS clusters only). */
  readonly positions: ReadonlyMap<number, number>;
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
  for (const [host, indexes] of m.refsByHost) if (before.get(host) !== after.get(host)) out.push(...indexes);
  return out;
}

/** `items` sorted by name, and where each item went. */
function sortWithPositions(items: readonly NamedResource[]): {
  sorted: NamedResource[];
  positions: number[];
} {
  const order = items.map((_, i) => i).sort((a, b) => compareStrings(items[a]!.name, items[b]!.name));
  const positions = new Array<number>(items.length);
  order.forEach((from, to) => {
    positions[from] = to;
  });
  return { sorted: order.map((i) => items[i]!), positions };
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
    listeners: [...outbound.listeners, ...inbound.listeners].sort(byName),
    routes: [...outbound.routes],
    clusters: [...outbound.clusters, ...inbound.clusters].sort(byName),
    endpoints: [...outbound.endpoints],
    ...(inbound.warnings ? { warnings: inbound.warnings } : {}),
  };
}

function byName(a: NamedResource, b: NamedResource): number {
  return compareStrings(a.name, b.name);
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
  /** Routes per (proxy namespace, domain, service port), see routesFor; kept across config changes. */
  private readonly routeCache = new Map<string, RouteEntry>();
  /** Materialized outbound parts per outbound key (cleared with `outbound` and on endpoint changes). */
  private materialized = new Map<string, MaterializedOutbound>();
  /** The previous config's materialized parts: adopted when an outbound key's cluster references
   * are the same (a VirtualService edit changes routes, not clusters or load assignments). */
  private previousMaterialized = new Map<string, MaterializedOutbound>();
  /** Inbound parts per inbound key (cleared with `outbound` and on endpoint changes). */
  private readonly inbound = new Map<string, InboundResources>();
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
      const refsByHost = new Map<string, number[]>();
      outbound.clusters.forEach((ref, i) => {
        const list = refsByHost.get(ref.service.hostname);
        if (list) list.push(i);
        else refsByHost.set(ref.service.hostname, [i]);
      });
      m = {
        ...localityDependence(outbound.clusters, grpc),
        refs: outbound.clusters,
        refsByHost,
        shared: undefined,
        byPlace: new Map(),
      };
      this.materialized.set(outboundKey, m);
    }
    const current = registry.endpoints;
    let shared = m.shared;
    if (!shared) {
      const built = m.refs.map((ref) => this.clusterFor(ref, proxy, grpc));
      const fixed = grpc ? [] : buildFixedClusters().map((c) => named(c.name as string, c));
      const { sorted, positions } = sortWithPositions([...built, ...fixed]);
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
      const eds: number[] = [];
      const built: NamedResource[] = [];
      m.refs.forEach((ref, i) => {
        if (!clusterUsesEds(ref, grpc)) return;
        eds.push(i);
        built.push(this.loadAssignmentFor(ref, registry, proxy, grpc));
      });
      const { sorted, positions } = sortWithPositions(built);
      const claPositions = new Map<number, number>(eds.map((refIndex, k) => [refIndex, positions[k]!]));
      p = { endpoints: sorted, positions: claPositions, builtWith: current, out: undefined };
      m.byPlace.set(place, p);
    } else if (p.builtWith !== current) {
      let endpoints: NamedResource[] | undefined;
      for (const i of changedRefs(m, p.builtWith, current)) {
        const at = p.positions.get(i);
        if (at === undefined) continue;
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
      for (const [key, entry] of this.clusters) if (!live.has(entry.service)) this.clusters.delete(key);
      for (const [key, entry] of this.loadAssignments)
        if (!live.has(entry.service)) this.loadAssignments.delete(key);
      for (const [key, entry] of this.routeCache) if (!live.has(entry.service)) this.routeCache.delete(key);
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
    return [...ports].sort((a, b) => a.port - b.port);
  }

  private clusterRefs(scope: ProxyScope, svc: Service, port: ServicePort, grpc: boolean): ClusterRef[] {
    if (grpc && svc.resolution !== 'EDS') return [];
    const dr = scope.destinationRuleFor(svc.hostname);
    const refs: ClusterRef[] = [
      { name: clusterName('outbound', port.port, '', svc.hostname), service: svc, port, subset: '', dr },
    ];
    const subsets = [...(dr?.spec.subsets ?? [])].sort((a, b) => compareStrings(a.name ?? '', b.name ?? ''));
    for (const s of subsets) {
      if (!s.name) continue;
      refs.push({
        name: clusterName('outbound', port.port, s.name, svc.hostname),
        service: svc,
        port,
        subset: s.name,
        dr,
      });
    }
    return refs;
  }

  private routeContext(
    scope: ProxyScope,
    proxy: ProxyInfo,
    svc: Service,
    port: ServicePort,
    grpc: boolean,
  ): RouteContext {
    return {
      proxy,
      service: svc,
      port,
      grpc,
      domainSuffix: this.domainSuffix,
      serviceFor: (host) => this.serviceByHost(host),
      destinationRuleFor: (host) => scope.destinationRuleFor(host),
    };
  }

  private serviceIndexFor: readonly Service[] | undefined;
  private serviceIndex = new Map<string, Service>();

  private serviceByHost(host: string): Service | undefined {
    if (this.serviceIndexFor !== this.services) {
      this.serviceIndex = new Map((this.services ?? []).map((s) => [s.hostname, s]));
      this.serviceIndexFor = this.services;
    }
    return this.serviceIndex.get(host);
  }

  /**
   * The routes of one service port's virtual host, reused while what they were built from is the
   * same: the service, the VirtualService, and every service and DestinationRule the build looked up
   * (recorded as it ran). So a VirtualService or DestinationRule edit rebuilds only the virtual
   * hosts that read it, and unchanged ones keep their identity (encoded once).
   */
  private routesFor(
    scope: ProxyScope,
    proxy: ProxyInfo,
    svc: Service,
    port: ServicePort,
    vs: VirtualServiceConfig | undefined,
    grpc: boolean,
  ): EnvoyJson[] {
    const key = `${grpc ? 'g' : 'e'}|${proxy.namespace}|${this.proxyDomain(proxy)}|${
      this.usesSourceLabels ? JSON.stringify(proxy.labels) : ''
    }|${svc.hostname}|${port.port}`;
    const cached = this.routeCache.get(key);
    if (
      cached &&
      cached.service === svc &&
      cached.port === port &&
      cached.vs === vs &&
      cached.services.every(([host, s]) => this.serviceByHost(host) === s) &&
      cached.rules.every(([host, dr]) => scope.destinationRuleFor(host) === dr)
    )
      return cached.routes;
    const services: [string, Service | undefined][] = [];
    const rules: [string, DestinationRuleConfig | undefined][] = [];
    const ctx: RouteContext = {
      ...this.routeContext(scope, proxy, svc, port, grpc),
      serviceFor: (host) => {
        const found = this.serviceByHost(host);
        services.push([host, found]);
        return found;
      },
      destinationRuleFor: (host) => {
        const found = scope.destinationRuleFor(host);
        rules.push([host, found]);
        return found;
      },
    };
    const routes = buildRoutes(vs?.spec.http?.length ? vs : undefined, ctx);
    this.routeCache.set(key, { service: svc, port, vs, services, rules, routes });
    return routes;
  }

  private buildSidecarOutbound(scope: ProxyScope, proxy: ProxyInfo): OutboundSet {
    const proxyDomain = this.proxyDomain(proxy);
    const clusters: ClusterRef[] = [];
    const vhostsByPort = new Map<number, { name: string; domains: string[]; routes: EnvoyJson[] }[]>();
    const tcpListeners = new Map<string, NamedResource>();
    for (const svc of scope.services) {
      const vs = scope.virtualServiceFor(svc.hostname);
      for (const port of this.portsOf(scope, svc)) {
        clusters.push(...this.clusterRefs(scope, svc, port, false));
        const ctx = this.routeContext(scope, proxy, svc, port, false);
        if (isHttpProtocol(port.protocol)) {
          const list = vhostsByPort.get(port.port) ?? [];
          vhostsByPort.set(port.port, list);
          list.push({
            name: `${svc.hostname}:${port.port}`,
            domains: virtualHostDomains(svc, undefined, proxyDomain),
            routes: this.routesFor(scope, proxy, svc, port, vs, false),
          });
        } else {
          const address = svc.addresses?.find((a) => a !== '' && !a.includes('/')) ?? '0.0.0.0';
          const name = `${address}_${port.port}`;
          if (tcpListeners.has(name)) continue;
          const tcpTarget = this.tcpTarget(vs, ctx);
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
      for (const vh of (vhostsByPort.get(port) ?? []).sort((a, b) => compareStrings(a.name, b.name))) {
        const domains = vh.domains.filter((d) => !seen.has(d));
        for (const d of domains) seen.add(d);
        if (domains.length === 0) continue;
        vhosts.push(virtualHost(vh.name, domains, vh.routes));
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
    const clusters: ClusterRef[] = [];
    const listeners: NamedResource[] = [];
    const routes: NamedResource[] = [];
    for (const svc of scope.services) {
      if (svc.resolution !== 'EDS') continue;
      const vs = scope.virtualServiceFor(svc.hostname);
      for (const port of this.portsOf(scope, svc)) {
        clusters.push(...this.clusterRefs(scope, svc, port, true));
        const name = `${svc.hostname}:${port.port}`;
        listeners.push(named(name, grpcClientListener(name)));
        routes.push(
          named(name, {
            name,
            virtual_hosts: [
              {
                name,
                domains: virtualHostDomains(svc, port.port, proxyDomain),
                routes: this.routesFor(scope, proxy, svc, port, vs, true),
              },
            ],
          }),
        );
      }
    }
    return { listeners: listeners.sort(byName), routes: routes.sort(byName), clusters };
  }

  private clusterFor(ref: ClusterRef, proxy: ProxyInfo, grpc: boolean): NamedResource {
    const key = `${ref.name}|${proxy.kind}|${drKey(ref.dr)}${this.options.upstreamTls ? `|${proxy.namespace}` : ''}`;
    const cached = this.clusters.get(key);
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
          service: ref.service,
          port: ref.port,
          subset: ref.subset,
          destinationRule: ref.dr,
          proxy,
          grpc,
          options: this.options,
          ...(accounts ? { serviceAccounts: accounts.list } : {}),
        },
        () => this.loadAssignmentJson(ref, endpoints ?? EMPTY_ENDPOINTS, proxy),
      ),
    );
    this.clusters.set(key, { service: ref.service, dr: ref.dr, endpoints, accounts: accountsKey, resource });
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
    const l = proxy.locality;
    const localityKey = localityDependent
      ? `|${l.region}/${l.zone}/${l.subZone}|${lb?.failoverPriority?.length ? `${JSON.stringify(proxy.labels)}|${proxy.network}|${proxy.clusterId}` : ''}`
      : '';
    const key = `${ref.name}|${grpc ? 'grpc' : 'envoy'}|${drKey(ref.dr)}|${proxy.network}${localityKey}`;
    const cached = this.loadAssignments.get(key);
    if (cached && cached.service === ref.service && cached.dr === ref.dr && cached.endpoints === endpoints) {
      this.stats.loadAssignmentsReused++;
      return cached.resource;
    }
    const resource = named(ref.name, this.loadAssignmentJson(ref, endpoints, proxy));
    this.loadAssignments.set(key, { service: ref.service, dr: ref.dr, endpoints, resource });
    this.stats.loadAssignmentsBuilt++;
    return resource;
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

/** Which DestinationRule a cached cluster was built with: proxies in different namespaces may see
 * different rules for one host, and each keeps its own entry instead of evicting the other's. */
function drKey(dr: DestinationRuleConfig | undefined): string {
  return dr ? `${dr.metadata.namespace}/${dr.metadata.name}` : '';
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
