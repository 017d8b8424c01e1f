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
 *
 * This file holds the Translator itself: the caches' lifetimes (what a new config or service list
 * drops), the proxy scope and the keys of the outbound view, and the two parts' assembly. What it
 * delegates: outbound listeners and route configurations (outbound.ts) with per-virtual-host route
 * reuse (route-cache.ts), clusters and load assignments (cluster-cache.ts), the shared outbound part
 * (materialize.ts), the workload's own inbound part (inbound.ts), name order (resource-lists.ts).
 */
import { accessLoggingEnabled, type PeerAuthenticationConfig } from '@meridian/api';
import type { ProxyInfo } from '@meridian/envoy';
import { partWithAccessLog } from './access-log.js';
import { ClusterCache } from './cluster-cache.js';
import { InboundParts } from './inbound.js';
import { MaterializedParts } from './materialize.js';
import { mtlsInboundFilterChains, mtlsUpstreamTls, peerAuthenticationsKey } from './mtls.js';
import { buildGrpcOutbound, buildSidecarOutbound, type OutboundSet } from './outbound.js';
import { mergeByName } from './resource-lists.js';
import { RouteCache } from './route-cache.js';
import { buildScope, type ProxyScope, selectSidecar } from './scope.js';
import { partWithTracing, proxyTracing } from './tracing.js';
import type {
  ConfigSnapshot,
  ProxyParts,
  ProxyResources,
  RegistrySnapshot,
  Service,
  TranslateOptions,
} from './types.js';
import { labelsMatch } from './util.js';

/** Counters of what the last translations built and reused (for tests and the benchmark). */
export interface TranslatorStats {
  scopesBuilt: number;
  routeSetsBuilt: number;
  clustersBuilt: number;
  clustersReused: number;
  loadAssignmentsBuilt: number;
  loadAssignmentsReused: number;
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

/** Translates snapshots to per-proxy resources, reusing unchanged parts (see the module comment). */
export class Translator {
  /** Istio's root namespace: its policies (AuthorizationPolicy, PeerAuthentication, ...) apply mesh-wide. */
  readonly rootNamespace: string;
  private readonly domainSuffix: string;
  private config: ConfigSnapshot | undefined;
  private services: readonly Service[] | undefined;
  private readonly scopes = new Map<string, ProxyScope>();
  private readonly outbound = new Map<string, OutboundSet>();
  /** Routes per virtual host; kept across config changes. */
  private readonly routes: RouteCache;
  /** Built clusters and load assignments; kept across config changes. */
  private readonly clusters: ClusterCache;
  /** Materialized outbound parts per outbound key (patched on endpoint changes). */
  private readonly materialized: MaterializedParts;
  /** Inbound parts per inbound key (cleared with `outbound`). */
  private readonly inbound: InboundParts;
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
    this.routes = new RouteCache(this.domainSuffix);
    this.clusters = new ClusterCache(this.options, this.stats);
    this.materialized = new MaterializedParts(this.clusters);
    this.inbound = new InboundParts(this.options, this.rootNamespace);
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
      outbound: this.materialized.partFor(outboundKey, outbound, scope, registry, proxy, grpc),
      inbound: this.inbound.partFor(config, registry, proxy, grpc),
    };
    return withTelemetry(parts, config, registry, proxy, this.rootNamespace);
  }

  /** Drops cached state that depends on the config or the service list when either changes. */
  private rebase(config: ConfigSnapshot, registry: RegistrySnapshot): void {
    // Materialized parts follow endpoint changes by patching (materialize.ts); the inbound part's
    // key holds the ports it was built from.
    this.clusters.setEndpoints(registry.endpoints);
    if (this.config === config && this.services === registry.services) return;
    if (this.services !== registry.services) {
      const live = new Set(registry.services);
      this.clusters.dropDead(live);
      this.routes.dropDead(live);
    }
    if (this.options.mtls && this.config !== config) {
      // What mTLS shaped (clusters' UpstreamTlsContext by automatic mTLS, inbound chains) follows the
      // PeerAuthentications; their caches outlive a config snapshot, so a change of the set drops them.
      const key = peerAuthenticationsKey(config.peerAuthentications);
      if (key !== this.peerAuthenticationsKey) {
        this.peerAuthenticationsKey = key;
        this.clusters.clearClusters();
        this.materialized.clear();
      }
      this.peerAuthentications = config.peerAuthentications;
    }
    this.config = config;
    this.services = registry.services;
    this.scopes.clear();
    this.outbound.clear();
    this.materialized.rebase();
    this.inbound.clear();
    this.routes.rebase(config, registry.services);
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

  /** What the outbound listeners, routes and cluster set of a proxy depend on besides the snapshots. */
  private outboundKey(scopeKey: string, proxy: ProxyInfo): string {
    return `${scopeKey}|${proxy.kind}|${this.routes.viewKey(proxy)}`;
  }

  private outboundFor(key: string, scope: ProxyScope, proxy: ProxyInfo, grpc: boolean): OutboundSet {
    let set = this.outbound.get(key);
    if (!set) {
      set = grpc
        ? buildGrpcOutbound(scope, proxy, this.routes)
        : buildSidecarOutbound(scope, proxy, this.routes);
      this.outbound.set(key, set);
      this.stats.routeSetsBuilt++;
    }
    return set;
  }
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
 * Sidecars' access logs to the replicas (access-log.ts), when the snapshot names them, and Envoy
 * tracing from Telemetry's `tracing` (tracing.ts). Both keep a part shared while their inputs
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
