// The agent's relay against real replicas: one etcd, cluster c1 with replicas in zone a and zone b,
// cluster c2 with one replica, meridiand as real processes; a real @grpc/grpc-js-xds client process
// behind the agent calls a grpc-js backend continuously.
// - the agent picks zone a's replica; SIGKILL it: the agent is on zone b's, the client's single xDS
//   stream to the agent never breaks and no RPC fails; zone a returns and the agent moves back;
// - every replica of c1 down: the agent goes to c2;
// - every replica down: a client started afresh behind a new agent on the same cache directory gets
//   its config from disk and its calls succeed;
// - a Delta client resumes on the next replica with its versions: nothing unchanged is resent;
// - a NACK is passed through unchanged.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Agent } from '@meridian/agent';
import { TypeUrl } from '@meridian/envoy';
import { type EtcdCluster, eventually, freePorts, SimulatedProxy, startEtcd } from '@meridian/testkit';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReplicaProcess } from '../../server/test/harness.js';
import { Backend, ClientProcess } from '../../server/test/multicluster-harness.js';
import { ECHO_TARGET, echoServiceEntry } from './fixtures.js';

const tmp = mkdtempSync(join(tmpdir(), 'meridian-agent-test-'));
let etcd: EtcdCluster;
let backend: Backend;
const replicas: Record<'a' | 'b' | 'c', ReplicaProcess> = {} as Record<'a' | 'b' | 'c', ReplicaProcess>;
const agents: Agent[] = [];
const clients: ClientProcess[] = [];
const grpcClients: grpc.Client[] = [];
const proxies: SimulatedProxy[] = [];
const quiet = pino({ level: process.env.AGENT_TEST_LOG ?? 'silent' });

function replica(
  id: string,
  cluster: string,
  locality: string,
  xdsPort: number,
  adminPort: number,
): ReplicaProcess {
  return new ReplicaProcess({
    id,
    etcd: etcd.endpoints,
    xdsPort,
    adminPort,
    extraArgs: [
      '--cluster-id',
      cluster,
      '--locality',
      locality,
      '--replica-lease-ttl',
      '1',
      '--debounce-ms',
      '10',
    ],
  });
}

async function startAgent(seeds: string[], cacheDir: string): Promise<Agent> {
  const agent = await Agent.start({
    seeds,
    place: { clusterId: 'c1', locality: 'region1/zone-a' },
    listenAddress: '127.0.0.1:0',
    cacheDir,
    refreshMs: 300,
    moveBackJitterMs: 200,
    failedHoldMs: 500,
    logger: quiet,
  });
  agents.push(agent);
  return agent;
}

async function client(agent: Agent): Promise<ClientProcess> {
  const c = await ClientProcess.start(agent.address, 'c1', 'region1', 'zone-a');
  clients.push(c);
  return c;
}

beforeAll(async () => {
  etcd = await startEtcd();
  backend = new Backend('echo-1');
  await backend.start();
  const ports = (await freePorts(6)) as [number, number, number, number, number, number];
  replicas.a = replica('a', 'c1', 'region1/zone-a', ports[0], ports[1]);
  replicas.b = replica('b', 'c1', 'region1/zone-b', ports[2], ports[3]);
  replicas.c = replica('c', 'c2', 'region2/zone-c', ports[4], ports[5]);
  await Promise.all(Object.values(replicas).map((r) => r.start()));
  for (const r of [replicas.a, replicas.c]) {
    const res = await r.apply(echoServiceEntry(backend.port));
    expect(res.status, JSON.stringify(res.body)).toBe(200);
  }
}, 120_000);

afterAll(async () => {
  await Promise.all(clients.map((c) => c.stop().catch(() => undefined)));
  for (const p of proxies) p.disconnect();
  for (const c of grpcClients) c.close();
  await Promise.all(agents.map((a) => a.stop().catch(() => undefined)));
  await Promise.all(Object.values(replicas).map((r) => r.kill()));
  backend?.stop();
  await etcd?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

describe('meridian-agent relay', () => {
  it('ranks the same zone first; on SIGKILL fails over with no failed RPC and no broken local stream; moves back', async () => {
    const agent = await startAgent([replicas.a.xds, replicas.c.xds], join(tmp, 'cache-1'));
    expect(agent.status().ranked.map((r) => r.id)).toEqual(['a', 'b', 'c']);
    const c = await client(agent);
    const first = await c.call(ECHO_TARGET);
    expect(first.code, first.message).toBe(0);
    expect(agent.selector.current).toBe(replicas.a.xds);
    expect(agent.relay.streams.size).toBe(1);
    const [stream] = [...agent.relay.streams];

    await c.loadStart(ECHO_TARGET, 4);
    await new Promise((r) => setTimeout(r, 500));
    await replicas.a.kill('SIGKILL');
    await eventually('agent on zone b', () => agent.selector.current === replicas.b.xds, 10_000, 50);
    await new Promise((r) => setTimeout(r, 1000));
    // Zone a returns: the agent moves back (after its jitter), still without breaking anything.
    await replicas.a.start();
    await eventually('agent back on zone a', () => agent.selector.current === replicas.a.xds, 20_000, 50);
    await new Promise((r) => setTimeout(r, 500));
    const results = await c.loadStop();
    expect(results.length).toBeGreaterThan(50);
    const failed = results.filter((r) => r.code !== 0);
    expect(failed, JSON.stringify(failed.slice(0, 3))).toEqual([]);
    // One local stream from start to end: the client never saw its xDS stream break.
    expect(agent.relay.streams.size).toBe(1);
    expect([...agent.relay.streams][0]).toBe(stream);
  });

  it('every replica of its cluster down: goes to the other cluster; all down: a fresh client is served from disk', async () => {
    const cache = join(tmp, 'cache-2');
    const agent = await startAgent([replicas.a.xds, replicas.c.xds], cache);
    const c = await client(agent);
    expect((await c.call(ECHO_TARGET)).code).toBe(0);
    await Promise.all([replicas.a.kill('SIGKILL'), replicas.b.kill('SIGKILL')]);
    await eventually('agent on cluster c2', () => agent.selector.current === replicas.c.xds, 15_000, 50);
    const during = await c.many(ECHO_TARGET, 20, 4);
    expect(during.filter((r) => r.code !== 0)).toEqual([]);
    await new Promise((r) => setTimeout(r, 500)); // the cache write is coalesced
    await replicas.c.kill('SIGKILL');
    // A new agent (as after a node restart) on the same cache, and a client started afresh.
    await agent.stop();
    const again = await startAgent([replicas.a.xds, replicas.c.xds], cache);
    expect(again.selector.pick()).toBeUndefined();
    const fresh = await client(again);
    const fromDisk = await fresh.many(ECHO_TARGET, 10, 2);
    expect(
      fromDisk.filter((r) => r.code !== 0),
      JSON.stringify(fromDisk[0]),
    ).toEqual([]);
    expect(fromDisk.every((r) => r.backend === 'echo-1')).toBe(true);
    // The control plane returns: the agent connects and the client keeps working.
    await Promise.all([replicas.a.start(), replicas.b.start(), replicas.c.start()]);
    await eventually('agent connected again', () => again.selector.current !== undefined, 20_000, 50);
    expect((await fresh.call(ECHO_TARGET)).code).toBe(0);
  });

  it('a Delta client resumes on the next replica with its versions: nothing unchanged is resent', async () => {
    const agent = await startAgent([replicas.a.xds], join(tmp, 'cache-3'));
    const ch = new grpc.Client(agent.address, grpc.credentials.createInsecure());
    grpcClients.push(ch);
    const p = new SimulatedProxy({
      nodeId: 'sidecar~10.1.0.1~delta-0.default~default.svc.cluster.local',
      metadata: { NAMESPACE: 'default', CLUSTER_ID: 'c1' },
      variant: 'delta',
      subscriptions: [{ typeUrl: TypeUrl.Cluster }, { typeUrl: TypeUrl.Listener }],
      record: true,
    });
    proxies.push(p);
    p.connect(ch);
    await eventually(
      'delta proxy synced',
      () => (p.state.get(TypeUrl.Cluster)?.resources.size ?? 0) > 0,
      30_000,
      50,
    ).catch((error: unknown) => {
      throw new Error(
        `${(error as Error).message}\n--- a\n${replicas.a.output.slice(-8).join('\n')}\n--- b\n${replicas.b.output.slice(-8).join('\n')}`,
      );
    });
    await new Promise((r) => setTimeout(r, 300));
    const before = p.responses.length;
    const bytesBefore = p.totalResourceBytes;
    // Whichever replica holds the stream (rebalancing may have moved it), kill that one.
    const holder = [replicas.a, replicas.b].find((r) => r.xds === agent.selector.current)!;
    expect(holder).toBeDefined();
    await holder.kill('SIGKILL');
    await eventually(
      'agent on the other replica',
      () => agent.selector.current !== holder.xds && agent.selector.current !== undefined,
      10_000,
      50,
    );
    await new Promise((r) => setTimeout(r, 1000));
    // Same config on every replica, same content-hashed versions: no resource is sent again.
    expect(p.totalResourceBytes - bytesBefore).toBe(0);
    expect(p.ended).toBeUndefined();
    // The new replica may confirm with empty responses; none carries a resource.
    const after = p.responses.slice(before) as { resources: readonly unknown[] }[];
    expect(after.every((r) => r.resources.length === 0)).toBe(true);
    await holder.start();
  });

  it('passes a NACK through unchanged: the replica records the proxy ERROR with the message', async () => {
    const agent = await startAgent([replicas.b.xds], join(tmp, 'cache-4'));
    const ch = new grpc.Client(agent.address, grpc.credentials.createInsecure());
    grpcClients.push(ch);
    const p = new SimulatedProxy({
      nodeId: 'sidecar~10.1.0.2~nack-0.default~default.svc.cluster.local',
      metadata: { NAMESPACE: 'default', CLUSTER_ID: 'c1' },
      variant: 'sotw',
      subscriptions: [{ typeUrl: TypeUrl.Cluster }],
      record: true,
    });
    p.nackTypes.set(TypeUrl.Cluster, 'relay test: rejected on purpose');
    proxies.push(p);
    p.connect(ch);
    await eventually(
      'the replica sees the NACK',
      async () => {
        const replica = [replicas.a, replicas.b].find((r) => r.xds === agent.selector.current);
        if (!replica) return false;
        const syncz =
          await replica.getJson<
            { proxyId: string; types: Record<string, { state: string; error?: string }> }[]
          >('/debug/syncz');
        const me = syncz.find((s) => s.proxyId.startsWith('sidecar~10.1.0.2~'));
        return me?.types.cds?.state === 'ERROR' && me.types.cds.error === 'relay test: rejected on purpose';
      },
      30_000,
      50,
    );
  });
});
