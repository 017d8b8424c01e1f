import { describe, expect, it } from 'vitest';
import { mergeConvergence, mergeMeshConvergence, type ReplicaConvergence } from '../src/convergence.js';
import { parseConvergenceSummary } from '../src/telemetry-federation.js';

const entry = (over: Partial<ReplicaConvergence>): ReplicaConvergence => ({
  replicaId: 'r0',
  clusterId: 'c1',
  revision: 10,
  version: '10',
  changedAt: '2026-12-06T10:00:00.000Z',
  proxies: 0,
  synced: 0,
  syncMs: [],
  behind: [],
  at: '2026-12-06T10:00:01.000Z',
  ...over,
});

describe('mergeConvergence', () => {
  it('merges the replicas on the newest revision: counts, percentiles over all proxies, who is behind', () => {
    const times = Array.from({ length: 99 }, (_, i) => i + 1); // 1..99 ms
    const r = mergeConvergence([
      entry({ replicaId: 'r0', proxies: 60, synced: 60, syncMs: times.slice(0, 60) }),
      entry({
        replicaId: 'r1',
        proxies: 40,
        synced: 39,
        syncMs: times.slice(60),
        behind: [{ proxy: 'slow.ns1', holds: '9' }],
      }),
    ]);
    expect(r).toMatchObject({ revision: 10, proxies: 100, synced: 99, p50Ms: 50, p99Ms: 99 });
    expect(r.allMs).toBeUndefined();
    expect(r.behind).toEqual([{ proxy: 'slow.ns1', replicaId: 'r1', holds: '9' }]);
    expect(r.summary).toBe('revision 10 reached 99.0% of 100 proxies; 99% after 0.10 s; 1 have not');
  });

  it('a replica still on an older revision: its proxies count as not there yet', () => {
    const r = mergeConvergence([
      entry({ replicaId: 'r0', revision: 11, version: '11', proxies: 2, synced: 2, syncMs: [5, 7] }),
      entry({ replicaId: 'r1', revision: 10, proxies: 3, synced: 3, syncMs: [1, 2, 3] }),
    ]);
    expect(r).toMatchObject({
      revision: 11,
      proxies: 5,
      synced: 2,
      replicasBehind: [{ replicaId: 'r1', revision: 10 }],
    });
    expect(r.p99Ms).toBeUndefined();
    expect(r.p50Ms).toBeUndefined();
  });

  it('all synced: the time until the last one; nothing published yet says so', () => {
    expect(mergeConvergence([entry({ proxies: 2, synced: 2, syncMs: [3, 8] })])).toMatchObject({
      fraction: 1,
      allMs: 8,
      summary: 'revision 10 reached 100% of 2 proxies; 99% after 0.01 s',
    });
    expect(mergeConvergence([]).summary).toBe('no replica has published convergence yet');
  });
});

describe('mergeMeshConvergence', () => {
  it('each cluster against its own newest revision; totals and percentiles over the mesh', () => {
    const m = mergeMeshConvergence([
      entry({
        clusterId: 'west',
        replicaId: 'w0',
        revision: 7,
        version: '7',
        proxies: 2,
        synced: 2,
        syncMs: [10, 30],
      }),
      entry({
        clusterId: 'east',
        replicaId: 'e0',
        revision: 40,
        version: '40',
        proxies: 1,
        synced: 1,
        syncMs: [20],
      }),
      entry({
        clusterId: 'east',
        replicaId: 'e1',
        revision: 40,
        version: '40',
        proxies: 1,
        synced: 0,
        behind: [{ proxy: 'late.default', holds: '39' }],
      }),
      // An older revision of east's: its proxy is not there yet.
      entry({
        clusterId: 'east',
        replicaId: 'e2',
        revision: 39,
        version: '39',
        proxies: 1,
        synced: 1,
        syncMs: [1],
      }),
    ]);
    expect(m.clusters.map((c) => [c.clusterId, c.revision, c.replicas, c.proxies, c.synced])).toEqual([
      ['east', 40, 3, 3, 1],
      ['west', 7, 1, 2, 2],
    ]);
    expect(m).toMatchObject({ proxies: 5, synced: 3, fraction: 0.6, p50Ms: 30 });
    expect(m.p99Ms).toBeUndefined();
    expect(m.behind).toEqual([{ proxy: 'late.default', clusterId: 'east', replicaId: 'e1', holds: '39' }]);
    expect(m.summary).toBe(
      "2 clusters: 60.0% of 5 proxies hold their cluster's newest revision; 2 have not (east: revision 40 reached 33.3% of 3 proxies; 2 have not; west: revision 7 reached 100% of 2 proxies; 99% after 0.03 s)",
    );
    expect(mergeMeshConvergence([]).summary).toBe('no replica has published convergence yet');
  });
});

describe('parseConvergenceSummary (NATS)', () => {
  const good = { ...entry({ proxies: 2, synced: 1, syncMs: [5], behind: [{ proxy: 'a.ns', holds: '9' }] }) };
  it('accepts a well-formed summary and caps its lists', () => {
    expect(parseConvergenceSummary(good as unknown as Record<string, unknown>)).toEqual(good);
    const many = { ...good, behind: Array.from({ length: 50 }, (_, i) => ({ proxy: `p${i}` })) };
    expect(parseConvergenceSummary(many)?.behind).toHaveLength(20);
  });
  it.each([
    ['a number as a string', { revision: '10' }],
    ['synced above proxies', { synced: 3 }],
    ['a negative time', { syncMs: [-1] }],
    ['a behind entry without a name', { behind: [{ holds: '9' }] }],
    ['no version', { version: undefined }],
  ])('drops one with %s', (_what, over) => {
    expect(parseConvergenceSummary({ ...good, ...over })).toBeUndefined();
  });
});
