// The chaos suite's short subset for CI (scenarios.ts CI_SUBSET): the real chaos mesh (two clusters,
// 3-member etcd each, NATS gateway, three replicas each, agents, grpc-js-xds demo clients) brought up by
// `meridian up`'s code; each scenario checks its own invariants through independent observers (the
// clients' call records, the writer's log, etcd read with etcdctl). A scenario's FAIL fails its test
// with the figures. Multi-process (24 processes): runs in the serial pass. The full suite: pnpm chaos.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describe as describeResult, runScenario } from './lib/harness.js';
import { Mesh } from './lib/mesh.js';
import { CI_SUBSET, scenario } from './scenarios.js';

let mesh: Mesh | undefined;

beforeAll(async () => {
  mesh = await Mesh.start({ timeoutMs: 240_000 });
}, 300_000);

afterAll(async () => {
  await mesh?.stop();
}, 120_000);

describe('chaos (CI subset)', { timeout: 240_000 }, () => {
  for (const name of CI_SUBSET)
    it(name, async () => {
      // Anything the previous scenario left down is started again first (a no-op when all runs).
      if (name !== CI_SUBSET[0]) await mesh!.restore();
      const r = await runScenario(mesh!, scenario(name));
      const text = describeResult(r).join('\n');
      expect(r.error, text).toBeUndefined();
      expect(
        r.invariants.filter((i) => !i.ok),
        text,
      ).toEqual([]);
      expect(r.verdict, text).toBe('PASS');
      // The observers saw traffic in both clusters during the run (a run that saw nothing proves nothing).
      for (const [cluster, seconds] of Object.entries(r.timeline))
        expect(
          seconds.reduce((n, s) => n + s.ok, 0),
          `${cluster}: calls answered`,
        ).toBeGreaterThan(50);
    });
});
