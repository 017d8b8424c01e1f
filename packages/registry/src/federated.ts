/**
 * Federation's imported view as a registry source: every
 * imported service of every remote cluster, with its endpoints tagged with their origin cluster.
 * Added after the local source, so a hostname defined locally keeps its local Service and gains the
 * remote endpoints (failover); a hostname only defined remotely is served with its remote
 * definition. Stale clusters' endpoints arrive UNHEALTHY from the importer.
 */
import type { FederatedEndpoint, ImportedView } from '@meridian/federation';
import type { Endpoint, Service } from '@meridian/translate';
import type { RegistrySource, SourceView } from './types.js';

/** An imported endpoint; `namespace` is its origin service's (the workload's identity namespace,
 * which may differ from the namespace of a local service of the same hostname). */
function endpointOf(e: FederatedEndpoint, namespace: string): Endpoint {
  return {
    address: e.address,
    ports: { ...e.ports },
    labels: { ...e.labels },
    locality: { region: e.locality.region, zone: e.locality.zone, subZone: e.locality.subZone },
    network: e.network,
    clusterId: e.cluster,
    health: e.health,
    serviceAccount: e.serviceAccount,
    namespace,
    weight: Math.max(1, e.weight),
  };
}

/** The services and endpoints of an imported view (pure). */
export function importedSourceView(view: ImportedView): SourceView {
  const services: Service[] = [];
  const endpoints = new Map<string, Endpoint[]>();
  const entries = [...view.services.values()].sort(
    (a, b) =>
      a.hostname.localeCompare(b.hostname) ||
      a.namespace.localeCompare(b.namespace) ||
      a.cluster.localeCompare(b.cluster),
  );
  for (const s of entries) {
    services.push({
      hostname: s.hostname,
      namespace: s.namespace,
      ports: s.service.ports.map((p) => ({ ...p })),
      labels: { ...s.service.labels },
      exportTo: [...s.service.exportTo],
      resolution: s.service.resolution,
    });
    const list = endpoints.get(s.hostname) ?? [];
    list.push(...s.endpoints.map((e) => endpointOf(e, s.namespace)));
    endpoints.set(s.hostname, list);
  }
  return { services, endpoints };
}

/** A registry source fed with the importer's views (`importer.onChange((c) => source.update(c.view))`). */
export class FederatedSource implements RegistrySource {
  readonly name = 'federation';
  #view: SourceView = { services: [], endpoints: new Map() };
  readonly #listeners = new Set<() => void>();

  update(view: ImportedView): void {
    this.#view = importedSourceView(view);
    for (const l of [...this.#listeners]) l();
  }

  view(): SourceView {
    return this.#view;
  }

  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}
