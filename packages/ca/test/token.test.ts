// Bootstrap tokens: the single-use claim, consumeSingleUse's decisions, and the create-if-absent with
// expiry that both CaStore implementations (MemoryCaStore, caStoreFrom over the memory Store) provide.
// The same path against a real etcd and two replicas: packages/server/test/ca-single-use.test.ts.
import * as grpc from '@grpc/grpc-js';
import {
  AuthenticationError,
  addCertificateService,
  authenticateBootstrapToken,
  CA_KEYS,
  type CaEvent,
  type CaStore,
  CaUnavailableError,
  caStoreFrom,
  consumeSingleUse,
  createBootstrapToken,
  createCaServerCredentials,
  createCertificate,
  createCertificateServiceClient,
  createCsr,
  generateTokenSigningKey,
  MemoryCaStore,
  MemoryCertificateProvider,
  SINGLE_USE_CLAIM,
  TOKEN_REPLAY_REASON,
  TokenReplayError,
  type TokenSigningKey,
  TokenVerifier,
  usedTokenKey,
} from '@meridian/ca';
import { Keyspace, MemoryStore } from '@meridian/store';
import { decodeJwt, importPKCS8, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ecKey, id, makeMesh, TD, uri } from './helpers.js';

const alice = id('shop', 'alice');
let signing: TokenSigningKey;
let verifier: TokenVerifier;

beforeAll(async () => {
  signing = await generateTokenSigningKey();
  verifier = new TokenVerifier(TD, [signing.publicJwk]);
});

/** A CaStore whose every call fails, as when etcd cannot be reached. */
const downStore: CaStore = {
  get: () => Promise.reject(new Error('etcd unavailable')),
  put: () => Promise.reject(new Error('etcd unavailable')),
  createIfAbsent: () => Promise.reject(new Error('etcd unavailable')),
};

/** Records createIfAbsent calls on top of a MemoryCaStore. */
class RecordingStore extends MemoryCaStore {
  readonly calls: Array<{ key: string; value: string; ttlSeconds: number }> = [];
  override async createIfAbsent(key: string, value: string, ttlSeconds: number): Promise<boolean> {
    this.calls.push({ key, value, ttlSeconds });
    return super.createIfAbsent(key, value, ttlSeconds);
  }
}

describe('single-use claim', () => {
  it('round trips: --single-use tokens carry use "once" and a jti; others carry no use claim', async () => {
    const once = await createBootstrapToken({
      signingKeyPem: signing.privateKeyPem,
      identity: alice,
      ttlSeconds: 600,
      singleUse: true,
    });
    const payload = decodeJwt(once);
    expect(payload[SINGLE_USE_CLAIM.name]).toBe('once');
    const v = await verifier.verifyToken(once);
    expect(v).toEqual({
      identity: alice,
      jti: payload.jti,
      expiresAt: new Date(payload.exp! * 1000),
      singleUse: true,
    });
    expect(v.jti).toMatch(/^[0-9a-f-]{36}$/);
    expect(await verifier.verify(once)).toEqual(alice); // verify: identity only, as before

    const multi = await createBootstrapToken({
      signingKeyPem: signing.privateKeyPem,
      identity: alice,
      ttlSeconds: 600,
    });
    expect(decodeJwt(multi)).not.toHaveProperty(SINGLE_USE_CLAIM.name);
    expect((await verifier.verifyToken(multi)).singleUse).toBe(false);
  });

  it('refuses an unknown use value and a single-use token without a usable jti', async () => {
    const key = await importPKCS8(signing.privateKeyPem, 'ES256');
    const sign = (claims: Record<string, unknown>, jti?: string) => {
      const t = new SignJWT({ td: TD, ns: 'shop', sa: 'alice', ...claims })
        .setProtectedHeader({ alg: 'ES256', kid: signing.publicJwk.kid })
        .setIssuer('meridian')
        .setAudience('meridian-ca')
        .setSubject('spiffe://cluster.local/ns/shop/sa/alice')
        .setIssuedAt()
        .setExpirationTime('10m');
      return (jti === undefined ? t : t.setJti(jti)).sign(key);
    };
    await expect(verifier.verifyToken(await sign({ use: 'twice' }, 'a'))).rejects.toThrow(
      'bootstrap token has an unsupported "use" claim',
    );
    await expect(verifier.verifyToken(await sign({ use: 'once' }))).rejects.toThrow(
      'single-use bootstrap token has no usable "jti" claim',
    );
    await expect(verifier.verifyToken(await sign({ use: 'once' }, '../../ca/intermediate'))).rejects.toThrow(
      'single-use bootstrap token has no usable "jti" claim',
    );
    // a multi-use token needs no jti
    expect((await verifier.verifyToken(await sign({}))).jti).toBeUndefined();
  });
});

describe('consumeSingleUse', () => {
  it('a multi-use token works any number of times and never touches the store', async () => {
    const token = await createBootstrapToken({
      signingKeyPem: signing.privateKeyPem,
      identity: alice,
      ttlSeconds: 60,
    });
    for (let i = 0; i < 2; i++) {
      const v = await authenticateBootstrapToken(token, verifier, downStore);
      expect(v.identity).toEqual(alice);
    }
  });

  it('a single-use token is accepted once, then refused with UNAUTHENTICATED "bootstrap token was already used"', async () => {
    const store = new RecordingStore();
    const token = await createBootstrapToken({
      signingKeyPem: signing.privateKeyPem,
      identity: alice,
      ttlSeconds: 120,
      singleUse: true,
    });
    const v = await authenticateBootstrapToken(token, verifier, store);
    const err = await authenticateBootstrapToken(token, verifier, store).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TokenReplayError);
    expect(err).toBeInstanceOf(AuthenticationError);
    expect((err as TokenReplayError).code).toBe('TOKEN_REPLAYED');
    expect((err as TokenReplayError).status).toBe('UNAUTHENTICATED');
    expect((err as Error).message).toBe(TOKEN_REPLAY_REASON);
    expect(TOKEN_REPLAY_REASON).toBe('bootstrap token was already used');
    expect((err as TokenReplayError).identity).toEqual(alice);

    // the record: under the CA prefix, named by the jti, no token material, expiring with the token
    expect(store.calls).toHaveLength(2);
    const call = store.calls[0]!;
    expect(call.key).toBe(`${CA_KEYS.usedTokens}${v.jti}`);
    expect(call.key).toBe(usedTokenKey(v.jti!));
    expect(call.value).not.toContain(token);
    expect(call.value).not.toContain(token.split('.')[2]!);
    const left = (v.expiresAt.getTime() - Date.now()) / 1000;
    expect(call.ttlSeconds).toBeGreaterThanOrEqual(Math.floor(left) + 5);
    expect(call.ttlSeconds).toBeLessThanOrEqual(Math.ceil(left) + 6);
  });

  it('fails closed when the store is unreachable or absent (UNAVAILABLE, reason says why)', async () => {
    const token = await createBootstrapToken({
      signingKeyPem: signing.privateKeyPem,
      identity: alice,
      ttlSeconds: 60,
      singleUse: true,
    });
    const v = await verifier.verifyToken(token);
    const down = await consumeSingleUse(downStore, v).catch((e: unknown) => e);
    expect(down).toBeInstanceOf(CaUnavailableError);
    expect((down as CaUnavailableError).code).toBe('CA_UNAVAILABLE');
    expect((down as CaUnavailableError).status).toBe('UNAVAILABLE');
    expect((down as Error).message).toBe(
      'single-use bootstrap token refused: its use cannot be recorded because the cluster store is unavailable (retry later)',
    );
    expect((down as Error).message).not.toContain(token);
    await expect(consumeSingleUse(undefined, v)).rejects.toThrow(
      'single-use bootstrap tokens are not accepted by this server (no cluster store to record their use)',
    );
    // it was never recorded, so it still works once the store is back
    await consumeSingleUse(new MemoryCaStore(), v);
  });

  it('the clock skew allowance sets how long the record outlives the token', async () => {
    const store = new RecordingStore();
    const now = new Date('2030-01-01T00:00:00Z');
    const v = { identity: alice, jti: 'j1', expiresAt: new Date(now.getTime() + 2500), singleUse: true };
    await consumeSingleUse(store, v, { now: () => now, clockSkewSeconds: 0 });
    await consumeSingleUse(store, { ...v, jti: 'j2' }, { now: () => now, clockSkewSeconds: 7 });
    await consumeSingleUse(store, { ...v, jti: 'j3' }, { now: () => new Date(now.getTime() + 9000) });
    expect(store.calls.map((c) => c.ttlSeconds)).toEqual([3, 10, 5]);
  });
});

describe('CaStore.createIfAbsent', () => {
  it('MemoryCaStore: first writer wins, the key expires after its TTL, then can be created again', async () => {
    let t = 1_000_000;
    const store = new MemoryCaStore(() => t);
    expect(await store.createIfAbsent('ca/tokens/used/x', 'a', 2)).toBe(true);
    expect(await store.createIfAbsent('ca/tokens/used/x', 'b', 2)).toBe(false);
    expect(await store.get('ca/tokens/used/x')).toBe('a');
    t += 1999;
    expect(await store.get('ca/tokens/used/x')).toBe('a');
    expect(await store.createIfAbsent('ca/tokens/used/x', 'c', 2)).toBe(false);
    t += 1;
    expect(await store.get('ca/tokens/used/x')).toBeUndefined();
    expect(await store.createIfAbsent('ca/tokens/used/x', 'd', 1)).toBe(true);
    expect(await store.get('ca/tokens/used/x')).toBe('d');
    // a key written by put exists without expiry; createIfAbsent does not touch it
    await store.put('ca/token-keys', 'k');
    expect(await store.createIfAbsent('ca/token-keys', 'z', 1)).toBe(false);
    t += 10_000;
    expect(await store.get('ca/token-keys')).toBe('k');
    await expect(store.createIfAbsent('k', 'v', 0)).rejects.toThrow(RangeError);
    await expect(store.createIfAbsent('k', 'v', 1.5)).rejects.toThrow(RangeError);
  });

  describe('caStoreFrom over the memory Store (lease + compare-and-put)', () => {
    const store = new MemoryStore({ keyspace: Keyspace.of('m', 'east') });
    afterAll(() => store.close());

    it('one of many concurrent creators wins; the key is leased and goes when the lease runs out', async () => {
      const ca = caStoreFrom(store);
      const results = await Promise.all(
        Array.from({ length: 8 }, (_, i) => ca.createIfAbsent('ca/tokens/used/y', `v${i}`, 1)),
      );
      expect(results.filter(Boolean)).toHaveLength(1);
      const winner = results.indexOf(true);
      const kv = await store.get('ca/tokens/used/y');
      expect(new TextDecoder().decode(kv!.value)).toBe(`v${winner}`);
      expect(kv!.lease).toBeDefined();
      const start = Date.now();
      while ((await store.get('ca/tokens/used/y')) !== undefined) {
        if (Date.now() - start > 5000) throw new Error('the record did not expire');
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(Date.now() - start).toBeGreaterThanOrEqual(800);
      expect(await ca.createIfAbsent('ca/tokens/used/y', 'again', 1)).toBe(true);
    });
  });
});

describe('CreateCertificate with single-use tokens (memory CaStore)', () => {
  it('issues once, refuses the replay with UNAUTHENTICATED and audits it with the token identity', async () => {
    const mesh = makeMesh(['east']);
    const issuer = mesh.issuers.east!;
    const serving = issuer.issueServingCertificate(['localhost']);
    const provider = new MemoryCertificateProvider();
    provider.setIdentity(serving.certChain.slice(0, -1).join(''), serving.keyPem);
    provider.setTrustBundle(issuer.signingCa.trustBundle.pem);
    const server = new grpc.Server();
    addCertificateService(server, { issuer, tokens: verifier, tokenStore: new MemoryCaStore() });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', createCaServerCredentials(provider), (e, p) =>
        e ? reject(e) : resolve(p),
      ),
    );
    const client = createCertificateServiceClient(
      `127.0.0.1:${port}`,
      grpc.credentials.createSsl(Buffer.from(issuer.signingCa.trustBundle.pem)),
      { 'grpc.ssl_target_name_override': 'localhost', 'grpc.default_authority': 'localhost' },
    );
    const events: CaEvent[] = [];
    const unsubscribe = issuer.audit.subscribe((e) => events.push(e));
    try {
      const token = await createBootstrapToken({
        signingKeyPem: signing.privateKeyPem,
        identity: alice,
        ttlSeconds: 60,
        singleUse: true,
      });
      const csr = () => createCsr({ key: ecKey(), uris: [uri(alice)] });
      expect(await createCertificate(client, { csr: csr() }, { token })).toHaveLength(3);
      const e = (await createCertificate(client, { csr: csr() }, { token }).catch(
        (x: unknown) => x,
      )) as grpc.ServiceError;
      expect([e.code, e.details]).toEqual([grpc.status.UNAUTHENTICATED, 'bootstrap token was already used']);
      expect(events.map((x) => x.outcome)).toEqual(['issued', 'refused']);
      expect(events[1]).toEqual({
        outcome: 'refused',
        identity: uri(alice),
        code: 'UNAUTHENTICATED',
        reason: 'bootstrap token was already used',
        via: 'token',
        tokenReplay: true,
      });
      expect(JSON.stringify(events)).not.toContain(token.split('.')[2]!);
    } finally {
      unsubscribe();
      client.close();
      await new Promise<void>((r) => server.tryShutdown(() => r()));
    }
  });
});
