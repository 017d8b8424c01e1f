/**
 * Export side of the mapping between the registry's types (`@meridian/translate`'s `Service` /
 * `Endpoint`, the input contract of translation) and the federation wire types. Type-only: no
 * runtime dependency.
 *
 * Feed the exporter the cluster's *local* services (before the registry merges imported ones in);
 * `localExportStates` also drops any endpoint whose `clusterId` is not the local cluster, so an
 * imported endpoint can never be re-exported (no loops between clusters). The import side (the
 * importer's view merged into the registry) is `@meridian/registry`'s `FederatedSource`.
 */
import type { Endpoint, Service } from '@meridian/translate';
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
