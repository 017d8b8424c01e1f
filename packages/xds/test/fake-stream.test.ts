// The checks the fake stream makes on every write, fed hand-made responses: a checker that let a
// broken rule through would make every stream-loop test pass for nothing.
import { type EnvoyJson, TypeUrl } from '@meridian/envoy';
import { deltaResponse, ResourceCache, sotwResponse } from '@meridian/xds';
import { describe, expect, it } from 'vitest';
import { FakeStream, type FakeStreamOptions, ProtocolViolation } from './fake-stream.js';

const CDS = TypeUrl.Cluster;
const LDS = TypeUrl.Listener;
const cache = new ResourceCache();
const cluster = (name: string): EnvoyJson => ({
  name,
  type: 'EDS',
  eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' }, service_name: name },
  connect_timeout: '1s',
});
const a = cache.intern(CDS, cluster('a'));
const listener = cache.intern(LDS, {
  name: 'a',
  address: { socket_address: { address: '0.0.0.0', port_value: 80 } },
});
/** A SotW response carrying resource `a` of its type. */
const sotw = (type: string, nonce: string, version = 'v1') =>
  sotwResponse(version, [type === LDS ? listener : a], type, nonce);
const delta = (type: string, nonce: string) => deltaResponse('v1', [a], [], type, nonce);

/** A stream (no server behind it) that has requested `types`, keeping violations to be read. */
function stream(types: readonly string[], o: Partial<FakeStreamOptions> = {}): FakeStream {
  const s = new FakeStream({
    variant: 'sotw',
    nodeId: 'sidecar~10.0.0.1~checked.default~default.svc.cluster.local',
    onViolation: 'record',
    ...o,
  });
  for (const t of types) {
    if (s.variant === 'sotw') s.sotw(t, []);
    else s.delta(t, { subscribe: [] });
  }
  return s;
}
const problems = (s: FakeStream) => s.violations.map((v) => v.message.slice(v.message.indexOf('): ') + 3));

describe('the fake stream checks every response as it is written', () => {
  it('accepts responses that follow the rules, shared seqs increasing per type only', () => {
    const s = stream([CDS, LDS]);
    for (const [type, nonce] of [
      [CDS, 's3'],
      [CDS, '7-1'],
      [LDS, 's9'],
      // An older shared response of another type: allowed (seqs increase per type on a stream).
      [CDS, 's5'],
      [CDS, '7-a'],
      [LDS, 'sa'],
    ] as const)
      s.write(sotw(type, nonce));
    expect(s.violations).toEqual([]);
    expect(s.responses.map((r) => [r.typeUrl, r.nonce, r.version, r.names])).toEqual([
      [CDS, 's3', 'v1', ['a']],
      [CDS, '7-1', 'v1', ['a']],
      [LDS, 's9', 'v1', ['a']],
      [CDS, 's5', 'v1', ['a']],
      [CDS, '7-a', 'v1', ['a']],
      [LDS, 'sa', 'v1', ['a']],
    ]);
  });

  it('flags a type URL the stream never requested, and resources of another type', () => {
    const s = stream([CDS]);
    s.write(sotw(LDS, 's1'));
    expect(problems(s)).toEqual([`type URL "${LDS}" was never requested on this stream`]);
    const t = stream([LDS]);
    t.write(sotwResponse('v1', [a], LDS, 's1'));
    expect(problems(t)).toEqual([`a resource of type "${CDS}" in it`]);
  });

  it('flags a SotW response without version_info', () => {
    const s = stream([CDS]);
    s.write(sotw(CDS, 's1', ''));
    expect(problems(s)).toEqual(['SotW response without version_info']);
  });

  it('flags nonces that are empty, repeat, go back in their namespace or follow no scheme', () => {
    const cases: [string[], string][] = [
      [
        ['s2', 's2'],
        'nonce "s2" repeated on the stream; shared nonce "s2" (seq 2) does not increase on its type (last seq 2)',
      ],
      [['s5', 's4'], 'shared nonce "s4" (seq 4) does not increase on its type (last seq 5)'],
      [['3-2', '3-1'], 'nonce "3-1" does not increase (last 2)'],
      [['3-1', '4-2'], 'nonce "4-2" has another stream\'s prefix (this stream\'s: 3)'],
      [['d1'], 'shared nonce "d1" is not a s<seq> nonce'],
      [['abc'], 'nonce "abc" follows neither s<seq>/d<seq> nor <stream>-<n>'],
      [[''], 'empty nonce'],
    ];
    for (const [nonces, problem] of cases) {
      const s = stream([CDS]);
      for (const n of nonces) s.write(sotw(CDS, n));
      expect(problems(s), nonces.join(', ')).toEqual([problem]);
    }
  });

  it('on a Delta stream, flags a response that is not a DeltaDiscoveryResponse', () => {
    const ok = stream([CDS], { variant: 'delta' });
    ok.write(delta(CDS, 'd1'));
    ok.write(delta(CDS, '2-1'));
    expect(ok.violations).toEqual([]);
    expect(ok.responses[0]).toMatchObject({ typeUrl: CDS, names: ['a'], removed: [] });
    expect(ok.responses[0]!.versions.get('a')).toBe(a.version);

    const s = stream([CDS], { variant: 'delta' });
    s.write(sotw(CDS, 'd2'));
    expect(s.violations).toHaveLength(1);
    expect(s.violations[0]!.message).toContain('not a DeltaDiscoveryResponse');
  });

  it('flags a response written after the server ended the stream', () => {
    const s = stream([CDS]);
    s.emit('error', Object.assign(new Error('bye'), { code: 14, details: 'bye' }));
    expect(s.ended).toEqual({ code: 14, details: 'bye', metadata: undefined, hard: false });
    s.write(sotw(CDS, 's1'));
    expect(problems(s)).toEqual(['written after the stream ended']);
  });

  it('assertClean throws the first violation, made at the write', () => {
    const s = stream([CDS], { onViolation: 'fail' });
    s.violations.push(new ProtocolViolation('made up'));
    expect(() => s.assertClean()).toThrow('made up');
  });

  it.fails('a broken rule fails the running test at the write that broke it', () => {
    const s = stream([CDS], { onViolation: 'fail' });
    s.write(sotw(LDS, 's1'));
  });

  it('applies backpressure once the client stops reading', async () => {
    const s = stream([CDS], { highWaterMark: 2 });
    const taken: number[] = [];
    s.stopReading();
    expect(s.write(sotw(CDS, '1-1'), () => taken.push(1))).toBe(true);
    expect(s.write(sotw(CDS, '1-2'), () => taken.push(2))).toBe(false);
    await new Promise((r) => setTimeout(r, 10));
    expect(taken).toEqual([]);
    s.resumeReading();
    await new Promise((r) => setImmediate(r));
    expect(taken).toEqual([1, 2]);
    expect(s.write(sotw(CDS, '1-3'), () => taken.push(3))).toBe(true);
    await new Promise((r) => setImmediate(r));
    expect(taken).toEqual([1, 2, 3]);
  });
});
