// Single-use bootstrap tokens across replicas: two in-process replicas of one cluster on one real
// etcd, each serving CreateCertificate. A single-use token is accepted once in the whole cluster; its
// jti is recorded in etcd (ca/tokens/used/<jti>) under a lease that runs out after the token expires;
// without etcd a single-use token is refused while multi-use tokens keep working. Replica B reaches
// etcd through a TCP proxy so that its etcd can be cut without touching replica A's.
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import {
  type CertificateServiceClient,
  createBootstrapToken,
  createCertificate,
  createCertificateServiceClient,
  createCsr,
  publicJwkOf,
  TokenVerifier,
  usedTokenKey,
} from '@meridian/ca';
import { EtcdStore, Keyspace } from '@meridian/store';
import { type EtcdCluster, startEtcd, type TcpProxy, tcpProxy } from '@meridian/testkit';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveOptions } from '../src/options.js';
import { Replica } from '../src/replica.js';
import { installClusterCaForTest } from './harness.js';

const MESH = 'singleuse';
const tmp = mkdtempSync(join(tmpdir(), 'meridian-ca-single-use-'));
const alice = { trustDomain: 'cluster.local', namespace: 'shop', serviceAccount: 'alice' };
const ALICE_URI = 'spiffe://cluster.local/ns/shop/sa/alice';
let etcd: EtcdCluster;
let proxy: TcpProxy;
let store: EtcdStore;
const replicas: Replica[] = [];
let a: CertificateServiceClient;
let b: CertificateServiceClient;
let signingKeyPem: string;
let verifier: TokenVerifier;

function startReplica(id: string, endpoints: string): Promise<Replica> {
  return Replica.start(
    resolveOptions(
      [
        '--mesh-id',
        MESH,
        '--cluster-id',
        'c1',
        '--etcd-endpoints',
        endpoints,
        '--xds-address',
        '127.0.0.1:0',
        '--admin-address',
        '127.0.0.1:0',
        '--ca-address',
        '127.0.0.1:0',
        '--ca-kek-file',
        join(tmp, 'kek'),
        '--replica-id',
        id,
      ],
      // no monitoring listener (its default is a fixed port; two replicas run in this process)
      { MERIDIAN_MONITORING_ADDRESS: 'off' },
    ),
    { logger: pino({ level: 'silent' }) },
  );
}

beforeAll(async () => {
  etcd = await startEtcd();
  const installed = await installClusterCaForTest(etcd.endpoints, MESH, join(tmp, 'kek'));
  signingKeyPem = installed.signingKeyPem;
  verifier = new TokenVerifier('cluster.local', [await publicJwkOf(signingKeyPem)]);
  const url = new URL(etcd.endpoints[0]!);
  proxy = await tcpProxy({ target: { host: url.hostname, port: Number(url.port) } });
  replicas.push(await startReplica('ca-a', etcd.endpoints.join(',')));
  replicas.push(await startReplica('ca-b', `http://${proxy.address}`));
  const creds = grpc.credentials.createSsl(Buffer.from(installed.root.certPem));
  const target = { 'grpc.ssl_target_name_override': 'localhost', 'grpc.default_authority': 'localhost' };
  a = createCertificateServiceClient(replicas[0]!.caAddress, creds, target);
  b = createCertificateServiceClient(replicas[1]!.caAddress, creds, target);
  store = await EtcdStore.connect({ endpoints: etcd.endpoints, keyspace: Keyspace.of(MESH, 'c1') });
}, 60_000);

afterAll(async () => {
  a?.close();
  b?.close();
  await proxy?.heal().catch(() => {});
  for (const r of replicas) await r.stop();
  await store?.close();
  await proxy?.close();
  await etcd?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

const csr = () =>
  createCsr({ key: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, uris: [ALICE_URI] });
const request = (client: CertificateServiceClient, token: string) =>
  createCertificate(client, { csr: csr() }, { token, deadlineMs: 15_000 });
const refusal = async (p: Promise<unknown>): Promise<grpc.ServiceError> => {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  if (!e) throw new Error('expected the request to be refused, it succeeded');
  return e as grpc.ServiceError;
};
const token = (opts: { singleUse?: boolean; ttlSeconds?: number } = {}) =>
  createBootstrapToken({
    signingKeyPem,
    identity: alice,
    ttlSeconds: opts.ttlSeconds ?? 600,
    singleUse: opts.singleUse ?? false,
  });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('single-use bootstrap tokens on two replicas of one cluster', () => {
  it('accepted once; replayed on the other replica or the same one: UNAUTHENTICATED', async () => {
    const t = await token({ singleUse: true });
    const { jti } = await verifier.verifyToken(t);
    expect(await store.get(usedTokenKey(jti!))).toBeUndefined();

    const chain = await request(a, t);
    expect(chain).toHaveLength(3);
    const record = await store.get(usedTokenKey(jti!));
    expect(record?.lease).toBeDefined();
    expect(new TextDecoder().decode(record!.value)).not.toContain(t.split('.')[2]!);

    for (const client of [b, a]) {
      const e = await refusal(request(client, t));
      expect(e.code).toBe(grpc.status.UNAUTHENTICATED);
      expect(e.details).toBe('bootstrap token was already used');
    }
  });

  it('a multi-use token still works on both replicas, several times', async () => {
    const t = await token();
    for (const client of [a, b, a, b]) expect(await request(client, t)).toHaveLength(3);
  });

  it('two concurrent uses on two replicas: exactly one succeeds', async () => {
    for (let round = 0; round < 5; round++) {
      const t = await token({ singleUse: true });
      const results = await Promise.allSettled([request(a, t), request(b, t)]);
      const ok = results.filter((r) => r.status === 'fulfilled');
      const refused = results.flatMap((r) =>
        r.status === 'rejected' ? [r.reason as grpc.ServiceError] : [],
      );
      expect(ok, `round ${round}`).toHaveLength(1);
      expect(refused.map((e) => [e.code, e.details])).toEqual([
        [grpc.status.UNAUTHENTICATED, 'bootstrap token was already used'],
      ]);
    }
  });

  it('the used-jti record stays until the token expires, then etcd deletes it', async () => {
    const t = await token({ singleUse: true, ttlSeconds: 2 });
    const { jti, expiresAt } = await verifier.verifyToken(t);
    await request(b, t);
    const key = usedTokenKey(jti!);
    // present for the whole lifetime of the token
    while (Date.now() < expiresAt.getTime() + 200) {
      expect(await store.get(key), 'record gone before the token expired').toBeDefined();
      await sleep(250);
    }
    // the token is now refused for being expired, on both replicas
    for (const client of [a, b]) {
      const e = await refusal(request(client, t));
      expect([e.code, e.details]).toEqual([grpc.status.UNAUTHENTICATED, 'bootstrap token expired']);
    }
    // and the record goes: expiry + the clock-skew allowance (5 s) + etcd's lease granularity
    const deadline = expiresAt.getTime() + 15_000;
    while ((await store.get(key)) !== undefined) {
      if (Date.now() > deadline) throw new Error(`${key} still in etcd 15 s after the token expired`);
      await sleep(250);
    }
    expect(Date.now()).toBeGreaterThanOrEqual(expiresAt.getTime() + 4_000);
    expect((await store.list('ca/tokens/used/')).items.map((kv) => kv.key)).not.toContain(key);
  }, 30_000);

  it('without etcd: a single-use token is refused (UNAVAILABLE, nothing spent); multi-use tokens work', async () => {
    const once = await token({ singleUse: true });
    const multi = await token();
    await proxy.cut();
    try {
      const e = await refusal(request(b, once));
      expect(e.code).toBe(grpc.status.UNAVAILABLE);
      expect(e.details).toBe(
        'single-use bootstrap token refused: its use cannot be recorded because the cluster store is unavailable (retry later)',
      );
      expect(await request(b, multi)).toHaveLength(3);
    } finally {
      await proxy.heal();
    }
    // not spent by the refused attempt: usable once the store is back, then spent
    const { jti } = await verifier.verifyToken(once);
    expect(await store.get(usedTokenKey(jti!))).toBeUndefined();
    expect(await request(b, once)).toHaveLength(3);
    const e = await refusal(request(a, once));
    expect([e.code, e.details]).toEqual([grpc.status.UNAUTHENTICATED, 'bootstrap token was already used']);
  }, 40_000);
});
