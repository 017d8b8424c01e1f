/**
 * Glue for the xDS side: the generated resources by type URL, and encoded once to protobuf.
 */
import { encodeResource, type ResourceTypeUrl, TypeUrl } from '@meridian/envoy';
import type { NamedResource, ProxyResources } from './types.js';

/** The resources of a proxy by xDS type URL (LDS, RDS, CDS, EDS), each list sorted by name. */
export function resourcesByTypeUrl(
  resources: ProxyResources,
): ReadonlyMap<ResourceTypeUrl, readonly NamedResource[]> {
  return new Map<ResourceTypeUrl, readonly NamedResource[]>([
    [TypeUrl.Listener, resources.listeners],
    [TypeUrl.RouteConfiguration, resources.routes],
    [TypeUrl.Cluster, resources.clusters],
    [TypeUrl.ClusterLoadAssignment, resources.endpoints],
  ]);
}

/** Every resource encoded with Envoy's protos (throws EnvoySchemaError on an invalid one). */
export function encodeProxyResources(
  resources: ProxyResources,
): ReadonlyMap<ResourceTypeUrl, ReadonlyMap<string, Uint8Array>> {
  const out = new Map<ResourceTypeUrl, ReadonlyMap<string, Uint8Array>>();
  for (const [typeUrl, list] of resourcesByTypeUrl(resources)) {
    out.set(typeUrl, new Map(list.map((r) => [r.name, encodeResource(typeUrl, r.resource)])));
  }
  return out;
}
