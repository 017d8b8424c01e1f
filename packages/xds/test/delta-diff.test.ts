// The Delta push path's shortcut: once a stream holds exactly a map's subscribed resources
// (`knownFrom`), the next diff is the memoized difference of the two maps. For random sequences of
// maps and subscription changes it must equal the full walk of `known` against the new map.
import { TypeUrl } from '@meridian/envoy';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { applyDeltaRequest, type DeltaWatch, deltaDiff, deltaSent } from '../src/protocol.js';
import type { EncodedResource, ResourceMap } from '../src/types.js';

const EDS = TypeUrl.ClusterLoadAssignment;
const NAMES = ['a', 'b', 'c', 'd', 'e', 'f'];

function resource(name: string, version: string): EncodedResource {
  const bytes = Buffer.from(`${name}@${version}`);
  return { typeUrl: EDS, name, version, bytes, sotwFrame: bytes, deltaFrame: bytes };
}

type Step =
  | { kind: 'map'; entries: [string, number][] }
  | { kind: 'subscribe'; names: string[] }
  | { kind: 'unsubscribe'; names: string[] };

const namesArb = fc.subarray([...NAMES, '*'], { minLength: 1 });
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('map' as const),
      entries: fc.array(fc.tuple(fc.constantFrom(...NAMES), fc.integer({ min: 1, max: 3 })), {
        maxLength: 6,
      }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('subscribe' as const), names: namesArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('unsubscribe' as const), names: namesArb }) },
);

const sortDiff = (d: ReturnType<typeof deltaDiff>) => ({
  upserts: d.upserts.map((r) => `${r.name}@${r.version}`).sort(),
  removed: [...d.removed].sort(),
  missing: [...d.missing].sort(),
});

describe('Delta diff from the map a stream holds', () => {
  it('equals the full comparison of what the stream knows, for any sequence', () => {
    fc.assert(
      fc.property(fc.boolean(), fc.array(stepArb, { minLength: 1, maxLength: 15 }), (wildcard, steps) => {
        const request = (subscribe: string[], unsubscribe: string[], nonce: string) => ({
          typeUrl: EDS,
          subscribe,
          unsubscribe,
          initialResourceVersions: new Map<string, string>(),
          responseNonce: nonce,
          errorDetail: undefined,
        });
        let w: DeltaWatch = applyDeltaRequest(undefined, request(wildcard ? [] : ['a', 'b'], [], '')).state;
        let map: ResourceMap = new Map();
        let n = 0;
        const push = () => {
          const fast = deltaDiff(w, map);
          const slow = deltaDiff({ ...w, knownFrom: undefined }, map);
          expect(sortDiff(fast)).toEqual(sortDiff(slow));
          w = deltaSent(w, `n${++n}`, fast.upserts, fast.missing);
          if (fast.removed.length > 0) w = deltaSent(w, `n${++n}`, [], fast.removed);
          if (w.pending.size === 0) w = { ...w, knownFrom: map };
          // An ACK of the last response.
          w = applyDeltaRequest(w, request([], [], w.nonceSent ?? '')).state;
        };
        push();
        for (const step of steps) {
          if (step.kind === 'map')
            map = new Map(step.entries.map(([name, v]) => [name, resource(name, `v${v}`)]));
          else if (step.kind === 'subscribe')
            w = applyDeltaRequest(w, request(step.names, [], w.nonceSent ?? '')).state;
          else w = applyDeltaRequest(w, request([], step.names, w.nonceSent ?? '')).state;
          push();
        }
      }),
      { numRuns: 300 },
    );
  });
});
