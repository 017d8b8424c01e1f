// Real traffic: retries, route timeouts and fault injection (gRFCs A44, A31, A33) configured by
// Istio VirtualServices, translated by this package, served by Meridian's ADS server to a
// @grpc/grpc-js-xds client.
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

const UNAVAILABLE = 14;
const DEADLINE_EXCEEDED = 4;
const PERMISSION_DENIED = 7;

const CONFIG = `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: retry, namespace: grpc }
spec:
  hosts: [retry]
  http:
  - retries: { attempts: 2, retryOn: unavailable }
    route:
    - destination: { host: retry }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: noretry, namespace: grpc }
spec:
  hosts: [noretry]
  http:
  - retries: { attempts: 0 }
    route:
    - destination: { host: noretry }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: slow, namespace: grpc }
spec:
  hosts: [slow]
  http:
  - timeout: 500ms
    route:
    - destination: { host: slow }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: abort, namespace: grpc }
spec:
  hosts: [abort]
  http:
  - fault:
      abort:
        grpcStatus: PERMISSION_DENIED
        percentage: { value: 50 }
    route:
    - destination: { host: abort }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: delay, namespace: grpc }
spec:
  hosts: [delay]
  http:
  - match:
    - headers: { x-delay: { exact: "yes" } }
    fault:
      delay:
        fixedDelay: 800ms
        percentage: { value: 100 }
    route:
    - destination: { host: delay }
  - route:
    - destination: { host: delay }
`;

let mesh: Mesh | undefined;
let clients: ClientProcess | undefined;
const backends = new Map<string, Backend[]>();
const host = (name: string) => `${name}.grpc.svc.cluster.local`;

beforeAll(async () => {
  backends.set(host('retry'), [await startBackend('retry-1', { app: 'retry' }, { failFirstAttempt: true })]);
  backends.set(host('noretry'), [
    await startBackend('noretry-1', { app: 'noretry' }, { failFirstAttempt: true }),
  ]);
  backends.set(host('slow'), [await startBackend('slow-1', { app: 'slow' }, { delayMs: 3000 })]);
  backends.set(host('abort'), [await startBackend('abort-1', { app: 'abort' })]);
  backends.set(host('delay'), [await startBackend('delay-1', { app: 'delay' })]);
  const services = ['retry', 'noretry', 'slow', 'abort', 'delay'].map((n) => grpcService(n, 'grpc', 7070));
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

/** Waits until the client has the target's config: the first call reaches a backend or a fault. */
async function warm(name: string, accept: (code: number) => boolean): Promise<void> {
  const until = Date.now() + 45_000;
  for (;;) {
    const r = await client(name).call({}, 5000);
    if (accept(r.code)) return;
    if (Date.now() > until) throw new Error(`${name}: no answer from the mesh (last status ${r.code})`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

describe('traffic: resilience through Meridian-translated xDS (grpc-js-xds)', { timeout: 120_000 }, () => {
  it('a retry policy turns a first-attempt UNAVAILABLE into success; without it the call fails', async () => {
    await warm('retry', (code) => code === 0);
    const withRetry = await client('retry').many(50, {}, 5);
    expect(countBy(withRetry)).toEqual({ 'retry-1': 50 });
    await warm('noretry', (code) => code === UNAVAILABLE);
    const withoutRetry = await client('noretry').many(20, {}, 5);
    expect(countBy(withoutRetry)).toEqual({ [`status:${UNAVAILABLE}`]: 20 });
  });

  it('a route timeout ends a slow call with DEADLINE_EXCEEDED near the configured 500 ms', async () => {
    await warm('slow', (code) => code === DEADLINE_EXCEEDED);
    const results = await client('slow').many(5, {}, 5, 10_000);
    const ms = results.map((r) => Math.round(r.ms));
    console.log('timeout 500ms, observed (ms):', ms);
    for (const r of results) {
      expect(r.code).toBe(DEADLINE_EXCEEDED);
      expect(r.ms).toBeGreaterThanOrEqual(450);
      expect(r.ms).toBeLessThan(2500);
    }
  });

  it('fault abort at 50% aborts 50% +/- 5% of 2,000 calls with the configured code', async () => {
    await warm('abort', (code) => code === 0 || code === PERMISSION_DENIED);
    const counts = countBy(await client('abort').many(2000, {}, 40));
    console.log('abort 50%:', counts);
    expect(Object.keys(counts).sort()).toEqual(['abort-1', `status:${PERMISSION_DENIED}`]);
    const aborted = (counts[`status:${PERMISSION_DENIED}`] ?? 0) / 2000;
    expect(Math.abs(aborted - 0.5)).toBeLessThanOrEqual(0.05);
  });

  it('fault delay delays matching calls by the configured 800 ms, others not', async () => {
    await warm('delay', (code) => code === 0);
    const delayed = await client('delay').many(5, { 'x-delay': 'yes' }, 5);
    const plain = await client('delay').many(5, {}, 5);
    console.log(
      'delay 800ms (ms):',
      delayed.map((r) => Math.round(r.ms)),
      'undelayed (ms):',
      plain.map((r) => Math.round(r.ms)),
    );
    for (const r of delayed) {
      expect(r.code).toBe(0);
      expect(r.ms).toBeGreaterThanOrEqual(750);
    }
    // Undelayed calls are not held: well below the delayed ones (a margin for a busy machine).
    const mid = (xs: typeof plain) => [...xs].sort((a, b) => a.ms - b.ms)[Math.floor(xs.length / 2)]?.ms ?? 0;
    for (const r of plain) expect(r.code).toBe(0);
    expect(mid(plain)).toBeLessThan(mid(delayed) - 400);
  });
});
