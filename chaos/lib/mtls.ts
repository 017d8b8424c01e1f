// Mesh mTLS traffic that does not trust Meridian's word: two workloads whose keys, certificate chains
// and trust bundles are the SDS secrets (`default`, `ROOTCA`) a replica pushes to them, and a TLS
// client/server pair between them that makes a new handshake for every call (so each call verifies
// the current chains against the current bundles). The workloads' SDS streams are opened over mTLS
// with the demo agents' workload certificates (their identities: demo/client, demo/echo).
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import type { ClusterPlan } from '../../packages/cli/src/local/plan.js';
import { decodeResource } from '../../packages/envoy/src/json.js';
import { TypeUrl } from '../../packages/envoy/src/type-urls.js';
import { SimulatedProxy } from '../../packages/testkit/src/index.js';
import type { Mesh } from './mesh.js';

/** The PEM blocks of a bundle or chain, one string each. */
export function pemBlocks(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

/** The URI SANs of a certificate. */
export function uriSans(cert: X509Certificate): string[] {
  return (cert.subjectAltName ?? '')
    .split(', ')
    .filter((s) => s.startsWith('URI:'))
    .map((s) => s.slice(4));
}

/** Which of `roots` (name -> PEM) the chain `chainPem` leads to (its top issued by that root), if any. */
export function anchorOf(chainPem: string, roots: ReadonlyMap<string, string>): string | undefined {
  const chain = pemBlocks(chainPem).map((p) => new X509Certificate(p));
  for (let i = 0; i + 1 < chain.length; i++)
    if (!chain[i]!.checkIssued(chain[i + 1]!) || !chain[i]!.verify(chain[i + 1]!.publicKey)) return undefined;
  const top = chain.at(-1);
  if (!top) return undefined;
  for (const [name, pem] of roots) {
    const root = new X509Certificate(pem);
    if (top.fingerprint256 === root.fingerprint256) return name;
    if (top.checkIssued(root) && top.verify(root.publicKey)) return name;
  }
  return undefined;
}

function secretBytes(v: unknown): string | undefined {
  const o = v as { inline_bytes?: string; inline_string?: string } | undefined;
  if (o?.inline_string) return o.inline_string;
  if (o?.inline_bytes) return Buffer.from(o.inline_bytes, 'base64').toString('utf8');
  return undefined;
}

/** A secret as the workload received it. */
export interface SecretEvent {
  readonly at: number;
  readonly name: 'default' | 'ROOTCA';
  /** `default`: the leaf's URI SANs. */
  readonly sans?: readonly string[];
  /** `default`: the chain's leaf serial. */
  readonly serial?: string;
  /** `ROOTCA`: how many roots the bundle holds. */
  readonly roots?: number;
}

/** A workload fed by a replica's SDS. */
export class SdsWorkload {
  chainPem: string | undefined;
  keyPem: string | undefined;
  bundlePem: string | undefined;
  readonly events: SecretEvent[] = [];
  readonly #ch: grpc.Client;
  readonly #p: SimulatedProxy;
  #seen = 0;
  #timer: NodeJS.Timeout | undefined;
  #listeners: (() => void)[] = [];

  /**
   * `agent` names the demo agent whose certificate opens the SDS stream (`client`, `echo-v1`), so
   * the workload's identity is that agent's.
   */
  constructor(
    mesh: Mesh,
    readonly cluster: ClusterPlan,
    replica: number,
    agent: string,
    readonly spiffeId: string,
  ) {
    const certDir = join(mesh.paths.demo(cluster.name), `agent-${agent}`, 'certs');
    const creds = grpc.credentials.createSsl(
      readFileSync(join(certDir, 'root-cert.pem')),
      readFileSync(join(certDir, 'key.pem')),
      readFileSync(join(certDir, 'cert-chain.pem')),
      { checkServerIdentity: () => undefined },
    );
    this.#ch = new grpc.Client(`127.0.0.1:${cluster.replicaPorts[replica]!.ca}`, creds);
    this.#p = new SimulatedProxy({
      nodeId: `sidecar~127.0.0.1~chaos-mtls-${agent}.demo~demo.svc.cluster.local`,
      metadata: { NAMESPACE: 'demo', CLUSTER_ID: cluster.name },
      variant: 'sotw',
      record: true,
      subscriptions: [{ typeUrl: TypeUrl.Secret, names: ['default', 'ROOTCA'] }],
    });
  }

  get ended(): boolean {
    return this.#p.ended !== undefined;
  }

  start(): void {
    this.#p.connect(this.#ch);
    this.#timer = setInterval(() => this.#read(), 50);
  }

  /** Called after every secret received. */
  onChange(l: () => void): void {
    this.#listeners.push(l);
  }

  #read(): void {
    const responses = this.#p.responses;
    for (; this.#seen < responses.length; this.#seen++) {
      const r = responses[this.#seen]!;
      if (r.typeUrl !== TypeUrl.Secret) continue;
      for (const bytes of (r as { resources: readonly Uint8Array[] }).resources) {
        const s = decodeResource(TypeUrl.Secret, bytes) as {
          name?: string;
          tls_certificate?: { certificate_chain?: unknown; private_key?: unknown };
          validation_context?: { trusted_ca?: unknown };
        };
        const at = Date.now();
        if (s.name === 'default' && s.tls_certificate) {
          const chain = secretBytes(s.tls_certificate.certificate_chain);
          const key = secretBytes(s.tls_certificate.private_key);
          if (!chain || !key) continue;
          this.chainPem = chain;
          this.keyPem = key;
          const leaf = new X509Certificate(pemBlocks(chain)[0]!);
          this.events.push({ at, name: 'default', sans: uriSans(leaf), serial: leaf.serialNumber });
        } else if (s.name === 'ROOTCA' && s.validation_context) {
          const bundle = secretBytes(s.validation_context.trusted_ca);
          if (!bundle) continue;
          this.bundlePem = bundle;
          this.events.push({ at, name: 'ROOTCA', roots: pemBlocks(bundle).length });
        }
        for (const l of this.#listeners) l();
      }
    }
  }

  get ready(): boolean {
    return this.chainPem !== undefined && this.keyPem !== undefined && this.bundlePem !== undefined;
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#p.disconnect();
    this.#ch.close();
  }
}

/** One mTLS call: when it ended, and its outcome. */
export interface MtlsCall {
  readonly at: number;
  readonly ok: boolean;
  /** The error, or a wrong peer identity. */
  readonly error?: string;
  readonly wrongIdentity?: boolean;
}

/**
 * A TLS server with `server`'s material (both sides verify: client certificates required) and a client
 * with `client`'s, calling it every `everyMs` on a new connection: each side checks the other's SPIFFE
 * id (the only URI SAN) against the workload it expects.
 */
export class MtlsTraffic {
  readonly calls: MtlsCall[] = [];
  #server: tls.Server | undefined;
  #timer: NodeJS.Timeout | undefined;
  #inflight = new Set<Promise<void>>();

  constructor(
    readonly client: SdsWorkload,
    readonly server: SdsWorkload,
    readonly everyMs = 100,
  ) {}

  #serverOptions(): tls.SecureContextOptions {
    return { key: this.server.keyPem!, cert: this.server.chainPem!, ca: this.server.bundlePem! };
  }

  async start(): Promise<void> {
    const srv = tls.createServer({
      ...this.#serverOptions(),
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.2',
    });
    srv.on('secureConnection', (s) => {
      const peer = s.getPeerX509Certificate();
      s.end(`${peer ? uriSans(peer).join(',') : ''}\n`);
      s.on('error', () => {});
    });
    srv.on('tlsClientError', () => {});
    this.server.onChange(() => {
      if (this.server.ready) srv.setSecureContext(this.#serverOptions());
    });
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    this.#server = srv;
    this.#timer = setInterval(() => {
      const p = this.#call().then((c) => {
        this.calls.push(c);
      });
      this.#inflight.add(p);
      void p.finally(() => this.#inflight.delete(p));
    }, this.everyMs);
  }

  /**
   * One call outside the series with the client trusting `bundlePem` instead of its own bundle (a
   * control: a bundle without the server's root must be refused).
   */
  probe(bundlePem: string): Promise<MtlsCall> {
    return this.#call(bundlePem);
  }

  #call(bundlePem?: string): Promise<MtlsCall> {
    const port = (this.#server!.address() as { port: number }).port;
    const expectServer = this.server.spiffeId;
    return new Promise<MtlsCall>((resolve) => {
      let wrongServer = false;
      let done = false;
      const finish = (c: Omit<MtlsCall, 'at'>) => {
        if (done) return;
        done = true;
        sock.destroy();
        resolve({ at: Date.now(), ...c });
      };
      const sock = tls.connect({
        host: '127.0.0.1',
        port,
        key: this.client.keyPem!,
        cert: this.client.chainPem!,
        ca: bundlePem ?? this.client.bundlePem!,
        minVersion: 'TLSv1.2',
        checkServerIdentity: (_host, cert) => {
          const sans = (cert.subjectaltname ?? '')
            .split(', ')
            .filter((s) => s.startsWith('URI:'))
            .map((s) => s.slice(4));
          if (sans.length === 1 && sans[0] === expectServer) return undefined;
          wrongServer = true;
          return new Error(`server presented ${sans.join(',') || 'no URI SAN'}, expected ${expectServer}`);
        },
      });
      let data = '';
      sock.setEncoding('utf8');
      sock.setTimeout(3000, () => finish({ ok: false, error: 'timeout' }));
      sock.on('data', (d) => {
        data += d;
      });
      sock.on('end', () => {
        const seen = data.trim();
        if (seen === this.client.spiffeId) finish({ ok: true });
        else finish({ ok: false, wrongIdentity: true, error: `server saw client as ${seen || 'nobody'}` });
      });
      sock.on('error', (e) =>
        finish({ ok: false, error: e.message, ...(wrongServer ? { wrongIdentity: true } : {}) }),
      );
    });
  }

  count(from = 0, to = Number.POSITIVE_INFINITY): { ok: number; failed: number; wrongIdentity: number } {
    let ok = 0;
    let failed = 0;
    let wrongIdentity = 0;
    for (const c of this.calls) {
      if (c.at < from || c.at >= to) continue;
      if (c.ok) ok++;
      else failed++;
      if (c.wrongIdentity) wrongIdentity++;
    }
    return { ok, failed, wrongIdentity };
  }

  /** Distinct errors of failed calls with their counts. */
  errors(): string {
    const m = new Map<string, number>();
    for (const c of this.calls) if (!c.ok) m.set(c.error ?? '?', (m.get(c.error ?? '?') ?? 0) + 1);
    return [...m].map(([e, n]) => `${e} (${n})`).join('; ') || 'none';
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await Promise.all([...this.#inflight]);
    await new Promise<void>((resolve) => (this.#server ? this.#server.close(() => resolve()) : resolve()));
  }
}
