import * as grpc from '@grpc/grpc-js';
import {
  addCertificateService,
  type CaEvent,
  type CertificateServiceClient,
  createBootstrapToken,
  createCaServerCredentials,
  createCertificate,
  createCertificateServiceClient,
  createCsr,
  generateTokenSigningKey,
  istioCaMetrics,
  MemoryCertificateProvider,
  SigningCa,
  type TokenSigningKey,
  TokenVerifier,
  WorkloadCertificateIssuer,
} from '@meridian/ca';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ecKey, id, makeMesh, opensslVerify, pkcs8, quietAudit, rsaKey, TD, uri } from './helpers.js';

const mesh = makeMesh(['east']);
const alice = id('shop', 'alice');
const bob = id('shop', 'bob');
const issuer = mesh.issuers.east!;
const bundle = issuer.signingCa.trustBundle.pem;

let server: grpc.Server;
let address: string;
let signing: TokenSigningKey;
const clients: grpc.Client[] = [];
let events: CaEvent[] = [];

const target = { 'grpc.ssl_target_name_override': 'localhost', 'grpc.default_authority': 'localhost' };

function tokenClient(): CertificateServiceClient {
  const c = createCertificateServiceClient(address, grpc.credentials.createSsl(Buffer.from(bundle)), target);
  clients.push(c);
  return c;
}

function mtlsClient(keyPem: string, chain: readonly string[]): CertificateServiceClient {
  const creds = grpc.credentials.createSsl(
    Buffer.from(bundle),
    Buffer.from(keyPem),
    Buffer.from(chain.slice(0, -1).join('')),
  );
  const c = createCertificateServiceClient(address, creds, target);
  clients.push(c);
  return c;
}

beforeAll(async () => {
  signing = await generateTokenSigningKey();
  const serving = new WorkloadCertificateIssuer(SigningCa.fromMaterial(mesh.clusters.east!), {
    audit: quietAudit(),
  }).issueServingCertificate(['localhost']);
  const provider = new MemoryCertificateProvider();
  provider.setIdentity(serving.certChain.slice(0, -1).join(''), serving.keyPem);
  provider.setTrustBundle(bundle);
  server = new grpc.Server();
  addCertificateService(server, { issuer, tokens: new TokenVerifier(TD, [signing.publicJwk]) });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', createCaServerCredentials(provider), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  address = `127.0.0.1:${port}`;
  issuer.audit.subscribe((e) => events.push(e));
});

afterAll(async () => {
  for (const c of clients) c.close();
  await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
});

beforeEach(() => {
  events = [];
});

const token = (who = alice, ttlSeconds = 600, now?: Date) =>
  createBootstrapToken({ signingKeyPem: signing.privateKeyPem, identity: who, ttlSeconds, now });

async function refused(p: Promise<unknown>): Promise<grpc.ServiceError> {
  const err = (await p.then(
    () => {
      throw new Error('expected a refusal');
    },
    (e: unknown) => e,
  )) as grpc.ServiceError;
  expect(events.filter((e) => e.outcome === 'issued')).toEqual([]);
  expect(events.filter((e) => e.outcome === 'refused')).toHaveLength(1);
  return err;
}

describe('IstioCertificateService/CreateCertificate over loopback gRPC + TLS', () => {
  it('issues with a bootstrap token; the chain verifies with openssl', async () => {
    const csr = createCsr({ key: rsaKey(), uris: [uri(alice)] });
    const chain = await createCertificate(
      tokenClient(),
      { csr, metadata: { ClusterID: 'east' } },
      { token: await token() },
    );
    expect(chain).toHaveLength(3);
    expect(opensslVerify(chain[2]!, chain[1]!, chain[0]!)).toContain('OK');
    expect(events).toMatchObject([
      { outcome: 'issued', identity: uri(alice), via: 'token', keyType: 'rsa2048' },
    ]);
  });

  it('renews over mTLS with the current workload certificate (no token)', async () => {
    const key = ecKey();
    const first = await createCertificate(
      tokenClient(),
      { csr: createCsr({ key, uris: [uri(alice)] }) },
      { token: await token() },
    );
    const renewed = await createCertificate(mtlsClient(pkcs8(key), first), {
      csr: createCsr({ key: ecKey(), uris: [uri(alice)] }),
      validityDuration: 7200,
    });
    expect(opensslVerify(renewed[2]!, renewed[1]!, renewed[0]!)).toContain('OK');
    expect(events.map((e) => e.outcome === 'issued' && e.via)).toEqual(['token', 'mtls']);
  });

  it('mTLS renewal for another identity is PERMISSION_DENIED', async () => {
    const key = ecKey();
    const first = await createCertificate(
      tokenClient(),
      { csr: createCsr({ key, uris: [uri(alice)] }) },
      { token: await token() },
    );
    events = [];
    const err = await refused(
      createCertificate(mtlsClient(pkcs8(key), first), {
        csr: createCsr({ key: ecKey(), uris: [uri(bob)] }),
      }),
    );
    expect(err.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(err.details).toBe(`csr: caller ${uri(alice)} may not request URI:${uri(bob)}`);
  });

  it('a wrong-identity CSR with a valid token is PERMISSION_DENIED, nothing issued', async () => {
    const err = await refused(
      createCertificate(
        tokenClient(),
        { csr: createCsr({ key: ecKey(), uris: [uri(bob)] }) },
        { token: await token() },
      ),
    );
    expect(err.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(err.details).toBe(`csr: caller ${uri(alice)} may not request URI:${uri(bob)}`);
  });

  it('a token for another namespace does not get a certificate for this one', async () => {
    const other = id('billing', 'alice');
    const err = await refused(
      createCertificate(
        tokenClient(),
        { csr: createCsr({ key: ecKey(), uris: [uri(alice)] }) },
        { token: await token(other) },
      ),
    );
    expect(err.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(err.details).toBe(`csr: caller ${uri(other)} may not request URI:${uri(alice)}`);
  });

  it('a forged token (claims altered after signing) is UNAUTHENTICATED', async () => {
    const [h, p, s] = (await token(bob)).split('.');
    const claims = JSON.parse(Buffer.from(p!, 'base64url').toString());
    const forgedClaims = { ...claims, sub: uri(alice), sa: 'alice' };
    const forged = `${h}.${Buffer.from(JSON.stringify(forgedClaims)).toString('base64url')}.${s}`;
    const err = await refused(
      createCertificate(
        tokenClient(),
        { csr: createCsr({ key: ecKey(), uris: [uri(alice)] }) },
        { token: forged },
      ),
    );
    expect(err.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(err.details).toBe('bootstrap token signature does not verify');
  });

  it('a token signed with another key is UNAUTHENTICATED', async () => {
    const other = await generateTokenSigningKey();
    const t = await createBootstrapToken({
      signingKeyPem: other.privateKeyPem,
      identity: alice,
      ttlSeconds: 600,
    });
    const err = await refused(
      createCertificate(
        tokenClient(),
        { csr: createCsr({ key: ecKey(), uris: [uri(alice)] }) },
        { token: t },
      ),
    );
    expect(err.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(err.details).toBe('bootstrap token signature does not verify');
  });

  it('an expired token is UNAUTHENTICATED', async () => {
    const t = await token(alice, 60, new Date(Date.now() - 3600_000));
    const err = await refused(
      createCertificate(
        tokenClient(),
        { csr: createCsr({ key: ecKey(), uris: [uri(alice)] }) },
        { token: t },
      ),
    );
    expect(err.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(err.details).toBe('bootstrap token expired');
  });

  it('a token for another trust domain is UNAUTHENTICATED', async () => {
    const t = await token(id('shop', 'alice', 'other.mesh'));
    const err = await refused(
      createCertificate(
        tokenClient(),
        { csr: createCsr({ key: ecKey(), uris: [uri(alice)] }) },
        { token: t },
      ),
    );
    expect(err.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(err.details).toBe('bootstrap token is for trust domain "other.mesh", not "cluster.local"');
  });

  it('an expired renewal certificate is UNAUTHENTICATED', async () => {
    const key = ecKey();
    const past = new Date(Date.now() - 5 * 3600_000);
    const old = new WorkloadCertificateIssuer(SigningCa.fromMaterial(mesh.clusters.east!), {
      audit: quietAudit(),
      now: () => past,
    }).issue({ identity: alice, csrPem: createCsr({ key, uris: [uri(alice)] }), validitySeconds: 3600 });
    const err = await refused(
      createCertificate(mtlsClient(pkcs8(key), old.certChain), {
        csr: createCsr({ key: ecKey(), uris: [uri(alice)] }),
      }),
    );
    expect(err.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(err.details).toBe(
      'no credentials: send "authorization: Bearer <token>" or a valid workload certificate over mTLS',
    );
  });

  it('a request without credentials is UNAUTHENTICATED', async () => {
    const err = await refused(
      createCertificate(tokenClient(), { csr: createCsr({ key: ecKey(), uris: [uri(alice)] }) }),
    );
    expect(err.code).toBe(grpc.status.UNAUTHENTICATED);
  });

  it('a garbage CSR is INVALID_ARGUMENT', async () => {
    const err = await refused(createCertificate(tokenClient(), { csr: 'garbage' }, { token: await token() }));
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.details).toBe('csr: expected exactly one PEM "CERTIFICATE REQUEST" block');
  });

  it('a negative validity is INVALID_ARGUMENT', async () => {
    const err = await refused(
      createCertificate(
        tokenClient(),
        { csr: createCsr({ key: ecKey(), uris: [uri(alice)] }), validityDuration: -60 },
        { token: await token() },
      ),
    );
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.details).toBe('validity_duration: must not be negative (got -60)');
  });

  it("counts requests under istiod's metric names", async () => {
    const before = istioCaMetrics(issuer.audit);
    const csr = () => createCsr({ key: ecKey(), uris: [uri(alice)] });
    await createCertificate(tokenClient(), { csr: csr() }, { token: await token() });
    await createCertificate(tokenClient(), { csr: 'garbage' }, { token: await token() }).catch(
      () => undefined,
    );
    await createCertificate(tokenClient(), { csr: csr() }).catch(() => undefined);
    const after = istioCaMetrics(issuer.audit, {
      rootNotAfter: new Date(issuer.signingCa.trustBundle.roots[0]!.x509.validTo),
      chainNotAfter: issuer.signingCa.notAfter,
    });
    const delta = (k: string) => after[k]! - (before[k] ?? 0);
    expect(delta('citadel_server_csr_count')).toBe(3);
    expect(delta('citadel_server_success_cert_issuance_count')).toBe(1);
    expect(delta('citadel_server_csr_parsing_err_count')).toBe(1);
    expect(delta('citadel_server_authentication_failure_count')).toBe(1);
    expect(after.citadel_server_cert_chain_expiry_timestamp).toBe(
      Math.floor(issuer.signingCa.notAfter.getTime() / 1000),
    );
  });
});
