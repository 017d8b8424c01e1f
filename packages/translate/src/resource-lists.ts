/**
 * Lists of named resources in name order, as proxies are sent them: making a {@link NamedResource},
 * comparing by name, and merging or sorting lists while reporting where each item went (the
 * materialized outbound part patches its lists by position). Each function gives the order a stable
 * sort by name gives, and skips the sort when its input is already in order.
 */
import type { EnvoyJson } from '@meridian/envoy';
import type { NamedResource } from './types.js';
import { compareStrings } from './util.js';

/** A resource under its name (the name a proxy subscribes to and the lists are sorted by). */
export function named(name: string, resource: EnvoyJson): NamedResource {
  return { name, resource };
}

/** Compares two resources by name (the order of every list a proxy is sent). */
export function byName(a: NamedResource, b: NamedResource): number {
  return compareStrings(a.name, b.name);
}

/** Whether `list` is in name order (so a stable sort by name changes nothing). */
export function sortedByName(list: readonly NamedResource[]): boolean {
  for (let i = 1; i < list.length; i++) if (byName(list[i - 1]!, list[i]!) > 0) return false;
  return true;
}

/** `[...a, ...b]` stably sorted by name: a merge when both are sorted (as the parts' lists are). */
export function mergeByName(a: readonly NamedResource[], b: readonly NamedResource[]): NamedResource[] {
  if (b.length === 0 && sortedByName(a)) return [...a];
  if (!sortedByName(a) || !sortedByName(b)) return [...a, ...b].sort(byName);
  const out = new Array<NamedResource>(a.length + b.length);
  let i = 0;
  let j = 0;
  let k = 0;
  // Ties take `a`'s first, as a stable sort of the concatenation does.
  while (i < a.length && j < b.length) out[k++] = byName(a[i]!, b[j]!) <= 0 ? a[i++]! : b[j++]!;
  while (i < a.length) out[k++] = a[i++]!;
  while (j < b.length) out[k++] = b[j++]!;
  return out;
}

/** `items` sorted by name (a stable sort), and where each item went. */
function sortWithPositions(items: readonly NamedResource[]): {
  sorted: NamedResource[];
  positions: Int32Array;
} {
  const names = items.map((r) => r.name);
  const order = Array.from(items.keys());
  if (!sortedBy(names)) order.sort((a, b) => compareStrings(names[a]!, names[b]!) || a - b);
  const positions = new Int32Array(items.length);
  const sorted = new Array<NamedResource>(items.length);
  for (let to = 0; to < order.length; to++) {
    const from = order[to]!;
    positions[from] = to;
    sorted[to] = items[from]!;
  }
  return { sorted, positions };
}

/**
 * `[...built, ...extra]` sorted by name (stably) and where each item went, given the order of
 * `built` by name: a merge with `extra` when it is sorted.
 */
export function mergeInOrder(
  built: readonly NamedResource[],
  order: Int32Array,
  extra: readonly NamedResource[],
): { sorted: NamedResource[]; positions: Int32Array } {
  if (!sortedByName(extra)) return sortWithPositions([...built, ...extra]);
  const n = built.length;
  const sorted = new Array<NamedResource>(n + extra.length);
  const positions = new Int32Array(n + extra.length);
  let i = 0;
  let j = 0;
  for (let k = 0; k < sorted.length; k++) {
    // Ties take `built`'s first, as a stable sort of the concatenation does.
    if (j >= extra.length || (i < n && byName(built[order[i]!]!, extra[j]!) <= 0)) {
      const from = order[i++]!;
      sorted[k] = built[from]!;
      positions[from] = k;
    } else {
      sorted[k] = extra[j]!;
      positions[n + j++] = k;
    }
  }
  return { sorted, positions };
}

/** Whether `names` is in order (so a stable sort by them changes nothing). */
function sortedBy(names: readonly string[]): boolean {
  for (let i = 1; i < names.length; i++) if (compareStrings(names[i - 1]!, names[i]!) > 0) return false;
  return true;
}

/** How a list was made from another: the same items but at `positions`, which were replaced. */
export interface ListPatch {
  readonly from: readonly NamedResource[];
  readonly positions: readonly number[];
}

const patches = new WeakMap<readonly NamedResource[], ListPatch>();

/**
 * `from` with the items at `positions` replaced by `replacements` (same names, new resources), as a
 * new list that remembers how it was made: whoever keeps a derived form of `from` (an encoded map)
 * can update it for `positions` instead of redoing the whole list.
 */
export function patchList(
  from: readonly NamedResource[],
  positions: readonly number[],
  replacements: readonly NamedResource[],
): readonly NamedResource[] {
  const out = [...from];
  for (let k = 0; k < positions.length; k++) out[positions[k]!] = replacements[k]!;
  patches.set(out, { from, positions: [...positions] });
  return out;
}

/** How `list` was made by {@link patchList}, if it was. */
export function patchOf(list: readonly NamedResource[]): ListPatch | undefined {
  return patches.get(list);
}
