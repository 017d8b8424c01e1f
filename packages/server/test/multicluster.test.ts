// Issue 7, end to end: two clusters (east, west), each a 3-member etcd and two meridiand processes,
// joined over a NATS gateway pair (JetStream on) whose gateway links can be cut. One set of clusters
// for the whole file; the tests run in order and build on each other (the last one kills east's
// leader). Traffic: grpc-js backends in this process, registered as WorkloadEntries in their
// cluster, and a @grpc/grpc-js-xds client process bootstrapped against a west replica.
import { TypeUrl } from '@meridian/envoy';

import { EtcdStore, Keyspace } from '@meridian/store';
import { type EtcdCluster, eventually, freePorts, SimulatedProxy, startEtcdCluster } from '@meridian/testkit';
import { connect } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IMPORT_CACHE_KEY } from '../src/federation.js';
import { ReplicaProcess, startReplicas, xdsClient } from './harness.js';
import {
  Backend,
  type CallResult,
  ClientProcess,
  claResponses,
  latestCla,
  type NatsPair,
  startNatsPair,
} from './multicluster-harness.js';

const HOST = 'echo.default.svc.cluster.local';
const PORT = 7070;
const TARGET = `${HOST}:${PORT}`;
const CLA = `outbound|${PORT}||${HOST}`;
/** West replica 0 keeps the default grace (30 s); west replica 1 a short one (cut tests). */
const PATIENT_GRACE_S = 30;
const SHORT_GRACE_S = 5;
const REGION = { east: 'us-east1', west: 'us-west1' } as const;
type ClusterName = keyof typeof REGION;

const SERVICE = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo, namespace: default}
spec:
  hosts: [${HOST}]
  location: MESH_INTERNAL
  ports: [{number: ${PORT}, name: grpc, protocol: GRPC}]
  resolution: STATIC
  workloadSelector: {labels: {app: echo}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: default}
spec:
  host: ${HOST}
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 5, interval: 1s, baseEjectionTime: 30s}
`;

function workloadEntry(cluster: ClusterName, name: string, address: string, port: number): string {
  return `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ${name}, namespace: default}
spec:
  address: ${address}
  ports: {grpc: ${port}}
  labels: {app: echo}
  locality: ${REGION[cluster]}/${REGION[cluster]}-a
  network: net1
`;
}

const log = (msg: string, fields: Record<string, unknown>) =>
  process.stdout.write(`[multicluster] ${msg} ${JSON.stringify(fields)}\n`);

let nats: NatsPair;
const etcd: Partial<Record<ClusterName, EtcdCluster>> = {};
const replicas: Record<ClusterName, ReplicaProcess[]> = { east: [], west: [] };
const backends: Record<ClusterName, Backend[]> = {
  east: [new Backend('east-0'), new Backend('east-1')],
  west: [new Backend('west-0'), new Backend('west-1')],
};
const extraBackend = new Backend('east-2');
const proxies: SimulatedProxy[] = [];
const grpcClients: { close(): void }[] = [];
let client: ClientProcess | undefined;
/** East's endpoints after the burst (set by the leader-kill test). */
let finalEast: string[] = [];

/** A recording Delta proxy (no locality: no priorities) watching the echo CLA on `replica`. */
function watchCla(replica: ReplicaProcess, cluster: ClusterName, cla = CLA, network = ''): SimulatedProxy {
  const p = new SimulatedProxy({
    nodeId: `sidecar~10.240.0.${proxies.length + 1}~watcher-${proxies.length}.default~default.svc.cluster.local`,
    metadata: {
      NAMESPACE: 'default',
      CLUSTER_ID: cluster,
      LABELS: { app: 'watcher' },
      ...(network ? { NETWORK: network } : {}),
    },
    variant: 'delta',
    record: true,
    subscriptions: [{ typeUrl: TypeUrl.ClusterLoadAssignment, names: [cla] }],
  });
  const c = xdsClient(replica.xds);
  grpcClients.push(c);
  p.connect(c);
  proxies.push(p);
  return p;
}

const addrs = (list: readonly Backend[]) => list.map((b) => `127.0.0.1:${b.port}`).sort();
const eastOf = (cla: ReturnType<typeof latestCla>): string[] =>
  (cla ?? [])
    .filter((e) => e.region === REGION.east)
    .map((e) => e.address)
    .sort();

beforeAll(async () => {
  const [pair, east, west] = await Promise.all([
    startNatsPair(),
    startEtcdCluster({ size: 3, fastElection: true }),
    startEtcdCluster({ size: 3, fastElection: true }),
  ]);
  nats = pair;
  etcd.east = east;
  etcd.west = west;
  const ports = await freePorts(8);
  const spec = (cluster: ClusterName, i: number, grace: number) => ({
    id: `${cluster}-${i}`,
    etcd: etcd[cluster]!.endpoints,
    xdsPort: ports[(cluster === 'east' ? 0 : 4) + i * 2]!,
    adminPort: ports[(cluster === 'east' ? 0 : 4) + i * 2 + 1]!,
    extraArgs: [
      '--cluster-id',
      cluster,
      '--locality',
      `${REGION[cluster]}/${REGION[cluster]}-a`,
      '--nats-url',
      (cluster === 'east' ? nats.east : nats.west).url,
      ...(grace === PATIENT_GRACE_S ? [] : ['--federation-grace', String(grace)]),
      '--debounce-ms',
      '20',
    ],
  });
  const [e, w] = await Promise.all([
    startReplicas([spec('east', 0, PATIENT_GRACE_S), spec('east', 1, PATIENT_GRACE_S)]),
    startReplicas([spec('west', 0, PATIENT_GRACE_S), spec('west', 1, SHORT_GRACE_S)]),
  ]);
  replicas.east = e;
  replicas.west = w;
  for (const b of [...backends.east, ...backends.west, extraBackend]) await b.start();
  for (const cluster of ['east', 'west'] as const) {
    const docs = [
      SERVICE,
      ...backends[cluster].map((b) => workloadEntry(cluster, b.name, '127.0.0.1', b.port)),
    ];
    const res = await replicas[cluster][0]!.apply(docs.join('---\n'));
    expect(res.status, JSON.stringify(res.body)).toBe(200);
  }
}, 180_000);

afterAll(async () => {
  for (const p of proxies) p.disconnect();
  for (const c of grpcClients) c.close();
  await client?.stop();
  for (const b of [...backends.east, ...backends.west, extraBackend]) b.stop();
  await Promise.all([...replicas.east, ...replicas.west].map((r) => r.kill('SIGKILL')));
  await Promise.all([etcd.east?.stop(), etcd.west?.stop(), nats?.stop()]);
}, 60_000);

/** The replica that exports for `cluster` (its leader), by /debug/federation. */
async function exporterOf(cluster: ClusterName): Promise<ReplicaProcess> {
  let found: ReplicaProcess | undefined;
  await eventually(
    `an exporting replica in ${cluster}`,
    async () => {
      for (const r of replicas[cluster]) {
        if (!r.running) continue;
        const s = await r.getJson<{ exporting: boolean }>('/debug/federation');
        if (s.exporting) found = r;
      }
      return found !== undefined;
    },
    30_000,
    100,
  );
  return found!;
}

describe('two clusters federated over NATS', { timeout: 120_000 }, () => {
  it('every west replica serves east endpoints; a backend added in east shows up in west EDS', async () => {
    const watchers = replicas.west.map((r) => watchCla(r, 'west'));
    await eventually(
      'east and west endpoints in both west replicas',
      () =>
        watchers.every((w) => {
          const cla = latestCla(w, CLA) ?? [];
          return cla.length === 4 && eastOf(cla).length === 2;
        }),
      60_000,
      50,
    );
    for (const w of watchers)
      expect(latestCla(w, CLA)!.map((e) => e.address)).toEqual(addrs([...backends.east, ...backends.west]));

    const before = watchers.map(claResponses);
    const at = performance.now();
    const res = await replicas.east[1]!.apply(
      workloadEntry('east', 'east-2', '127.0.0.1', extraBackend.port),
    );
    expect(res.status).toBe(200);
    await eventually(
      'east-2 in west EDS',
      () => watchers.every((w) => eastOf(latestCla(w, CLA)).includes(`127.0.0.1:${extraBackend.port}`)),
      30_000,
      10,
    );
    log('east register -> west EDS', { ms: Math.round(performance.now() - at) });
    for (const [i, w] of watchers.entries()) expect(claResponses(w)).toBeGreaterThan(before[i]!);
    const status = await replicas.west[0]!.getJson<{ remoteClusters: { cluster: string; stale: boolean }[] }>(
      '/debug/federation',
    );
    expect(status.remoteClusters.map((c) => [c.cluster, c.stale])).toEqual([['east', false]]);
  });

  it('a grpc-js-xds client in west uses west backends, fails over to east within 5 s and comes back', async () => {
    client = await ClientProcess.start(replicas.west[0]!.xds, 'west', REGION.west, `${REGION.west}-a`);
    await eventually(
      'first successful call',
      async () => (await client!.call(TARGET, 2000)).code === 0,
      60_000,
      200,
    );
    const steady = await client.many(TARGET, 100);
    expect(steady.every((r) => r.code === 0 && r.backend?.startsWith('west-'))).toBe(true);

    await client.loadStart(TARGET);
    await new Promise((r) => setTimeout(r, 500));
    for (const b of backends.west) b.stop();
    const killedAt = Date.now();
    await eventually(
      'east serving',
      async () => {
        const r = await client!.call(TARGET, 2000);
        return r.code === 0 && r.backend!.startsWith('east-');
      },
      30_000,
      100,
    );
    await new Promise((r) => setTimeout(r, 3000));
    const results: CallResult[] = await client.loadStop();
    const after = results.filter((r) => r.at > killedAt).sort((a, b) => a.at - b.at);
    const firstEast = after.findIndex((r) => r.code === 0 && r.backend!.startsWith('east-'));
    expect(firstEast).toBeGreaterThanOrEqual(0);
    const failoverMs = after[firstEast]!.at - killedAt;
    const failedBefore = after.slice(0, firstEast).filter((r) => r.code !== 0).length;
    const failedAfter = after.slice(firstEast).filter((r) => r.code !== 0);
    log('failover west -> east', {
      failoverMs,
      failedBefore,
      callsAfter: after.length - firstEast,
      failedAfter: failedAfter.length,
    });
    expect(failoverMs).toBeLessThan(5000);
    expect(failedAfter).toEqual([]);
    expect(after.slice(firstEast).every((r) => r.backend?.startsWith('east-'))).toBe(true);

    const restoredAt = Date.now();
    for (const b of backends.west) await b.start();
    await eventually(
      'traffic back to west',
      async () =>
        (await client!.many(TARGET, 20)).every((r) => r.code === 0 && r.backend?.startsWith('west-')),
      60_000,
      250,
    );
    log('traffic back to west', { ms: Date.now() - restoredAt });
  });

  it('east cut off for 10 s: no push in the patient west replica; the short-grace one marks east UNHEALTHY, then HEALTHY', async () => {
    const [patient, hasty] = proxies as [SimulatedProxy, SimulatedProxy];
    const patientBefore = claResponses(patient);
    const cutAt = performance.now();
    await nats.cut();
    await eventually(
      'east UNHEALTHY in the short-grace replica',
      () => {
        const east = (latestCla(hasty, CLA) ?? []).filter((e) => e.region === REGION.east);
        return east.length === 3 && east.every((e) => e.health === 'UNHEALTHY');
      },
      30_000,
      50,
    );
    const unhealthyAfterMs = performance.now() - cutAt;
    await new Promise((r) => setTimeout(r, Math.max(0, 10_000 - (performance.now() - cutAt))));
    await nats.heal();
    const healedAt = performance.now();
    await eventually(
      'east HEALTHY again in the short-grace replica',
      () => {
        const east = (latestCla(hasty, CLA) ?? []).filter((e) => e.region === REGION.east);
        return east.length === 3 && east.every((e) => e.health === 'HEALTHY');
      },
      30_000,
      50,
    );
    const outageMs = performance.now() - cutAt;
    log('gateway cut', {
      unhealthyAfterMs: Math.round(unhealthyAfterMs),
      outageMs: Math.round(outageMs),
      healthyAfterHealMs: Math.round(performance.now() - healedAt),
    });
    expect(outageMs).toBeLessThan(PATIENT_GRACE_S * 1000); // precondition of the no-push check
    // East heard again by the patient replica (heartbeats flow), then nothing was pushed to its proxy.
    await eventually(
      'east heard by the patient replica',
      async () => {
        const s = await replicas.west[0]!.getJson<{ remoteClusters: { heardAgoMs?: number }[] }>(
          '/debug/federation',
        );
        return (s.remoteClusters[0]?.heardAgoMs ?? Number.POSITIVE_INFINITY) < 3000;
      },
      30_000,
      100,
    );
    await new Promise((r) => setTimeout(r, 1000));
    expect(claResponses(patient)).toBe(patientBefore);
  });

  it('a message forged with another origin is rejected and changes nothing', async () => {
    const nc = await connect({ servers: nats.west.url });
    try {
      const before = latestCla(proxies[0]!, CLA);
      const forged = {
        v: 1,
        kind: 'service',
        mesh: 'test',
        origin: 'west',
        epoch: 1e12,
        seq: 1,
        namespace: 'default',
        hostname: HOST,
        deleted: true,
        endpoints: [],
        exportedAt: new Date().toISOString(),
      };
      nc.publish(`meridian.test.fed.east.svc.default.${HOST}`, JSON.stringify(forged));
      await nc.flush();
      await eventually(
        'the forged message rejected by every west replica',
        async () => {
          for (const r of replicas.west) {
            const s = await r.getJson<{ rejected: Record<string, number> }>('/debug/federation');
            if (!(s.rejected.origin_mismatch ?? 0)) return false;
          }
          return true;
        },
        15_000,
        100,
      );
      expect(latestCla(proxies[0]!, CLA)).toEqual(before);
      const metrics = await replicas.west[0]!.text('/metrics');
      expect(metrics.body).toMatch(
        /meridian_federation_messages_rejected(_total)?\{[^}]*reason="origin_mismatch"[^}]*\} [1-9]/,
      );
    } finally {
      await nc.close();
    }
  });

  it("a west proxy in another network reaches east's endpoints of network net-east through east's gateway", async () => {
    const ratings = 'ratings.default.svc.cluster.local';
    const cla = `outbound|9080||${ratings}`;
    const res = await replicas.east[0]!.apply(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: default}
spec:
  hosts: [${ratings}]
  location: MESH_INTERNAL
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.66.0.1, network: net-east, locality: us-east1/us-east1-a}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: eastwest
  namespace: istio-system
  labels: {topology.istio.io/network: net-east}
spec:
  hosts: [eastwest.istio-system.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 15443, name: tls, protocol: TLS}]
  resolution: STATIC
  workloadSelector: {labels: {istio: eastwestgateway}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: eastwest-0, namespace: istio-system}
spec:
  address: 192.0.2.50
  ports: {tls: 15443}
  labels: {istio: eastwestgateway}
  network: net-east
  locality: us-east1/us-east1-a
`);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const inWestNet = watchCla(replicas.west[0]!, 'west', cla, 'net-west');
    const noNetwork = watchCla(replicas.west[0]!, 'west', cla);
    const inEastNet = watchCla(replicas.east[0]!, 'east', cla, 'net-east');
    const addresses = (p: SimulatedProxy) => (latestCla(p, cla) ?? []).map((e) => e.address);
    const seen = () => [addresses(inWestNet), addresses(noNetwork), addresses(inEastNet)];
    const want = [['192.0.2.50:15443'], ['10.66.0.1:9080'], ['10.66.0.1:9080']];
    await eventually(
      'ratings endpoints as each network sees them',
      () => JSON.stringify(seen()) === JSON.stringify(want),
      30_000,
      20,
    ).catch((error: Error) => {
      throw new Error(`${error.message}; seen (net-west, no network, net-east): ${JSON.stringify(seen())}`);
    });
    expect(latestCla(inWestNet, cla)![0]!.region).toBe(REGION.east);
  });

  it("east's leader killed during a burst of endpoint changes: west ends with east's final state", async () => {
    const leader = await exporterOf('east');
    const other = replicas.east.find((r) => r !== leader)!;
    let applied = 0;
    const eastWatcher = watchCla(other, 'east');
    const westWatcher = proxies[0]!;
    // 30 changes through the surviving replica: add 10.77.0.1..20, then remove the odd ones.
    const burst = (async () => {
      for (let i = 1; i <= 20; i++) {
        expect((await other.apply(workloadEntry('east', `burst-${i}`, `10.77.0.${i}`, 9000))).status).toBe(
          200,
        );
        applied++;
      }
      for (let i = 1; i <= 20; i += 2) {
        const res = await other.api('DELETE', `/apis/v1/config/WorkloadEntry/default/burst-${i}`);
        expect(res.status).toBe(200);
        applied++;
      }
    })();
    await eventually('burst under way', () => (latestCla(eastWatcher, CLA)?.length ?? 0) >= 10, 30_000, 10);
    await leader.kill('SIGKILL');
    const killedAt = performance.now();
    const appliedBeforeKill = applied;
    await burst;
    const expected = [
      ...addrs([...backends.east, extraBackend]),
      ...Array.from({ length: 10 }, (_, k) => `10.77.0.${2 * k + 2}:9000`),
    ].sort();
    await eventually(
      "east's final state in east",
      () => JSON.stringify(eastOf(latestCla(eastWatcher, CLA))) === JSON.stringify(expected),
      30_000,
      20,
    );
    await eventually(
      "east's final state in west",
      () => JSON.stringify(eastOf(latestCla(westWatcher, CLA))) === JSON.stringify(expected),
      60_000,
      20,
    );
    const newExporter = await exporterOf('east');
    expect(newExporter).toBe(other);
    log('leader killed during burst', {
      appliedBeforeKill,
      changes: 30,
      convergedAfterKillMs: Math.round(performance.now() - killedAt),
    });
    expect(appliedBeforeKill).toBeLessThan(30); // the kill happened during the burst
    await eventually(
      "east's final state in the other west replica",
      () => JSON.stringify(eastOf(latestCla(proxies[1]!, CLA))) === JSON.stringify(expected),
      30_000,
      20,
    );
    finalEast = expected;
  });

  it('a west replica started while NATS is unreachable serves the last import from its etcd cache', async () => {
    // The cache (saved by both west replicas, one key) holds east's final state.
    const store = await EtcdStore.connect({
      endpoints: etcd.west!.endpoints,
      keyspace: Keyspace.of('test', 'west'),
    });
    try {
      await eventually(
        'the import cache in etcd holds the final state',
        async () => {
          const kv = await store.get(IMPORT_CACHE_KEY);
          const text = kv ? new TextDecoder().decode(kv.value) : '';
          return text.includes('10.77.0.20') && !text.includes('"10.77.0.19"');
        },
        30_000,
        200,
      );
    } finally {
      await store.close();
    }
    const old = replicas.west[1]!;
    await old.kill('SIGKILL');
    const [deadNats] = await freePorts(1);
    const args = [...(old.spec.extraArgs ?? [])];
    args[args.indexOf('--nats-url') + 1] = `nats://127.0.0.1:${deadNats}`;
    const restarted = new ReplicaProcess({ ...old.spec, extraArgs: args });
    replicas.west[1] = restarted;
    await restarted.start();
    const w = watchCla(restarted, 'west');
    await eventually(
      'cached east endpoints served',
      () => JSON.stringify(eastOf(latestCla(w, CLA))) === JSON.stringify(finalEast),
      30_000,
      20,
    );
    const s = await restarted.getJson<{ natsConnected: boolean }>('/debug/federation');
    expect(s.natsConnected).toBe(false);
  });
});
