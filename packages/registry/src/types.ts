import type { Endpoint, EndpointHealth, Service } from '@meridian/translate';

/**
 * A workload registered by its agent, as stored in etcd at `workloads/<namespace>/<name>`
 * under the registration's lease. Field names follow Istio's WorkloadEntry.
 */
export interface WorkloadRegistration {
  readonly name: string;
  readonly namespace: string;
  readonly address: string;
  /** Port name -> port number. */
  readonly ports: Readonly<Record<string, number>>;
  readonly labels: Readonly<Record<string, string>>;
  readonly serviceAccount: string;
  /** `region/zone/subzone`; any suffix may be empty. */
  readonly locality: string;
  readonly network: string;
  readonly health: EndpointHealth;
  /** Load-balancing weight, at least 1. */
  readonly weight: number;
  /** The replica holding the registration stream. */
  readonly replicaId: string;
  /** When the registration stream was opened (ISO 8601). */
  readonly registeredAt: string;
}

/**
 * What one source contributes: services (by hostname) and endpoints (by service hostname). A source
 * may contribute endpoints for a service another source defines (federation adds remote endpoints
 * of local services); the first source, in registry order, that defines a hostname owns its Service.
 */
export interface SourceView {
  readonly services: readonly Service[];
  readonly endpoints: ReadonlyMap<string, readonly Endpoint[]>;
}

/**
 * A pluggable input of the {@link Registry}: local config and registrations today, federated
 * imports later. `view()` is called on every rebuild and must be cheap; `onChange` tells the owner
 * of the registry that a rebuild is due.
 */
export interface RegistrySource {
  /** Name for logs and debug output, e.g. `local` or `federation`. */
  readonly name: string;
  view(): SourceView;
  /** Registers a change listener; returns a function that unregisters it. */
  onChange(listener: () => void): () => void;
}
