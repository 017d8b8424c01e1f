// Load-aware rebalancing with real replicas: every proxy (40 simulated Delta sidecars and a real
// @grpc/grpc-js-xds client under load) sits behind an agent on the only replica of a zone; a second
// replica of the same zone joins. The first sheds relayed streams above its fair share, naming the
// newcomer, and the agent resumes them there: the newcomer holds its share within seconds, no local
// stream breaks, no RPC fails, nothing unchanged is resent.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from '@meridian/agent';
import { type EtcdCluster, eventually, freePorts, LoadGenerator, startEtcd } from '@meridian/testkit';
import pino from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ReplicaProcess, sidecar } from '../../server/test/harness.js';
import { Backend, ClientProcess } from '../../server/test/multicluster-harness.js';
import { ECHO_TARGET, echoServiceEntry } from './fixtures.js';

const tmp = mkdtempSync(join(tmpdir(), 'meridian-agent-rebalance-'));
let etcd: EtcdCluster;
let backend: Backend;
let a: ReplicaProcess;
let b: ReplicaProcess;
let agent: Agent;
let gen: LoadGenerator | undefined;
let client: ClientProcess | undefined;

beforeAll(async () => {
  etcd = await startEtcd();
  backend = new Backend('echo-1');
  await backend.start();
  const ports = (await freePorts(4)) as [number, number, number, number];
  const spec = (id: string, x: number, y: number) =>
    new ReplicaProcess({
      id,
      etcd: etcd.endpoints,
      xdsPort: x,
      adminPort: y,
      extraArgs: ['--locality', 'region1/zone-a'],
    });
  a = spec('a', ports[0], ports[1]);
  b = spec('b', ports[2], ports[3]);
  await a.start();
  const res = await a.apply(echoServiceEntry(backend.port));
  expect(res.status).toBe(200);
  agent = await Agent.start({
    seeds: [a.xds, b.xds],
    place: { clusterId: 'c1', locality: 'region1/zone-a' },
    listenAddress: '127.0.0.1:0',
    cacheDir: join(tmp, 'cache'),
    refreshMs: 500,
    logger: pino({ level: 'silent' }),
  });
}, 120_000);

afterAll(async () => {
  await client?.stop().catch(() => undefined);
  gen?.close();
  await agent?.stop();
  await Promise.all([a?.kill(), b?.kill()]);
  backend?.stop();
  await etcd?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

it('a joining replica gets its share of relayed streams within seconds, with no failed RPC and nothing resent', async () => {
  gen = new LoadGenerator({
    address: agent.address,
    proxies: 40,
    proxy: (i) => sidecar(i, 'delta').options,
    streamsPerConnection: 10,
  });
  gen.connect();
  await eventually(
    'proxies synced',
    () =>
      gen!.proxies.every(
        (p) => (p.state.get('type.googleapis.com/envoy.config.cluster.v3.Cluster')?.resources.size ?? 0) > 0,
      ),
    30_000,
    50,
  );
  client = await ClientProcess.start(agent.address, 'c1', 'region1', 'zone-a');
  expect((await client.call(ECHO_TARGET)).code).toBe(0);
  const onA = () => [...agent.relay.streams].filter((s) => s.upstreamAddress === a.xds).length;
  const onB = () => [...agent.relay.streams].filter((s) => s.upstreamAddress === b.xds).length;
  expect(onA()).toBe(41);
  const bytes = new Map(gen.proxies.map((p) => [p, p.totalResourceBytes]));

  await client.loadStart(ECHO_TARGET, 4);
  const joined = performance.now();
  await b.start();
  // Fair share of 41 streams over 2 replicas with 10% headroom: 23; the newcomer gets the rest.
  const msStart = performance.now();
  await eventually('b holds its share', () => onB() >= 41 - 23, 30_000, 50);
  const ms = performance.now() - msStart;
  console.log(
    `[rebalance] b reached ${onB()} of 41 streams ${(performance.now() - joined).toFixed(0)} ms after it was started (${ms.toFixed(0)} ms after it was ready)`,
  );
  await new Promise((r) => setTimeout(r, 1500));
  const results = await client.loadStop();
  expect(results.filter((r) => r.code !== 0)).toEqual([]);
  expect(onA() + onB()).toBe(41);
  expect(onA()).toBeLessThanOrEqual(23);
  expect(agent.relay.streams.size).toBe(41);
  expect(gen.proxies.filter((p) => p.ended !== undefined)).toEqual([]);
  // Delta streams resumed with their versions: the same config on both replicas, nothing resent.
  expect(gen.proxies.reduce((sum, p) => sum + p.totalResourceBytes - bytes.get(p)!, 0)).toBe(0);
});
