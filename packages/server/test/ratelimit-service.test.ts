// The global rate-limit service over Envoy's own proto (envoy.service.ratelimit.v3) on three
// in-process replicas sharing a 3-member etcd cluster: a limit of N per minute with requests spread
// over the replicas allows N (within 5%, never more); a replica stopped mid-window loses at most its
// unused batch; principals are counted apart; invalid RateLimit / RequestAuthentication objects are
// refused naming each field and write nothing.
import * as grpc from '@grpc/grpc-js';
import { EtcdStore, Keyspace } from '@meridian/store';
import { type EtcdCluster, eventually, startEtcdCluster } from '@meridian/testkit';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveOptions } from '../src/options.js';
import { RATE_LIMIT_PREFIX, rateLimitServiceClient } from '../src/ratelimit-service.js';
import { Replica } from '../src/replica.js';
import { adminFetch } from './harness.js';

const MESH = 'rls';
const CLUSTER = 'c1';
let etcd: EtcdCluster | undefined;
const replicas: Replica[] = [];
const clients = new Map<Replica, grpc.Client>();

interface Answer {
  overall_code: string;
  statuses?: Array<{ code: string; current_limit?: { requests_per_unit: number; unit: string } }>;
}

function client(r: Replica): grpc.Client & {
  ShouldRateLimit: (req: unknown, cb: (e: grpc.ServiceError | null, res: Answer) => void) => void;
} {
  let c = clients.get(r);
  if (!c) {
    const Ctor = rateLimitServiceClient();
    c = new Ctor(r.xdsAddress, grpc.credentials.createInsecure());
    clients.set(r, c);
  }
  return c as never;
}

/** One ShouldRateLimit call as Envoy makes it, to replica `r`. */
function ask(r: Replica, limit: string, extra: Array<{ key: string; value: string }> = []): Promise<Answer> {
  return new Promise((resolve, reject) =>
    client(r).ShouldRateLimit(
      {
        domain: 'meridian',
        descriptors: [{ entries: [{ key: 'meridian_limit', value: limit }, ...extra] }],
        hits_addend: 1,
      },
      (e, res) => (e ? reject(e) : resolve(res)),
    ),
  );
}

async function apply(yaml: string, r = replicas[0]!): Promise<Response> {
  return adminFetch(r, '/apis/v1/apply?source=t.yaml', { method: 'POST', body: yaml });
}

/** Sends `count` requests round-robin over `targets`, 8 at a time; returns how many were allowed. */
async function spread(targets: readonly Replica[], limit: string, count: number): Promise<number> {
  let allowed = 0;
  let next = 0;
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= count) return;
      const a = await ask(targets[i % targets.length]!, limit);
      if (a.overall_code === 'OK') allowed++;
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return allowed;
}

/** Waits until at least `needMs` are left in the current minute (fixed windows start on the minute). */
async function roomInMinute(needMs: number): Promise<void> {
  const left = 60_000 - (Date.now() % 60_000);
  if (left < needMs) await new Promise((r) => setTimeout(r, left + 200));
}

async function counterValue(limit: string): Promise<number> {
  const store = await EtcdStore.connect({ endpoints: etcd!.endpoints, keyspace: Keyspace.of(MESH, CLUSTER) });
  try {
    const list = await store.list(`${RATE_LIMIT_PREFIX}${limit}/`);
    return list.items.reduce((n, kv) => n + Number(Buffer.from(kv.value).toString('utf8')), 0);
  } finally {
    await store.close();
  }
}

beforeAll(async () => {
  etcd = await startEtcdCluster({ size: 3, fastElection: true });
  for (const id of ['rls-a', 'rls-b', 'rls-c'])
    replicas.push(
      await Replica.start(
        resolveOptions(
          [
            ...['--mesh-id', MESH, '--cluster-id', CLUSTER, '--replica-id', id],
            ...['--etcd-endpoints', etcd.endpoints.join(','), '--debounce-ms', '10'],
            ...['--xds-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0'],
            ...['--monitoring-address', 'off', '--snapshot-dir', 'off'],
            // Counting is tested here over the plaintext port (development mode); who may call is
            // tested over mTLS in ratelimit-mtls.test.ts.
            ...['--rate-limit-plaintext', 'on'],
          ],
          {},
        ),
        { logger: pino({ level: 'silent' }) },
      ),
    );
}, 120_000);

afterAll(async () => {
  for (const c of clients.values()) c.close();
  await Promise.all(replicas.map((r) => r.stop().catch(() => undefined)));
  await etcd?.stop();
});

const N = 300;

describe('global rate limits served by the replicas (envoy.service.ratelimit.v3)', () => {
  it('applies the RateLimits and every replica knows them', async () => {
    const res = await apply(`apiVersion: policy.meridian.io/v1alpha1
kind: RateLimit
metadata: {name: api, namespace: default}
spec:
  selector: {matchLabels: {app: api}}
  global:
    limits:
    - {requestsPerUnit: ${N}, unit: MINUTE}
    - {requestsPerUnit: ${N}, unit: MINUTE}
    - {key: SOURCE_PRINCIPAL, requestsPerUnit: 20, unit: MINUTE}
`);
    expect(res.status).toBe(200);
    for (const r of replicas)
      await eventually(
        `${r.options.replicaId} knows default/api`,
        async () =>
          (await ask(r, 'default/api/2', [{ key: 'source_principal', value: 'probe' }])).statuses?.[0]
            ?.current_limit !== undefined,
        20_000,
        50,
      );
    const a = await ask(replicas[0]!, 'default/api/2', [{ key: 'source_principal', value: 'probe' }]);
    expect(a.statuses?.[0]?.current_limit).toEqual({ requests_per_unit: 20, unit: 'MINUTE' });
    // A limit the config does not have is not counted (allowed, no current limit).
    const unknown = await ask(replicas[1]!, 'default/none/0');
    expect(unknown).toMatchObject({ overall_code: 'OK' });
    expect(unknown.statuses?.[0]?.current_limit).toBeUndefined();
  }, 60_000);

  it('N per minute spread over 3 replicas: N allowed (within 5%, never more)', async () => {
    await roomInMinute(40_000);
    const allowed = await spread(replicas, 'default/api/0', Math.round(N * 1.5));
    console.info(`rate limit ${N}/min over 3 replicas: ${allowed} of ${Math.round(N * 1.5)} allowed`);
    expect(allowed).toBeLessThanOrEqual(N);
    expect(allowed).toBeGreaterThanOrEqual(Math.floor(N * 0.95));
    // Every replica refuses now.
    for (const r of replicas) expect((await ask(r, 'default/api/0')).overall_code).toBe('OVER_LIMIT');
    // What etcd counted equals what was claimed; at most N.
    expect(await counterValue('default/api/0')).toBeLessThanOrEqual(N);
  }, 60_000);

  it('principals are counted apart', async () => {
    await roomInMinute(20_000);
    const count = async (principal: string) => {
      let ok = 0;
      for (let i = 0; i < 30; i++) {
        const a = await ask(replicas[i % 3]!, 'default/api/2', [
          { key: 'source_principal', value: principal },
        ]);
        if (a.overall_code === 'OK') ok++;
      }
      return ok;
    };
    const alice = await count('spiffe://cluster.local/ns/default/sa/alice');
    const bob = await count('spiffe://cluster.local/ns/default/sa/bob');
    expect([alice, bob]).toEqual([20, 20]);
  }, 60_000);

  it('a replica stopped mid-window loses at most its unused batch', async () => {
    await roomInMinute(40_000);
    const limit = 'default/api/1';
    const before = await spread(replicas, limit, Math.round(N / 2));
    expect(before).toBe(Math.round(N / 2));
    const victim = replicas[2]!;
    clients.get(victim)?.close();
    clients.delete(victim);
    await victim.stop();
    const after = await spread(replicas.slice(0, 2), limit, N);
    const allowed = before + after;
    const claimed = await counterValue(limit);
    console.info(`replica stopped mid-window: ${allowed} of ${N} allowed, ${claimed} claimed`);
    // Claims never exceed the limit, and the survivors used all of theirs: what is missing from N
    // is what the victim had claimed and not used, at most one batch (a tenth of what was left).
    expect(claimed).toBe(N);
    expect(allowed).toBeLessThanOrEqual(N);
    expect(N - allowed).toBeLessThanOrEqual(Math.ceil(N / 10));
  }, 90_000);

  it('refuses invalid RateLimit and RequestAuthentication objects naming each field, writing nothing', async () => {
    const res = await apply(`apiVersion: policy.meridian.io/v1alpha1
kind: RateLimit
metadata: {name: bad, namespace: default}
spec:
  local: {maxTokens: 0, fillInterval: 1s}
  global: {limits: [{key: HEADER, requestsPerUnit: 1, unit: MINUTE}]}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: bad-jwt, namespace: default}
spec:
  jwtRules: [{issuer: "", jwksUri: "ftp://x"}]
`);
    expect(res.status).toBe(422);
    const body = (await res.json()) as { message: string };
    expect(body.message).toContain('spec.local.maxTokens: maxTokens must be at least 1');
    expect(body.message).toContain('spec.global.limits[0].header: header must be set when key is HEADER');
    expect(body.message).toContain('spec.jwtRules[0].issuer: issuer must be set');
    expect(body.message).toContain(
      'spec.jwtRules[0].jwksUri: jwksUri "ftp://x" must use http or https, not ftp',
    );
    for (const path of [
      '/apis/v1/config/RateLimit/default/bad',
      '/apis/v1/config/RequestAuthentication/default/bad-jwt',
    ])
      expect((await adminFetch(replicas[0]!, path)).status).toBe(404);
  }, 30_000);
});
