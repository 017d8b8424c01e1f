// `meridian proxy-status` and `meridian proxy-config` against meridiand processes: two of cluster c1
// with simulated proxies (one SYNCED on r1; on r2 one whose listeners it NACKs (ERROR), one that never
// ACKs (STALE), and one more that follows every change) and one of cluster c2: istioctl's columns and
// states from both replicas, every cluster with --all-contexts, the per-type sent/current comparison,
// istioctl's proxy-config tables; an unreachable replica is a warning. A replica builds a push context
// only when it pushes it (changes are debounced before the build), so what it sent and what it holds
// differ only while a push is in flight: the diff's rendering is checked on its own (syncDiff), as
// are durations, the unified diff and the secret table, without servers.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRootCa } from '@meridian/ca';
import { run } from '@meridian/cli';
import {
  type EtcdCluster,
  eventually,
  freePorts,
  SimulatedProxy,
  sotwRequestBytes,
  startEtcd,
} from '@meridian/testkit';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ALL_TYPES, benchConfig, ReplicaProcess, xdsClient } from '../../server/test/harness.js';
import { humanDuration, secretTable, syncDiff, tabwrite } from '../src/commands/proxy-format.js';
import { unifiedDiff } from '../src/diff.js';

let out: string[] = [];
let err: string[] = [];
const ctx = { out: (l: string) => out.push(l), err: (l: string) => err.push(l) };
const env = process.env;
let dir: string;
let etcd: EtcdCluster;
let r1: ReplicaProcess;
let r2: ReplicaProcess;
/** The one replica of a second cluster, c2, in the same etcd (its own keyspace and credentials). */
let r3: ReplicaProcess;
let token: string;
const clients: ReturnType<typeof xdsClient>[] = [];
const proxies: SimulatedProxy[] = [];

/** Envoy's type URLs (the CLI package does not depend on @meridian/envoy). */
const TypeUrl = {
  Cluster: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
  Listener: 'type.googleapis.com/envoy.config.listener.v3.Listener',
  RouteConfiguration: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
} as const;

const nodeId = (ip: string, pod: string) => `sidecar~${ip}~${pod}.default~default.svc.cluster.local`;

function proxy(id: string, variant: 'sotw' | 'delta', manual = false, cluster = 'c1'): SimulatedProxy {
  const p = new SimulatedProxy({
    nodeId: id,
    metadata: {
      NAMESPACE: 'default',
      CLUSTER_ID: cluster,
      ISTIO_VERSION: '1.24.0',
      LABELS: { app: 'client' },
    },
    variant,
    subscriptions: ALL_TYPES.map((typeUrl) => ({ typeUrl })),
    manual,
    record: manual,
  });
  proxies.push(p);
  return p;
}

function connect(p: SimulatedProxy, replica: ReplicaProcess): void {
  const client = xdsClient(replica.xds);
  clients.push(client);
  p.connect(client);
}

/** Runs the CLI against r1 with the cluster's admin token. */
async function meridian(...args: string[]): Promise<number> {
  out = [];
  err = [];
  return run([...args, '--server', r1.admin, '--token', token], ctx);
}

/** Splits tabwriter output into cells by the header's column starts. */
function table(lines: readonly string[]): Record<string, string>[] {
  const header = lines[0]!;
  const names = header.split(/ {2,}/);
  const starts = names.map((n) => header.indexOf(n));
  return lines
    .slice(1)
    .map((line) => Object.fromEntries(names.map((n, i) => [n, line.slice(starts[i], starts[i + 1]).trim()])));
}

const served = (p: SimulatedProxy) => ALL_TYPES.every((t) => (p.state.get(t)?.responses ?? 0) > 0);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meridian-cli-proxy-'));
  process.env = { ...env, MERIDIAN_CREDENTIALS: join(dir, 'none.yaml') };
  delete process.env.MERIDIAN_TOKEN;
  delete process.env.MERIDIAN_SERVER;
  etcd = await startEtcd();
  const [x1, a1, x2, a2, x3, a3] = await freePorts(6);
  r1 = new ReplicaProcess({
    id: 'r1',
    etcd: etcd.endpoints,
    xdsPort: x1!,
    adminPort: a1!,
    // Membership leases that outlive a loaded machine's pauses (and, for r2, its SIGKILL).
    extraArgs: ['--debounce-ms', '20', '--replica-lease-ttl', '30'],
  });
  r2 = new ReplicaProcess({
    id: 'r2',
    etcd: etcd.endpoints,
    xdsPort: x2!,
    adminPort: a2!,
    extraArgs: ['--debounce-ms', '20', '--replica-lease-ttl', '30'],
  });
  r3 = new ReplicaProcess({
    id: 'r3',
    etcd: etcd.endpoints,
    xdsPort: x3!,
    adminPort: a3!,
    extraArgs: ['--cluster-id', 'c2', '--debounce-ms', '20', '--replica-lease-ttl', '30'],
  });
  await Promise.all([r1.start(), r2.start(), r3.start()]);
  token = await r1.token();
  expect((await r1.apply(benchConfig(0))).status).toBe(200);
  await eventually(
    'r2 has the config',
    async () => {
      const replica = await r2.getJson<{ snapshotRevision: number }>('/debug/replica');
      const other = await r1.getJson<{ snapshotRevision: number }>('/debug/replica');
      return replica.snapshotRevision === other.snapshotRevision;
    },
    30_000,
    50,
  );

  const synced = proxy(nodeId('10.1.0.1', 'client-1'), 'sotw');
  connect(synced, r1);
  const nacker = proxy(nodeId('10.1.0.2', 'nacker-2'), 'delta');
  nacker.nackTypes.set(TypeUrl.Listener, 'listener 0.0.0.0_9080: rejected by the test');
  connect(nacker, r2);
  const lagging = proxy(nodeId('10.1.0.4', 'lagging-4'), 'sotw');
  connect(lagging, r2);
  // Subscribes to clusters and never ACKs.
  const silent = proxy(nodeId('10.1.0.3', 'silent-3'), 'sotw', true);
  connect(silent, r2);
  silent.send(sotwRequestBytes({ node: silent.node, typeUrl: TypeUrl.Cluster, resourceNames: [] }));
  const east = proxy('sidecar~10.2.0.1~east-1.default~default.svc.cluster.local', 'sotw', false, 'c2');
  connect(east, r3);
  await eventually('every proxy served', () => [synced, nacker, lagging, east].every(served), 30_000, 50);
  await eventually('the silent proxy got clusters', () => silent.responses.length > 0, 30_000, 50);
  // A route change, pushed by both replicas.
  const before = synced.state.get(TypeUrl.RouteConfiguration)!.responses;
  const beforeLagging = lagging.state.get(TypeUrl.RouteConfiguration)!.responses;
  expect((await r1.apply(benchConfig(1))).status).toBe(200);
  await eventually(
    'both replicas pushed the change',
    () =>
      synced.state.get(TypeUrl.RouteConfiguration)!.responses > before &&
      lagging.state.get(TypeUrl.RouteConfiguration)!.responses > beforeLagging,
    30_000,
    50,
  );
}, 120_000);

afterAll(async () => {
  for (const p of proxies) p.disconnect();
  for (const c of clients) c.close();
  await Promise.all([r1?.kill(), r2?.kill(), r3?.kill()]);
  await etcd?.stop();
  process.env = env;
  await rm(dir, { recursive: true, force: true });
});

beforeEach(() => {
  out = [];
  err = [];
});

describe('meridian proxy-status', () => {
  it("lists the proxies of both replicas with istioctl's columns and states", async () => {
    expect(await meridian('proxy-status')).toBe(0);
    expect(err).toEqual([]);
    expect(out[0]!.split(/ {2,}/)).toEqual([
      'NAME',
      'CLUSTER',
      'CDS',
      'LDS',
      'EDS',
      'RDS',
      'ISTIOD',
      'VERSION',
      'LAST ACK',
    ]);
    const rows = table(out);
    expect(rows.map((r) => r.NAME)).toEqual([
      'client-1.default',
      'lagging-4.default',
      'nacker-2.default',
      'silent-3.default',
    ]);
    const row = (name: string) => rows.find((r) => r.NAME === name)!;
    const synced = /^SYNCED \(\d+s\)$/;
    expect(row('client-1.default')).toMatchObject({ CLUSTER: 'c1', ISTIOD: 'r1', VERSION: '1.24.0' });
    for (const t of ['CDS', 'LDS', 'EDS', 'RDS']) expect(row('client-1.default')[t]).toMatch(synced);
    expect(row('client-1.default')['LAST ACK']).toMatch(/^\d+s$/);
    expect(row('nacker-2.default')).toMatchObject({ ISTIOD: 'r2' });
    expect(row('nacker-2.default').LDS).toMatch(/^ERROR \(\d+s\)$/);
    for (const t of ['CDS', 'EDS', 'RDS']) expect(row('nacker-2.default')[t]).toMatch(synced);
    expect(row('silent-3.default')).toMatchObject({
      ISTIOD: 'r2',
      LDS: 'IGNORED',
      EDS: 'IGNORED',
      'LAST ACK': 'never',
    });
    expect(row('silent-3.default').CDS).toMatch(/^STALE \(\d+s\)$/);
    expect(row('lagging-4.default').ISTIOD).toBe('r2');
  });

  it('filters by namespace and prints JSON', async () => {
    expect(await meridian('proxy-status', '-n', 'other')).toBe(0);
    expect(out).toEqual([]);
    expect(err).toEqual(['No proxies found (asked 2 replicas)']);
    expect(await meridian('ps', '-o', 'json')).toBe(0);
    const json = JSON.parse(out.join('\n')) as {
      replica: string;
      name: string;
      types: Record<string, { state: string }>;
    }[];
    expect(json.find((p) => p.name === 'nacker-2.default')).toMatchObject({
      replica: 'r2',
      types: { lds: { state: 'ERROR' } },
    });
  });

  it('for one proxy, compares what was sent with the current config per type', async () => {
    await eventually(
      'the pushed change is what r2 holds',
      async () => (await meridian('proxy-status', 'lagging-4.default')) === 0 && out.includes('Routes Match'),
      20_000,
      200,
    );
    expect(out).toEqual(['Clusters Match', 'Listeners Match', 'Routes Match', 'Endpoints Match']);

    expect(await meridian('proxy-status', nodeId('10.1.0.2', 'nacker-2'))).toBe(0);
    expect(out.find((l) => l.startsWith('Listeners'))).toBe(
      'Listeners Match (the proxy NACKed the last response: listener 0.0.0.0_9080: rejected by the test; it keeps what it had before)',
    );
    expect(await meridian('proxy-status', 'client-1.default')).toBe(0);
    expect(out).toEqual(['Clusters Match', 'Listeners Match', 'Routes Match', 'Endpoints Match']);
  });

  it('names the replicas it asked when the proxy is not connected', async () => {
    expect(await meridian('proxy-status', 'nobody.default')).toBe(1);
    expect(err).toEqual([
      'error: proxy "nobody.default" is not connected to any replica (asked r1, r2); give its node id or <pod>.<namespace> (see meridian proxy-status)',
    ]);
  });
});

describe('meridian proxy-config', () => {
  it('cluster: istioctl columns', async () => {
    expect(await meridian('proxy-config', 'cluster', 'client-1.default')).toBe(0);
    expect(out[0]!.split(/ {2,}/)).toEqual([
      'SERVICE FQDN',
      'PORT',
      'SUBSET',
      'DIRECTION',
      'TYPE',
      'DESTINATION RULE',
    ]);
    const rows = table(out);
    expect(rows).toContainEqual({
      'SERVICE FQDN': 'reviews.default.svc.cluster.local',
      PORT: '9080',
      SUBSET: '-',
      DIRECTION: 'outbound',
      TYPE: 'EDS',
      'DESTINATION RULE': '',
    });
    expect(await meridian('pc', 'clusters', 'client-1.default', '-o', 'json')).toBe(0);
    const json = JSON.parse(out.join('\n')) as { name: string }[];
    expect(json.map((c) => c.name)).toContain('outbound|9080||reviews.default.svc.cluster.local');
  });

  it('listener, route and endpoint tables', async () => {
    expect(await meridian('proxy-config', 'listener', 'client-1.default')).toBe(0);
    expect(out[0]!.split(/ {2,}/)).toEqual(['ADDRESSES', 'PORT', 'MATCH', 'DESTINATION']);
    expect(table(out).some((r) => r.PORT === '9080')).toBe(true);
    expect(await meridian('proxy-config', 'route', 'client-1.default')).toBe(0);
    expect(out[0]!.split(/ {2,}/)).toEqual(['NAME', 'VHOST NAME', 'DOMAINS', 'MATCH', 'VIRTUAL SERVICE']);
    expect(table(out).some((r) => r.DOMAINS?.includes('reviews'))).toBe(true);
    expect(await meridian('proxy-config', 'endpoint', 'client-1.default')).toBe(0);
    expect(out[0]!.split(/ {2,}/)).toEqual(['NAME', 'STATUS', 'LOCALITY', 'CLUSTER']);
    expect(table(out).map((r) => r.NAME)).toEqual(expect.arrayContaining(['10.8.0.1:9080', '10.8.0.2:9080']));
    expect(await meridian('proxy-config', 'secret', 'client-1.default')).toBe(0);
    expect(err).toEqual(['proxy "client-1.default" does not watch SDS']);
    expect(await meridian('proxy-config', 'bogus', 'client-1.default')).toBe(1);
    expect(err).toEqual([
      'error: unknown config type "bogus" (one of: cluster, listener, route, endpoint, secret)',
    ]);
  });

  it('asks every cluster of the credentials file with --all-contexts, each replica once', async () => {
    await writeFile(
      join(dir, 'two.yaml'),
      `apiVersion: meridian.io/v1
kind: Credentials
current-context: a
contexts:
- {name: a, server: '${r1.admin}', token: '${token}'}
- {name: b, server: '${r2.admin}', token: '${token}'}
- {name: c, server: '${r3.admin}', token: '${await r3.token()}'}
`,
      { mode: 0o600 },
    );
    out = [];
    err = [];
    expect(await run(['proxy-status', '--all-contexts', '--credentials', join(dir, 'two.yaml')], ctx)).toBe(
      0,
    );
    const rows = table(out);
    expect(rows.map((r) => [r.NAME, r.CLUSTER, r.ISTIOD])).toEqual([
      ['client-1.default', 'c1', 'r1'],
      ['east-1.default', 'c2', 'r3'],
      ['lagging-4.default', 'c1', 'r2'],
      ['nacker-2.default', 'c1', 'r2'],
      ['silent-3.default', 'c1', 'r2'],
    ]);
    expect(rows.find((r) => r.NAME === 'east-1.default')!.CDS).toMatch(/^SYNCED \(\d+s\)$/);
    expect(rows.find((r) => r.NAME === 'nacker-2.default')!.LDS).toMatch(/^ERROR \(\d+s\)$/);
  });

  it('reports a replica it cannot reach and shows the others', async () => {
    await r2.kill('SIGKILL');
    expect(await meridian('proxy-status')).toBe(0);
    expect(err).toHaveLength(1);
    expect(err[0]).toMatch(
      /^warning: replica r2 \(cluster c1, http:\/\/127\.0\.0\.1:\d+\) not asked: The connection to the server http:\/\/127\.0\.0\.1:\d+ was refused/,
    );
    expect(table(out).map((r) => r.NAME)).toEqual(['client-1.default']);
  });
});

describe('formatting', () => {
  it("humanDuration is Kubernetes' HumanDuration", () => {
    const s = 1000;
    expect(
      [0, 59 * s, 119 * s, 125 * s, 600 * s, 3 * 3600 * s + 5 * 60 * s, 30 * 3600 * s, 50 * 3600 * s].map(
        humanDuration,
      ),
    ).toEqual(['0s', '59s', '119s', '2m5s', '10m', '3h5m', '30h', '2d2h']);
  });

  it('tabwrite pads columns by 5 as istioctl does', () => {
    expect(
      tabwrite([
        ['NAME', 'X'],
        ['a-long-name', 'y'],
      ]),
    ).toEqual(['NAME            X', 'a-long-name     y']);
  });

  it('unifiedDiff prints hunks with context', () => {
    const a = [
      '1',
      '2',
      '3',
      '4',
      '5',
      '6',
      '7',
      '8',
      '9',
      '10',
      '11',
      '12',
      '13',
      '14',
      '15',
      '16',
      '17',
      '18',
      '19',
      '20',
    ];
    const b = [...a];
    b[2] = 'three';
    b.splice(17, 1);
    expect(unifiedDiff('a', 'b', a.join('\n'), b.join('\n'), 2)).toBe(
      [
        '--- a',
        '+++ b',
        '@@ -1,5 +1,5 @@',
        ' 1',
        ' 2',
        '-3',
        '+three',
        ' 4',
        ' 5',
        '@@ -16,5 +16,4 @@',
        ' 16',
        ' 17',
        '-18',
        ' 19',
        ' 20',
        '',
      ].join('\n'),
    );
    expect(unifiedDiff('a', 'b', 'same', 'same')).toBe('');
  });

  it('secret table reads the certificates (keys redacted)', () => {
    const root = createRootCa({ trustDomain: 'cluster.local', keyType: 'ecdsa-p256' });
    const pem = Buffer.from(root.certPem).toString('base64');
    const lines = secretTable([
      { name: 'ROOTCA', validation_context: { trusted_ca: { inline_bytes: pem } } },
      {
        name: 'default',
        tls_certificate: {
          certificate_chain: { inline_bytes: pem },
          private_key: { inline_string: '[redacted]' },
        },
      },
    ]);
    const rows = table(lines);
    expect(rows.map((r) => [r['RESOURCE NAME'], r.TYPE, r.STATUS, r['VALID CERT']])).toEqual([
      ['ROOTCA', 'CA', 'ACTIVE', 'true'],
      ['default', 'Cert Chain', 'ACTIVE', 'true'],
    ]);
    expect(rows[0]!['NOT AFTER']).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(rows[0]!['SERIAL NUMBER']).toMatch(/^[0-9a-f]+$/);
  });
});

describe('syncDiff (proxy-status <proxy>)', () => {
  const route = (timeout: string) => ({
    name: '9080',
    version: timeout,
    resource: { name: '9080', virtual_hosts: [{ name: 'reviews', routes: [{ route: { timeout } }] }] },
  });
  const status = (rds: { state: string; error?: string }) =>
    ({
      proxyId: 'sidecar~10.1.0.4~lagging-4.default~default.svc.cluster.local',
      name: 'lagging-4.default',
      types: { rds },
    }) as unknown as Parameters<typeof syncDiff>[1];

  it('a type whose sent resources differ from the current ones: a unified diff, current first', () => {
    const lines = syncDiff('r2', status({ state: 'SYNCED' }), { rds: [route('1s')] }, { rds: [route('2s')] });
    expect(lines[0]).toBe("Routes Don't Match");
    const diff = lines.slice(1).join('\n');
    expect(diff).toContain('--- Replica r2 Routes (current)');
    expect(diff).toContain('+++ Proxy lagging-4.default Routes (sent)');
    expect(diff).toMatch(/^-\s+"timeout": "2s",?$/m);
    expect(diff).toMatch(/^\+\s+"timeout": "1s",?$/m);
  });

  it('equal resources match; a NACK and an un-ACKed response are explained', () => {
    expect(
      syncDiff('r2', status({ state: 'SYNCED' }), { rds: [route('1s')] }, { rds: [route('1s')] }),
    ).toEqual(['Routes Match']);
    expect(
      syncDiff(
        'r2',
        status({ state: 'ERROR', error: 'bad route' }),
        { rds: [route('1s')] },
        { rds: [route('1s')] },
      ),
    ).toEqual(['Routes Match (the proxy NACKed the last response: bad route; it keeps what it had before)']);
    expect(
      syncDiff('r2', status({ state: 'STALE' }), { rds: [route('1s')] }, { rds: [route('1s')] }),
    ).toEqual(['Routes Match (sent, not ACKed yet)']);
  });
});
