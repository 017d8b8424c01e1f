/**
 * Outbound listeners and route configurations: what a proxy needs to reach the services in its
 * scope, and the references of the clusters they route to. For Envoy sidecars, one `0.0.0.0_<port>`
 * HTTP listener and route configuration per HTTP port (one virtual host per service, then
 * `allow_any` or `block_all`) and one TCP listener per other service port; for proxyless gRPC
 * clients, one api_listener and route configuration per `<host>:<port>`. The routes of each virtual
 * host come from the route cache (route-cache.ts).
 */
import type { VirtualServiceConfig } from '@meridian/api';
import type { EnvoyJson, JsonValue, ProxyInfo } from '@meridian/envoy';
import type { ClusterRef } from './cluster-cache.js';
import { virtualHostDomains } from './domains.js';
import { grpcClientListener, outboundHttpListener, outboundTcpListener } from './listener.js';
import { byName, named } from './resource-lists.js';
import { destinationCluster, type RouteContext } from './route.js';
import { type RouteCache, type RouteEntry, virtualHost } from './route-cache.js';
import type { ProxyScope } from './scope.js';
import type { NamedResource, Service, ServicePort } from './types.js';
import { clusterName, compareStrings, isHttpProtocol, labelsMatch } from './util.js';

/** A proxy's outbound listeners and route configurations, and the clusters they need. */
export interface OutboundSet {
  readonly listeners: readonly NamedResource[];
  readonly routes: readonly NamedResource[];
  /** (service, port, subset) triples whose clusters the proxy needs. */
  readonly clusters: readonly ClusterRef[];
}

/** One sidecar virtual host before the domains of a route configuration are de-duplicated. */
interface VirtualHostInput {
  readonly domains: readonly string[];
  readonly entry: RouteEntry;
}

/** The outbound set of an Envoy sidecar. */
export function buildSidecarOutbound(scope: ProxyScope, proxy: ProxyInfo, cache: RouteCache): OutboundSet {
  const proxyDomain = cache.proxyDomain(proxy);
  const byHost = cache.routeScope(proxy, false);
  const clusters: ClusterRef[] = [];
  const vhostsByPort = new Map<number, VirtualHostInput[]>();
  const tcpListeners = new Map<string, NamedResource>();
  for (const svc of scope.services) {
    const vs = scope.virtualServiceFor(svc.hostname);
    // A sidecar's domains carry no port: the same for each of the service's ports.
    let domains: string[] | undefined;
    for (const port of portsOf(scope, svc)) {
      clusterRefs(scope, svc, port, false, clusters);
      if (isHttpProtocol(port.protocol)) {
        let list = vhostsByPort.get(port.port);
        if (!list) {
          list = [];
          vhostsByPort.set(port.port, list);
        }
        domains ??= virtualHostDomains(svc, undefined, proxyDomain);
        list.push({ domains, entry: cache.routesFor(byHost, scope, proxy, svc, port, vs, false) });
      } else {
        const address = svc.addresses?.find((a) => a !== '' && !a.includes('/')) ?? '0.0.0.0';
        const name = `${address}_${port.port}`;
        if (tcpListeners.has(name)) continue;
        const target = tcpTarget(vs, cache.context(scope, proxy, svc, port, false));
        tcpListeners.set(
          name,
          named(
            name,
            outboundTcpListener(
              address,
              port.port,
              target,
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

/** The outbound set of a proxyless gRPC client (EDS services only). */
export function buildGrpcOutbound(scope: ProxyScope, proxy: ProxyInfo, cache: RouteCache): OutboundSet {
  const proxyDomain = cache.proxyDomain(proxy);
  const byHost = cache.routeScope(proxy, true);
  const clusters: ClusterRef[] = [];
  const listeners: NamedResource[] = [];
  const routes: NamedResource[] = [];
  for (const svc of scope.services) {
    if (svc.resolution !== 'EDS') continue;
    const vs = scope.virtualServiceFor(svc.hostname);
    for (const port of portsOf(scope, svc)) {
      clusterRefs(scope, svc, port, true, clusters);
      const entry = cache.routesFor(byHost, scope, proxy, svc, port, vs, true);
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

/** The service's ports the scope allows (every port without a Sidecar egress port), by number. */
function portsOf(scope: ProxyScope, svc: Service): readonly ServicePort[] {
  const allowed = scope.allowedPorts.get(svc.hostname);
  const ports = allowed ? svc.ports.filter((p) => allowed.has(p.port)) : svc.ports;
  for (let i = 1; i < ports.length; i++) {
    if (ports[i - 1]!.port > ports[i]!.port) return [...ports].sort((a, b) => a.port - b.port);
  }
  return ports;
}

/** Appends the references of a service port's clusters: the default one, then each subset's by
 * name. */
function clusterRefs(
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

/** The cluster (or weighted clusters) of a TCP listener: the first `tcp` route of the VirtualService
 * that applies to the port and the proxy, else the default cluster of the service port. */
function tcpTarget(
  vs: VirtualServiceConfig | undefined,
  ctx: RouteContext,
): string | { name: string; weight: number }[] {
  const fallback = clusterName('outbound', ctx.port.port, '', ctx.service.hostname);
  for (const tcp of vs?.spec.tcp ?? []) {
    const applies =
      !tcp.match?.length ||
      tcp.match.some(
        (m) =>
          (m.port === undefined || m.port === ctx.port.port) && labelsMatch(m.sourceLabels, ctx.proxy.labels),
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

/** A DestinationRule's subsets in name order (the list itself when it already is). */
function subsetsByName<T extends { readonly name?: string }>(subsets: readonly T[]): readonly T[] {
  for (let i = 1; i < subsets.length; i++) {
    if (compareStrings(subsets[i - 1]!.name ?? '', subsets[i]!.name ?? '') > 0) {
      return [...subsets].sort((a, b) => compareStrings(a.name ?? '', b.name ?? ''));
    }
  }
  return subsets;
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
