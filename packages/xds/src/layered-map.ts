/**
 * A proxy's resources of one type as two layers: a map shared by many proxies (translate's outbound
 * part: a thousand clusters or listeners) and the few resources of its own workload (the inbound
 * part). Merging them into one map per proxy cost a copy of the shared map for every sidecar, and
 * its SotW response body was kept per proxy too; the layers keep the shared map shared, and the
 * protocol code (sorting, diffs) works per layer where that lets streams share work.
 *
 * The layers never hold the same name: {@link layered} builds a plain map when they would.
 */
import type { EncodedResource, ResourceMap } from './types.js';

export class LayeredResourceMap implements ReadonlyMap<string, EncodedResource> {
  private constructor(
    readonly base: ResourceMap,
    readonly extra: ResourceMap,
  ) {}

  /**
   * `base` with `extra` added: a layered map, or, when a name of `extra` is also in `base` (its
   * resource then replaces the base one), a plain merged map.
   */
  static of(base: ResourceMap, extra: readonly EncodedResource[]): ResourceMap {
    if (extra.length === 0) return base;
    if (extra.some((r) => base.has(r.name))) {
      const merged = new Map(base);
      for (const r of extra) merged.set(r.name, r);
      return merged;
    }
    return new LayeredResourceMap(base, new Map(extra.map((r) => [r.name, r])));
  }

  get size(): number {
    return this.base.size + this.extra.size;
  }

  get(name: string): EncodedResource | undefined {
    return this.extra.get(name) ?? this.base.get(name);
  }

  has(name: string): boolean {
    return this.extra.has(name) || this.base.has(name);
  }

  *entries(): MapIterator<[string, EncodedResource]> {
    yield* this.base.entries();
    yield* this.extra.entries();
  }

  *keys(): MapIterator<string> {
    yield* this.base.keys();
    yield* this.extra.keys();
  }

  *values(): MapIterator<EncodedResource> {
    yield* this.base.values();
    yield* this.extra.values();
  }

  forEach(
    fn: (value: EncodedResource, key: string, map: ReadonlyMap<string, EncodedResource>) => void,
  ): void {
    for (const [k, v] of this.entries()) fn(v, k, this);
  }

  [Symbol.iterator](): MapIterator<[string, EncodedResource]> {
    return this.entries();
  }
}
