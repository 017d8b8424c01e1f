// Shared fixtures for @meridian/ca tests: a mesh root with intermediates for two clusters, CSRs made
// by our builder and by the openssl CLI (an independent implementation), and real TLS handshakes.
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer, type PeerCertificate, type TLSSocket } from 'node:tls';
import {
  CaAudit,
  type ClusterCaMaterial,
  createCsr,
  createIntermediateCa,
  createRootCa,
  type RootCa,
  SigningCa,
  WorkloadCertificateIssuer,
  type WorkloadIdentity,
} from '@meridian/ca';
import { pino } from 'pino';

export const TD = 'cluster.local';

export function id(namespace: string, serviceAccount: string, trustDomain = TD): WorkloadIdentity {
  return { trustDomain, namespace, serviceAccount };
}

export const uri = (i: WorkloadIdentity): string =>
  `spiffe://${i.trustDomain}/ns/${i.namespace}/sa/${i.serviceAccount}`;

export function quietAudit(): CaAudit {
  return new CaAudit(pino({ level: 'silent' }));
}

export interface Mesh {
  root: RootCa;
  clusters: Record<string, ClusterCaMaterial>;
  issuers: Record<string, WorkloadCertificateIssuer>;
}

/** A root (ECDSA P-256: fast) and one intermediate per cluster id. */
export function makeMesh(
  clusterIds: string[],
  opts: { nameConstraint?: boolean; trustDomain?: string } = {},
): Mesh {
  const trustDomain = opts.trustDomain ?? TD;
  const root = createRootCa({ trustDomain, keyType: 'ecdsa-p256' });
  const clusters: Record<string, ClusterCaMaterial> = {};
  const issuers: Record<string, WorkloadCertificateIssuer> = {};
  for (const c of clusterIds) {
    clusters[c] = createIntermediateCa({
      root,
      clusterId: c,
      trustDomain,
      nameConstraint: opts.nameConstraint ?? true,
      keyType: 'ecdsa-p256',
    });
    issuers[c] = new WorkloadCertificateIssuer(SigningCa.fromMaterial(clusters[c]), { audit: quietAudit() });
  }
  return { root, clusters, issuers };
}

export const ecKey = (): KeyObject => generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
export const rsaKey = (bits = 2048): KeyObject =>
  generateKeyPairSync('rsa', { modulusLength: bits }).privateKey;
export const pkcs8 = (k: KeyObject): string => k.export({ format: 'pem', type: 'pkcs8' }).toString();

/** A workload: key, chain and bundle, as its TLS stack would hold them. */
export interface Workload {
  keyPem: string;
  certChain: string[];
  bundlePem: string;
}

export function workload(issuer: WorkloadCertificateIssuer, who: WorkloadIdentity, key = ecKey()): Workload {
  const out = issuer.issue({ identity: who, csrPem: createCsr({ key, uris: [uri(who)] }) });
  return { keyPem: pkcs8(key), certChain: [...out.certChain], bundlePem: issuer.signingCa.trustBundle.pem };
}

/** Runs a function with a temporary directory that is removed afterwards. */
export function withTempDir<T>(fn: (dir: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), 'meridian-ca-test-'));
  try {
    return fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A CSR made by the openssl CLI with the given key and `subjectAltName` value (e.g. "URI:spiffe://..."). */
export function opensslCsr(key: KeyObject, san?: string, extra: string[] = []): string {
  return withTempDir((dir) => {
    const keyFile = join(dir, 'key.pem');
    writeFileSync(keyFile, pkcs8(key));
    const args = ['req', '-new', '-key', keyFile, '-subj', '/O=workload', '-sha256'];
    if (san) args.push('-addext', `subjectAltName=${san}`);
    for (const e of extra) args.push('-addext', e);
    return execFileSync('openssl', args, { encoding: 'utf8' });
  });
}

/** `openssl verify -CAfile root -untrusted intermediate leaf`: returns its output, throws on failure. */
export function opensslVerify(rootPem: string, untrustedPem: string, leafPem: string): string {
  return withTempDir((dir) => {
    writeFileSync(join(dir, 'root.pem'), rootPem);
    writeFileSync(join(dir, 'int.pem'), untrustedPem);
    writeFileSync(join(dir, 'leaf.pem'), leafPem);
    return execFileSync(
      'openssl',
      ['verify', '-CAfile', join(dir, 'root.pem'), '-untrusted', join(dir, 'int.pem'), join(dir, 'leaf.pem')],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
    );
  });
}

export interface HandshakeResult {
  ok: boolean;
  /** SPIFFE URI the server saw from the client. */
  serverSaw?: string;
  /** SPIFFE URI the client saw from the server. */
  clientSaw?: string;
  serverError?: string;
  clientError?: string;
}

const uriOf = (c: PeerCertificate | undefined): string | undefined =>
  c?.subjectaltname
    ?.split(', ')
    .find((n) => n.startsWith('URI:'))
    ?.slice(4);

/**
 * A real mutual-TLS handshake over loopback: `server` requires and verifies a client certificate
 * against its bundle; `client` verifies the server against its own bundle. Both sides always closed.
 */
export async function mtlsHandshake(server: Workload, client: Workload): Promise<HandshakeResult> {
  const result: HandshakeResult = { ok: false };
  const srv = createServer({
    key: server.keyPem,
    cert: server.certChain.slice(0, -1).join(''),
    ca: server.bundlePem,
    requestCert: true,
    // Verified below, like rejectUnauthorized does, but keeping the verification error for the test.
    rejectUnauthorized: false,
    minVersion: 'TLSv1.2',
  });
  let serverSocket: TLSSocket | undefined;
  const served = new Promise<void>((resolve) => {
    srv.on('tlsClientError', (err: NodeJS.ErrnoException) => {
      result.serverError ??= err.code ?? err.message;
      resolve();
    });
    srv.on('secureConnection', (s: TLSSocket) => {
      serverSocket = s;
      if (!s.authorized) {
        result.serverError = String(s.authorizationError);
        s.destroy();
        resolve();
        return;
      }
      result.serverSaw = uriOf(s.getPeerCertificate());
      s.end('ok');
      resolve();
    });
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as { port: number }).port;
  try {
    await new Promise<void>((resolve) => {
      const sock = connect({
        host: '127.0.0.1',
        port,
        key: client.keyPem,
        cert: client.certChain.slice(0, -1).join(''),
        ca: client.bundlePem,
        // Workload certificates carry no DNS names: identity is the SPIFFE URI, checked by the test.
        checkServerIdentity: () => undefined,
        minVersion: 'TLSv1.2',
      });
      let data = '';
      sock.on('secureConnect', () => {
        result.clientSaw = uriOf(sock.getPeerCertificate());
      });
      sock.on('data', (d) => {
        data += d.toString();
      });
      sock.on('error', (err: NodeJS.ErrnoException) => {
        result.clientError ??= err.code ?? err.message;
      });
      sock.on('close', () => {
        result.ok = data === 'ok' && result.serverSaw !== undefined && result.clientError === undefined;
        resolve();
      });
    });
    await served;
  } finally {
    serverSocket?.destroy();
    await new Promise<void>((resolve) => srv.close(() => resolve()));
  }
  return result;
}
