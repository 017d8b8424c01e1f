/**
 * The local source: ServiceEntry objects define services; their endpoints come from inline
 * `spec.endpoints`, or, with a `workloadSelector`, from WorkloadEntry objects (the static source)
 * and agent registrations (the leased source) in the same namespace whose labels match.
 */
import type {
  ServiceEntryConfig,
  WorkloadEntryConfig,
  WorkloadEntry as WorkloadEntrySpec,
} from '@meridian/api';
import type {
  Endpoint,
  EndpointHealth,
  EndpointLocality,
  Resolution,
  Service,
  ServicePort,
} from '@meridian/translate';
import type { RegistrySource, SourceView, WorkloadRegistration } from './types.js';

/** The inputs of the local source, as the replica's etcd watch holds them. */
export interface LocalInputs {
  readonly serviceEntries: readonly ServiceEntryConfig[];
  readonly workloadEntries: readonly WorkloadEntryConfig[];
  readonly registrations: readonly WorkloadRegistration[];
}

/** `region/zone/subzone` -> Envoy locality (missing parts are empty). */
export function parseLocality(text: string | undefined): EndpointLocality {
  const [region = '', zone = '', subZone = ''] = (text ?? '').split('/');
  return { region, zone, subZone };
}

const RESOLUTION: Record<string, Resolution> = {
  NONE: 'PASSTHROUGH',
  STATIC: 'EDS',
  DNS: 'DNS',
  DNS_ROUND_ROBIN: 'DNS_ROUND_ROBIN',
};

function labelsMatch(
  selector: Readonly<Record<string, string>>,
  labels: Readonly<Record<string, string>>,
): boolean {
  for (const [k, v] of Object.entries(selector)) if (labels[k] !== v) return false;
  return true;
}

function servicePorts(se: ServiceEntryConfig): ServicePort[] {
  return (se.spec.ports ?? []).map((p) => ({
    name: p.name ?? `port-${p.number ?? 0}`,
    port: p.number ?? 0,
    protocol: (p.protocol ?? 'TCP').toUpperCase(),
    ...(p.targetPort ? { targetPort: p.targetPort } : {}),
  }));
}

function endpointOf(we: WorkloadEntrySpec, clusterId: string, health: EndpointHealth = 'HEALTHY'): Endpoint {
  return {
    address: we.address ?? '',
    ports: { ...(we.ports ?? {}) },
    labels: { ...(we.labels ?? {}) },
    locality: parseLocality(we.locality),
    network: we.network ?? '',
    clusterId,
    health,
    serviceAccount: we.serviceAccount ?? '',
    weight: Math.max(1, we.weight ?? 1),
  };
}

/** An endpoint for a registered workload. */
export function registrationEndpoint(r: WorkloadRegistration, clusterId: string): Endpoint {
  return {
    address: r.address,
    ports: { ...r.ports },
    labels: { ...r.labels },
    locality: parseLocality(r.locality),
    network: r.network,
    clusterId,
    health: r.health,
    serviceAccount: r.serviceAccount,
    weight: Math.max(1, r.weight),
  };
}

/** The services and endpoints the local inputs define (pure). */
export function buildLocalView(inputs: LocalInputs, clusterId: string): SourceView {
  const services: Service[] = [];
  const endpoints = new Map<string, Endpoint[]>();
  const ordered = [...inputs.serviceEntries].sort(
    (a, b) =>
      a.metadata.namespace.localeCompare(b.metadata.namespace) ||
      a.metadata.name.localeCompare(b.metadata.name),
  );
  for (const se of ordered) {
    const ns = se.metadata.namespace;
    const selector = se.spec.workloadSelector?.labels;
    let eps: Endpoint[];
    if (selector) {
      eps = [];
      for (const we of inputs.workloadEntries) {
        if (we.metadata.namespace !== ns) continue;
        const labels = { ...(we.metadata.labels ?? {}), ...(we.spec.labels ?? {}) };
        if (labelsMatch(selector, labels)) eps.push(endpointOf({ ...we.spec, labels }, clusterId));
      }
      for (const r of inputs.registrations) {
        if (r.namespace === ns && labelsMatch(selector, r.labels))
          eps.push(registrationEndpoint(r, clusterId));
      }
    } else {
      eps = (se.spec.endpoints ?? []).map((e) => endpointOf(e, clusterId));
    }
    for (const host of se.spec.hosts ?? []) {
      const service: Service = {
        hostname: host,
        namespace: ns,
        ports: servicePorts(se),
        labels: { ...(se.metadata.labels ?? {}) },
        exportTo: [...(se.spec.exportTo ?? [])],
        resolution: RESOLUTION[se.spec.resolution ?? 'NONE'] ?? 'PASSTHROUGH',
        ...(se.spec.addresses?.length ? { addresses: [...se.spec.addresses] } : {}),
        ...(se.spec.location === 'MESH_EXTERNAL' ? { meshExternal: true } : {}),
        ...(se.spec.subjectAltNames?.length ? { subjectAltNames: [...se.spec.subjectAltNames] } : {}),
      };
      services.push(service);
      const list = endpoints.get(host) ?? [];
      list.push(...eps);
      endpoints.set(host, list);
    }
  }
  return { services, endpoints };
}

/**
 * The local source: holds the last inputs the replica gave it (`update`) and tells the registry a
 * rebuild is due.
 */
export class LocalSource implements RegistrySource {
  readonly name = 'local';
  #view: SourceView = { services: [], endpoints: new Map() };
  readonly #listeners = new Set<() => void>();

  constructor(readonly clusterId: string) {}

  /** Replaces the inputs and notifies listeners. */
  update(inputs: LocalInputs): void {
    this.#view = buildLocalView(inputs, this.clusterId);
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
