// Resource lists in name order, memoized per immutable map: what SotW responses carry and Delta
// diffs are built from. A layered map's list is its layers' lists merged, so the shared layer is
// sorted once for every sidecar above it.
import { LayeredResourceMap } from './layered-map.js';
import type { EncodedResource, ResourceMap } from './types.js';

export const byName = (a: EncodedResource, b: EncodedResource) =>
  a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
/** Sorted contents of a map, memoized by the map's identity (maps are immutable snapshots). */
const sortedMaps = new WeakMap<ResourceMap, EncodedResource[]>();

/** The contents of `map` sorted by name (a layered map: its layers' sorted lists merged). */
export function sortedOf(map: ResourceMap): EncodedResource[] {
  let sorted = sortedMaps.get(map);
  if (!sorted) {
    sorted =
      map instanceof LayeredResourceMap
        ? mergeSorted(sortedOf(map.base), sortedOf(map.extra))
        : [...map.values()].sort(byName);
    sortedMaps.set(map, sorted);
  }
  return sorted;
}

export function mergeSorted<T>(
  a: readonly T[],
  b: readonly T[],
  less: (x: T, y: T) => boolean = lessByName as never,
): T[] {
  const out: T[] = new Array(a.length + b.length);
  let i = 0;
  let j = 0;
  let k = 0;
  while (i < a.length && j < b.length) out[k++] = less(b[j]!, a[i]!) ? b[j++]! : a[i++]!;
  while (i < a.length) out[k++] = a[i++]!;
  while (j < b.length) out[k++] = b[j++]!;
  return out;
}
const lessByName = (x: EncodedResource, y: EncodedResource) => x.name < y.name;
export const lessString = (x: string, y: string) => x < y;

/** `map`'s sorted list if one was made already (an identity check needs no new list). */
export function sortedIfMade(map: ResourceMap): EncodedResource[] | undefined {
  return sortedMaps.get(map);
}
