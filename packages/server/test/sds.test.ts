import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import {
  addRootToBundle,
  caStoreFrom,
  createCaServerCredentials,
  createRootCa,
  generateKek,
  installClusterCa,
  MemoryCertificateProvider,
  parseKek,
  SigningCa,
  type Timers,
  WorkloadCertificateIssuer,
  WorkloadSecrets,
} from '@meridian/ca';
import { decodeResource, TypeUrl } from '@meridian/envoy';
import { Keyspace, MemoryStore } from '@meridian/store';
import { eventually, SimulatedProxy, type SotwResponseView } from '@meridian/testkit';
import { type ChangeEvent, type ProxyContext, XdsServer, type XdsSnapshot } from '@meridian/xds';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReplicaMtls } from '../src/mtls.js';
import { SdsSecretSource, withSecrets } from '../src/sds.js';
import { id, makeMesh, opensslVerify, quietAudit, uri, type Workload, workload } from './ca-mesh.js';

class FakeTimers implements Timers {
  pending = new Map<number, () => void>();
  private next = 1;
  setTimeout(fn: () => void): unknown {
    const h = this.next++;
    this.pending.set(h, fn);
    return h;
  }
  clearTimeout(h: unknown): void {
    this.pending.delete(h as number);
  }
  fireAll(): void {
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const fn of all) fn();
  }
}

interface SecretView {
  name: string;
  chain?: string;
  key?: string;
  trustedCa?: string;
}

function secretsOf(r: SotwResponseView): SecretView[] {
  return r.resources.map((bytes) => {
    const j = decodeResource(TypeUrl.Secret, bytes) as {
      name: string;
      tls_certificate?: {
        certificate_chain: { inline_bytes: string };
        private_key: { inline_bytes: string };
      };
      validation_context?: { trusted_ca: { inline_bytes: string } };
    };
    const b64 = (s: string | undefined) =>
      s === undefined ? undefined : Buffer.from(s, 'base64').toString();
    return {
      name: j.name,
      chain: b64(j.tls_certificate?.certificate_chain.inline_bytes),
      key: b64(j.tls_certificate?.private_key.inline_bytes),
      trustedCa: b64(j.validation_context?.trusted_ca.inline_bytes),
    };
  });
}

/** testkit's eventually with this file's bound. */
const until = <T>(what: string, probe: () => T | undefined | false) => eventually(what, probe, 10_000, 10);

describe('SDS over xDS (real @meridian/xds server, mTLS, simulated proxies)', () => {
  const mesh = makeMesh(['east']);
  const bundle = mesh.root.certPem;
  const timers = new FakeTimers();
  const issuer = new WorkloadCertificateIssuer(SigningCa.fromMaterial(mesh.clusters.east!), {
    audit: quietAudit(),
  });
  const secrets = new WorkloadSecrets(issuer, { timers, random: () => 0.5 });
  const xds = new XdsServer({ logger: pino({ level: 'silent' }), debounce: { quietMs: 0 } });
  const base: XdsSnapshot = { version: 'v1', resources: () => undefined };
  const sds = new SdsSecretSource(secrets, (change) => xds.update(withSecrets(base, sds), change));
  const clients: grpc.Client[] = [];
  const proxies: SimulatedProxy[] = [];
  let address = '';

  const alice = id('shop', 'alice');
  const bob = id('billing', 'bob');
  const bootstrap = (who: typeof alice): Workload => workload(mesh.issuers.east!, who);

  const connect = (i: number, w: Workload | undefined): SimulatedProxy => {
    const creds = w
      ? grpc.credentials.createSsl(
          Buffer.from(bundle),
          Buffer.from(w.keyPem),
          Buffer.from(w.certChain.slice(0, -1).join('')),
        )
      : grpc.credentials.createSsl(Buffer.from(bundle));
    const client = new grpc.Client(address, creds, { 'grpc.ssl_target_name_override': 'localhost' });
    clients.push(client);
    const p = new SimulatedProxy({
      nodeId: `sidecar~10.1.0.${i}~p${i}.shop~shop.svc.cluster.local`,
      variant: 'sotw',
      subscriptions: [{ typeUrl: TypeUrl.Secret, names: ['default', 'ROOTCA'] }],
      record: true,
    });
    p.connect(client);
    proxies.push(p);
    return p;
  };

  beforeAll(async () => {
    const serving = new WorkloadCertificateIssuer(SigningCa.fromMaterial(mesh.clusters.east!), {
      audit: quietAudit(),
    }).issueServingCertificate(['localhost']);
    const provider = new MemoryCertificateProvider();
    provider.setIdentity(serving.certChain.slice(0, -1).join(''), serving.keyPem);
    provider.setTrustBundle(bundle);
    xds.update(withSecrets(base, sds));
    const port = await xds.listen('127.0.0.1', 0, createCaServerCredentials(provider));
    address = `127.0.0.1:${port}`;
  });

  afterAll(async () => {
    for (const p of proxies) p.disconnect();
    for (const c of clients) c.close();
    sds.close();
    await xds.drain(2000);
  });

  it('delivers each proxy its own key and chain as "default", and the bundle as "ROOTCA"', async () => {
    const pa = connect(1, bootstrap(alice));
    const pb = connect(2, bootstrap(bob));
    await until('both proxies answered', () => pa.responses.length >= 1 && pb.responses.length >= 1);
    for (const [p, who] of [
      [pa, alice],
      [pb, bob],
    ] as const) {
      const got = secretsOf(p.responses[0] as SotwResponseView);
      expect(got.map((s) => s.name).sort()).toEqual(['ROOTCA', 'default']);
      const def = got.find((s) => s.name === 'default')!;
      expect(got.find((s) => s.name === 'ROOTCA')!.trustedCa).toBe(bundle);
      const certs = def.chain!.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g)!;
      expect(new X509Certificate(certs[0]!).subjectAltName).toBe(`URI:${uri(who)}`);
      expect(opensslVerify(bundle, certs[1]!, certs[0]!)).toContain('OK');
      expect(new X509Certificate(certs[0]!).publicKey.export({ format: 'pem', type: 'spki' })).toBe(
        createPublicKey(createPrivateKey(def.key!)).export({ format: 'pem', type: 'spki' }),
      );
    }
    expect(sds.identities.sort()).toEqual([uri(bob), uri(alice)].sort());
  });

  it('a stream without a client certificate gets only ROOTCA', async () => {
    const anon = connect(3, undefined);
    await until('the anonymous proxy answered', () => anon.responses.length >= 1);
    expect(secretsOf(anon.responses[0] as SotwResponseView).map((s) => s.name)).toEqual(['ROOTCA']);
  });

  it('rotation pushes a new key and chain to the proxy holding that identity', async () => {
    const pa = proxies[0]!;
    const before = secretsOf(pa.responses.at(-1) as SotwResponseView).find((s) => s.name === 'default')!;
    const count = pa.responses.length;
    timers.fireAll();
    await until('the rotated secret', () => pa.responses.length > count);
    const after = secretsOf(pa.responses.at(-1) as SotwResponseView).find((s) => s.name === 'default')!;
    expect(after.key).not.toBe(before.key);
    expect(
      new X509Certificate(`${after.chain!.split('-----END CERTIFICATE-----')[0]!}-----END CERTIFICATE-----\n`)
        .subjectAltName,
    ).toBe(`URI:${uri(alice)}`);
  });

  it('a CA switch pushes the new bundle as ROOTCA to every proxy and a re-issued default', async () => {
    const pa = proxies[0]!;
    const anon = proxies[2]!;
    const newRoot = createRootCa({ trustDomain: 'cluster.local', keyType: 'ecdsa-p256' });
    const before = secretsOf(pa.responses.at(-1) as SotwResponseView).find((s) => s.name === 'default')!;
    const counts = [pa.responses.length, anon.responses.length];
    sds.setSigningCa(SigningCa.fromMaterial(addRootToBundle(mesh.clusters.east!, newRoot.certPem)));
    await until(
      'both proxies pushed',
      () => pa.responses.length > counts[0]! && anon.responses.length > counts[1]!,
    );
    const after = secretsOf(pa.responses.at(-1) as SotwResponseView);
    expect(after.find((s) => s.name === 'ROOTCA')!.trustedCa).toBe(bundle + newRoot.certPem);
    expect(after.find((s) => s.name === 'default')!.key).not.toBe(before.key);
    expect(secretsOf(anon.responses.at(-1) as SotwResponseView)).toEqual([
      { name: 'ROOTCA', trustedCa: bundle + newRoot.certPem },
    ]);
  });
});

describe('ReplicaMtls: the CA runtime, SDS and the mTLS translator wired', () => {
  it('a CA rotation step in the store becomes one Secret ChangeEvent and the new ROOTCA', async () => {
    const mesh = makeMesh(['east']);
    const kekText = generateKek();
    const dir = mkdtempSync(join(tmpdir(), 'meridian-sds-'));
    const store = new MemoryStore({ keyspace: Keyspace.of('m', 'east') });
    const kekFile = join(dir, 'kek');
    writeFileSync(kekFile, kekText);
    await installClusterCa(caStoreFrom(store), mesh.clusters.east!, parseKek(kekText, 'test'));
    const mtls = await ReplicaMtls.start({
      store,
      clusterId: 'east',
      trustDomain: 'cluster.local',
      kekFile,
      servingDnsNames: ['localhost'],
      log: pino({ level: 'silent' }),
    });
    try {
      if (!mtls) throw new Error('the CA runtime did not start');
      const changes: ChangeEvent[] = [];
      mtls.onSecretChange((c) => changes.push(c));
      const base: XdsSnapshot = { version: 'v1', resources: () => undefined };
      const alice: ProxyContext = {
        connectionId: 'alice-1',
        proxy: {} as ProxyContext['proxy'],
        authenticatedIdentity: uri(id('shop', 'alice')),
        peer: '127.0.0.1:1',
      };
      const rootOf = (p: ProxyContext) => {
        const r = mtls.wrap(base).resources(p, TypeUrl.Secret)?.get('ROOTCA');
        if (!r) throw new Error('no ROOTCA');
        const j = decodeResource(TypeUrl.Secret, r.bytes) as {
          validation_context: { trusted_ca: { inline_bytes: string } };
        };
        return Buffer.from(j.validation_context.trusted_ca.inline_bytes, 'base64').toString();
      };
      expect([...(mtls.wrap(base).resources(alice, TypeUrl.Secret)?.keys() ?? [])].sort()).toEqual([
        'ROOTCA',
        'default',
      ]);
      expect(rootOf(alice)).toBe(mesh.root.certPem);

      const newRoot = createRootCa({ trustDomain: 'cluster.local', keyType: 'ecdsa-p256' });
      await installClusterCa(
        caStoreFrom(store),
        addRootToBundle(mesh.clusters.east!, newRoot.certPem),
        parseKek(kekText, 'test'),
      );
      await until('the Secret change', () => changes.length > 0);
      expect(changes).toHaveLength(1);
      expect(changes[0]).toMatchObject({ full: false, reason: ['ca-changed'] });
      expect([...(changes[0]!.types ?? [])]).toEqual([TypeUrl.Secret]);
      expect([...(changes[0]!.names?.get(TypeUrl.Secret) ?? [])].sort()).toEqual(['ROOTCA', 'default']);
      expect(rootOf(alice)).toBe(mesh.root.certPem + newRoot.certPem);
      expect(rootOf({ ...alice, authenticatedIdentity: undefined })).toBe(
        mesh.root.certPem + newRoot.certPem,
      );
    } finally {
      await mtls?.stop(0);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
