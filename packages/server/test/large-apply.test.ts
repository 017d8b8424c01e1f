// Issue 15, items 1 and 2, end to end: a real 3-member etcd (default --max-txn-ops 128) and two
// meridiand processes. A 5,000-object apply is all or nothing and seen at once by a watcher and by a
// proxy of the other replica; etcd killed in the middle of a large apply leaves nothing visible;
// past the documented limit the API and the CLI answer 413 naming it; a body past 8 MiB gets
// Meridian's 413 message through the CLI. A single etcd with --max-txn-ops 16 shows the chunking
// adapts to whatever etcd allows.
import { writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TypeUrl } from '@meridian/envoy';
import { EtcdStore, Keyspace, type Store } from '@meridian/store';
import {
  type EtcdCluster,
  eventually,
  freePorts,
  SimulatedProxy,
  startEtcd,
  startEtcdCluster,
} from '@meridian/testkit';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ClusterState } from '../src/cluster-state.js';
import { STAGING_PREFIX } from '../src/config-commit.js';
import { ConfigService, MAX_APPLY_OBJECTS } from '../src/config-service.js';
import {
  ALL_TYPES,
  adminHeaders,
  type ReplicaProcess,
  spawnTs,
  startReplicas,
  xdsClient,
} from './harness.js';

const CLI = fileURLToPath(new URL('../../cli/src/main.ts', import.meta.url));
const N = 5000;

let tmp: string;
let etcd: EtcdCluster;
let replicas: ReplicaProcess[];
let watchStore: Store;
let watcher: ClusterState;
/** What the watcher saw after each change: [objects in namespace bulk, objects in namespace bulk2]. */
const seen: [number, number][] = [];
const proxies: SimulatedProxy[] = [];

const se = (ns: string, i: number) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: svc-${i}, namespace: ${ns}}
spec:
  hosts: [svc-${i}.${ns}.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.${ns === 'bulk' ? 20 : 21}.${Math.floor(i / 250)}.${(i % 250) + 1}}]
`;
const many = (ns: string, n: number) => Array.from({ length: n }, (_, i) => se(ns, i)).join('---\n');

async function post(
  r: ReplicaProcess,
  body: string,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${r.admin}/apis/v1/apply`, {
    method: 'POST',
    headers: await adminHeaders(await r.token(), body),
    body,
    signal: AbortSignal.timeout(180_000),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function cli(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawnTs(CLI, args, {
    MERIDIAN_CREDENTIALS: join(tmp, 'no-credentials.yaml'),
    MERIDIAN_TOKEN: await replicas[0]!.token(),
  });
  let out = '';
  let err = '';
  child.stdout?.on('data', (c: Buffer) => {
    out += c.toString();
  });
  child.stderr?.on('data', (c: Buffer) => {
    err += c.toString();
  });
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, out, err })));
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'meridian-large-apply-'));
  etcd = await startEtcdCluster({ size: 3, fastElection: true });
  const ports = await freePorts(4);
  replicas = await startReplicas(
    ['a', 'b'].map((id, i) => ({
      id,
      etcd: etcd.endpoints,
      xdsPort: ports[2 * i]!,
      adminPort: ports[2 * i + 1]!,
      extraArgs: ['--debounce-ms', '50', '--store-timeout-ms', '2000'],
    })),
  );
  watchStore = await EtcdStore.connect({ endpoints: etcd.endpoints, keyspace: Keyspace.of('test', 'c1') });
  watcher = new ClusterState(
    watchStore,
    pino({ level: 'silent' }),
    () =>
      seen.push([
        watcher.list('config/ServiceEntry/bulk/').length,
        watcher.list('config/ServiceEntry/bulk2/').length,
      ]),
    () => undefined,
  );
  await watcher.start();
}, 180_000);

afterEach((ctx) => {
  if (ctx.task.result?.state !== 'fail') return;
  for (const r of replicas ?? []) console.log(`--- ${r.spec.id}\n${r.output.slice(-30).join('\n')}`);
});

afterAll(async () => {
  for (const p of proxies) p.disconnect();
  await watcher?.close();
  await watchStore?.close();
  await Promise.all((replicas ?? []).map((r) => r.kill('SIGTERM')));
  await etcd?.stop();
  await rm(tmp, { recursive: true, force: true });
});

describe('applies of any size (issue 15, item 1)', () => {
  it(`a ${N}-object apply is one change to a watcher and to a proxy of another replica`, async () => {
    const [a, b] = replicas as [ReplicaProcess, ReplicaProcess];
    const proxy = new SimulatedProxy({
      nodeId: 'sidecar~10.1.0.1~watcher-0.default~default.svc.cluster.local',
      metadata: { NAMESPACE: 'default', CLUSTER_ID: 'c1' },
      variant: 'sotw',
      subscriptions: ALL_TYPES.map((typeUrl) => ({ typeUrl })),
      record: true,
    });
    proxies.push(proxy);
    proxy.connect(xdsClient(b.xds));
    await eventually(
      'proxy has CDS',
      () => (proxy.state.get(TypeUrl.Cluster)?.responses ?? 0) > 0,
      30_000,
      50,
    );
    const base = proxy.state.get(TypeUrl.Cluster)!.resources.size;

    const body = many('bulk', N);
    const started = performance.now();
    const res = await post(a, body);
    const ms = performance.now() - started;
    expect(res.status, JSON.stringify(res.body).slice(0, 500)).toBe(200);
    const items = res.body.items as { action: string; resourceVersion: string }[];
    expect(items).toHaveLength(N);
    expect(new Set(items.map((i) => i.resourceVersion))).toEqual(new Set([String(res.body.revision)]));
    console.log(
      JSON.stringify({ apply: { objects: N, bodyBytes: Buffer.byteLength(body), ms: Math.round(ms) } }),
    );

    await eventually(
      'watcher sees the apply',
      () => watcher.list('config/ServiceEntry/bulk/').length === N,
      60_000,
      50,
    );
    await eventually(
      'the proxy on replica b holds every cluster',
      () => proxy.state.get(TypeUrl.Cluster)!.resources.size === base + N,
      120_000,
      100,
    );
    // Never half: every change the watcher saw, and every CDS push, had none or all of them.
    expect(seen.filter(([bulk]) => bulk !== 0 && bulk !== N)).toEqual([]);
    const cds = proxy.responses.filter((r) => r.typeUrl === TypeUrl.Cluster).map((r) => r.resources.length);
    expect(cds.filter((n) => n !== base && n !== base + N)).toEqual([]);
    // Folded: nothing left staged, and both replicas list every object.
    await eventually(
      'staging folded away',
      async () => (await watchStore.list(STAGING_PREFIX)).items.length === 0,
      30_000,
      50,
    );
    const listed = await b.getJson<{ items: unknown[] }>('/apis/v1/config/ServiceEntry?namespace=bulk');
    expect(listed.items).toHaveLength(N);
  }, 300_000);

  it('etcd killed in the middle of a large apply: all or nothing', async () => {
    const [a] = replicas as [ReplicaProcess];
    const before = seen.length;
    // Kill every member once the apply is staging its objects.
    let staged = 0;
    const killed = new Promise<void>((resolve) => {
      const w = watchStore.watchPrefix(STAGING_PREFIX, (batch) => {
        if (batch.kind !== 'events') return;
        staged += batch.events.filter((e) => e.type === 'put').length;
        if (staged >= 1000) {
          void w.close();
          void Promise.all(etcd.members.map((m) => m.kill('SIGKILL'))).then(() => resolve());
        }
      });
    });
    const applying = post(a, many('bulk2', N)).catch((error: unknown) => ({
      status: 0,
      body: { message: String(error) },
    }));
    await killed;
    const res = await applying;
    // Refused (503: the store went away, nothing applied or the outcome unknown), never half applied.
    expect(res.status, JSON.stringify(res.body)).toBe(503);
    await Promise.all(etcd.members.map((m) => m.restart()));
    await etcd.waitHealthy({ timeoutMs: 60_000 });
    await eventually(
      'replica a writable again',
      async () => (await a.text('/readyz')).body.trim() === 'ok',
      60_000,
      50,
    );
    const listed = await a.getJson<{ items: unknown[] }>('/apis/v1/config/ServiceEntry?namespace=bulk2');
    expect([0, N]).toContain(listed.items.length);
    expect(seen.slice(before).filter(([, bulk2]) => bulk2 !== 0 && bulk2 !== N)).toEqual([]);

    // Applied again: all of it, at once.
    const again = await post(a, many('bulk2', N));
    expect(again.status, JSON.stringify(again.body).slice(0, 500)).toBe(200);
    await eventually(
      'watcher sees bulk2',
      () => watcher.list('config/ServiceEntry/bulk2/').length === N,
      60_000,
      50,
    );
    expect(seen.slice(before).filter(([, bulk2]) => bulk2 !== 0 && bulk2 !== N)).toEqual([]);
    expect(seen.at(-1)).toEqual([N, N]);
  }, 300_000);

  it(`past ${MAX_APPLY_OBJECTS} objects: 413 naming the limit, from the API and through the CLI`, async () => {
    const [a] = replicas as [ReplicaProcess];
    const tiny = (i: number) =>
      `apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d${i}, namespace: big}\nspec: {host: h${i}}\n`;
    // At the limit: accepted (the largest apply, timed).
    const atLimit = Array.from({ length: MAX_APPLY_OBJECTS }, (_, i) => tiny(i)).join('---\n');
    const started = performance.now();
    const ok = await post(a, atLimit);
    expect(ok.status, JSON.stringify(ok.body).slice(0, 500)).toBe(200);
    console.log(
      JSON.stringify({
        apply: {
          objects: MAX_APPLY_OBJECTS,
          bodyBytes: Buffer.byteLength(atLimit),
          ms: Math.round(performance.now() - started),
        },
      }),
    );
    expect(
      (await a.getJson<{ items: unknown[] }>('/apis/v1/config/DestinationRule?namespace=big')).items,
    ).toHaveLength(MAX_APPLY_OBJECTS);
    const body = Array.from({ length: MAX_APPLY_OBJECTS + 1 }, (_, i) => tiny(i))
      .join('---\n')
      .replaceAll('namespace: big}', 'namespace: big2}');
    const res = await post(a, body);
    expect(res.status).toBe(413);
    expect(res.body).toEqual({
      code: 'TOO_LARGE',
      reason: 'RequestEntityTooLarge',
      message: `apply of ${MAX_APPLY_OBJECTS + 1} objects refused: at most ${MAX_APPLY_OBJECTS} objects per apply (MAX_APPLY_OBJECTS); split the file`,
    });
    const file = join(tmp, 'too-many.yaml');
    writeFileSync(file, body);
    const out = await cli(['apply', '-f', file, '--server', a.admin]);
    expect(out.err.trim()).toBe(
      `Error from server (RequestEntityTooLarge): apply of ${MAX_APPLY_OBJECTS + 1} objects refused: at most ${MAX_APPLY_OBJECTS} objects per apply (MAX_APPLY_OBJECTS); split the file`,
    );
    expect(out.code).toBe(1);
    expect(
      (await a.getJson<{ items: unknown[] }>('/apis/v1/config/DestinationRule?namespace=big2')).items,
    ).toEqual([]);
  }, 120_000);

  it('a body past 8 MiB: the CLI prints the server’s 413 message; the server stays up', async () => {
    const [a] = replicas as [ReplicaProcess];
    const file = join(tmp, 'huge.yaml');
    writeFileSync(file, `# ${'x'.repeat(9 * 1024 * 1024)}\n${se('huge', 0)}`);
    const out = await cli(['apply', '-f', file, '--server', a.admin]);
    expect(out.err.trim()).toBe(
      'Error from server (RequestEntityTooLarge): request body larger than 8388608 bytes; split the file (meridian apply -f accepts several files)',
    );
    expect(out.code).toBe(1);
    expect((await a.text('/readyz')).status).toBe(200);
  }, 120_000);
});

describe('whatever etcd --max-txn-ops allows', () => {
  it('an apply of 500 objects against etcd --max-txn-ops 16 is chunked and atomic', async () => {
    const small = await startEtcd({ extraArgs: ['--max-txn-ops', '16'] });
    const store = await EtcdStore.connect({ endpoints: small.endpoints, keyspace: Keyspace.of('t', 'c') });
    const counts: number[] = [];
    const state: ClusterState = new ClusterState(
      store,
      pino({ level: 'silent' }),
      () => counts.push(state.list('config/').length),
      () => undefined,
    );
    try {
      await state.start();
      const config = new ConfigService(store, { unavailableSince: undefined }, state);
      const result = await config.applyText(many('bulk', 500));
      expect(result.items).toHaveLength(500);
      await eventually('watcher sees 500', () => state.list('config/').length === 500, 30_000, 50);
      expect(counts).toEqual([500]);
      await config.folded();
      expect((await store.list('config/')).items).toHaveLength(500);
      expect((await store.list(STAGING_PREFIX)).items).toHaveLength(0);
      config.close();
    } finally {
      await state.close();
      await store.close();
      await small.stop();
    }
  }, 120_000);
});
