// A sidecar's map as a shared layer plus its workload's own resources (LayeredResourceMap) must
// behave as the merged map would: same contents, same sorted SotW list, and the same Delta diffs,
// also when a name moves between the layers (then the diff falls back to the full comparison).
import { TypeUrl } from '@meridian/envoy';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LayeredResourceMap } from '../src/layered-map.js';
import { applyDeltaRequest, type DeltaWatch, deltaDiff, deltaSent, sortedOf } from '../src/protocol.js';
import type { EncodedResource, ResourceMap } from '../src/types.js';

const CDS = TypeUrl.Cluster;

function resource(name: string, version: string): EncodedResource {
  const bytes = Buffer.from(`${name}@${version}`);
  return { typeUrl: CDS, name, version, bytes, sotwFrame: bytes, deltaFrame: bytes };
}

// Shared names a-f, own names e-h: e and f can be in either layer (or both: the merged fallback).
const layerArb = (names: string[]) =>
  fc.uniqueArray(fc.tuple(fc.constantFrom(...names), fc.integer({ min: 1, max: 3 })), {
    selector: ([n]) => n,
    maxLength: names.length,
  });
const mapsArb = fc.record({
  base: layerArb(['a', 'b', 'c', 'd', 'e', 'f']),
  extra: layerArb(['e', 'f', 'g', 'h']),
});

const build = (m: { base: [string, number][]; extra: [string, number][] }) => {
  const base: ResourceMap = new Map(m.base.map(([n, v]) => [n, resource(n, `b${v}`)]));
  const extra = m.extra.map(([n, v]) => resource(n, `x${v}`));
  const merged = new Map(base);
  for (const r of extra) merged.set(r.name, r);
  return { layered: LayeredResourceMap.of(base, extra), merged };
};

describe('LayeredResourceMap', () => {
  it('has the merged map’s contents and sorted list', () => {
    fc.assert(
      fc.property(mapsArb, (m) => {
        const { layered, merged } = build(m);
        expect(layered.size).toBe(merged.size);
        expect(new Map(layered)).toEqual(merged);
        for (const n of ['a', 'e', 'g', 'z']) {
          expect(layered.get(n)).toBe(merged.get(n));
          expect(layered.has(n)).toBe(merged.has(n));
        }
        expect(sortedOf(layered).map((r) => r.name)).toEqual([...merged.keys()].sort());
        const collides = m.extra.some(([n]) => m.base.some(([b]) => b === n));
        expect(layered instanceof LayeredResourceMap).toBe(m.extra.length > 0 && !collides);
      }),
      { numRuns: 300 },
    );
  });

  it('Delta diffs between layered maps equal the full comparison, for any sequence', () => {
    fc.assert(
      fc.property(fc.array(mapsArb, { minLength: 1, maxLength: 12 }), (steps) => {
        const request = (nonce: string) => ({
          typeUrl: CDS,
          subscribe: [] as string[],
          unsubscribe: [] as string[],
          initialResourceVersions: new Map<string, string>(),
          responseNonce: nonce,
          errorDetail: undefined,
        });
        let w: DeltaWatch = applyDeltaRequest(undefined, request('')).state;
        let n = 0;
        for (const step of steps) {
          const map = build(step).layered;
          const fast = deltaDiff(w, map);
          const slow = deltaDiff({ ...w, knownFrom: undefined }, map);
          expect(fast.upserts.map((r) => `${r.name}@${r.version}`)).toEqual(
            slow.upserts.map((r) => `${r.name}@${r.version}`),
          );
          expect(fast.removed).toEqual(slow.removed);
          w = deltaSent(w, `n${++n}`, fast.upserts, fast.missing);
          if (fast.removed.length > 0) w = deltaSent(w, `n${++n}`, [], fast.removed);
          if (w.pending.size === 0) w = { ...w, knownFrom: map };
          w = applyDeltaRequest(w, request(w.nonceSent ?? '')).state;
          expect(new Map(w.known)).toEqual(new Map([...map.values()].map((r) => [r.name, r.version])));
        }
      }),
      { numRuns: 300 },
    );
  });
});
