// `meridian-agent run` as a process, as a user starts it beside a workload: a replica process on a
// real etcd, the agent in front of it, a simulated sidecar on the agent's local port; the agent's own
// /metrics (istio-agent names) shows the relayed requests and responses and the upstream's rank.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { TypeUrl } from '@meridian/envoy';
import { type EtcdCluster, eventually, freePorts, SimulatedProxy, startEtcd } from '@meridian/testkit';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { REPO_ROOT, ReplicaProcess, spawnTs } from '../../server/test/harness.js';

const MAIN = join(REPO_ROOT, 'packages/agent/src/main.ts');
const tmp = mkdtempSync(join(tmpdir(), 'meridian-agent-cmd-'));
let etcd: EtcdCluster;
let replica: ReplicaProcess;

beforeAll(async () => {
  etcd = await startEtcd();
  const [xds, admin] = (await freePorts(2)) as [number, number];
  replica = new ReplicaProcess({ id: 'cmd-1', etcd: etcd.endpoints, xdsPort: xds, adminPort: admin });
  await replica.start();
  const res = await replica.apply(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.1.0.1}]
`);
  expect(res.status).toBe(200);
});

afterAll(async () => {
  await replica?.kill();
  await etcd?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

it('meridian-agent run relays a sidecar to the replica and serves its own metrics', async () => {
  const [listen, metricsPort] = (await freePorts(2)) as [number, number];
  const child = spawnTs(MAIN, [
    'run',
    ...['--seeds', replica.xds, '--cluster-id', 'c1', '--locality', 'region1/zone1'],
    ...['--listen', `127.0.0.1:${listen}`, '--metrics-address', `127.0.0.1:${metricsPort}`],
    ...['--cache-dir', join(tmp, 'cache'), '--log-level', 'info'],
  ]);
  let err = '';
  child.stderr?.on('data', (c: Buffer) => {
    err += c.toString();
  });
  child.stdout?.on('data', (c: Buffer) => {
    err += c.toString();
  });
  const client = new grpc.Client(`127.0.0.1:${listen}`, grpc.credentials.createInsecure());
  const p = new SimulatedProxy({
    nodeId: 'sidecar~10.1.0.9~app-0.default~default.svc.cluster.local',
    metadata: { NAMESPACE: 'default', CLUSTER_ID: 'c1' },
    variant: 'sotw',
    subscriptions: [{ typeUrl: TypeUrl.Cluster }],
  });
  try {
    // The agent logs when its local xDS port is open (a stream opened before would fail fast).
    await eventually('the agent is ready', () => err.includes('"msg":"meridian-agent ready"'), 30_000, 50);
    p.connect(client);
    await eventually(
      'clusters through the agent',
      () => (p.state.get(TypeUrl.Cluster)?.resources.size ?? 0) > 0,
      30_000,
      50,
    );
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    expect(text).toMatch(/xds_proxy_requests(_total)?\{[^}]*\} [1-9]/);
    expect(text).toMatch(/xds_proxy_responses(_total)?\{[^}]*\} [1-9]/);
    expect(text).toMatch(/meridian_agent_upstream_rank\{replica="cmd-1"[^}]*\} 0/);
    expect(text).toMatch(/meridian_agent_local_streams\{[^}]*\} 1/);
  } finally {
    p.disconnect();
    client.close();
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code, err).toBe(0);
  }
});
