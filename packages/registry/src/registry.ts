import type { Endpoint, RegistrySnapshot, Service } from '@meridian/translate';
import { createRegistrySnapshot, sortEndpoints } from '@meridian/translate';
import type { RegistrySource } from './types.js';

/** A hostname's Service as last merged: its JSON, the frozen object served, and the source's object. */
interface ServiceEntry {
  readonly json: string;
  readonly service: Service;
  readonly from: Service;
}

/** A hostname's merged endpoints: JSON, the sorted list served, and the sources' lists it came from. */
interface EndpointsEntry {
  readonly json: string;
  readonly list: readonly Endpoint[];
  readonly from: readonly (readonly Endpoint[])[];
}

/** Code-point order, as translate sorts hostnames. */
function compareHostnames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function sameLists(a: readonly (readonly Endpoint[])[], b: readonly (readonly Endpoint[])[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The merged view of every source as translate's {@link RegistrySnapshot}. Sources are merged in
 * the order given: the first source that defines a hostname owns its Service; endpoints of a
 * hostname are the concatenation of every source's. Structural sharing (translate's contract): a
 * Service, an endpoint list, the service list and the endpoint map keep their identity across
 * snapshots while their content is unchanged, so translation rebuilds only what changed.
 */
export class Registry {
  readonly #sources: RegistrySource[] = [];
  #services = new Map<string, ServiceEntry>();
  #endpoints = new Map<string, EndpointsEntry>();
  #last: RegistrySnapshot | undefined;

  constructor(sources: readonly RegistrySource[] = []) {
    for (const s of sources) this.#sources.push(s);
  }

  /** Adds a source after the existing ones (federation adds its imported view this way). */
  addSource(source: RegistrySource): void {
    this.#sources.push(source);
  }

  get sources(): readonly RegistrySource[] {
    return this.#sources;
  }

  /** The last snapshot built. */
  get current(): RegistrySnapshot | undefined {
    return this.#last;
  }

  /**
   * Builds the snapshot at `revision` from the sources' current views. Returns the previous snapshot
   * object itself when nothing changed (callers can compare by identity).
   */
  snapshot(revision: number): RegistrySnapshot {
    const owner = new Map<string, Service>();
    // Each hostname's endpoint lists as the sources gave them: when every one is the same array as
    // last time (sources keep a list's identity while it is unchanged), the merged list is reused
    // without sorting or serializing it again.
    const parts = new Map<string, (readonly Endpoint[])[]>();
    for (const source of this.#sources) {
      const view = source.view();
      for (const s of view.services) if (!owner.has(s.hostname)) owner.set(s.hostname, s);
      for (const [host, list] of view.endpoints) {
        const acc = parts.get(host);
        if (acc) acc.push(list);
        else parts.set(host, [list]);
      }
    }
    let changed = this.#last === undefined;
    const services = new Map<string, ServiceEntry>();
    for (const [host, s] of owner) {
      const prev = this.#services.get(host);
      if (prev && prev.from === s) {
        services.set(host, prev);
        continue;
      }
      const json = JSON.stringify(s);
      if (prev && prev.json === json) services.set(host, { ...prev, from: s });
      else {
        services.set(host, { json, service: Object.freeze(s), from: s });
        changed = true;
      }
    }
    if (services.size !== this.#services.size) changed = true;
    const endpoints = new Map<string, EndpointsEntry>();
    for (const [host, lists] of parts) {
      if (!owner.has(host)) continue; // endpoints of a service nobody defines are not served
      const prev = this.#endpoints.get(host);
      if (prev && sameLists(prev.from, lists)) {
        endpoints.set(host, prev);
        continue;
      }
      const sorted = sortEndpoints(lists.length === 1 ? lists[0]! : lists.flat());
      const json = JSON.stringify(sorted);
      if (prev && prev.json === json) endpoints.set(host, { ...prev, from: lists });
      else {
        endpoints.set(host, { json, list: sorted, from: lists });
        changed = true;
      }
    }
    if (endpoints.size !== this.#endpoints.size) changed = true;
    if (!changed && this.#last) return this.#last;
    const last = this.#last;
    const servicesChanged =
      !last ||
      services.size !== this.#services.size ||
      [...services].some(([h, e]) => this.#services.get(h)?.service !== e.service);
    // Only the service list is sorted here (createRegistrySnapshot's order); the endpoint lists
    // are sorted already, and the map keeps the last hostname order while the hostnames are the same.
    const keptServices =
      servicesChanged || !last
        ? createRegistrySnapshot(
            revision,
            [...services.values()].map((e) => e.service),
            new Map(),
          ).services
        : last.services;
    const sameHosts =
      last !== undefined &&
      last.endpoints.size === endpoints.size &&
      [...endpoints.keys()].every((h) => last.endpoints.has(h));
    const hosts = sameHosts ? [...last.endpoints.keys()] : [...endpoints.keys()].sort(compareHostnames);
    const map = new Map<string, readonly Endpoint[]>();
    for (const h of hosts) map.set(h, endpoints.get(h)!.list);
    this.#services = services;
    this.#endpoints = endpoints;
    this.#last = Object.freeze({ revision, services: keptServices, endpoints: map });
    return this.#last;
  }
}
