import { describe, expect, test } from 'vitest';
import {
  decodeMessage,
  encodeMessage,
  type Heartbeat,
  InvalidNameError,
  isNewer,
  parseServiceKey,
  type ServiceRecord,
  Subjects,
  serviceKey,
  WireFormatError,
} from '../src/index.js';
import { svc } from './helpers.js';

const a = svc('east', 'a', 2);
const rec: ServiceRecord = {
  v: 1,
  kind: 'service',
  mesh: 'm',
  origin: 'east',
  epoch: 7,
  seq: 3,
  namespace: 'default',
  hostname: 'a.default.svc.cluster.local',
  deleted: false,
  service: a.service,
  endpoints: a.endpoints,
  exportedAt: '2026-11-27T00:00:00.000Z',
};
const bytes = (o: unknown) => new TextEncoder().encode(JSON.stringify(o));

function wireError(data: Uint8Array, subject?: string): WireFormatError {
  try {
    decodeMessage(data, subject);
  } catch (err) {
    if (err instanceof WireFormatError) return err;
    throw err;
  }
  throw new Error('decodeMessage did not throw');
}

describe('wire format v1', () => {
  test('round-trips records, heartbeats and epoch markers', () => {
    expect(decodeMessage(encodeMessage(rec))).toEqual(rec);
    const hb: Heartbeat = {
      v: 1,
      kind: 'heartbeat',
      mesh: 'm',
      origin: 'east',
      epoch: 7,
      seq: 0,
      services: 2,
      intervalMs: 2000,
      sentAt: 'x',
    };
    expect(decodeMessage(encodeMessage(hb))).toEqual(hb);
    const tomb = { ...rec, deleted: true, service: undefined, endpoints: [] };
    expect(decodeMessage(encodeMessage(tomb))).toEqual({ ...tomb, service: undefined });
  });

  test('ignores unknown fields (additive changes within v1) and fills optional defaults', () => {
    const { weight: _w, ...noWeight } = a.endpoints[0]!;
    const m = decodeMessage(
      bytes({ ...rec, future: { x: 1 }, endpoints: [{ ...noWeight, future: true }] }),
    ) as ServiceRecord;
    expect(m.endpoints[0]).toEqual({ ...a.endpoints[0], weight: 1 });
    expect('future' in m).toBe(false);
  });

  test('rejects another protocol version', () => {
    const e = wireError(bytes({ ...rec, v: 2 }), 's.x');
    expect(e.reason).toBe('unsupported_version');
    expect(e.message).toBe(
      'federation message (from s.x): v protocol version 2 is not supported (this importer reads 1)',
    );
  });

  test.each([
    [{ epoch: -1 }, 'epoch', 'epoch must be an integer in [0, 9007199254740991], got -1'],
    [{ epoch: '3' }, 'epoch', 'epoch must be an integer in [0, 9007199254740991], got "3"'],
    [{ epoch: undefined }, 'epoch', 'epoch must be an integer in [0, 9007199254740991], got nothing'],
    [{ seq: 0 }, 'seq', 'seq must be an integer in [1, 9007199254740991], got 0'],
    [{ seq: 1.5 }, 'seq', 'seq must be an integer in [1, 9007199254740991], got 1.5'],
    [{ origin: '' }, 'origin', 'origin must not be empty'],
    [{ kind: 'nope' }, 'kind', 'kind must be "service", "heartbeat" or "epoch", got "nope"'],
  ])('rejects malformed header %j', (patch, field, why) => {
    const e = wireError(bytes({ ...rec, ...patch }));
    expect(e).toMatchObject({ name: 'WireFormatError', code: 'WIRE_FORMAT', reason: 'malformed', field });
    expect(e.message).toBe(`federation message: ${why}`);
  });

  test('rejects malformed endpoints, naming the field', () => {
    const bad = { ...rec, endpoints: [a.endpoints[0], { ...a.endpoints[1], ports: { http: 70000 } }] };
    const e = wireError(bytes(bad));
    expect(e.field).toBe('endpoints[1].ports.http');
    expect(e.message).toBe(
      'federation message: endpoints[1].ports.http must be an integer in [1, 65535], got 70000',
    );
    const e2 = wireError(bytes({ ...rec, endpoints: [{ ...a.endpoints[0], health: 'OK' }] }));
    expect(e2.message).toBe(
      'federation message: endpoints[0].health must be one of HEALTHY, UNHEALTHY, DRAINING, got "OK"',
    );
  });

  test('an endpoint or service naming another cluster or service is an origin mismatch', () => {
    const e = wireError(bytes({ ...rec, endpoints: [{ ...a.endpoints[0], cluster: 'west' }] }));
    expect(e).toMatchObject({ reason: 'origin_mismatch', field: 'endpoints[0].cluster' });
    expect(e.message).toBe('federation message: endpoints[0].cluster is "west", the origin is "east"');
    const e2 = wireError(bytes({ ...rec, hostname: 'b.default.svc.cluster.local' }));
    expect(e2.reason).toBe('origin_mismatch');
  });

  test('rejects non-JSON with the cause attached', () => {
    const e = wireError(new TextEncoder().encode('{nope'), 'sub');
    expect(e.message).toBe('federation message (from sub): not valid UTF-8 JSON');
    expect(e.cause).toBeInstanceOf(SyntaxError);
  });

  test('orders by (epoch, seq)', () => {
    expect(isNewer({ epoch: 2, seq: 1 }, { epoch: 1, seq: 99 })).toBe(true);
    expect(isNewer({ epoch: 1, seq: 5 }, { epoch: 1, seq: 4 })).toBe(true);
    expect(isNewer({ epoch: 1, seq: 4 }, { epoch: 1, seq: 4 })).toBe(false);
    expect(isNewer({ epoch: 1, seq: 99 }, { epoch: 2, seq: 1 })).toBe(false);
  });
});

describe('names', () => {
  const s = new Subjects('prod');
  test('subjects, buckets and keys', () => {
    expect(s.service('east', 'ns', 'a.ns.svc.cluster.local')).toBe(
      'meridian.prod.fed.east.svc.ns.a.ns.svc.cluster.local',
    );
    expect(s.parse('meridian.prod.fed.east.svc.ns.a.ns.svc.cluster.local')).toEqual({
      kind: 'service',
      cluster: 'east',
      namespace: 'ns',
      hostname: 'a.ns.svc.cluster.local',
    });
    expect(s.parse('meridian.prod.fed.east.hb')).toEqual({ kind: 'heartbeat', cluster: 'east' });
    expect(s.parse('meridian.prod.fed.east.hb.x')).toBeUndefined();
    expect(s.parse('meridian.other.fed.east.hb')).toBeUndefined();
    expect(s.bucket('east')).toBe('meridian_fed_prod_east');
    expect(s.clusterOfBucket('meridian_fed_prod_us-east-1')).toBe('us-east-1');
    expect(s.clusterOfBucket('meridian_fed_other_east')).toBeUndefined();
    expect(parseServiceKey(serviceKey('ns', 'a.b.c'))).toEqual({ namespace: 'ns', hostname: 'a.b.c' });
  });
  test('ids that cannot be subject tokens are refused', () => {
    expect(() => new Subjects('a.b')).toThrow(InvalidNameError);
    expect(() => new Subjects('a.b')).toThrow(
      expect.objectContaining({ code: 'INVALID_NAME', field: 'mesh', value: 'a.b' }),
    );
    expect(() => new Subjects('a.b')).toThrow(
      'invalid mesh "a.b": must be 1-63 letters, digits or "-", not starting or ending with "-"',
    );
    expect(() => s.bucket('x')).not.toThrow();
  });
});
