// Fault scenario (issue 7): east's exporting leader is cut off from its etcd (every etcd connection of
// that replica goes through a fault-injecting TCP proxy) while it stays connected to NATS. Expected:
// its lease lapses, it stops exporting at once (its term ended), the other east replica is elected
// and exports with a larger epoch, changes made meanwhile reach west, and when the cut heals the old
// leader rejoins as a follower and does not export again. West never loses east's endpoints.

import { TypeUrl } from '@meridian/envoy';
import {
  eventually,
  freePorts,
  SimulatedProxy,
  startEtcd,
  startEtcdCluster,
  startNatsSupercluster,
  type TcpProxy,
  tcpProxy,
} from '@meridian/testkit';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type ReplicaProcess, startReplicas, xdsClient } from './harness.js';
import { latestCla } from './multicluster-harness.js';

type Stop = () => Promise<unknown>;
const stops: Stop[] = [];
let east0: ReplicaProcess;
let east1: ReplicaProcess;
let west: ReplicaProcess;
/** Each east replica reaches etcd only through its own proxies (one per member). */
const etcdProxies = new Map<ReplicaProcess, TcpProxy[]>();

interface Federation {
  exporting: boolean;
  epoch?: number;
  remoteClusters: { cluster: string; epoch: number; stale: boolean; services: number }[];
}

const entry = (name: string, address: string) => `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ${name}, namespace: default}
spec:
  address: ${address}
  ports: {http: 9080}
  labels: {app: echo}
  locality: us-east1/us-east1-a
`;
const SERVICE = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: echo}}
`;

const CLA = 'outbound|9080||echo.default.svc.cluster.local';
let watcher: SimulatedProxy;
/** Addresses in the echo ClusterLoadAssignment a proxy connected to west holds. */
const westSees = () => (latestCla(watcher, CLA) ?? []).map((e) => e.address);

beforeAll(async () => {
  const [sc, etcdEast, etcdWest] = await Promise.all([
    startNatsSupercluster({ clusters: [{ name: 'east' }, { name: 'west' }], jetstream: true }),
    startEtcdCluster({ size: 3, fastElection: true }),
    startEtcd(),
  ]);
  stops.push(
    () => sc.stop(),
    () => etcdEast.stop(),
    () => etcdWest.stop(),
  );
  const proxied = async () => {
    const list: TcpProxy[] = [];
    for (const url of etcdEast.endpoints) {
      const u = new URL(url);
      const p = await tcpProxy({ target: { host: u.hostname, port: Number(u.port) } });
      list.push(p);
      stops.push(() => p.close());
    }
    return list;
  };
  const proxies0 = await proxied();
  const proxies1 = await proxied();
  const ports = await freePorts(6);
  const args = (cluster: 'east' | 'west', nats: string) => [
    '--cluster-id',
    cluster,
    '--locality',
    cluster === 'east' ? 'us-east1/us-east1-a' : 'us-west1/us-west1-a',
    '--nats-url',
    nats,
    '--debounce-ms',
    '20',
  ];
  [east0, east1, west] = (await startReplicas([
    {
      id: 'east-0',
      etcd: proxies0.map((p) => `http://${p.address}`),
      xdsPort: ports[0]!,
      adminPort: ports[1]!,
      extraArgs: args('east', sc.clusters.east![0]!.url),
    },
    {
      id: 'east-1',
      etcd: proxies1.map((p) => `http://${p.address}`),
      xdsPort: ports[2]!,
      adminPort: ports[3]!,
      extraArgs: args('east', sc.clusters.east![0]!.url),
    },
    {
      id: 'west-0',
      etcd: etcdWest.endpoints,
      xdsPort: ports[4]!,
      adminPort: ports[5]!,
      extraArgs: args('west', sc.clusters.west![0]!.url),
    },
  ])) as [ReplicaProcess, ReplicaProcess, ReplicaProcess];
  etcdProxies.set(east0, proxies0);
  etcdProxies.set(east1, proxies1);
  stops.push(
    () => east0.kill('SIGKILL'),
    () => east1.kill('SIGKILL'),
    () => west.kill('SIGKILL'),
  );
  expect((await east1.apply([SERVICE, entry('e1', '10.5.0.1')].join('---\n'))).status).toBe(200);
  expect((await west.apply(SERVICE)).status).toBe(200);
  watcher = new SimulatedProxy({
    nodeId: 'sidecar~10.240.0.1~watcher.default~default.svc.cluster.local',
    metadata: { NAMESPACE: 'default', CLUSTER_ID: 'west' },
    variant: 'delta',
    record: true,
    subscriptions: [{ typeUrl: TypeUrl.ClusterLoadAssignment, names: [CLA] }],
  });
  const client = xdsClient(west.xds);
  watcher.connect(client);
  stops.push(async () => {
    watcher.disconnect();
    client.close();
  });
}, 180_000);

afterAll(async () => {
  for (const stop of stops.reverse()) await stop().catch(() => undefined);
}, 60_000);

it('the exporting leader cut off from etcd stops exporting; the new leader exports with a larger epoch', async () => {
  await eventually('west imports east', () => westSees().includes('10.5.0.1:9080'), 30_000, 50);
  const status = (r: ReplicaProcess) => r.getJson<Federation>('/debug/federation');
  let leader: ReplicaProcess | undefined;
  await eventually(
    'an exporting east replica',
    async () => {
      for (const r of [east0, east1]) if ((await status(r)).exporting) leader = r;
      return leader !== undefined;
    },
    30_000,
    100,
  );
  const old = leader!;
  const next = old === east0 ? east1 : east0;
  const eastInWest = async () => (await status(west)).remoteClusters.find((c) => c.cluster === 'east');
  await eventually(
    "west on the leader's epoch",
    async () => (await eastInWest())?.epoch === (await status(old)).epoch,
    30_000,
    100,
  );
  const epoch1 = (await status(old)).epoch!;

  const cutAt = performance.now();
  await Promise.all(etcdProxies.get(old)!.map((p) => p.cut()));
  const stoppedMsStart = performance.now();
  await eventually('the old leader stops exporting', async () => !(await status(old)).exporting, 30_000, 50);
  const stoppedMs = performance.now() - stoppedMsStart;
  await eventually('the other replica exporting', async () => (await status(next)).exporting, 30_000, 50);
  const epoch2 = (await status(next)).epoch!;
  expect(epoch2).toBeGreaterThan(epoch1);
  // A change during the cut, through the new leader, reaches west.
  expect((await next.apply(entry('e2', '10.5.0.2'))).status).toBe(200);
  await eventually('west sees e2', () => westSees().includes('10.5.0.2:9080'), 30_000, 50);
  expect(await eastInWest()).toMatchObject({ epoch: epoch2, stale: false });
  process.stdout.write(
    `[multicluster-partition] leader cut from etcd: stopped exporting after ${Math.round(stoppedMs)} ms; new epoch ${epoch2} > ${epoch1}, exported after ${Math.round(performance.now() - cutAt)} ms\n`,
  );

  await Promise.all(etcdProxies.get(old)!.map((p) => p.heal()));
  await eventually(
    'the old leader back as a follower',
    async () => {
      const l = await old.getJson<{ isLeader: boolean; leader?: string }>('/debug/leader');
      return !l.isLeader && l.leader === next.spec.id;
    },
    60_000,
    100,
  );
  // A change through the old leader is exported by the new one; the old one stays quiet.
  await eventually(
    'apply through the old leader',
    async () => (await old.apply(entry('e3', '10.5.0.3'))).status === 200,
    30_000,
    500,
  );
  await eventually('west sees e3', () => westSees().includes('10.5.0.3:9080'), 30_000, 50);
  expect(westSees()).toEqual(['10.5.0.1:9080', '10.5.0.2:9080', '10.5.0.3:9080']);
  expect(await eastInWest()).toMatchObject({ epoch: epoch2, stale: false });
  expect((await status(old)).exporting).toBe(false);
  expect((await status(next)).epoch).toBe(epoch2);
}, 180_000);
