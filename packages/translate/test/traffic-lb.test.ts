// Real traffic: DestinationRule load balancing through Meridian's translation and ADS server with a
// @grpc/grpc-js-xds client: consistent hash on a header (ring hash, gRFC A42) and outlier detection
// (gRFC A50, via the failure-percentage mapping of Istio's consecutive errors; see cluster.ts).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configFromYaml } from './fixtures.js';
import {
  type Backend,
  ClientProcess,
  countBy,
  grpcService,
  type Mesh,
  startBackend,
  startMesh,
} from './traffic-harness.js';

const CONFIG = `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: hash, namespace: grpc }
spec:
  host: hash
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpHeaderName: x-user
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: flaky, namespace: grpc }
spec:
  host: flaky
  trafficPolicy:
    loadBalancer: { simple: ROUND_ROBIN }
    outlierDetection:
      consecutive5xxErrors: 5
      interval: 1s
      baseEjectionTime: 60s
      maxEjectionPercent: 100
`;

let mesh: Mesh | undefined;
let clients: ClientProcess | undefined;
const backends = new Map<string, Backend[]>();
const host = (name: string) => `${name}.grpc.svc.cluster.local`;

beforeAll(async () => {
  backends.set(host('hash'), [
    await startBackend('hash-1', { app: 'hash' }),
    await startBackend('hash-2', { app: 'hash' }),
    await startBackend('hash-3', { app: 'hash' }),
  ]);
  backends.set(host('flaky'), [
    await startBackend('flaky-good-1', { app: 'flaky' }),
    await startBackend('flaky-bad', { app: 'flaky' }, { fail: true }),
    await startBackend('flaky-good-2', { app: 'flaky' }),
  ]);
  const services = ['hash', 'flaky'].map((n) => grpcService(n, 'grpc', 7070));
  mesh = await startMesh(configFromYaml(CONFIG), services, backends);
  clients = await ClientProcess.start(mesh.xdsPort);
});

afterAll(async () => {
  await clients?.stop();
  await mesh?.stop();
});

function client(name: string) {
  if (!clients) throw new Error('client process not started');
  return clients.target(`${host(name)}:7070`);
}

describe('traffic: load balancing through Meridian-translated xDS (grpc-js-xds)', {
  timeout: 120_000,
}, () => {
  it('consistent hash on x-user sends equal header values to one backend', async () => {
    const c = client('hash');
    await c.ready({ 'x-user': 'warmup' });
    // Ring hash connects lazily: let every backend get connected before measuring.
    for (let i = 0; i < 30; i++) await c.many(5, { 'x-user': `warm-${i}` }, 5);
    const used = new Set<string>();
    for (let u = 0; u < 20; u++) {
      const counts = countBy(await c.many(20, { 'x-user': `user-${u}` }, 5));
      expect(Object.keys(counts), `user-${u}: ${JSON.stringify(counts)}`).toHaveLength(1);
      const only = Object.keys(counts)[0] as string;
      expect(only.startsWith('hash-')).toBe(true);
      used.add(only);
    }
    console.log('consistent hash: 20 users over backends', [...used].sort());
    expect(used.size).toBeGreaterThan(1);
  });

  it('outlier detection stops sending to a backend that keeps failing', async () => {
    const c = client('flaky');
    await c.ready();
    const bad = backends.get(host('flaky'))?.find((b) => b.name === 'flaky-bad');
    const before = countBy(await c.many(60, {}, 3));
    console.log('before ejection:', before);
    expect(before[`status:14`] ?? 0).toBeGreaterThan(0);
    // Ejection happens at the next 1 s interval with enough failures; allow a few intervals.
    const until = Date.now() + 15_000;
    let after: Record<string, number> = {};
    while (Date.now() < until) {
      await c.many(30, {}, 3);
      await new Promise((res) => setTimeout(res, 300));
      const badCalls = bad?.calls ?? 0;
      after = countBy(await c.many(90, {}, 3));
      if ((bad?.calls ?? 0) === badCalls) break;
    }
    console.log('after ejection:', after);
    expect(after).not.toHaveProperty('flaky-bad');
    expect(after[`status:14`] ?? 0).toBe(0);
    expect(Object.keys(after).sort()).toEqual(['flaky-good-1', 'flaky-good-2']);
  });
});
