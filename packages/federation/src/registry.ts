/**
 * Mapping between the federation wire types and the registry's types (`@meridian/translate`'s
 * `Service` / `Endpoint`, the input contract of translation). Type-only: no runtime dependency.
 *
 * Export side: feed the exporter the cluster's *local* services (before the registry merges imported
 * ones in); `localExportStates` also drops any endpoint whose `clusterId` is not the local cluster, so
 * an imported endpoint can never be re-exported (no loops between clusters).
 * Import side: `importedRegistryEntries` turns the importer's view into per-hostname services and
 * endpoint lists, deterministic on every replica, for the registry to merge with its local sources.
 */
import type { Endpoint, Service } from '@meridian/translate';
import { sortEndpoints } from './canonical.js';
import type { ImportedView } from './importer.js';
import type { ExportedServiceState, FederatedEndpoint, FederatedService } from './wire.js';

/** A registry service as it goes on the wire (VIPs are cluster-local and are not exported). */
export function serviceToWire(s: Service): FederatedService {
  return {
    hostname: s.hostname,
    namespace: s.namespace,
    ports: s.ports.map((p) =>
      p.targetPort === undefined ? { name: p.name, port: p.port, protocol: p.protocol } : { ...p },
    ),
    labels: { ...s.labels },
    exportTo: [...s.exportTo],
    resolution: s.resolution,
  };
}

/** A registry endpoint as it goes on the wire. */
export function endpointToWire(e: Endpoint): FederatedEndpoint {
  return {
    address: e.address,
    ports: { ...e.ports },
    labels: { ...e.labels },
    locality: { region: e.locality.region, zone: e.locality.zone, subZone: e.locality.subZone },
    network: e.network,
    cluster: e.clusterId,
    health: e.health,
    serviceAccount: e.serviceAccount,
    weight: e.weight,
  };
}

/** An imported endpoint as a registry endpoint. */
export function endpointFromWire(e: FederatedEndpoint): Endpoint {
  return {
    address: e.address,
    ports: e.ports,
    labels: e.labels,
    locality: e.locality,
    network: e.network,
    clusterId: e.cluster,
    health: e.health,
    serviceAccount: e.serviceAccount,
    weight: e.weight,
  };
}

/** An imported service as a registry service (no VIPs: the importing side allocates its own). */
export function serviceFromWire(s: FederatedService): Service {
  return {
    hostname: s.hostname,
    namespace: s.namespace,
    ports: s.ports,
    labels: s.labels,
    exportTo: s.exportTo,
    resolution: s.resolution,
  };
}

/**
 * The exporter's input from the local registry sources: every local service (mesh-external
 * ServiceEntries excepted: they are not this cluster's to export) with only its endpoints of
 * `localCluster`. Feed the result to `FederationExporter.sync`.
 */
export function localExportStates(
  localCluster: string,
  services: Iterable<Service>,
  endpoints: ReadonlyMap<string, readonly Endpoint[]>,
): ExportedServiceState[] {
  const out: ExportedServiceState[] = [];
  for (const s of services) {
    if (s.meshExternal) continue;
    const eps = (endpoints.get(s.hostname) ?? []).filter((e) => e.clusterId === localCluster);
    out.push({ service: serviceToWire(s), endpoints: eps.map(endpointToWire) });
  }
  return out;
}

/** Imported services merged per hostname: what the registry adds to its local view. */
export interface ImportedRegistryEntries {
  /** By hostname, sorted by hostname. */
  readonly services: ReadonlyMap<string, Service>;
  /** By hostname: endpoints of every remote cluster exporting it, sorted by (address, ports). */
  readonly endpoints: ReadonlyMap<string, readonly Endpoint[]>;
}

/**
 * Merges the view per hostname: the service definition comes from the first cluster by name (so
 * every replica picks the same), endpoints from every cluster. Stale clusters' endpoints are already
 * UNHEALTHY in the view.
 */
export function importedRegistryEntries(view: ImportedView): ImportedRegistryEntries {
  const byHost = new Map<
    string,
    { cluster: string; service: FederatedService; endpoints: FederatedEndpoint[] }
  >();
  for (const s of view.services.values()) {
    const cur = byHost.get(s.hostname);
    if (!cur) byHost.set(s.hostname, { cluster: s.cluster, service: s.service, endpoints: [...s.endpoints] });
    else {
      cur.endpoints.push(...s.endpoints);
      if (s.cluster < cur.cluster) {
        cur.cluster = s.cluster;
        cur.service = s.service;
      }
    }
  }
  const services = new Map<string, Service>();
  const endpoints = new Map<string, readonly Endpoint[]>();
  for (const host of [...byHost.keys()].sort()) {
    const e = byHost.get(host)!;
    services.set(host, serviceFromWire(e.service));
    endpoints.set(host, sortEndpoints(e.endpoints).map(endpointFromWire));
  }
  return { services, endpoints };
}
