// Convergence across clusters (issue 17, item 2): two clusters (east, west), each with its own etcd
// and one in-process replica, federated over a NATS gateway pair (testkit's supercluster) whose
// servers authorise each cluster's nkey user as `meridian federation nats-config` does. Each cluster
// has a simulated sidecar; a config change in west is seen from east's /debug/convergence (mesh):
// west's newest revision, its proxy synced. Forged summaries are not counted: one published with
// east's credentials on west's subject (refused by NATS), and one on east's subject whose body
// claims another cluster (dropped by the receiver). East's dashboard data endpoint for the Proxies
// page (/ui/api/proxies, with a session) lists west's proxy, reported over NATS, with its state; its
// data for the Mesh page (/ui/api/mesh) lists west's replica with the state it reports (leader,
// load, store health).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@grpc/grpc-js';
import { generateClusterCredentials, renderNatsAuthorization } from '@meridian/federation';
import {
  type EtcdCluster,
  eventually,
  type NatsSupercluster,
  SimulatedProxy,
  startEtcd,
  startNatsSupercluster,
} from '@meridian/testkit';
import { connect, nkeyAuthenticator } from '@nats-io/transport-node';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MeshConvergenceReport, ReplicaConvergence } from '../src/convergence.js';
import { resolveOptions } from '../src/options.js';
import { Replica } from '../src/replica.js';
import { telemetrySubject } from '../src/telemetry-federation.js';
import { ALL_TYPES, adminFetch, adminTokenFor, xdsClient } from './harness.js';

const MESH = 'convfed';
const tmp = mkdtempSync(join(tmpdir(), 'meridian-convergence-federation-'));
const creds = { east: generateClusterCredentials('east'), west: generateClusterCredentials('west') };
let nats: NatsSupercluster | undefined;
let etcds: EtcdCluster[] = [];
const replicas: Record<string, Replica> = {};
const clients: Client[] = [];
const proxies: SimulatedProxy[] = [];

const serviceEntry = (port: number) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: reviews, namespace: default }
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: ${port}, name: http, protocol: HTTP }]
  endpoints: [{ address: 10.9.0.1 }]
`;

async function start(cluster: 'east' | 'west', etcd: EtcdCluster, natsUrl: string): Promise<Replica> {
  const seed = join(tmp, `${cluster}.nk`);
  writeFileSync(seed, `${creds[cluster].seed}\n`, { mode: 0o600 });
  const r = await Replica.start(
    resolveOptions(
      [
        ...['--mesh-id', MESH, '--cluster-id', cluster, '--replica-id', `${cluster}-0`],
        ...['--etcd-endpoints', etcd.endpoints.join(','), '--debounce-ms', '10'],
        ...['--xds-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0'],
        ...['--monitoring-address', '127.0.0.1:0', '--snapshot-dir', 'off'],
        ...['--nats-url', natsUrl, '--nats-creds', seed],
      ],
      {},
    ),
    { logger: pino({ level: process.env.TEST_LOG ?? 'silent' }) },
  );
  replicas[cluster] = r;
  return r;
}

function sidecarOn(r: Replica, cluster: string): SimulatedProxy {
  const p = new SimulatedProxy({
    nodeId: `sidecar~10.1.0.1~client-0.default~default.svc.cluster.local`,
    metadata: { NAMESPACE: 'default', CLUSTER_ID: cluster, LABELS: { app: 'client' } },
    variant: 'delta',
    subscriptions: ALL_TYPES.map((typeUrl) => ({ typeUrl })),
  });
  const client = xdsClient(r.xdsAddress);
  clients.push(client);
  proxies.push(p);
  p.connect(client);
  return p;
}

async function mesh(r: Replica): Promise<MeshConvergenceReport> {
  const res = await adminFetch(r, '/debug/convergence');
  expect(res.status).toBe(200);
  return ((await res.json()) as { mesh: MeshConvergenceReport }).mesh;
}

/** A dashboard session cookie on east. */
async function eastSession(): Promise<string> {
  const east = replicas.east!;
  const o = east.options;
  const base = `http://${east.adminAddress}`;
  const login = await fetch(`${base}/ui/login`, {
    method: 'POST',
    headers: { origin: base, 'content-type': 'application/json' },
    body: JSON.stringify({ token: await adminTokenFor(o.etcdEndpoints, o.meshId, o.clusterId) }),
  });
  expect(login.status, await login.clone().text()).toBe(200);
  const cookie = /^(meridian_ui_east=[^;]+)/.exec(login.headers.get('set-cookie') ?? '')?.[1];
  expect(cookie).toBeDefined();
  return cookie!;
}

async function apply(r: Replica, yaml: string): Promise<void> {
  const res = await adminFetch(r, '/apis/v1/apply', { method: 'POST', body: yaml });
  expect(res.status, await res.clone().text()).toBe(200);
}

beforeAll(async () => {
  const auth = renderNatsAuthorization({ mesh: MESH, clusters: [creds.east, creds.west] });
  let east: EtcdCluster;
  let west: EtcdCluster;
  [nats, east, west] = await Promise.all([
    startNatsSupercluster({
      clusters: [{ name: 'east' }, { name: 'west' }],
      jetstream: true,
      configExtra: () => auth,
    }),
    startEtcd(),
    startEtcd(),
  ]);
  etcds = [east, west];
  await Promise.all([
    start('east', etcds[0]!, nats.clusters.east![0]!.url),
    start('west', etcds[1]!, nats.clusters.west![0]!.url),
  ]);
  await Promise.all([apply(replicas.east!, serviceEntry(9080)), apply(replicas.west!, serviceEntry(9080))]);
}, 120_000);

afterAll(async () => {
  for (const p of proxies) p.disconnect();
  for (const c of clients) c.close();
  await Promise.all(Object.values(replicas).map((r) => r.stop().catch(() => undefined)));
  await nats?.stop();
  await Promise.all(etcds.map((e) => e.stop()));
  rmSync(tmp, { recursive: true, force: true });
}, 60_000);

describe('convergence across federated clusters', () => {
  it("east's /debug/convergence follows west's newest revision to its proxy's ACK; forged summaries are not counted", async () => {
    const east = replicas.east!;
    const west = replicas.west!;
    sidecarOn(east, 'east');
    sidecarOn(west, 'west');
    let last = '';
    const both = (m: MeshConvergenceReport) =>
      m.clusters.map((c) => c.clusterId).join(',') === 'east,west' &&
      m.clusters.every((c) => c.proxies === 1 && c.synced === 1);
    await eventually(
      "both clusters' proxies synced in each cluster's mesh view",
      async () => {
        const [a, b] = [await mesh(east), await mesh(west)];
        last = `${a.summary} | ${b.summary}`;
        return both(a) && both(b);
      },
      60_000,
      250,
    ).catch((error: Error) => {
      throw new Error(`${error.message}; last: ${last}`);
    });

    // A change in west only: east sees west's new revision, and west's proxy ACKing it.
    const before = (await mesh(east)).clusters.find((c) => c.clusterId === 'west')!.revision!;
    await apply(west, serviceEntry(9081));
    await eventually("west's new push context", () => (west.snapshot?.revision ?? 0) > before, 10_000, 50);
    const westRevision = west.snapshot!.revision;
    await eventually(
      "west's new revision synced, seen from east",
      async () => {
        const m = await mesh(east);
        last = m.summary;
        const w = m.clusters.find((c) => c.clusterId === 'west');
        return w?.revision === westRevision && w.synced === 1 && w.allMs !== undefined && m.synced === 2;
      },
      30_000,
      250,
    ).catch((error: Error) => {
      throw new Error(`${error.message}; last: ${last}`);
    });
    expect(last).toMatch(/^2 clusters: 100% of 2 proxies hold their cluster's newest revision/);
    expect(last).toContain(`west: revision ${westRevision} reached 100% of 1 proxies`);

    // Forgeries, with east's credentials.
    const forged = (clusterId: string, replicaId: string): ReplicaConvergence => ({
      replicaId,
      clusterId,
      revision: 1_000_000,
      version: '1000000',
      changedAt: new Date().toISOString(),
      proxies: 500,
      synced: 0,
      syncMs: [],
      behind: [{ proxy: 'forged.default', holds: undefined }],
      at: new Date().toISOString(),
    });
    const nc = await connect({
      servers: nats!.clusters.east![0]!.url,
      authenticator: nkeyAuthenticator(new TextEncoder().encode(creds.east.seed!)),
    });
    try {
      const errors: string[] = [];
      void (async () => {
        for await (const s of nc.status()) if (s.type === 'error') errors.push(String(s.error));
      })();
      // West's subject: the NATS permissions refuse it.
      nc.publish(
        telemetrySubject('convergence', MESH, 'west', 'fake'),
        JSON.stringify(forged('west', 'fake')),
      );
      // East's own subject, a body claiming cluster c3: the receiver drops it.
      nc.publish(telemetrySubject('convergence', MESH, 'east', 'fake'), JSON.stringify(forged('c3', 'fake')));
      await nc.flush();
      await eventually(
        'the permission violation reported',
        () => errors.some((e) => /permission/i.test(e)),
        10_000,
        50,
      );
    } finally {
      await nc.close();
    }
    // A legitimate extra replica of east (east's credentials, east's subject) is counted: the channel
    // works, so the forgeries above were delivered as far as they could go.
    const probe = await connect({
      servers: nats!.clusters.east![0]!.url,
      authenticator: nkeyAuthenticator(new TextEncoder().encode(creds.east.seed!)),
    });
    try {
      const extra = { ...forged('east', 'east-probe'), revision: 1, version: '1', proxies: 0, behind: [] };
      probe.publish(telemetrySubject('convergence', MESH, 'east', 'east-probe'), JSON.stringify(extra));
      await probe.flush();
    } finally {
      await probe.close();
    }
    await eventually(
      "the probe among east's replicas, seen from west",
      async () => (await mesh(west)).clusters.find((c) => c.clusterId === 'east')?.replicas === 2,
      15_000,
      100,
    );
    for (const m of [await mesh(east), await mesh(west)]) {
      expect(m.clusters.map((c) => c.clusterId)).toEqual(['east', 'west']);
      expect(m.clusters.find((c) => c.clusterId === 'west')).toMatchObject({ replicas: 1, proxies: 1 });
      expect(m.behind.map((b) => b.proxy)).not.toContain('forged.default');
    }
  }, 120_000);

  it("east's dashboard lists west's proxy with its sync state, reported over federation", async () => {
    const base = `http://${replicas.east!.adminAddress}`;
    const cookie = await eastSession();
    type Row = {
      name: string;
      clusterId: string;
      replica: string;
      types: Record<string, { state: string }>;
      syncedVersion?: string;
      lastAckAgeMs?: number;
      remote?: { reportedAgoMs: number };
    };
    type Body = { proxies: Row[]; remoteReplicas: { clusterId: string; replicaId: string }[] };
    let body: Body | undefined;
    const westRevision = String(replicas.west!.snapshot!.version);
    await eventually(
      "west's proxy on east's Proxies data, synced to west's version",
      async () => {
        const res = await fetch(`${base}/ui/api/proxies`, { headers: { cookie } });
        expect(res.status).toBe(200);
        body = (await res.json()) as Body;
        const w = body.proxies.find((p) => p.clusterId === 'west');
        return w?.syncedVersion === westRevision;
      },
      20_000,
      250,
    ).catch((error: Error) => {
      throw new Error(`${error.message}; last: ${JSON.stringify(body)}`);
    });
    const local = body!.proxies.filter((p) => !p.remote);
    const remote = body!.proxies.filter((p) => p.remote);
    expect(local.map((p) => [p.name, p.clusterId, p.replica])).toEqual([
      ['client-0.default', 'east', 'east-0'],
    ]);
    expect(remote).toHaveLength(1);
    const w = remote[0]!;
    expect(w).toMatchObject({ name: 'client-0.default', clusterId: 'west', replica: 'west-0' });
    expect(Object.fromEntries(Object.entries(w.types).map(([t, v]) => [t, v.state]))).toEqual({
      cds: 'SYNCED',
      lds: 'SYNCED',
      eds: 'SYNCED',
      rds: 'SYNCED',
    });
    expect(w.lastAckAgeMs).toBeGreaterThanOrEqual(0);
    expect(w.remote!.reportedAgoMs).toBeLessThan(15_000);
    expect(body!.remoteReplicas).toMatchObject([{ clusterId: 'west', replicaId: 'west-0' }]);
    // The forged and probe summaries of the first test named no proxies; nothing else is listed.
    expect(JSON.stringify(body)).not.toContain('forged');
    // No address or identity of west's proxy travels.
    expect(JSON.stringify(remote)).not.toMatch(/10\.1\.0\.1|spiffe:/);
  }, 60_000);

  it("east's dashboard Mesh data lists west's replica with the state it reports, over federation", async () => {
    const east = replicas.east!;
    const west = replicas.west!;
    const cookie = await eastSession();
    type Remote = {
      clusterId: string;
      replicaId: string;
      reportedAgoMs: number;
      status?: Record<string, unknown>;
    };
    type Body = { replicas: { id: string; clusterId: string }[]; remoteReplicas: Remote[] };
    let body: Body | undefined;
    await eventually(
      "west's replica on east's Mesh data, leading, with its proxy",
      async () => {
        const res = await fetch(`http://${east.adminAddress}/ui/api/mesh`, { headers: { cookie } });
        expect(res.status).toBe(200);
        body = (await res.json()) as Body;
        const w = body.remoteReplicas.find((r) => r.replicaId === 'west-0');
        return w?.status?.leader === true && w.status.connections === 1;
      },
      20_000,
      250,
    ).catch((error: Error) => {
      throw new Error(`${error.message}; last: ${JSON.stringify(body)}`);
    });
    // East's own replicas are asked; west's only reported (never listed as a member).
    expect(body!.replicas.map((r) => r.id)).toEqual(['east-0']);
    // The probe of the first test was east's: this cluster's replicas never come from NATS.
    expect(body!.remoteReplicas.map((r) => [r.clusterId, r.replicaId])).toEqual([['west', 'west-0']]);
    const w = body!.remoteReplicas[0]!;
    expect(w.status).toMatchObject({
      leader: true,
      locality: '',
      connections: 1,
      store: 'ok',
      version: expect.any(String),
      snapshotRevision: west.snapshot!.revision,
    });
    for (const k of Object.keys(w.status!))
      expect([
        'leader',
        'locality',
        'connections',
        'registrations',
        'store',
        'version',
        'snapshotRevision',
      ]).toContain(k);
    expect(w.reportedAgoMs).toBeLessThan(15_000);
    // No address of west's travels.
    expect(JSON.stringify(w)).not.toContain(west.adminAddress);
    expect(JSON.stringify(w)).not.toContain(west.xdsAddress);
  }, 60_000);
});
