// WorkloadCertificates against a real etcd and an in-process meridiand with the cluster CA installed:
// the first certificate with a single-use bootstrap token, renewals over mTLS with no token (the
// replica's audit log says `via: mtls`, and the spent token would be refused), the SPIFFE URI SAN and
// a chain to the root, files with their modes, SDS Secrets that Envoy's schema accepts, mTLS channel
// credentials the replica authenticates, rotation and retries under a fake clock.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import {
  createBootstrapToken,
  createCertificate,
  createCertificateServiceClient,
  createCsr,
  generatePrivateKey,
  type RootCa,
  type Timers,
} from '@meridian/ca';
import { decodeResource, encodeResource, TypeUrl } from '@meridian/envoy';
import { Replica, resolveOptions } from '@meridian/server';
import {
  type EtcdCluster,
  eventually,
  freePort,
  SimulatedProxy,
  type SotwResponseView,
  startEtcd,
} from '@meridian/testkit';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installClusterCaForTest } from '../../server/test/harness.js';
import { CertificateError, type CertificateMaterial, WorkloadCertificates } from '../src/certificates.js';

const TD = 'cluster.local';
const MESH = 'agentcerts';
const REVIEWS = { trustDomain: TD, namespace: 'shop', serviceAccount: 'reviews' };
const REVIEWS_URI = `spiffe://${TD}/ns/shop/sa/reviews`;
const tmp = mkdtempSync(join(tmpdir(), 'meridian-agent-certs-'));
const silent = pino({ level: 'silent' });
let etcd: EtcdCluster;
let replica: Replica;
let root: RootCa;
let signingKeyPem: string;
/** Every line the replica logged (the CA's audit log among them). */
const replicaLog: Array<Record<string, unknown>> = [];
const closers: Array<() => void> = [];

/** Timers that run only when the test says so. */
class FakeTimers implements Timers {
  readonly pending = new Map<number, { fn: () => void; ms: number }>();
  #next = 1;
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.#next++;
    this.pending.set(id, { fn, ms });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.pending.delete(handle as number);
  }
  /** The one pending timer's delay. */
  only(): number {
    expect(this.pending.size).toBe(1);
    return [...this.pending.values()][0]!.ms;
  }
  /** Runs every pending timer. */
  fire(): void {
    const due = [...this.pending.entries()];
    this.pending.clear();
    for (const [, t] of due) t.fn();
  }
}

function issuedLines(spiffe: string): Array<Record<string, unknown>> {
  return replicaLog.filter((l) => l.msg === 'certificate issued' && l.identity === spiffe);
}

function nextRotation(certs: WorkloadCertificates): Promise<CertificateMaterial> {
  return new Promise((resolve) => {
    const off = certs.onRotate((m) => {
      off();
      resolve(m);
    });
  });
}

function certsOf(pem: string): X509Certificate[] {
  return (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map(
    (b) => new X509Certificate(b),
  );
}

beforeAll(async () => {
  etcd = await startEtcd();
  ({ root, signingKeyPem } = await installClusterCaForTest(etcd.endpoints, MESH, join(tmp, 'kek'), TD));
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) replicaLog.push(JSON.parse(line));
      done();
    },
  });
  replica = await Replica.start(
    resolveOptions(
      [
        ...['--mesh-id', MESH, '--cluster-id', 'c1', '--replica-id', 'certs-1'],
        ...['--etcd-endpoints', etcd.endpoints.join(','), '--debounce-ms', '10'],
        ...['--xds-address', 'off', '--admin-address', '127.0.0.1:0', '--monitoring-address', 'off'],
        ...['--ca-address', '127.0.0.1:0', '--ca-kek-file', join(tmp, 'kek')],
      ],
      {},
    ),
    { logger: pino({ level: 'info' }, sink) },
  );
}, 90_000);

afterAll(async () => {
  for (const c of closers) c();
  await replica?.stop();
  await etcd?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

describe('WorkloadCertificates', () => {
  it('first certificate with a single-use token, then a renewal over mTLS that sends no token', async () => {
    const token = await createBootstrapToken({
      signingKeyPem,
      identity: REVIEWS,
      ttlSeconds: 600,
      singleUse: true,
    });
    let tokenReads = 0;
    let clock = Date.now();
    const timers = new FakeTimers();
    const certs = new WorkloadCertificates({
      identity: REVIEWS,
      caAddress: replica.caAddress,
      rootCertPem: root.certPem,
      token: () => {
        tokenReads++;
        return token;
      },
      ttlSeconds: 3600,
      now: () => clock,
      timers,
      random: () => 0.5, // no jitter: the renewal is due at exactly half the lifetime
      logger: silent,
    });
    closers.push(() => certs.close());
    const first = await certs.start();
    expect(certs.current()).toBe(first);

    // The key was made here (ECDSA P-256) and the leaf certifies it, for our SPIFFE id only.
    const key = createPrivateKey(first.keyPem);
    expect(key.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    const chain = certsOf(first.certChainPem);
    expect(chain).toHaveLength(2); // leaf and the cluster intermediate; the root is apart
    expect(chain[0]!.subjectAltName).toBe(`URI:${REVIEWS_URI}`);
    expect(chain[0]!.checkPrivateKey(key)).toBe(true);
    expect(chain[0]!.verify(chain[1]!.publicKey)).toBe(true);
    expect(chain[1]!.verify(new X509Certificate(root.certPem).publicKey)).toBe(true);
    expect(first.rootCertPem).toBe(root.certPem);
    expect(first.spiffeId).toBe(REVIEWS_URI);
    const lifetime = first.expiresAt.getTime() - clock;
    expect(Math.abs(lifetime - 3600_000)).toBeLessThan(120_000);
    expect(Math.abs(timers.only() - lifetime / 2)).toBeLessThan(1000);

    // The token is spent: anyone presenting it again is refused.
    const replay = createCertificateServiceClient(
      replica.caAddress,
      grpc.credentials.createSsl(Buffer.from(root.certPem)),
    );
    const refused = await createCertificate(
      replay,
      { csr: createCsr({ key: generatePrivateKey('ecdsa-p256'), uris: [REVIEWS_URI] }) },
      { token },
    ).then(
      () => undefined,
      (e: grpc.ServiceError) => e,
    );
    replay.close();
    expect(refused?.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(refused?.details).toBe('bootstrap token was already used');

    // Half the lifetime later (fake clock), the renewal authenticates with the certificate alone.
    clock += timers.only();
    const rotated = nextRotation(certs);
    timers.fire();
    const second = await rotated;
    expect(second.serial).not.toBe(first.serial);
    expect(second.keyPem).not.toBe(first.keyPem);
    expect(certsOf(second.certChainPem)[0]!.subjectAltName).toBe(`URI:${REVIEWS_URI}`);
    expect(certs.current()).toBe(second);
    expect(tokenReads).toBe(1);
    const issued = issuedLines(REVIEWS_URI);
    expect(issued.map((l) => [l.serial, l.via])).toEqual([
      [first.serial, 'token'],
      [second.serial, 'mtls'],
    ]);
    // And the next renewal is scheduled, half of the new lifetime from the fake now.
    expect(Math.abs(timers.only() - (second.expiresAt.getTime() - clock) / 2)).toBeLessThan(1000);
  });

  it('writes cert-chain.pem, key.pem (0600) and root-cert.pem atomically, and follows rotations', async () => {
    const timers = new FakeTimers();
    const identity = { ...REVIEWS, serviceAccount: 'files' };
    const certs = new WorkloadCertificates({
      identity,
      caAddress: replica.caAddress,
      serverName: 'localhost', // a name of the CA port's serving certificate other than the address
      rootCertPem: root.certPem,
      token: await createBootstrapToken({ signingKeyPem, identity, ttlSeconds: 600 }),
      timers,
      logger: silent,
    });
    closers.push(() => certs.close());
    const dir = join(tmp, 'files', 'certs');
    await expect(certs.writeFiles(dir)).rejects.toThrow('certificate: none issued yet');
    const first = await certs.start();
    await certs.writeFiles(dir);
    const mode = (name: string) => statSync(join(dir, name)).mode & 0o777;
    expect(readdirSync(dir).sort()).toEqual(['cert-chain.pem', 'key.pem', 'root-cert.pem']);
    expect(mode('key.pem')).toBe(0o600);
    expect(mode('cert-chain.pem')).toBe(0o644);
    expect(mode('root-cert.pem')).toBe(0o644);
    expect(readFileSync(join(dir, 'key.pem'), 'utf8')).toBe(first.keyPem);
    expect(readFileSync(join(dir, 'cert-chain.pem'), 'utf8')).toBe(first.certChainPem);
    expect(readFileSync(join(dir, 'root-cert.pem'), 'utf8')).toBe(root.certPem);

    // Wired as the agent does it: every rotation rewrites the files.
    const written = new Promise<void>((resolve, reject) =>
      certs.onRotate(() => certs.writeFiles(dir).then(resolve, reject)),
    );
    timers.fire();
    await written;
    const second = certs.current()!;
    expect(second.serial).not.toBe(first.serial);
    expect(readFileSync(join(dir, 'key.pem'), 'utf8')).toBe(second.keyPem);
    expect(certsOf(readFileSync(join(dir, 'cert-chain.pem'), 'utf8'))[0]!.serialNumber.toLowerCase()).toBe(
      second.serial,
    );
    expect(readdirSync(dir).sort()).toEqual(['cert-chain.pem', 'key.pem', 'root-cert.pem']);
    expect(mode('key.pem')).toBe(0o600);
  });

  it('secrets() are the SDS default and ROOTCA Secrets, accepted by Envoy’s schema', async () => {
    const identity = { ...REVIEWS, serviceAccount: 'sds' };
    const certs = new WorkloadCertificates({
      identity,
      caAddress: replica.caAddress,
      rootCertPem: root.certPem,
      token: await createBootstrapToken({ signingKeyPem, identity, ttlSeconds: 600 }),
      timers: new FakeTimers(),
      logger: silent,
    });
    closers.push(() => certs.close());
    expect(certs.secrets()).toEqual([]);
    const m = await certs.start();
    const secrets = certs.secrets();
    expect(secrets.map((s) => s.name)).toEqual(['default', 'ROOTCA']);
    const decoded = secrets.map((s) => decodeResource(TypeUrl.Secret, encodeResource(TypeUrl.Secret, s)));
    expect(decoded).toEqual(secrets);
    const text = (b64: unknown) => Buffer.from(String(b64), 'base64').toString();
    const tls = decoded[0]!.tls_certificate as Record<string, Record<string, unknown>>;
    expect(text(tls.certificate_chain!.inline_bytes)).toBe(m.certChainPem);
    expect(text(tls.private_key!.inline_bytes)).toBe(m.keyPem);
    const validation = decoded[1]!.validation_context as Record<string, Record<string, unknown>>;
    expect(text(validation.trusted_ca!.inline_bytes)).toBe(root.certPem);
  });

  it('channelCredentials() authenticate to the replica as the workload, before and after a rotation', async () => {
    const timers = new FakeTimers();
    const identity = { ...REVIEWS, serviceAccount: 'upstream' };
    const certs = new WorkloadCertificates({
      identity,
      caAddress: replica.caAddress,
      rootCertPem: root.certPem,
      token: await createBootstrapToken({ signingKeyPem, identity, ttlSeconds: 600 }),
      timers,
      logger: silent,
    });
    closers.push(() => certs.close());
    await certs.start();
    const credentials = certs.channelCredentials();
    expect(certs.channelCredentials()).toBe(credentials);

    // The replica serves the `default` secret only to a stream whose client certificate proves the
    // identity: our credentials get it, for our SPIFFE id.
    const defaultSecretSan = async (): Promise<string> => {
      const client = new grpc.Client(replica.caAddress, credentials, { 'grpc.use_local_subchannel_pool': 1 });
      const p = new SimulatedProxy({
        nodeId: `sidecar~10.1.0.9~upstream-${Date.now()}.shop~shop.svc.cluster.local`,
        metadata: { NAMESPACE: 'shop', CLUSTER_ID: 'c1' },
        variant: 'sotw',
        subscriptions: [{ typeUrl: TypeUrl.Secret, names: ['default', 'ROOTCA'] }],
        record: true,
      });
      p.connect(client);
      try {
        const r = await eventually(
          'secrets',
          () => p.responses.find((x) => x.typeUrl === TypeUrl.Secret && x.resources.length === 2),
          20_000,
        );
        const d = (r as SotwResponseView).resources
          .map((b) => decodeResource(TypeUrl.Secret, b))
          .find((s) => s.name === 'default')!;
        const chain = (d.tls_certificate as Record<string, Record<string, string>>).certificate_chain!;
        return new X509Certificate(Buffer.from(chain.inline_bytes!, 'base64').toString()).subjectAltName!;
      } finally {
        p.disconnect();
        client.close();
      }
    };
    expect(await defaultSecretSan()).toBe(`URI:spiffe://${TD}/ns/shop/sa/upstream`);
    const rotated = nextRotation(certs);
    timers.fire();
    await rotated;
    expect(await defaultSecretSan()).toBe(`URI:spiffe://${TD}/ns/shop/sa/upstream`);
  });

  it('a failed renewal is retried with backoff while the current certificate is kept', async () => {
    const timers = new FakeTimers();
    const identity = { ...REVIEWS, serviceAccount: 'retry' };
    const dead = `127.0.0.1:${await freePort()}`;
    let address = replica.caAddress;
    const warnings: Array<Record<string, unknown>> = [];
    const logger = pino(
      { level: 'warn' },
      new Writable({
        write(chunk: Buffer, _enc, done) {
          warnings.push(JSON.parse(chunk.toString()));
          done();
        },
      }),
    );
    const certs = new WorkloadCertificates({
      identity,
      caAddress: () => address,
      rootCertPem: root.certPem,
      token: await createBootstrapToken({ signingKeyPem, identity, ttlSeconds: 600 }),
      timers,
      random: () => 0.5,
      retry: { initialMs: 1000, maxMs: 8000 },
      requestTimeoutMs: 2000,
      logger,
    });
    closers.push(() => certs.close());
    const first = await certs.start();

    address = dead; // the replica is gone
    const delays: number[] = [];
    for (let i = 0; i < 4; i++) {
      const before = timers.pending.size;
      expect(before).toBe(1);
      timers.fire();
      await eventually('the retry timer', () => (timers.pending.size === 1 ? true : undefined), 20_000);
      delays.push(timers.only());
    }
    // Exponential backoff, capped (random 0.5: no jitter).
    expect(delays).toEqual([1000, 2000, 4000, 8000]);
    expect(certs.current()).toBe(first);
    expect(certs.lastError).toBeInstanceOf(CertificateError);
    expect(certs.lastError!.field).toBe('caAddress');
    expect(certs.lastError!.transient).toBe(true);
    expect(certs.lastError!.details.via).toBe('mtls');
    expect(
      warnings.some((w) => String(w.msg).includes('serving the current certificate until it expires')),
    ).toBe(true);
    expect(warnings.at(-1)!.expiresAt).toBe(first.expiresAt.toISOString());

    address = replica.caAddress; // a replica answers again
    const rotated = nextRotation(certs);
    timers.fire();
    const second = await rotated;
    expect(second.serial).not.toBe(first.serial);
    expect(certs.lastError).toBeUndefined();
    // Back to the regular schedule: half the new lifetime.
    expect(timers.only()).toBeGreaterThan(3600_000);
  });

  it('refusals reject start() with the field at fault; bad options are refused up front', async () => {
    const certs = new WorkloadCertificates({
      identity: REVIEWS,
      caAddress: replica.caAddress,
      rootCertPem: root.certPem,
      // A valid token, but for another identity than the one asked for.
      token: await createBootstrapToken({
        signingKeyPem,
        identity: { ...REVIEWS, serviceAccount: 'ratings' },
        ttlSeconds: 600,
      }),
      timers: new FakeTimers(),
      logger: silent,
    });
    closers.push(() => certs.close());
    const err = (await certs.start().then(
      () => undefined,
      (e: unknown) => e,
    )) as CertificateError;
    expect(err).toBeInstanceOf(CertificateError);
    expect(err.field).toBe('token');
    expect(err.details.code).toBe('PERMISSION_DENIED');
    expect(err.transient).toBe(false);
    expect(certs.current()).toBeUndefined();

    const base = { identity: REVIEWS, caAddress: replica.caAddress, rootCertPem: root.certPem };
    expect(() => new WorkloadCertificates({ ...base, rootCertPem: 'nothing' })).toThrow(
      new CertificateError('rootCertPem', 'holds no PEM certificate'),
    );
    expect(() => new WorkloadCertificates({ ...base, caAddress: 'replica-a' })).toThrow(
      new CertificateError('caAddress', '"replica-a" is not host:port'),
    );
    expect(() => new WorkloadCertificates({ ...base, ttlSeconds: -1 })).toThrow(
      'ttlSeconds: must be a whole number of seconds >= 0, got -1',
    );
    expect(() => new WorkloadCertificates({ ...base, identity: { ...REVIEWS, namespace: '' } })).toThrow(
      CertificateError,
    );
    // No token at all: the first certificate cannot be had.
    const none = new WorkloadCertificates({ ...base, logger: silent });
    await expect(none.start()).rejects.toThrow('token: no bootstrap token: the first certificate needs one');
  });
});
