import { describe, expect, it } from 'vitest';
import { mergeConvergence, type ReplicaConvergence } from '../src/convergence.js';

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
