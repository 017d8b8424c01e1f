import type { Endpoint, RegistrySnapshot, Service } from '@meridian/translate';
import { createRegistrySnapshot, sortEndpoints } from '@meridian/translate';
import type { RegistrySource } from './types.js';

/**
 * The merged view of every source as translate's {@link RegistrySnapshot}. Sources are merged in
 * the order given: the first source that defines a hostname owns its Service; endpoints of a
 * hostname are the concatenation of every source's. Structural sharing (translate's contract): a
 * Service, an endpoint list, the service list and the endpoint map keep their identity across
 * snapshots while their content is unchanged, so translation rebuilds only what changed.
 */
export class Registry {
  readonly #sources: RegistrySource[] = [];
  #services = new Map<string, { json: string; service: Service }>();
  #endpoints = new Map<string, { json: string; list: readonly Endpoint[] }>();
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
    const parts = new Map<string, Endpoint[]>();
    for (const source of this.#sources) {
      const view = source.view();
      for (const s of view.services) if (!owner.has(s.hostname)) owner.set(s.hostname, s);
      for (const [host, list] of view.endpoints) {
        const acc = parts.get(host) ?? [];
        acc.push(...list);
        parts.set(host, acc);
      }
    }
    let changed = this.#last === undefined;
    const services = new Map<string, { json: string; service: Service }>();
    for (const [host, s] of owner) {
      const json = JSON.stringify(s);
      const prev = this.#services.get(host);
      if (prev && prev.json === json) services.set(host, prev);
      else {
        services.set(host, { json, service: Object.freeze(s) });
        changed = true;
      }
    }
    if (services.size !== this.#services.size) changed = true;
    const endpoints = new Map<string, { json: string; list: readonly Endpoint[] }>();
    for (const [host, list] of parts) {
      if (!owner.has(host)) continue; // endpoints of a service nobody defines are not served
      const sorted = sortEndpoints(list);
      const json = JSON.stringify(sorted);
      const prev = this.#endpoints.get(host);
      if (prev && prev.json === json) endpoints.set(host, prev);
      else {
        endpoints.set(host, { json, list: sorted });
        changed = true;
      }
    }
    if (endpoints.size !== this.#endpoints.size) changed = true;
    if (!changed && this.#last) return this.#last;
    const servicesChanged =
      !this.#last ||
      services.size !== this.#services.size ||
      [...services].some(([h, e]) => this.#services.get(h) !== e);
    const snapshot = createRegistrySnapshot(
      revision,
      [...services.values()].map((e) => e.service),
      new Map([...endpoints].map(([h, e]) => [h, e.list])),
    );
    // createRegistrySnapshot re-sorts and re-freezes lists: keep the previous objects where equal.
    const keptServices = servicesChanged || !this.#last ? snapshot.services : this.#last.services;
    const map = new Map<string, readonly Endpoint[]>();
    for (const [h] of snapshot.endpoints) map.set(h, endpoints.get(h)!.list);
    this.#services = services;
    this.#endpoints = endpoints;
    this.#last = Object.freeze({ revision, services: keptServices, endpoints: map });
    return this.#last;
  }
}
