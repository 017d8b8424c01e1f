// Property tests of the compiled encoder against the encoder it replaced (test/reference-encoder.ts),
// on resources generated from Envoy's schema itself: any message reachable from the xDS resource
// types, fields picked at random, each value of its field's kind (or, in the wild mode, of a wrong
// kind, an unknown key, a null, an odd enum name), Any values of several types.
// (The generators are in test/schema-arbitrary.ts.)
import { checkResource, encodeResource } from '@meridian/envoy';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeBothWays } from '../src/json.js';
import { referenceCheckResource, referenceEncodeResource } from './reference-encoder.js';
import { message, outcome, RESOURCES, root } from './schema-arbitrary.js';

describe('compiled encoder, property: the same answer as the reference encoder', () => {
  for (const [typeUrl, depth] of RESOURCES) {
    const label = typeUrl.slice(typeUrl.lastIndexOf('.') + 1);
    const type = root.lookupType(typeUrl.slice(typeUrl.lastIndexOf('/') + 1));

    it(`${label}: any input (wild): same bytes or the same problems, from encode and from check`, () => {
      fc.assert(
        fc.property(message(type, depth, 'wild'), (json) => {
          expect(outcome(() => encodeResource(typeUrl, json))).toEqual(
            outcome(() => referenceEncodeResource(typeUrl, json)),
          );
          expect(checkResource(typeUrl, json)).toEqual(referenceCheckResource(typeUrl, json));
        }),
        { numRuns: 150 },
      );
    });

    it(`${label}: valid resources are encoded by the compiled encoder itself, to the reference's bytes`, () => {
      let valid = 0;
      let total = 0;
      fc.assert(
        fc.property(message(type, depth, 'tame'), (json) => {
          total++;
          const reference = outcome(() => referenceEncodeResource(typeUrl, json));
          const { compiled } = encodeBothWays(typeUrl, json);
          if ('bytes' in reference) {
            valid++;
            expect(compiled, 'left to the walker').toBeDefined();
            expect(Buffer.from(compiled!).toString('hex')).toEqual(reference.bytes);
          } else {
            expect(compiled).toBeUndefined();
          }
        }),
        { numRuns: 150 },
      );
      // Not vacuous: a fair share of the generated resources are valid.
      expect(valid).toBeGreaterThan(total / 5);
    });
  }
});
