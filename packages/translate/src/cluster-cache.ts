/**
 * The cluster and ClusterLoadAssignment cache: builds the outbound cluster and the load assignment
 * of one {@link ClusterRef} and reuses them while their inputs are the same objects (the Service, the
 * DestinationRule, the endpoint list, and with a TLS hook the service accounts of the endpoints),
 * so an endpoint change rebuilds only the load assignments of that service. Also says which clusters
 * have load assignments (EDS) and whether those depend on where the proxy is (locality LB).
 */
import type { DestinationRuleConfig } from '@meridian/api';
import type { EnvoyJson, ProxyInfo } from '@meridian/envoy';
import { buildOutboundCluster, effectivePolicy, failoverEnabled } from './cluster.js';
import { buildLoadAssignment, type PreparedCache } from './endpoint.js';
import { serviceAccountsOf } from './identity.js';
import { named } from './resource-lists.js';
import type {
  Endpoint,
  NamedResource,
  RegistrySnapshot,
  Service,
  ServicePort,
  TranslateOptions,
} from './types.js';

/** One outbound cluster a proxy needs: `outbound|<port>|<subset>|<host>` and what it is built from. */
export interface ClusterRef {
  readonly name: string;
  readonly service: Service;
  readonly port: ServicePort;
  readonly subset: string;
  readonly dr: DestinationRuleConfig | undefined;
}

/** The counters of {@link TranslatorStats} this cache keeps. */
export interface ClusterCacheStats {
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

const EMPTY_ENDPOINTS: readonly Endpoint[] = Object.freeze([]);

/** True when the cluster is EDS (so it has a ClusterLoadAssignment): registry services, unless a
 * DestinationRule makes an Envoy cluster PASSTHROUGH (original destination). */
export function clusterUsesEds(ref: ClusterRef, grpc: boolean): boolean {
  if (grpc) return true;
  if (ref.service.resolution !== 'EDS') return false;
  return effectivePolicy(ref.dr, ref.subset, ref.port.port).loadBalancer?.simple !== 'PASSTHROUGH';
}

/** Whether the load assignments of `refs` depend on where the proxy is (see loadAssignmentFor). */
export function localityDependence(
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

/** Builds a proxy's outbound clusters and load assignments, reusing them (see the module comment). */
export class ClusterCache {
  /** Built clusters and load assignments by name (see the entries for what else tells them apart). */
  private readonly clusters = new Map<string, ClusterEntry>();
  private readonly loadAssignments = new Map<string, LoadAssignmentEntry>();
  /** Prepared `lb_endpoints` entries per endpoint list and port, shared by a service's CLAs. */
  private readonly prepared: PreparedCache = new WeakMap();
  private currentEndpoints: RegistrySnapshot['endpoints'] | undefined;
  private placeFor: ProxyInfo | undefined;
  private placeKeys: [string, string] = ['', ''];

  constructor(
    /** The options clusters are built with (the Translator's, with the `mtls` hooks when set). */
    private readonly options: TranslateOptions,
    private readonly stats: ClusterCacheStats,
  ) {}

  /** The registry's endpoint lists, read by DNS clusters (inline endpoints) and the TLS hook. */
  setEndpoints(endpoints: RegistrySnapshot['endpoints']): void {
    this.currentEndpoints = endpoints;
  }

  /** Drops the entries of services no longer in the registry. */
  dropDead(live: ReadonlySet<Service>): void {
    dropDead(this.clusters, live);
    dropDead(this.loadAssignments, live);
  }

  /** Drops every cluster (what shaped them, such as the PeerAuthentications, changed). */
  clearClusters(): void {
    this.clusters.clear();
  }

  /** The cluster of `ref` for `proxy`: the cached one while what it was built from is the same. */
  clusterFor(ref: ClusterRef, proxy: ProxyInfo, grpc: boolean): NamedResource {
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

  /** The ClusterLoadAssignment of `ref` for `proxy`: the cached one while its service, DestinationRule,
   * endpoint list and (with locality load balancing) the proxy's place are the same. */
  loadAssignmentFor(
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
}
