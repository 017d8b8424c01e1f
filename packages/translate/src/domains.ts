/**
 * Virtual host domains, as Istio's `generateVirtualHostDomains` / `GenerateAltVirtualHosts`
 * (pilot/pkg/networking/core/httproute.go). Envoy sidecars match hosts ignoring the port
 * (`ignore_port_in_host_matching`), so their domains carry no port; proxyless gRPC clients match
 * the target authority, so theirs carry both `host` and `host:port`.
 */
import type { Service } from './types.js';

function withPort(domains: string[], domain: string, port: number | undefined): void {
  domains.push(domain);
  if (port !== undefined) domains.push(`${domain}:${port}`);
}

/** Istio `generateAltVirtualHostsForKubernetesService` and the shared-suffix rule. */
export function altHosts(hostname: string, port: number | undefined, proxyDomain: string): string[] {
  const out: string[] = [];
  const id = proxyDomain.indexOf('.svc.');
  if (id > 0) {
    if (!hostname.endsWith(proxyDomain.slice(id))) return out;
    const ih = hostname.indexOf('.svc.');
    if (ih <= 0) return out;
    const ns = hostname.indexOf('.');
    if (ns + 1 >= hostname.length || ns + 1 > ih) return out;
    if (hostname.slice(ns + 1, ih) === proxyDomain.slice(0, id)) {
      // Same namespace: `name`, `name.ns.svc`, `name.ns`.
      withPort(out, hostname.slice(0, ns), port);
      withPort(out, `${hostname.slice(0, ih)}.svc`, port);
      withPort(out, hostname.slice(0, ih), port);
      return out;
    }
    // Another namespace: `name.ns`, `name.ns.svc`.
    withPort(out, hostname.slice(0, ih), port);
    withPort(out, `${hostname.slice(0, ih)}.svc`, port);
    return out;
  }
  const h = hostname.split('.').reverse();
  const p = proxyDomain.split('.').reverse();
  let shared = 0;
  while (shared < h.length && shared < p.length && h[shared] === p[shared]) shared++;
  if (shared === 0) return out;
  const unique = h.slice(shared).reverse();
  if (unique.length === 0) return out;
  withPort(out, unique.join('.'), port);
  if (unique.length === 2) withPort(out, `${unique.join('.')}.${p[shared - 1]}`, port);
  return out;
}

/** All domains of one (service, port) virtual host for a proxy in DNS domain `proxyDomain`. */
export function virtualHostDomains(
  service: Service,
  port: number | undefined,
  proxyDomain: string,
): string[] {
  const domains: string[] = [];
  withPort(domains, service.hostname, port);
  domains.push(...altHosts(service.hostname, port, proxyDomain));
  for (const address of service.addresses ?? []) {
    if (address === '' || address === '0.0.0.0' || address.includes('/')) continue;
    withPort(domains, address.includes(':') ? `[${address}]` : address, port);
  }
  return domains;
}
