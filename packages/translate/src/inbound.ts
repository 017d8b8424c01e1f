/**
 * The inbound part: the workload's own listeners and clusters, for the ports its endpoints serve on
 * the proxy's addresses. For Envoy sidecars, `virtualInbound` (one filter chain per port, with the
 * AuthorizationPolicy, RequestAuthentication and RateLimit filters) and one `inbound|<port>||`
 * cluster per port; for proxyless gRPC servers, one server listener per port and address. Cached
 * per what it is built from, until the config or the service list changes.
 */
import type { EnvoyJson, ProxyInfo } from '@meridian/envoy';
import { buildAuthzFilters, formatAuthzFinding, hasPolicies, selectAuthorizationPolicies } from './authz.js';
import { buildInboundCluster } from './cluster.js';
import {
  grpcServerListener,
  type InboundAuthz,
  type InboundPort,
  inboundHttpPolicy,
  virtualInboundListener,
} from './listener.js';
import { byName, named } from './resource-lists.js';
import type {
  ConfigSnapshot,
  Endpoint,
  InboundResources,
  NamedResource,
  RegistrySnapshot,
  Service,
  TranslateOptions,
} from './types.js';
import { compareStrings, isHttpProtocol } from './util.js';

/** Inbound parts by what they are built from. */
export class InboundParts {
  /** Inbound parts per inbound key (cleared on a config or service list change). */
  private readonly parts = new Map<string, InboundResources>();

  constructor(
    /** The options of the Translator (its `inboundFilterChains` hook secures the workload's ports). */
    private readonly options: TranslateOptions,
    private readonly rootNamespace: string,
  ) {}

  /** Drops every part (a new config or service list). */
  clear(): void {
    this.parts.clear();
  }

  /**
   * The workload's own listeners and clusters, cached per what they are built from: kind, namespace
   * and labels (policy selection, the inbound TLS hook), inbound ports, and for proxyless gRPC its IPs
   * (one server listener per address).
   */
  partFor(
    config: ConfigSnapshot,
    registry: RegistrySnapshot,
    proxy: ProxyInfo,
    grpc: boolean,
  ): InboundResources {
    const inbound = inboundPorts(registry, proxy);
    const key = `${proxy.kind}|${proxy.namespace}|${JSON.stringify(proxy.labels)}|${inbound
      .map((p) => `${p.port}${p.http ? 'h' : 't'}`)
      .join(',')}|${grpc ? proxy.ipAddresses.join(',') : ''}`;
    const cached = this.parts.get(key);
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
    this.parts.set(key, out);
    return out;
  }
}

/** The workload's own ports: target ports of endpoints whose address is one of the proxy's IPs. */
function inboundPorts(registry: RegistrySnapshot, proxy: ProxyInfo): InboundPort[] {
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
