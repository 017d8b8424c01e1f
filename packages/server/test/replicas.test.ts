// Issue 5, end to end: a real 3-member etcd, 3 meridiand processes, simulated proxies (testkit),
// workload agents as processes (the cluster: replicas-fixtures.ts). One etcd cluster and one set of
// replicas for the whole file; the tests run in order and build on each other. The failures (a
// replica SIGKILLed, etcd quorum lost, a graceful shutdown) are in replicas-failover.test.ts.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TypeUrl } from '@meridian/envoy';
import { WorkloadAgent } from '@meridian/registry';
import { eventually } from '@meridian/testkit';
import { describe, expect, it } from 'vitest';
import { held, type ReplicaProcess, sidecar, spawnTs } from './harness.js';
import { edsDump, HOST, hasCluster, routeTo, SERVICE, useReplicaCluster } from './replicas-fixtures.js';

const AGENT = fileURLToPath(new URL('./fixtures/agent.ts', import.meta.url));
const REGISTRATION_TTL_S = 2;

const cluster = useReplicaCluster();

describe('meridiand replicas sharing one etcd', () => {
  it('config applied on replica A (via the CLI) reaches proxies connected to B and C', async () => {
    const [a, b, c] = cluster.replicas as [ReplicaProcess, ReplicaProcess, ReplicaProcess];
    const onB = cluster.connect(sidecar(1, 'delta'), b);
    const onC = cluster.connect(sidecar(2, 'sotw'), c);
    await eventually('initial responses', () => onB.state.size === 4 && onC.state.size === 4, 30_000, 50);
    const file = join(cluster.tmp, 'reviews.yaml');
    writeFileSync(file, `${SERVICE}---\n${routeTo('5s')}`);
    const applied = await cluster.cli(['apply', '-f', file], { MERIDIAN_SERVER: a.admin });
    expect(applied.err).toBe('');
    expect(applied.out).toBe(
      'serviceentry.networking.istio.io/reviews created\nvirtualservice.networking.istio.io/reviews created\n',
    );
    expect(applied.code).toBe(0);
    const msStart = performance.now();
    await eventually('the reviews cluster on B and C', () => hasCluster(onB) && hasCluster(onC), 30_000, 50);
    const ms = performance.now() - msStart;
    console.log(`apply on A -> cluster on B and C: ${ms.toFixed(0)} ms after the CLI returned`);
    const got = await cluster.cli(['get', 'vs', 'reviews', '-o', 'yaml', '--server', c.admin]);
    expect(got.code).toBe(0);
    expect(got.out).toContain('kind: VirtualService');
    expect(got.out).toMatch(/resourceVersion: "\d+"/);
    const missing = await cluster.cli(['get', 'dr', 'nope', '--server', b.admin]);
    expect(missing.code).toBe(1);
    expect(missing.err).toBe(
      'Error from server (NotFound): destinationrules.networking.istio.io "nope" not found\n',
    );
  }, 120_000);

  it('/debug/convergence on any replica: the newest revision held by the proxies of every replica', async () => {
    const [a, b, c] = cluster.replicas as [ReplicaProcess, ReplicaProcess, ReplicaProcess];
    const onB = cluster.connect(sidecar(3, 'delta'), b);
    const onC = cluster.connect(sidecar(4, 'sotw'), c);
    await eventually('initial responses', () => onB.state.size === 4 && onC.state.size === 4, 30_000, 50);
    const file = join(cluster.tmp, 'reviews-convergence.yaml');
    writeFileSync(file, routeTo('6s'));
    const token = await a.token();
    const convergence = async () => {
      const res = await fetch(`${a.admin}/debug/convergence`, {
        headers: { authorization: `Bearer ${token}` },
      });
      expect(res.status).toBe(200);
      return (await res.json()) as {
        cluster: { revision: number; proxies: number; synced: number; p99Ms?: number; summary: string };
      };
    };
    const before = (await convergence()).cluster.revision;
    expect((await cluster.cli(['apply', '-f', file], { MERIDIAN_SERVER: a.admin })).code).toBe(0);
    // A's view counts B's and C's proxies once every replica published the new revision.
    let last = '';
    await eventually(
      'A reports every proxy synced to the new revision',
      async () => {
        const r = (await convergence()).cluster;
        last = r.summary;
        return r.revision > before && r.proxies >= 2 && r.synced === r.proxies && r.p99Ms !== undefined;
      },
      30_000,
      50,
    ).catch((error: Error) => {
      throw new Error(`${error.message}; last report: ${last}`);
    });
    console.log(`convergence: ${last}`);
    const unauthenticated = await fetch(`${a.admin}/debug/convergence`);
    expect(unauthenticated.status).toBe(401);
  }, 120_000);

  it('replicas at the same revision give byte-identical resources and versions', async () => {
    const [, b, c] = cluster.replicas as [ReplicaProcess, ReplicaProcess, ReplicaProcess];
    const deltaB = cluster.connect(sidecar(7, 'delta'), b);
    const deltaC = cluster.connect(sidecar(7, 'delta'), c);
    const sotwB = cluster.connect(sidecar(8, 'sotw'), b);
    const sotwC = cluster.connect(sidecar(8, 'sotw'), c);
    await eventually(
      'all four proxies synced',
      () => [deltaB, deltaC, sotwB, sotwC].every(hasCluster),
      30_000,
      50,
    );
    const revB = await b.getJson<{ snapshotRevision: number }>('/debug/replica');
    const revC = await c.getJson<{ snapshotRevision: number }>('/debug/replica');
    expect(revB.snapshotRevision).toBe(revC.snapshotRevision);
    for (const type of [
      TypeUrl.Cluster,
      TypeUrl.ClusterLoadAssignment,
      TypeUrl.Listener,
      TypeUrl.RouteConfiguration,
    ]) {
      expect(held(deltaB, type).size).toBeGreaterThan(0);
      expect(held(deltaB, type)).toEqual(held(deltaC, type)); // Delta: per-resource versions (content hashes)
      expect(sotwB.state.get(type)?.versionInfo).toBe(sotwC.state.get(type)?.versionInfo);
      expect(held(sotwB, type)).toEqual(held(sotwC, type)); // SotW: hashes of the resource bytes
    }
    // The bytes themselves, as each replica encoded them for the same node.
    const dumpB = await b.getJson<Record<string, unknown>>(
      `/debug/config_dump?proxy=${encodeURIComponent(deltaB.options.nodeId)}`,
    );
    const dumpC = await c.getJson<Record<string, unknown>>(
      `/debug/config_dump?proxy=${encodeURIComponent(deltaC.options.nodeId)}`,
    );
    expect(Object.values(dumpB)).toEqual(Object.values(dumpC));
  }, 120_000);

  it('a Delta proxy that moves to another replica is sent only what changed', async () => {
    const [a, b, c] = cluster.replicas as [ReplicaProcess, ReplicaProcess, ReplicaProcess];
    const mover = cluster.connect(sidecar(9, 'delta'), b);
    await eventually('mover synced', () => hasCluster(mover), 30_000, 50);
    const before = new Map(
      [...mover.state].map(([t, s]) => [
        t,
        { responses: s.responses, bytes: s.resourceBytes, held: new Map(s.resources) },
      ]),
    );
    mover.disconnect();
    const res = await a.apply(routeTo('7s'));
    expect(res.status).toBe(200);
    await eventually(
      'C has the new revision',
      async () => {
        const r = await c.getJson<{ snapshotRevision: number }>('/debug/replica');
        return r.snapshotRevision >= Number(res.body.revision);
      },
      30_000,
      50,
    );
    cluster.connect(mover, c, true);
    await eventually(
      'the changed route on the mover',
      () => {
        const rds = mover.state.get(TypeUrl.RouteConfiguration);
        return rds !== undefined && rds.responses > before.get(TypeUrl.RouteConfiguration)!.responses;
      },
      30_000,
      50,
    );
    await new Promise((r) => setTimeout(r, 500)); // anything else would have arrived by now
    // A new subscription is answered even when nothing changed, but with no resources.
    for (const type of [TypeUrl.Cluster, TypeUrl.ClusterLoadAssignment, TypeUrl.Listener]) {
      expect(mover.state.get(type)?.resourceBytes, `no ${type} resources sent on reconnect`).toBe(
        before.get(type)!.bytes,
      );
      expect(held(mover, type)).toEqual(before.get(type)!.held);
    }
    const rdsBefore = before.get(TypeUrl.RouteConfiguration)!;
    expect(mover.state.get(TypeUrl.RouteConfiguration)!.resourceBytes).toBeGreaterThan(rdsBefore.bytes);
    const changed = [...held(mover, TypeUrl.RouteConfiguration)].filter(
      ([n, v]) => rdsBefore.held.get(n) !== v,
    );
    expect(changed.map(([n]) => n)).toEqual(['9080']);
  }, 120_000);

  it('a write with a stale resourceVersion is refused and overwrites nothing', async () => {
    const [a, b] = cluster.replicas as [ReplicaProcess, ReplicaProcess];
    const current = await a.api('GET', '/apis/v1/config/VirtualService/default/reviews');
    const rv = (current.body.metadata as { resourceVersion: string }).resourceVersion;
    const withRv = (timeout: string, v: string) =>
      routeTo(timeout).replace('namespace: default', `namespace: default\n  resourceVersion: "${v}"`);
    const ok = await b.apply(withRv('8s', rv));
    expect(ok.status).toBe(200);
    const stale = await a.apply(withRv('9s', rv));
    expect(stale.status).toBe(409);
    const newRv = (ok.body.items as { resourceVersion: string }[])[0]!.resourceVersion;
    expect(stale.body).toEqual({
      code: 'CONFLICT',
      reason: 'Conflict',
      object: 'VirtualService/default/reviews',
      message: `Operation cannot be fulfilled on virtualservices.networking.istio.io "reviews": the object has been modified; please apply your changes to the latest version and try again (resourceVersion ${rv}, current ${newRv})`,
    });
    const after = await a.api('GET', '/apis/v1/config/VirtualService/default/reviews');
    expect(JSON.stringify(after.body)).toContain('"8s"');
    // Through the CLI: kubectl's error line, exit code 1.
    const file = join(cluster.tmp, 'stale.yaml');
    writeFileSync(file, withRv('9s', rv));
    const out = await cluster.cli(['apply', '-f', file, '--server', b.admin]);
    expect(out.code).toBe(1);
    expect(out.err).toMatch(
      /^Error from server \(Conflict\): Operation cannot be fulfilled on virtualservices\.networking\.istio\.io "reviews": the object has been modified/,
    );
  }, 120_000);

  it('a multi-object apply with one invalid object writes nothing; a conflict in one object fails all', async () => {
    const [a, c] = [cluster.replicas[0]!, cluster.replicas[2]!];
    const dr = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  namespace: default
spec:
  host: ${HOST}
  subsets:
  - name: v1
    labels: {version: v1}
`;
    const bad = routeTo('5s').replace('number: 9080', 'number: 70000');
    const res = await a.apply(`${dr}---\n${bad}`);
    expect(res.status).toBe(422);
    expect(res.body.code).toBe('INVALID_CONFIG');
    expect(res.body.errors).toEqual([
      {
        object: 'VirtualService/default/reviews',
        path: 'spec.http[0].route[0].destination.port.number',
        message: 'port number 70000 must be in the range 1..65535',
        line: 25,
        document: 1,
      },
    ]);
    expect((await c.api('GET', '/apis/v1/config/dr/default/reviews')).status).toBe(404);
    // Valid objects, but one carries a stale resourceVersion: the transaction applies neither.
    const stale = routeTo('5s').replace('namespace: default', 'namespace: default\n  resourceVersion: "1"');
    const conflict = await a.apply(`${dr}---\n${stale}`);
    expect(conflict.status).toBe(409);
    expect((await c.api('GET', '/apis/v1/config/dr/default/reviews')).status).toBe(404);
  }, 120_000);

  it('workload registration: in EDS on other replicas, unhealthy without removal, gone within the TTL when its agent is killed', async () => {
    const [a, b] = cluster.replicas as [ReplicaProcess, ReplicaProcess];
    const watcher = cluster.connect(sidecar(20, 'delta'), b);
    await eventually('watcher synced', () => hasCluster(watcher), 30_000, 50);
    // In-process agent: register, then report unhealthy.
    const agent = new WorkloadAgent(
      a.xds,
      {
        name: 'reviews-1',
        namespace: 'default',
        address: '10.9.0.1',
        ports: { http: 9080 },
        labels: { app: 'reviews', version: 'v1' },
        serviceAccount: 'reviews',
        locality: 'region1/zone1',
      },
      // Registering 10.9.0.1 from 127.0.0.1 takes the registrar role (the harness's admin token).
      { ttlSeconds: REGISTRATION_TTL_S, token: await a.token() },
    );
    const reg = await agent.register();
    expect(reg.replica_id).toBe('a');
    expect(reg.ttl_seconds).toBeGreaterThanOrEqual(REGISTRATION_TTL_S);
    await eventually(
      'endpoint on B',
      async () => (await edsDump(b, watcher)).includes('10.9.0.1'),
      30_000,
      50,
    );
    expect(await edsDump(b, watcher)).not.toContain('UNHEALTHY');
    await agent.setHealth('UNHEALTHY');
    await eventually(
      'unhealthy endpoint on B',
      async () => {
        const dump = await edsDump(b, watcher);
        return dump.includes('10.9.0.1') && dump.includes('UNHEALTHY');
      },
      30_000,
      50,
    );
    agent.close(); // deregisters
    await eventually(
      'deregistered endpoint gone',
      async () => !(await edsDump(b, watcher)).includes('10.9.0.1'),
      30_000,
      50,
    );

    // An agent process, SIGKILLed: the endpoint disappears within the lease TTL.
    const child = spawnTs(
      AGENT,
      [a.xds, 'default/reviews-2', '10.9.0.2', String(REGISTRATION_TTL_S), 'app=reviews'],
      { MERIDIAN_TOKEN: await a.token() },
    );
    let out = '';
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
    });
    try {
      await eventually('agent registered', () => out.includes('registered'), 30_000, 50);
      await eventually(
        'endpoint 2 on B',
        async () => (await edsDump(b, watcher)).includes('10.9.0.2'),
        30_000,
        50,
      );
      const killedAt = performance.now();
      child.kill('SIGKILL');
      await eventually(
        'endpoint 2 gone',
        async () => !(await edsDump(b, watcher)).includes('10.9.0.2'),
        20_000,
        50,
      );
      const gone = performance.now() - killedAt;
      console.log(
        `agent SIGKILL -> endpoint gone from EDS on another replica: ${gone.toFixed(0)} ms (TTL ${REGISTRATION_TTL_S} s)`,
      );
      expect(gone).toBeLessThan(REGISTRATION_TTL_S * 1000 + 4000); // TTL plus a CI margin
    } finally {
      child.kill('SIGKILL');
    }
  }, 120_000);
});
