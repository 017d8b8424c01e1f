import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  basicConstraints,
  CaConfigError,
  createCsr,
  createIntermediateCa,
  createRootCa,
  InvalidRequestError,
  type IssuedCertificate,
  PermissionDeniedError,
  parseCsr,
  readPluginCa,
  SigningCa,
  WorkloadCertificateIssuer,
  writePluginCa,
} from '@meridian/ca';
import { describe, expect, it } from 'vitest';
import { ecKey, id, makeMesh, opensslCsr, opensslVerify, quietAudit, rsaKey, TD, uri } from './helpers.js';

const mesh = makeMesh(['east', 'west']);
const east = mesh.issuers.east!;
const alice = id('shop', 'alice');

function verifyWithOpenssl(out: IssuedCertificate): string {
  return opensslVerify(out.certChain[2]!, out.certChain[1]!, out.certChain[0]!);
}

describe('workload certificate issuance', () => {
  it.each([
    ['RSA 2048', () => rsaKey(2048)],
    ['RSA 3072', () => rsaKey(3072)],
    ['ECDSA P-256', () => ecKey()],
  ])('issues for a %s CSR made by openssl; chain leaf, intermediate, root verifies with openssl', (_, mk) => {
    const out = east.issue({ identity: alice, csrPem: opensslCsr(mk(), `URI:${uri(alice)}`) });
    expect(out.certChain).toHaveLength(3);
    expect(verifyWithOpenssl(out)).toContain('OK');
    const leaf = new X509Certificate(out.certChain[0]!);
    expect(leaf.subjectAltName).toBe(`URI:${uri(alice)}`);
    expect(leaf.ca).toBe(false);
    expect(leaf.serialNumber.toLowerCase()).toBe(out.serial.replace(/^0+/, ''));
    const text = execFileSync('openssl', ['x509', '-noout', '-text'], {
      input: out.certChain[0]!,
      encoding: 'utf8',
    });
    expect(text).toContain('TLS Web Server Authentication, TLS Web Client Authentication');
    expect(text).toMatch(/Basic Constraints: critical\s+CA:FALSE/);
    // Default lifetime 24 h (+ 60 s backdating).
    expect(out.notAfter.getTime() - out.notBefore.getTime()).toBe(24 * 3600_000 + 60_000);
    // The intermediate carries the cluster id and the constraints the issue asks for.
    const inter = execFileSync('openssl', ['x509', '-noout', '-text'], {
      input: out.certChain[1]!,
      encoding: 'utf8',
    });
    expect(inter).toContain('Subject: O = Meridian, OU = east, CN = Meridian Intermediate CA east');
    expect(inter).toMatch(/Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
    expect(inter).toMatch(/Key Usage: critical\s+Certificate Sign, CRL Sign/);
    expect(inter).toMatch(/Name Constraints: critical\s+Permitted:\s+URI:cluster.local/);
  });

  it('issues for an RSA 4096 CSR built by createCsr', () => {
    const out = east.issue({ identity: alice, csrPem: createCsr({ key: rsaKey(4096), uris: [uri(alice)] }) });
    expect(verifyWithOpenssl(out)).toContain('OK');
  });

  it('clamps lifetimes above 90 days and honours shorter ones', () => {
    const csrPem = createCsr({ key: ecKey(), uris: [uri(alice)] });
    const long = east.issue({ identity: alice, csrPem, validitySeconds: 365 * 24 * 3600 });
    expect(long.notAfter.getTime() - long.notBefore.getTime()).toBe(90 * 24 * 3600_000 + 60_000);
    const short = east.issue({ identity: alice, csrPem, validitySeconds: 3600 });
    expect(short.notAfter.getTime() - short.notBefore.getTime()).toBe(3600_000 + 60_000);
  });

  it('a leaf from another trust domain is rejected by the intermediate name constraint (openssl)', () => {
    // Build an intermediate constrained to cluster.local but (wrongly) configured for another domain,
    // to prove the constraint is enforced by verifiers, not only by our issuer.
    const m = createIntermediateCa({
      root: mesh.root,
      clusterId: 'x',
      trustDomain: TD,
      nameConstraint: true,
    });
    const rogue = new WorkloadCertificateIssuer(
      SigningCa.fromMaterial({ ...m, trustDomain: 'evil.example' }),
      { audit: quietAudit() },
    );
    const who = id('a', 'b', 'evil.example');
    const out = rogue.issue({ identity: who, csrPem: createCsr({ key: ecKey(), uris: [uri(who)] }) });
    expect(() => verifyWithOpenssl(out)).toThrow(/permitted subtree violation/);
  });
});

describe('identity policy: only the caller identity, nothing else', () => {
  const cases: Array<[string, string, string]> = [
    [
      'another identity',
      `URI:${uri(id('shop', 'bob'))}`,
      `csr: caller ${uri(alice)} may not request URI:${uri(id('shop', 'bob'))}`,
    ],
    [
      'an extra DNS name',
      `URI:${uri(alice)},DNS:db.shop.svc`,
      `csr: caller ${uri(alice)} may not request DNS:db.shop.svc`,
    ],
    ['an extra IP', `URI:${uri(alice)},IP:10.0.0.1`, `csr: caller ${uri(alice)} may not request IP:10.0.0.1`],
    [
      'an extra email',
      `URI:${uri(alice)},email:a@b.c`,
      `csr: caller ${uri(alice)} may not request email:a@b.c`,
    ],
    [
      'an extra URI',
      `URI:${uri(alice)},URI:spiffe://cluster.local/ns/kube-system/sa/admin`,
      `csr: caller ${uri(alice)} may not request URI:spiffe://cluster.local/ns/kube-system/sa/admin`,
    ],
  ];
  it.each(cases)('refuses %s with PERMISSION_DENIED and issues nothing', (_, san, message) => {
    const issuer = new WorkloadCertificateIssuer(SigningCa.fromMaterial(mesh.clusters.west!), {
      audit: quietAudit(),
    });
    const err = catchErr(() => issuer.issue({ identity: alice, csrPem: opensslCsr(ecKey(), san) }));
    expect(err).toBeInstanceOf(PermissionDeniedError);
    expect((err as PermissionDeniedError).code).toBe('PERMISSION_DENIED');
    expect((err as PermissionDeniedError).status).toBe('PERMISSION_DENIED');
    expect((err as Error).message).toBe(message);
    expect(issuer.audit.counters).toEqual({
      issued: 0,
      refused: 1,
      refusedByCode: { PERMISSION_DENIED: 1 },
      csrRequests: 0,
      csrIssued: 0,
    });
  });

  it('refuses an identity outside the CA trust domain', () => {
    const other = id('shop', 'alice', 'other.mesh');
    const err = catchErr(() =>
      east.issue({ identity: other, csrPem: createCsr({ key: ecKey(), uris: [uri(other)] }) }),
    );
    expect(err).toBeInstanceOf(PermissionDeniedError);
    expect((err as Error).message).toBe(
      'identity spiffe://other.mesh/ns/shop/sa/alice is not in this CA\'s trust domain "cluster.local"',
    );
  });
});

function catchErr(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected an error');
}

describe('bad input: INVALID_ARGUMENT with a clear message, nothing issued', () => {
  const good = createCsr({ key: ecKey(), uris: [uri(alice)] });
  const flipSignature = (pem: string): string => {
    const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    der[der.length - 5] = der[der.length - 5]! ^ 0x01;
    return `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
  };
  const bigSan = Array.from({ length: 400 }, (_, i) => `DNS:host-${i}-${'x'.repeat(24)}.example.com`).join(
    ',',
  );
  const cases: Array<[string, () => string, number | undefined, string]> = [
    [
      'garbage',
      () => 'hello, I am not a CSR',
      undefined,
      'csr: expected exactly one PEM "CERTIFICATE REQUEST" block',
    ],
    [
      'garbage inside PEM',
      () => '-----BEGIN CERTIFICATE REQUEST-----\nAAECAwQ=\n-----END CERTIFICATE REQUEST-----\n',
      undefined,
      'csr: malformed certificate request: trailing bytes after the element (at byte 3)',
    ],
    [
      'a signature that does not verify',
      () => flipSignature(good),
      undefined,
      'csr: signature does not verify with the request public key',
    ],
    [
      'a CA:true request',
      () => createCsr({ key: ecKey(), uris: [uri(alice)], extraExtensions: [basicConstraints(true)] }),
      undefined,
      'csr: requests a CA certificate (basicConstraints cA=true)',
    ],
    [
      'a CA:true request made by openssl',
      () => opensslCsr(ecKey(), `URI:${uri(alice)}`, ['basicConstraints=critical,CA:TRUE']),
      undefined,
      'csr: requests a CA certificate (basicConstraints cA=true)',
    ],
    ['a 16 KB SAN list', () => opensslCsr(ecKey(), `URI:${uri(alice)},${bigSan}`), undefined, 'SAN_TOO_BIG'],
    ['negative validity', () => good, -5, 'validity_duration: must not be negative (got -5)'],
    [
      'an RSA 1024 key',
      () => createCsr({ key: rsaKey(1024), uris: [uri(alice)] }),
      undefined,
      'csr: unsupported public key (RSA 1024 bits); accepted: RSA 2048/3072/4096, ECDSA P-256',
    ],
    [
      'no SAN',
      () => createCsr({ key: ecKey() }),
      undefined,
      `csr: no URI subjectAltName; expected ${uri(alice)}`,
    ],
  ];
  it.each(cases)('%s', (_, mk, validitySeconds, message) => {
    const issuer = new WorkloadCertificateIssuer(SigningCa.fromMaterial(mesh.clusters.west!), {
      audit: quietAudit(),
    });
    const csrPem = mk();
    const err = catchErr(() => issuer.issue({ identity: alice, csrPem, validitySeconds }));
    expect(err).toBeInstanceOf(InvalidRequestError);
    expect((err as InvalidRequestError).code).toBe('INVALID_REQUEST');
    expect((err as InvalidRequestError).status).toBe('INVALID_ARGUMENT');
    if (message === 'SAN_TOO_BIG') {
      expect(csrPem.length).toBeGreaterThan(16 * 1024);
      expect((err as Error).message).toBe(
        `csr: request is ${csrPem.length} bytes, at most 16384 are accepted`,
      );
    } else {
      expect((err as Error).message).toBe(message);
    }
    expect(issuer.audit.counters).toEqual({
      issued: 0,
      refused: 1,
      refusedByCode: { INVALID_ARGUMENT: 1 },
      csrRequests: 0,
      csrIssued: 0,
    });
  });

  it('a SAN list over 2 KB inside a small request is refused by the SAN limit', () => {
    const names = Array.from({ length: 12 }, (_, i) => `h${i}-${'y'.repeat(180)}.example`);
    const csrPem = createCsr({ key: ecKey(), uris: [uri(alice)], dnsNames: names });
    expect(() => parseCsr(csrPem)).toThrow(/^csr: subjectAltName is \d+ bytes, at most 2048 are accepted$/);
  });
});

describe('plug-in CA layout', () => {
  it('writes and re-imports the Istio plug-in files', async () => {
    await withTempDirAsync(async (dir) => {
      await writePluginCa(dir, mesh.clusters.east!);
      const m = await readPluginCa(dir, { clusterId: 'east', trustDomain: TD });
      expect(m.caCertPem).toBe(mesh.clusters.east!.caCertPem);
      const issuer = new WorkloadCertificateIssuer(SigningCa.fromMaterial(m), { audit: quietAudit() });
      const out = issuer.issue({ identity: alice, csrPem: createCsr({ key: ecKey(), uris: [uri(alice)] }) });
      expect(verifyWithOpenssl(out)).toContain('OK');
    });
  });

  it('imports a plug-in CA made with the openssl CLI (RSA root and intermediate) and issues under it', async () => {
    await withTempDirAsync(async (dir) => {
      const run = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
      writeFileSync(
        join(dir, 'ext.cnf'),
        '[v3_int]\nbasicConstraints=critical,CA:true,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n',
      );
      run([
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        'root-key.pem',
        '-out',
        'root-cert.pem',
        '-days',
        '30',
        '-subj',
        '/O=Istio/CN=Root CA',
      ]);
      run([
        'req',
        '-new',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        'ca-key.pem',
        '-out',
        'ca.csr',
        '-subj',
        '/O=Istio/CN=Intermediate CA/L=c9',
      ]);
      run([
        'x509',
        '-req',
        '-in',
        'ca.csr',
        '-CA',
        'root-cert.pem',
        '-CAkey',
        'root-key.pem',
        '-CAcreateserial',
        '-out',
        'ca-cert.pem',
        '-days',
        '20',
        '-extfile',
        'ext.cnf',
        '-extensions',
        'v3_int',
      ]);
      execFileSync('sh', ['-c', 'cat ca-cert.pem root-cert.pem > cert-chain.pem'], { cwd: dir });
      const m = await readPluginCa(dir, { clusterId: 'c9', trustDomain: TD });
      const issuer = new WorkloadCertificateIssuer(SigningCa.fromMaterial(m), { audit: quietAudit() });
      const out = issuer.issue({ identity: alice, csrPem: opensslCsr(rsaKey(), `URI:${uri(alice)}`) });
      expect(out.certChain).toHaveLength(3);
      expect(verifyWithOpenssl(out)).toContain('OK');
    });
  });

  it('refuses a ca-key.pem that does not belong to ca-cert.pem', async () => {
    await withTempDirAsync(async (dir) => {
      await writePluginCa(dir, { ...mesh.clusters.east!, caKeyPem: mesh.clusters.west!.caKeyPem });
      const err = await readPluginCa(dir, { clusterId: 'east', trustDomain: TD }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CaConfigError);
      expect((err as Error).message).toBe('ca-key.pem does not match the public key of its certificate');
    });
  });

  it('refuses a chain that does not lead to the trust bundle', () => {
    const foreign = createRootCa({ trustDomain: TD, keyType: 'ecdsa-p256' });
    const err = catchErr(() =>
      SigningCa.fromMaterial({ ...mesh.clusters.east!, rootCertPem: foreign.certPem }),
    );
    expect(err).toBeInstanceOf(CaConfigError);
    expect((err as Error).message).toBe('the root of cert-chain.pem is not in root-cert.pem');
  });
});

describe('root key types', () => {
  it('RSA 4096 and ECDSA P-384 roots sign intermediates that sign verifiable leaves', () => {
    for (const keyType of ['rsa4096', 'ecdsa-p384'] as const) {
      const root = createRootCa({ trustDomain: TD, keyType, validityMs: 3600_000 });
      const x = new X509Certificate(root.certPem);
      expect(x.ca).toBe(true);
      expect(x.verify(x.publicKey)).toBe(true);
      const m = createIntermediateCa({ root, clusterId: 'k', trustDomain: TD });
      const issuer = new WorkloadCertificateIssuer(SigningCa.fromMaterial(m), { audit: quietAudit() });
      const out = issuer.issue({ identity: alice, csrPem: createCsr({ key: ecKey(), uris: [uri(alice)] }) });
      expect(verifyWithOpenssl(out)).toContain('OK');
      // The intermediate never outlives its root.
      expect(new Date(new X509Certificate(m.caCertPem).validTo).getTime()).toBeLessThanOrEqual(
        new Date(x.validTo).getTime(),
      );
    }
  });
});

async function withTempDirAsync(fn: (dir: string) => Promise<void>): Promise<void> {
  const { mkdtemp, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const dir = await mkdtemp(join(tmpdir(), 'meridian-ca-test-'));
  mkdirSync(dir, { recursive: true });
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe('serving certificates (replica endpoints)', () => {
  it('names that are IP addresses become IP SANs, so TLS to an IP target verifies', async () => {
    const { connect, createServer } = await import('node:tls');
    const out = east.issueServingCertificate([
      'localhost',
      '127.0.0.1',
      '::1',
      '::ffff:10.0.0.1',
      'fd00::1:2',
    ]);
    const leaf = new X509Certificate(out.certChain[0]!);
    expect(leaf.subjectAltName).toBe(
      'DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, IP Address:0:0:0:0:0:FFFF:A00:1, IP Address:FD00:0:0:0:0:0:1:2',
    );
    expect(leaf.checkIP('127.0.0.1')).toBe('127.0.0.1');
    const srv = createServer({ key: out.keyPem, cert: out.certChain.slice(0, -1).join('') }, (s) =>
      s.end('ok'),
    );
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    try {
      const port = (srv.address() as { port: number }).port;
      const got = await new Promise<string>((resolve, reject) => {
        const sock = connect({ host: '127.0.0.1', port, ca: mesh.root.certPem }, () => {
          sock.once('data', (d) => resolve(d.toString()));
        });
        sock.on('error', reject);
      });
      expect(got).toBe('ok');
    } finally {
      await new Promise<void>((r) => srv.close(() => r()));
    }
  });
});
