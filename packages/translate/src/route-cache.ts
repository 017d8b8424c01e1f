/**
 * The route cache: the routes of one virtual host (a service port seen by a proxy) are built once
 * and reused across config snapshots while what they were built from is the same: the Service, the
 * VirtualService, and every service and DestinationRule the build looked up (recorded as it ran).
 * So a VirtualService or DestinationRule edit rebuilds only the virtual hosts that read it, and
 * unchanged ones keep their identity (the replica encodes them once). Also owns what the routes'
 * cache key holds besides the scope: the proxy's DNS domain, and its labels when any VirtualService
 * matches on sourceLabels.
 */
import type { DestinationRuleConfig, VirtualServiceConfig } from '@meridian/api';
import type { EnvoyJson, ProxyInfo } from '@meridian/envoy';
import { buildRoutes, type RouteContext } from './route.js';
import type { ProxyScope } from './scope.js';
import type { ConfigSnapshot, Service, ServicePort } from './types.js';

/** Cached routes of one virtual host and what they were built from (see `routesFor`). */
export interface RouteEntry {
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
export function virtualHost(entry: RouteEntry, domains: readonly string[]): EnvoyJson {
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

/** Routes per virtual host, kept across config changes (see the module comment). */
export class RouteCache {
  /** Routes per (proxy kind, namespace, domain, labels if sourceLabels) then service hostname, one
   * entry per port, see routesFor. */
  private readonly byScope = new Map<string, Map<string, RouteEntry[]>>();
  /** The registry's services, which route builds look destination hosts up in. */
  private services: readonly Service[] | undefined;
  private serviceIndexFor: readonly Service[] | undefined;
  private serviceIndex = new Map<string, Service>();
  /** Some VirtualService matches on sourceLabels: routes then depend on the proxy's labels. */
  private usesSourceLabels = false;

  constructor(private readonly domainSuffix: string) {}

  /** Takes a new config snapshot or service list (lookups resolve against the new services). */
  rebase(config: ConfigSnapshot, services: readonly Service[]): void {
    this.services = services;
    this.usesSourceLabels = config.virtualServices.some((vs) =>
      (vs.spec.http ?? []).some((h) => (h.match ?? []).some((m) => m.sourceLabels !== undefined)),
    );
  }

  /** Drops the route entries of services no longer in the registry. */
  dropDead(live: ReadonlySet<Service>): void {
    for (const byHost of this.byScope.values()) dropDeadRoutes(byHost, live);
  }

  /** The DNS domain the proxy's short names resolve in. */
  proxyDomain(proxy: ProxyInfo): string {
    return proxy.dnsDomain !== '' ? proxy.dnsDomain : `${proxy.namespace}.svc.${this.domainSuffix}`;
  }

  /** What a proxy's routes depend on besides its scope and kind: its DNS domain, and its labels
   * when some VirtualService matches on sourceLabels. */
  viewKey(proxy: ProxyInfo): string {
    return `${this.proxyDomain(proxy)}|${this.usesSourceLabels ? JSON.stringify(proxy.labels) : ''}`;
  }

  /** The context one service port's TCP routes are built in (as its HTTP routes are, see routesFor). */
  context(scope: ProxyScope, proxy: ProxyInfo, svc: Service, port: ServicePort, grpc: boolean): RouteContext {
    return this.routeBuild(scope, proxy, svc, port, grpc);
  }

  private routeBuild(
    scope: ProxyScope,
    proxy: ProxyInfo,
    svc: Service,
    port: ServicePort,
    grpc: boolean,
  ): RouteBuild {
    return new RouteBuild(proxy, svc, port, grpc, this.domainSuffix, this.serviceIndexMap(), scope);
  }

  private serviceIndexMap(): ReadonlyMap<string, Service> {
    if (this.serviceIndexFor !== this.services) {
      this.serviceIndex = new Map((this.services ?? []).map((s) => [s.hostname, s]));
      this.serviceIndexFor = this.services;
    }
    return this.serviceIndex;
  }

  /** The route cache of one (proxy kind, namespace, domain, labels if any VS matches on them). */
  routeScope(proxy: ProxyInfo, grpc: boolean): Map<string, RouteEntry[]> {
    const key = `${grpc ? 'g' : 'e'}|${proxy.namespace}|${this.viewKey(proxy)}`;
    let byHost = this.byScope.get(key);
    if (!byHost) {
      byHost = new Map();
      this.byScope.set(key, byHost);
    }
    return byHost;
  }

  /**
   * The routes of one service port's virtual host, reused while what they were built from is the
   * same: the service, the VirtualService, and every service and DestinationRule the build looked up
   * (recorded as it ran). So a VirtualService or DestinationRule edit rebuilds only the virtual
   * hosts that read it, and unchanged ones keep their identity (encoded once).
   */
  routesFor(
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
    const ctx = this.routeBuild(scope, proxy, svc, port, grpc);
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
