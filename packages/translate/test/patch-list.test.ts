// An endpoint change patches the outbound part's load-assignment list: the new list says which list
// it came from and which positions changed (patchOf), so the replica's encoder updates its map for
// those entries only; every other position holds the same object.
import { describe, expect, it } from 'vitest';
import { createConfigSnapshot, patchOf, Translator, withEndpoints } from '../src/index.js';
import { bookinfoRegistry, proxy } from './fixtures.js';

describe('patched outbound lists', () => {
  it('an endpoint change yields a load-assignment list patched at that service only', () => {
    const config = createConfigSnapshot(1, []);
    const before = bookinfoRegistry();
    const t = new Translator();
    const p = proxy({ ip: '10.1.0.1' });
    const a = t.translateParts(config, before, p).outbound;
    const host = [...before.endpoints.keys()].find((h) => h.startsWith('reviews'))!;
    const list = before.endpoints.get(host)!;
    const after = withEndpoints(before, 2, host, [
      { ...list[0]!, weight: list[0]!.weight + 5 },
      ...list.slice(1),
    ]);
    const b = t.translateParts(config, after, p).outbound;
    expect(b.endpoints).not.toBe(a.endpoints);
    const patch = patchOf(b.endpoints);
    expect(patch?.from).toBe(a.endpoints);
    const changed = patch!.positions.map((i) => b.endpoints[i]!.name);
    expect(changed.length).toBeGreaterThan(0);
    expect(changed.every((name) => name.endsWith(`|${host}`))).toBe(true);
    b.endpoints.forEach((r, i) => {
      if (!patch!.positions.includes(i)) expect(r).toBe(a.endpoints[i]);
      else expect(r).not.toBe(a.endpoints[i]);
    });
    // Clusters did not change: the same list, not a patch.
    expect(b.clusters).toBe(a.clusters);
    expect(patchOf(a.endpoints)).toBeUndefined();
  });
});
