// Real traffic through Meridian's ADS server and this package's translation, with @grpc/grpc-js-xds
// clients and real grpc-js backends: weighted split, header A/B, subset routing, locality weights.
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
metadata: { name: canary, namespace: grpc }
spec:
  host: canary
  subsets:
  - { name: v1, labels: { version: v1 } }
  - { name: v2, labels: { version: v2 } }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: canary, namespace: grpc }
spec:
  hosts: [canary]
  http:
  - route:
    - { destination: { host: canary, subset: v1 }, weight: 90 }
    - { destination: { host: canary, subset: v2 }, weight: 10 }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ab, namespace: grpc }
spec:
  host: ab
  subsets:
  - { name: a, labels: { version: a } }
  - { name: b, labels: { version: b } }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ab, namespace: grpc }
spec:
  hosts: [ab]
  http:
  - match:
    - headers: { end-user: { exact: jason } }
    route:
    - destination: { host: ab, subset: b }
  - route:
    - destination: { host: ab, subset: a }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: subset, namespace: grpc }
spec:
  host: subset
  subsets:
  - { name: blue, labels: { color: blue } }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: subset, namespace: grpc }
spec:
  hosts: [subset]
  http:
  - route:
    - destination: { host: subset, subset: blue }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: zones, namespace: grpc }
spec:
  host: zones
  trafficPolicy:
    loadBalancer:
      localityLbSetting:
        distribute:
        - from: us-east1/us-east1-b/*
          to:
            "us-east1/us-east1-b/*": 75
            "us-east1/us-east1-c/*": 25
`;

let mesh: Mesh | undefined;
let clients: ClientProcess | undefined;
const backends = new Map<string, Backend[]>();
const host = (name: string) => `${name}.grpc.svc.cluster.local`;

beforeAll(async () => {
  backends.set(host('canary'), [
    await startBackend('canary-v1', { app: 'canary', version: 'v1' }),
    await startBackend('canary-v2', { app: 'canary', version: 'v2' }),
  ]);
  backends.set(host('ab'), [
    await startBackend('ab-a', { app: 'ab', version: 'a' }),
    await startBackend('ab-b', { app: 'ab', version: 'b' }),
  ]);
  backends.set(host('subset'), [
    await startBackend('subset-red-1', { app: 'subset', color: 'red' }),
    await startBackend('subset-blue-1', { app: 'subset', color: 'blue' }),
    await startBackend('subset-red-2', { app: 'subset', color: 'red' }),
    await startBackend('subset-blue-2', { app: 'subset', color: 'blue' }),
  ]);
  backends.set(host('zones'), [
    await startBackend('zones-b', { app: 'zones' }, {}, 'us-east1/us-east1-b/'),
    await startBackend('zones-c', { app: 'zones' }, {}, 'us-east1/us-east1-c/'),
  ]);
  const services = ['canary', 'ab', 'subset', 'zones'].map((n) => grpcService(n, 'grpc', 7070));
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

describe('traffic: routing through Meridian-translated xDS (grpc-js-xds)', { timeout: 120_000 }, () => {
  it('splits 90/10 between two subsets within 3 percentage points over 2,000 RPCs', async () => {
    const c = client('canary');
    await c.ready();
    const counts = countBy(await c.many(2000));
    const v2 = (counts['canary-v2'] ?? 0) / 2000;
    console.log('90/10 split:', counts);
    expect(counts['canary-v1'] ?? 0).toBeGreaterThan(0);
    expect(Object.keys(counts).sort()).toEqual(['canary-v1', 'canary-v2']);
    expect(Math.abs(v2 - 0.1)).toBeLessThanOrEqual(0.03);
  });

  it('routes by header: end-user=jason reaches subset b, everyone else subset a', async () => {
    const c = client('ab');
    await c.ready();
    expect(countBy(await c.many(100, { 'end-user': 'jason' }))).toEqual({ 'ab-b': 100 });
    expect(countBy(await c.many(100, { 'end-user': 'mary' }))).toEqual({ 'ab-a': 100 });
    expect(countBy(await c.many(100))).toEqual({ 'ab-a': 100 });
  });

  it('a subset route reaches only the pods with the subset labels', async () => {
    const c = client('subset');
    await c.ready();
    const counts = countBy(await c.many(400));
    console.log('subset blue:', counts);
    expect(Object.keys(counts).sort()).toEqual(['subset-blue-1', 'subset-blue-2']);
  });

  it('locality weights (distribute 75/25) split traffic between zones', async () => {
    const c = client('zones');
    await c.ready();
    const counts = countBy(await c.many(2000));
    const share = (counts['zones-c'] ?? 0) / 2000;
    console.log('locality 75/25:', counts);
    expect(Object.keys(counts).sort()).toEqual(['zones-b', 'zones-c']);
    expect(Math.abs(share - 0.25)).toBeLessThanOrEqual(0.04);
  });
});
