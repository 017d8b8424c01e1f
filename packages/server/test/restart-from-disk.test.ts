// Issue 15, item 3, end to end: a replica SIGKILLed and restarted while every etcd member is down
// serves its last-known-good snapshot from disk to a real @grpc/grpc-js-xds client (whose calls
// succeed), opens its admin and health ports at once and says so on /readyz and in metrics; a
// corrupted snapshot is refused with a log line and never served; when etcd returns, the replica
// catches up (a change made while it was down arrives) and only what changed is pushed.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TypeUrl } from '@meridian/envoy';
import {
  countByBackend,
  type DeltaResponseView,
  type EchoBackend,
  type EtcdCluster,
  eventually,
  freePorts,
  GrpcClientProcess,
  SimulatedProxy,
  startEchoBackend,
  startEtcdCluster,
} from '@meridian/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { snapshotFile } from '../src/disk-snapshot.js';
import { ALL_TYPES, ReplicaProcess, snapshotWritten, startReplicas, xdsClient } from './harness.js';

const HOST = 'echo.shop.svc.cluster.local';
const PORT = 7070;
const METHOD = '/meridian.test.Echo/Call';
const TARGET = `${HOST}:${PORT}`;

let tmp: string;
let etcd: EtcdCluster;
let a: ReplicaProcess;
let b: ReplicaProcess;
let backends: EchoBackend[] = [];
let backendPorts: number[] = [];
const clients: GrpcClientProcess[] = [];
const proxies: SimulatedProxy[] = [];

const echo = (port: number) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo, namespace: shop}
spec:
  hosts: [${HOST}]
  ports: [{number: ${PORT}, name: grpc, protocol: GRPC}]
  resolution: STATIC
  location: MESH_INTERNAL
  endpoints: [{address: 127.0.0.1, ports: {grpc: ${port}}}]
`;

function bootstrap(replica: ReplicaProcess, id: string): object {
  return {
    xds_servers: [
      { server_uri: replica.xds, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] },
    ],
    node: {
      id: `sidecar~127.0.0.1~${id}.shop~shop.svc.cluster.local`,
      metadata: { NAMESPACE: 'shop', GENERATOR: 'grpc', CLUSTER_ID: 'c1' },
      locality: { region: 'r1', zone: 'z1' },
    },
    server_listener_resource_name_template: 'xds.istio.io/grpc/lds/inbound/%s',
  };
}

async function grpcClient(replica: ReplicaProcess, id: string): Promise<GrpcClientProcess> {
  const c = await GrpcClientProcess.start(bootstrap(replica, id));
  clients.push(c);
  return c;
}

const readyz = async (r: ReplicaProcess) => {
  const res = await fetch(`${r.admin}/readyz`, { signal: AbortSignal.timeout(2000) });
  return { status: res.status, body: (await res.text()).trim() };
};

function replicaSpec(id: string, ports: number[], snapshotDir: string, extra: string[] = []) {
  return {
    id,
    etcd: etcd.endpoints,
    xdsPort: ports[0]!,
    adminPort: ports[1]!,
    extraArgs: [
      ...['--debounce-ms', '20', '--store-timeout-ms', '1000', '--snapshot-dir', snapshotDir],
      ...['--monitoring-address', `127.0.0.1:${ports[2]!}`],
      ...extra,
    ],
  };
}

let portsA: number[];

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'meridian-restart-disk-'));
  etcd = await startEtcdCluster({ size: 3, fastElection: true });
  const ports = await freePorts(6);
  portsA = ports.slice(0, 3);
  backends = [await startEchoBackend('echo-v1', METHOD), await startEchoBackend('echo-v2', METHOD)];
  backendPorts = backends.map((e) => e.port);
  [a, b] = (await startReplicas([
    replicaSpec('a', portsA, join(tmp, 'a')),
    replicaSpec('b', ports.slice(3, 6), join(tmp, 'b')),
  ])) as [ReplicaProcess, ReplicaProcess];
}, 180_000);

afterEach((ctx) => {
  if (ctx.task.result?.state !== 'fail') return;
  for (const r of [a, b]) console.log(`--- ${r?.spec.id}\n${r?.output.slice(-40).join('\n')}`);
});

afterAll(async () => {
  for (const p of proxies) p.disconnect();
  await Promise.all(clients.map((c) => c.stop()));
  for (const e of backends) e.server.forceShutdown();
  await Promise.all([a, b].map((r) => r?.kill('SIGKILL')));
  await etcd?.stop();
  await rm(tmp, { recursive: true, force: true });
});

describe('a replica restarted while etcd is down (issue 15, item 3)', () => {
  let applied: number;

  it('writes its last-known-good snapshot after each applied revision', async () => {
    const res = await a.apply(echo(backendPorts[0]!));
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    applied = res.body.revision as number;
    const client = await grpcClient(a, 'before');
    await client.ready(TARGET);
    expect(countByBackend(await client.many(TARGET, 10))).toEqual({ 'echo-v1': 10 });
    const file = snapshotFile(join(tmp, 'a'), 'test', 'c1');
    await snapshotWritten(file, applied);
  }, 120_000);

  it('SIGKILLed and restarted with every etcd member down: serves the snapshot at once to a grpc-js-xds client', async () => {
    await a.kill('SIGKILL');
    // A change made while a is down: a learns of it only when etcd returns.
    const moved = await b.apply(echo(backendPorts[1]!));
    expect(moved.status).toBe(200);
    await Promise.all(etcd.members.map((m) => m.kill('SIGKILL')));

    const started = performance.now();
    await a.start(30_000);
    const readyMs = performance.now() - started;
    const ready = await readyz(a);
    expect(ready.status).toBe(200);
    expect(ready.body).toMatch(
      new RegExp(`^degraded: store unreachable, serving revision ${applied} from disk \\(age \\d+s\\)$`),
    );
    // Health port (monitoring) too, and the metrics say so.
    const monitoring = `http://127.0.0.1:${portsA[2]}`;
    expect(await (await fetch(`${monitoring}/healthz`)).text()).toBe('ok\n');
    expect((await (await fetch(`${monitoring}/readyz`)).text()).trim()).toBe(ready.body);
    const metricsText = await (await fetch(`${monitoring}/metrics`)).text();
    expect(metricsText).toMatch(/^meridian_disk_snapshot_serving(\{[^}]*\})? 1$/m);
    expect(metricsText).toMatch(
      new RegExp(`^meridian_disk_snapshot_revision(\\{[^}]*\\})? ${applied}$`, 'm'),
    );
    // The admin API needs etcd for credentials: a clear 503, not a refused connection.
    const api = await a.api('GET', '/apis/v1/config/ServiceEntry');
    expect(api.status).toBe(503);
    expect(api.body.message).toBe(
      `store unreachable: serving revision ${applied} from disk; the admin API needs etcd to check credentials`,
    );
    expect(a.output.some((l) => l.includes('serving the last-known-good snapshot from disk'))).toBe(true);
    console.log(JSON.stringify({ restartFromDisk: { readyMs: Math.round(readyMs) } }));

    // A fresh grpc-js-xds client (nothing cached) gets everything from the restarted replica.
    const fresh = await grpcClient(a, 'after');
    await fresh.ready(TARGET, { timeoutMs: 30_000 });
    const calls = await fresh.many(TARGET, 20);
    expect(countByBackend(calls)).toEqual({ 'echo-v1': 20 });
  }, 180_000);

  it('a corrupted snapshot is refused with a log line and never served', async () => {
    const dir = join(tmp, 'corrupt');
    mkdirSync(dir, { recursive: true });
    const file = snapshotFile(dir, 'test', 'c1');
    copyFileSync(snapshotFile(join(tmp, 'a'), 'test', 'c1'), file);
    const text = readFileSync(file, 'utf8');
    writeFileSync(file, text.replace(String(backendPorts[0]), String(backendPorts[0]! + 1)));
    const ports = await freePorts(3);
    const c = new ReplicaProcess(replicaSpec('c', ports, dir, ['--store-connect-timeout-ms', '3000']));
    // Never ready: it refuses the file and, etcd being down, gives up after the connect bound.
    await expect(c.start(10_000)).rejects.toThrow();
    expect((await c.exit).code).toBe(2);
    expect(c.output.some((l) => l.includes('snapshot on disk refused: corrupt (checksum mismatch)'))).toBe(
      true,
    );
    expect(c.output.some((l) => /^meridiand: --etcd-endpoints: etcd not reachable at /.test(l))).toBe(true);
  }, 120_000);

  it('when etcd returns it catches up: the change made meanwhile arrives, and only it is pushed', async () => {
    const proxy = new SimulatedProxy({
      nodeId: 'sidecar~10.1.0.9~watch-0.shop~shop.svc.cluster.local',
      metadata: { NAMESPACE: 'shop', CLUSTER_ID: 'c1' },
      variant: 'delta',
      subscriptions: ALL_TYPES.map((typeUrl) => ({ typeUrl })),
      record: true,
    });
    proxies.push(proxy);
    proxy.connect(xdsClient(a.xds));
    await eventually(
      'proxy synced',
      () => (proxy.state.get(TypeUrl.RouteConfiguration)?.responses ?? 0) > 0,
      30_000,
      50,
    );
    await eventually(
      'proxy settled',
      async () => {
        const n = proxy.responses.length;
        await new Promise((r) => setTimeout(r, 500));
        return proxy.responses.length === n;
      },
      30_000,
      50,
    );
    const before = proxy.responses.length;

    await Promise.all(etcd.members.map((m) => m.restart()));
    await etcd.waitHealthy({ timeoutMs: 60_000 });
    await eventually('a ready and current', async () => (await readyz(a)).body === 'ok', 60_000, 50);
    // The log line is written when readiness flips; the child's stdout may reach us a moment later.
    await eventually(
      'the catch-up logged',
      () => a.output.some((l) => l.includes('caught up from the snapshot on disk')),
      10_000,
      50,
    );

    const client = clients[1]!;
    await eventually(
      'calls reach the moved endpoint',
      async () => countByBackend(await client.many(TARGET, 5))['echo-v2'] === 5,
      60_000,
      200,
    );
    // No push storm: after catching up, this proxy was sent the endpoints that changed, nothing else.
    const pushed = (proxy.responses.slice(before) as DeltaResponseView[]).filter(
      (r) => r.resources.length > 0 || r.removed.length > 0,
    );
    expect(pushed.map((r) => r.typeUrl)).toEqual(pushed.map(() => TypeUrl.ClusterLoadAssignment));
    expect(new Set(pushed.flatMap((r) => r.resources.map((x) => x.name)))).toEqual(
      new Set([`outbound|${PORT}||${HOST}`]),
    );
    // The admin API answers again, and the snapshot on disk moved on.
    expect((await a.api('GET', '/apis/v1/config/ServiceEntry')).status).toBe(200);
  }, 180_000);
});
