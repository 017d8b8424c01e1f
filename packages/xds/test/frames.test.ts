// An encoded resource is held once (its SotW frame, with `bytes` a view of it) and its Delta frame is
// built on first use: both frames must still be the protobuf messages the protocol defines. Checked by
// reading them back field by field, for random names, versions, type URLs and sizes (the varint
// lengths cross one and two bytes).
import { TypeUrl } from '@meridian/envoy';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodedResource } from '../src/cache.js';
import { protobufFields } from '../src/wire.js';

const only = (buf: Uint8Array) => [...protobufFields(buf)];
const text = (b: Uint8Array | undefined) => Buffer.from(b ?? []).toString('utf8');

describe('encoded resource frames', () => {
  it('SotW: field 2 = Any{type_url, value}; Delta: field 2 = Resource{version, Any, name}; bytes shared', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...Object.values(TypeUrl)),
        fc.string({ minLength: 1, maxLength: 40 }),
        fc.uint8Array({ maxLength: 20_000 }),
        (typeUrl, name, bytes) => {
          const r = encodedResource(typeUrl, name, bytes);
          expect(Buffer.from(r.bytes).equals(Buffer.from(bytes))).toBe(true);
          // `bytes` is a view of the SotW frame, not a copy.
          expect(r.bytes.buffer).toBe(r.sotwFrame.buffer);

          const sotw = only(r.sotwFrame);
          expect(sotw.map((f) => f.field)).toEqual([2]);
          const any = only(sotw[0]!.bytes!);
          expect(any.map((f) => f.field)).toEqual([1, 2]);
          expect(text(any[0]!.bytes)).toBe(typeUrl);
          expect(Buffer.from(any[1]!.bytes!).equals(Buffer.from(bytes))).toBe(true);

          const delta = only(r.deltaFrame);
          expect(delta.map((f) => f.field)).toEqual([2]);
          const resource = only(delta[0]!.bytes!);
          expect(resource.map((f) => f.field)).toEqual([1, 2, 3]);
          expect(text(resource[0]!.bytes)).toBe(r.version);
          expect(Buffer.from(resource[1]!.bytes!).equals(Buffer.from(sotw[0]!.bytes!))).toBe(true);
          expect(text(resource[2]!.bytes)).toBe(name);
          expect(r.deltaFrame).toBe(r.deltaFrame); // built once
        },
      ),
      { numRuns: 200 },
    );
  });
});
