/**
 * What one proxy can see, Istio's `SidecarScope`: the services its namespace's Sidecar lets it
 * reach, the VirtualService and DestinationRule that apply to each of them.
 *
 * Sidecar selection (Istio): a Sidecar in the proxy's namespace whose `workloadSelector` matches the
 * proxy's labels; else the proxy namespace's Sidecar without selector; else the root namespace's
 * Sidecar without selector (the mesh-wide default); else every service exported to the namespace.
 *
 * Egress hosts are `namespace/dnsName`: namespace `*` (any), `.` (the Sidecar's namespace), `~`
 * (none); dnsName `*`, `*.suffix` or an exact FQDN. An egress listener with a port narrows its hosts
 * to that service port.
 */
import type { DestinationRuleConfig, SidecarConfig, VirtualServiceConfig } from '@meridian/api';
import type { ProxyInfo } from '@meridian/envoy';
import type { ConfigSnapshot, RegistrySnapshot, Service } from './types.js';
import {
  compareStrings,
  hostMatches,
  hostSpecificity,
  isExportedTo,
  labelsMatch,
  resolveHost,
} from './util.js';

/** The resolved view of one proxy namespace (and Sidecar) over a config and registry snapshot. */
export interface ProxyScope {
  readonly namespace: string;
  /** The Sidecar that applies, if any (`Sidecar/<ns>/<name>`). */
  readonly sidecar: SidecarConfig | undefined;
  /** The services the proxy may reach, sorted by hostname. */
  readonly services: readonly Service[];
  /** Ports of a visible service the Sidecar allows; undefined means every port. */
  readonly allowedPorts: ReadonlyMap<string, ReadonlySet<number>>;
  /** False when the Sidecar's `outboundTrafficPolicy.mode` is REGISTRY_ONLY. */
  readonly allowAny: boolean;
  virtualServiceFor(hostname: string): VirtualServiceConfig | undefined;
  destinationRuleFor(hostname: string): DestinationRuleConfig | undefined;
}

/** Options the scope needs. */
export interface ScopeOptions {
  readonly rootNamespace: string;
  readonly domainSuffix: string;
}

/** Istio's Sidecar selection for a proxy (see the module comment). */
export function selectSidecar(
  config: ConfigSnapshot,
  proxy: Pick<ProxyInfo, 'namespace' | 'labels'>,
  rootNamespace: string,
): SidecarConfig | undefined {
  let plain: SidecarConfig | undefined;
  let root: SidecarConfig | undefined;
  for (const sc of config.sidecars) {
    const ns = sc.metadata.namespace;
    const selector = sc.spec.workloadSelector?.labels;
    const hasSelector = selector !== undefined && Object.keys(selector).length > 0;
    if (ns === proxy.namespace) {
      if (hasSelector) {
        if (labelsMatch(selector, proxy.labels)) return sc;
      } else if (!plain) plain = sc;
    } else if (ns === rootNamespace && !hasSelector && !root) root = sc;
  }
  return plain ?? root;
}

interface EgressHost {
  readonly namespace: string;
  readonly host: string;
  readonly port: number | undefined;
}

function egressHosts(sidecar: SidecarConfig): EgressHost[] {
  const out: EgressHost[] = [];
  for (const egress of sidecar.spec.egress ?? []) {
    const port = egress.port?.number;
    for (const entry of egress.hosts ?? []) {
      const slash = entry.indexOf('/');
      let ns = slash < 0 ? '*' : entry.slice(0, slash);
      const host = slash < 0 ? entry : entry.slice(slash + 1);
      if (ns === '.') ns = sidecar.metadata.namespace;
      if (ns === '~') continue;
      out.push({ namespace: ns, host, port });
    }
  }
  return out;
}

function creationKey(meta: { creationTimestamp?: string; namespace: string; name: string }): string {
  return `${meta.creationTimestamp ?? ''}\u0000${meta.namespace}\u0000${meta.name}`;
}

interface Candidate<T> {
  readonly host: string;
  readonly local: boolean;
  readonly order: string;
  readonly config: T;
}

function better<T>(a: Candidate<T>, b: Candidate<T>): boolean {
  const sa = hostSpecificity(a.host);
  const sb = hostSpecificity(b.host);
  if (sa !== sb) return sa > sb;
  if (a.local !== b.local) return a.local;
  return compareStrings(a.order, b.order) < 0;
}

class HostIndex<T> {
  private readonly exact = new Map<string, Candidate<T>>();
  private readonly wildcards: Candidate<T>[] = [];

  add(c: Candidate<T>): void {
    if (c.host.includes('*')) {
      this.wildcards.push(c);
      return;
    }
    const existing = this.exact.get(c.host);
    if (!existing || better(c, existing)) this.exact.set(c.host, c);
  }

  lookup(hostname: string): T | undefined {
    let best = this.exact.get(hostname);
    for (const w of this.wildcards) {
      if (hostMatches(w.host, hostname) && (!best || better(w, best))) best = w;
    }
    return best?.config;
  }
}

/**
 * Builds the scope of a proxy in `namespace` with the given Sidecar. Pure; O(services + configs).
 * VirtualService precedence for one host: exact host before wildcard, the proxy's namespace before
 * others, then oldest (creationTimestamp, namespace, name) first, as Istio.
 * DestinationRule precedence: the proxy's namespace, then the service's namespace, then the root
 * namespace; within each, the most specific host; DestinationRules with a `workloadSelector` apply
 * only in their own namespace and to matching proxies.
 */
export function buildScope(
  config: ConfigSnapshot,
  registry: RegistrySnapshot,
  proxy: Pick<ProxyInfo, 'namespace' | 'labels'>,
  sidecar: SidecarConfig | undefined,
  options: ScopeOptions,
): ProxyScope {
  const namespace = proxy.namespace;
  const allowedPorts = new Map<string, Set<number>>();
  let services: Service[];
  if (sidecar && (sidecar.spec.egress?.length ?? 0) > 0) {
    const hosts = egressHosts(sidecar);
    services = [];
    for (const svc of registry.services) {
      if (!isExportedTo(svc.exportTo, svc.namespace, namespace)) continue;
      let all = false;
      const ports = new Set<number>();
      for (const h of hosts) {
        if (h.namespace !== '*' && h.namespace !== svc.namespace) continue;
        if (!hostMatches(h.host, svc.hostname)) continue;
        if (h.port === undefined) all = true;
        else ports.add(h.port);
      }
      if (!all && ports.size === 0) continue;
      services.push(svc);
      if (!all) allowedPorts.set(svc.hostname, ports);
    }
  } else {
    services = registry.services.filter((svc) => isExportedTo(svc.exportTo, svc.namespace, namespace));
  }

  const vsIndex = new HostIndex<VirtualServiceConfig>();
  for (const vs of config.virtualServices) {
    const vsNs = vs.metadata.namespace;
    if (!isExportedTo(vs.spec.exportTo, vsNs, namespace)) continue;
    const gateways = vs.spec.gateways;
    if (gateways && gateways.length > 0 && !gateways.includes('mesh')) continue;
    for (const host of vs.spec.hosts ?? []) {
      vsIndex.add({
        host: resolveHost(host, vsNs, options.domainSuffix),
        local: vsNs === namespace,
        order: creationKey(vs.metadata),
        config: vs,
      });
    }
  }

  const drLocal = new HostIndex<DestinationRuleConfig>();
  const drByNamespace = new Map<string, HostIndex<DestinationRuleConfig>>();
  for (const dr of config.destinationRules) {
    const drNs = dr.metadata.namespace;
    const selector = dr.spec.workloadSelector?.matchLabels;
    if (selector && Object.keys(selector).length > 0) {
      if (drNs !== namespace || !labelsMatch(selector, proxy.labels)) continue;
    }
    if (!isExportedTo(dr.spec.exportTo, drNs, namespace)) continue;
    const candidate = {
      host: resolveHost(dr.spec.host ?? '', drNs, options.domainSuffix),
      local: true,
      order: `${selector ? '0' : '1'}${creationKey(dr.metadata)}`,
      config: dr,
    };
    if (drNs === namespace) drLocal.add(candidate);
    else {
      let idx = drByNamespace.get(drNs);
      if (!idx) {
        idx = new HostIndex();
        drByNamespace.set(drNs, idx);
      }
      idx.add(candidate);
    }
  }
  const serviceNamespace = new Map<string, string>();
  for (const svc of services) serviceNamespace.set(svc.hostname, svc.namespace);

  return {
    namespace,
    sidecar,
    services,
    allowedPorts,
    // Unset policy: the mesh default ALLOW_ANY. A set policy without mode is REGISTRY_ONLY (enum 0,
    // which @meridian/api's normal form drops).
    allowAny:
      sidecar?.spec.outboundTrafficPolicy === undefined ||
      sidecar.spec.outboundTrafficPolicy.mode === 'ALLOW_ANY',
    virtualServiceFor: (hostname) => vsIndex.lookup(hostname),
    destinationRuleFor: (hostname) => {
      const local = drLocal.lookup(hostname);
      if (local) return local;
      const svcNs = serviceNamespace.get(hostname);
      if (svcNs !== undefined && svcNs !== namespace) {
        const own = drByNamespace.get(svcNs)?.lookup(hostname);
        if (own) return own;
      }
      if (options.rootNamespace !== namespace && options.rootNamespace !== svcNs) {
        return drByNamespace.get(options.rootNamespace)?.lookup(hostname);
      }
      return undefined;
    },
  };
}
