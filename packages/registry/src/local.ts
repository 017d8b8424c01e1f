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

/** A workload (WorkloadEntry or registration) as selectors see it: its namespace, labels, endpoint. */
interface Workload {
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly endpoint: Endpoint;
  /** Its keys in the label index, one per label. */
  readonly indexKeys: readonly string[];
}

function workload(namespace: string, labels: Readonly<Record<string, string>>, endpoint: Endpoint): Workload {
  const indexKeys = Object.entries(labels).map(([k, v]) => labelIndexKey(namespace, k, v));
  return { namespace, labels, endpoint, indexKeys };
}

/**
 * Builds the local view from its inputs, in time proportional to the inputs and the matches, not to
 * services x workloads: workloads are indexed by namespace and by each label's key and value, and a
 * selector reads only the workloads carrying its first label. Input objects are treated as
 * immutable (the replica's watch replaces an object on change), so each object's endpoint and each
 * ServiceEntry's Service are made once and reused while the object is the same; an endpoint list
 * whose members did not change keeps its identity, so the registry compares it in O(1).
 */
export class LocalViewBuilder {
  readonly #workloadEntries = new WeakMap<WorkloadEntryConfig, Workload>();
  readonly #registrations = new WeakMap<WorkloadRegistration, Workload>();
  readonly #services = new WeakMap<ServiceEntryConfig, readonly Service[]>();
  readonly #inline = new WeakMap<ServiceEntryConfig, readonly Endpoint[]>();
  /** The endpoint list last built per ServiceEntry (its identity is kept while the members are). */
  #selected = new Map<string, readonly Endpoint[]>();
  /** The endpoint list last returned per hostname. */
  #byHost = new Map<string, readonly Endpoint[]>();
  #order: { input: readonly ServiceEntryConfig[]; sorted: readonly ServiceEntryConfig[] } | undefined;
  /** The last workload index and the inputs it was built from. */
  #index: WorkloadIndex | undefined;

  constructor(readonly clusterId: string) {}

  build(inputs: LocalInputs): SourceView {
    const { byNamespace, byLabel } = this.#indexFor(inputs);

    const services: Service[] = [];
    const endpoints = new Map<string, Endpoint[]>();
    const selected = new Map<string, readonly Endpoint[]>();
    for (const se of this.#ordered(inputs.serviceEntries)) {
      const ns = se.metadata.namespace;
      const selector = se.spec.workloadSelector?.labels;
      let eps: readonly Endpoint[];
      if (selector) {
        const entries = Object.entries(selector);
        const candidates =
          entries.length === 0
            ? (byNamespace.get(ns) ?? [])
            : (byLabel.get(labelIndexKey(ns, entries[0]![0], entries[0]![1])) ?? []);
        const matched: Endpoint[] = [];
        for (const w of candidates) if (labelsMatch(selector, w.labels)) matched.push(w.endpoint);
        const id = `${ns}/${se.metadata.name}`;
        const previous = this.#selected.get(id);
        eps = previous && sameMembers(previous, matched) ? previous : matched;
        selected.set(id, eps);
      } else {
        eps = this.#inlineEndpoints(se);
      }
      for (const service of this.#servicesOf(se)) {
        services.push(service);
        const list = endpoints.get(service.hostname) ?? [];
        list.push(...eps);
        endpoints.set(service.hostname, list);
      }
    }
    this.#selected = selected;
    // A hostname's list keeps its identity while its members are the same (the registry then skips it).
    const byHost = new Map<string, readonly Endpoint[]>();
    for (const [host, list] of endpoints) {
      const previous = this.#byHost.get(host);
      byHost.set(host, previous && sameMembers(previous, list) ? previous : list);
    }
    this.#byHost = byHost;
    return { services, endpoints: byHost };
  }

  /**
   * The workload index of `inputs`: workloads in input order, WorkloadEntries before registrations
   * (the order endpoints had), by namespace and by label. When only a few WorkloadEntries were
   * replaced, each by one with the same namespace and labels (an endpoint's weight, address or port
   * edited), the last index is updated in place at their slots instead of rebuilt from 5,000 entries.
   */
  #indexFor(inputs: LocalInputs): WorkloadIndex {
    const last = this.#index;
    const wes = inputs.workloadEntries;
    const regs = inputs.registrations;
    if (
      last &&
      last.workloadEntries.length === wes.length &&
      last.registrations.length === regs.length &&
      regs.every((r, i) => r === last.registrations[i])
    ) {
      const replaced: [Workload, Workload][] = [];
      let sameShape = true;
      for (let i = 0; i < wes.length && sameShape; i++) {
        if (wes[i] === last.workloadEntries[i]) continue;
        const before = this.#workloadEntry(last.workloadEntries[i]!);
        const after = this.#workloadEntry(wes[i]!);
        sameShape =
          replaced.length < MAX_IN_PLACE &&
          before.namespace === after.namespace &&
          sameStrings(before.indexKeys, after.indexKeys);
        replaced.push([before, after]);
      }
      if (sameShape) {
        for (const [before, after] of replaced) {
          replaceIn(last.byNamespace.get(before.namespace), before, after);
          for (const key of before.indexKeys) replaceIn(last.byLabel.get(key), before, after);
        }
        this.#index = { ...last, workloadEntries: [...wes] };
        return this.#index;
      }
    }
    const byNamespace = new Map<string, Workload[]>();
    const byLabel = new Map<string, Workload[]>();
    const add = (w: Workload) => {
      pushTo(byNamespace, w.namespace, w);
      for (const key of w.indexKeys) pushTo(byLabel, key, w);
    };
    for (const we of wes) add(this.#workloadEntry(we));
    for (const r of regs) add(this.#registration(r));
    this.#index = { workloadEntries: [...wes], registrations: [...regs], byNamespace, byLabel };
    return this.#index;
  }

  /** The ServiceEntries by namespace and name; the last order is reused while the members are the same. */
  #ordered(serviceEntries: readonly ServiceEntryConfig[]): readonly ServiceEntryConfig[] {
    const last = this.#order;
    if (
      last &&
      last.input.length === serviceEntries.length &&
      last.input.every((se, i) => se === serviceEntries[i])
    )
      return last.sorted;
    const sorted = [...serviceEntries].sort(
      (a, b) =>
        a.metadata.namespace.localeCompare(b.metadata.namespace) ||
        a.metadata.name.localeCompare(b.metadata.name),
    );
    this.#order = { input: [...serviceEntries], sorted };
    return sorted;
  }

  #workloadEntry(we: WorkloadEntryConfig): Workload {
    let w = this.#workloadEntries.get(we);
    if (!w) {
      const labels = { ...(we.metadata.labels ?? {}), ...(we.spec.labels ?? {}) };
      w = workload(we.metadata.namespace, labels, endpointOf({ ...we.spec, labels }, this.clusterId));
      this.#workloadEntries.set(we, w);
    }
    return w;
  }

  #registration(r: WorkloadRegistration): Workload {
    let w = this.#registrations.get(r);
    if (!w) {
      w = workload(r.namespace, r.labels, registrationEndpoint(r, this.clusterId));
      this.#registrations.set(r, w);
    }
    return w;
  }

  #inlineEndpoints(se: ServiceEntryConfig): readonly Endpoint[] {
    let eps = this.#inline.get(se);
    if (!eps) {
      eps = (se.spec.endpoints ?? []).map((e) => endpointOf(e, this.clusterId));
      this.#inline.set(se, eps);
    }
    return eps;
  }

  #servicesOf(se: ServiceEntryConfig): readonly Service[] {
    let list = this.#services.get(se);
    if (!list) {
      list = (se.spec.hosts ?? []).map(
        (host): Service => ({
          hostname: host,
          namespace: se.metadata.namespace,
          ports: servicePorts(se),
          labels: { ...(se.metadata.labels ?? {}) },
          exportTo: [...(se.spec.exportTo ?? [])],
          resolution: RESOLUTION[se.spec.resolution ?? 'NONE'] ?? 'PASSTHROUGH',
          ...(se.spec.addresses?.length ? { addresses: [...se.spec.addresses] } : {}),
          ...(se.spec.location === 'MESH_EXTERNAL' ? { meshExternal: true } : {}),
          ...(se.spec.subjectAltNames?.length ? { subjectAltNames: [...se.spec.subjectAltNames] } : {}),
        }),
      );
      this.#services.set(se, list);
    }
    return list;
  }
}

/** Workloads by namespace and by `labelIndexKey`, in input order, and the inputs they came from. */
interface WorkloadIndex {
  readonly workloadEntries: readonly WorkloadEntryConfig[];
  readonly registrations: readonly WorkloadRegistration[];
  readonly byNamespace: Map<string, Workload[]>;
  readonly byLabel: Map<string, Workload[]>;
}

/** Past this many replaced WorkloadEntries, the index is rebuilt rather than updated in place. */
const MAX_IN_PLACE = 64;

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Puts `after` in `before`'s slot of `list` (the slot keeps the input order). */
function replaceIn(list: Workload[] | undefined, before: Workload, after: Workload): void {
  const at = list?.indexOf(before) ?? -1;
  if (list && at >= 0) list[at] = after;
}

function pushTo<T>(map: Map<string, T[]>, key: string, item: T): void {
  const list = map.get(key);
  if (list) list.push(item);
  else map.set(key, [item]);
}

/** Index key of one label in one namespace (NUL cannot appear in a namespace or a label key). */
function labelIndexKey(namespace: string, key: string, value: string): string {
  return `${namespace}\0${key}\0${value}`;
}

function sameMembers(a: readonly Endpoint[], b: readonly Endpoint[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The services and endpoints the local inputs define (pure). */
export function buildLocalView(inputs: LocalInputs, clusterId: string): SourceView {
  return new LocalViewBuilder(clusterId).build(inputs);
}

/**
 * The local source: holds the last inputs the replica gave it (`update`) and tells the registry a
 * rebuild is due.
 */
export class LocalSource implements RegistrySource {
  readonly name = 'local';
  #view: SourceView = { services: [], endpoints: new Map() };
  readonly #listeners = new Set<() => void>();
  readonly #builder: LocalViewBuilder;

  constructor(readonly clusterId: string) {
    this.#builder = new LocalViewBuilder(clusterId);
  }

  /** Replaces the inputs and notifies listeners. */
  update(inputs: LocalInputs): void {
    this.#view = this.#builder.build(inputs);
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
