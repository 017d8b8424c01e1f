// istio.v1.auth.IstioCertificateService/CreateCertificate over @grpc/grpc-js: authentication (bootstrap
// token or current workload certificate over mTLS), then WorkloadCertificateIssuer. CaErrors become
// gRPC status codes here and only here.
import { X509Certificate } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { loadProtoPackage, loadServiceClient, loadServiceDefinition, protoPath } from '@meridian/proto';
import type { CaAudit } from './audit.js';
import { AuthenticationError, CaError, type CaStatus, TokenReplayError } from './errors.js';
import type { WorkloadCertificateIssuer } from './issuer.js';
import { parseSpiffeId, spiffeId, type WorkloadIdentity } from './spiffe.js';
import type { CaStore } from './storage.js';
import { authenticateBootstrapToken, type ConsumeTokenOptions, type TokenVerifier } from './token.js';

/** Path of the service's .proto (repo `proto/istio/security/v1alpha1/ca.proto`). */
export const CA_PROTO_PATH = protoPath('istio/security/v1alpha1/ca.proto');
const CA_SERVICE = 'istio.v1.auth.IstioCertificateService';
/** Full gRPC method path, as Istio's clients call it. */
export const CREATE_CERTIFICATE_PATH = '/istio.v1.auth.IstioCertificateService/CreateCertificate';

/** IstioCertificateRequest as decoded here (proto field names; int64 as string). */
export interface IstioCertificateRequest {
  csr: string;
  validity_duration?: string | number;
  metadata?: { fields?: Record<string, unknown> } | null;
}
/** IstioCertificateResponse. */
export interface IstioCertificateResponse {
  cert_chain: string[];
}

/** The loaded package definition of ca.proto (cached). */
export function loadCaProto(): grpc.GrpcObject {
  return loadProtoPackage(CA_PROTO_PATH);
}

/** A client of IstioCertificateService (used by agents, tests and the CLI). */
export interface CertificateServiceClient extends grpc.Client {
  CreateCertificate(
    req: { csr: string; validity_duration?: number | string; metadata?: unknown },
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    cb: (err: grpc.ServiceError | null, res?: IstioCertificateResponse) => void,
  ): grpc.ClientUnaryCall;
}

/** Creates a client for the service at `address`. */
export function createCertificateServiceClient(
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: grpc.ChannelOptions,
): CertificateServiceClient {
  const Client = loadServiceClient(CA_PROTO_PATH, CA_SERVICE);
  return new Client(address, credentials, options) as unknown as CertificateServiceClient;
}

/** Calls CreateCertificate; resolves with the chain or rejects with the grpc.ServiceError. */
export function createCertificate(
  client: CertificateServiceClient,
  req: { csr: string; validityDuration?: number; metadata?: Record<string, string> },
  opts: { token?: string; deadlineMs?: number } = {},
): Promise<string[]> {
  const md = new grpc.Metadata();
  if (opts.token !== undefined) md.set('authorization', `Bearer ${opts.token}`);
  const fields: Record<string, { stringValue: string }> = {};
  for (const [k, v] of Object.entries(req.metadata ?? {})) fields[k] = { stringValue: v };
  return new Promise((resolve, reject) => {
    client.CreateCertificate(
      { csr: req.csr, validity_duration: req.validityDuration ?? 0, metadata: { fields } },
      md,
      { deadline: Date.now() + (opts.deadlineMs ?? 10_000) },
      (err, res) => (err ? reject(err) : resolve(res!.cert_chain)),
    );
  });
}

const STATUS: Record<CaStatus, grpc.status> = {
  INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
  PERMISSION_DENIED: grpc.status.PERMISSION_DENIED,
  UNAUTHENTICATED: grpc.status.UNAUTHENTICATED,
  FAILED_PRECONDITION: grpc.status.FAILED_PRECONDITION,
  UNAVAILABLE: grpc.status.UNAVAILABLE,
  INTERNAL: grpc.status.INTERNAL,
};

export interface CertificateServiceOptions {
  /** Signs certificates; `issuer.signingCa.trustBundle` also authenticates renewal certificates. */
  readonly issuer: WorkloadCertificateIssuer;
  /** Verifies bootstrap tokens; without it only mTLS renewal is accepted. */
  readonly tokens?: TokenVerifier | (() => TokenVerifier | undefined);
  /**
   * The cluster's store, where single-use tokens are recorded as spent (`consumeSingleUse`). Without
   * it single-use tokens are refused (multi-use ones still work).
   */
  readonly tokenStore?: CaStore;
  /** Clock skew allowance of used-token records (see `consumeSingleUse`). */
  readonly tokenReplay?: ConsumeTokenOptions;
  readonly now?: () => Date;
}

/**
 * The identity proved by a peer certificate that the TLS layer already verified against the trust
 * bundle: it must be an unexpired, non-CA workload certificate with exactly one Istio SPIFFE URI.
 */
export function identityFromPeerCertificate(raw: Buffer, now: Date): WorkloadIdentity {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(raw);
  } catch (err) {
    throw new AuthenticationError('client certificate is unreadable', { cause: err });
  }
  const t = now.getTime();
  if (t < new Date(cert.validFrom).getTime() || t >= new Date(cert.validTo).getTime()) {
    throw new AuthenticationError(
      `client certificate is not valid now (valid ${cert.validFrom} to ${cert.validTo})`,
    );
  }
  if (cert.ca) throw new AuthenticationError('client certificate is a CA certificate');
  const uris = (cert.subjectAltName ?? '')
    .split(', ')
    .filter((n) => n.startsWith('URI:'))
    .map((n) => n.slice(4));
  const ids = uris.map(parseSpiffeId).filter((x): x is WorkloadIdentity => x !== undefined);
  if (ids.length !== 1 || uris.length !== 1) {
    throw new AuthenticationError('client certificate does not carry exactly one SPIFFE workload identity');
  }
  return ids[0]!;
}

async function authenticate(
  call: grpc.ServerUnaryCall<IstioCertificateRequest, IstioCertificateResponse>,
  opts: CertificateServiceOptions,
): Promise<{ identity: WorkloadIdentity; via: 'token' | 'mtls' }> {
  const auth = call.metadata.get('authorization');
  if (auth.length > 0) {
    const value = String(auth[0]);
    const m = /^Bearer\s+(\S+)$/i.exec(value);
    if (!m) throw new AuthenticationError('authorization metadata must be "Bearer <token>"');
    const verifier = typeof opts.tokens === 'function' ? opts.tokens() : opts.tokens;
    if (!verifier) throw new AuthenticationError('bootstrap tokens are not accepted by this server');
    const verified = await authenticateBootstrapToken(m[1]!, verifier, opts.tokenStore, opts.tokenReplay);
    return { identity: verified.identity, via: 'token' };
  }
  const peer = call.getAuthContext?.()?.sslPeerCertificate;
  if (peer?.raw) {
    return {
      identity: identityFromPeerCertificate(peer.raw, (opts.now ?? (() => new Date()))()),
      via: 'mtls',
    };
  }
  throw new AuthenticationError(
    'no credentials: send "authorization: Bearer <token>" or a valid workload certificate over mTLS',
  );
}

/** Adds IstioCertificateService to a server; the replica process mounts it next to its other services. */
export function addCertificateService(server: grpc.Server, opts: CertificateServiceOptions): void {
  const audit: CaAudit = opts.issuer.audit;
  const handler: grpc.handleUnaryCall<IstioCertificateRequest, IstioCertificateResponse> = (
    call,
    callback,
  ) => {
    void (async () => {
      let identity: WorkloadIdentity;
      let via: 'token' | 'mtls';
      try {
        ({ identity, via } = await authenticate(call, opts));
      } catch (err) {
        const e =
          err instanceof CaError ? err : new AuthenticationError('authentication failed', { cause: err });
        if (e instanceof TokenReplayError) {
          audit.record({
            outcome: 'refused',
            identity: spiffeId(e.identity),
            code: e.status,
            reason: e.message,
            via: 'token',
            tokenReplay: true,
          });
        } else {
          audit.record({
            outcome: 'refused',
            identity: 'unauthenticated',
            code: e.status,
            reason: e.message,
          });
        }
        callback({ code: STATUS[e.status], details: e.message });
        return;
      }
      try {
        const out = opts.issuer.issue({
          identity,
          csrPem: call.request.csr ?? '',
          validitySeconds: Number(call.request.validity_duration ?? 0),
          via,
        });
        callback(null, { cert_chain: [...out.certChain] });
      } catch (err) {
        if (err instanceof CaError) {
          callback({ code: STATUS[err.status], details: err.message });
        } else {
          audit.logger.error({ err }, 'CreateCertificate failed');
          callback({ code: grpc.status.INTERNAL, details: 'internal error' });
        }
      }
    })();
  };
  server.addService(loadServiceDefinition(CA_PROTO_PATH, CA_SERVICE), { CreateCertificate: handler });
}

/**
 * A grpc-js certificate provider fed from memory: the serving key/chain and the trust bundle. Update
 * it on rotation; servers using it pick up the new context for new connections.
 */
export class MemoryCertificateProvider implements grpc.experimental.CertificateProvider {
  private identity: grpc.experimental.IdentityCertificateUpdate | null = null;
  private ca: grpc.experimental.CaCertificateUpdate | null = null;
  private readonly idListeners = new Set<grpc.experimental.IdentityCertificateUpdateListener>();
  private readonly caListeners = new Set<grpc.experimental.CaCertificateUpdateListener>();

  private readonly pemListeners = new Set<() => void>();

  /** Sets the serving certificate chain (leaf first) and its key. */
  setIdentity(certChainPem: string, keyPem: string): void {
    this.identity = { certificate: Buffer.from(certChainPem), privateKey: Buffer.from(keyPem) };
    for (const l of this.idListeners) l(this.identity);
    for (const l of this.pemListeners) l();
  }

  /** Sets the trust bundle client certificates are verified against. */
  setTrustBundle(pem: string): void {
    this.ca = { caCertificate: Buffer.from(pem) };
    for (const l of this.caListeners) l(this.ca);
    for (const l of this.pemListeners) l();
  }

  /** The current material as PEM, for non-gRPC TLS servers (undefined until both are set). */
  current(): { certChainPem: string; keyPem: string; trustBundlePem: string } | undefined {
    if (!this.identity || !this.ca) return undefined;
    return {
      certChainPem: this.identity.certificate.toString(),
      keyPem: this.identity.privateKey.toString(),
      trustBundlePem: this.ca.caCertificate.toString(),
    };
  }

  /** Calls `listener` synchronously after every change of identity or trust bundle. */
  onChange(listener: () => void): () => void {
    this.pemListeners.add(listener);
    return () => this.pemListeners.delete(listener);
  }

  addCaCertificateListener(l: grpc.experimental.CaCertificateUpdateListener): void {
    this.caListeners.add(l);
    // Delivered on a later tick: grpc-js registers its own watcher only after adding this listener,
    // so a synchronous first update would be lost and the server would drop every connection.
    queueMicrotask(() => {
      if (this.ca && this.caListeners.has(l)) l(this.ca);
    });
  }
  removeCaCertificateListener(l: grpc.experimental.CaCertificateUpdateListener): void {
    this.caListeners.delete(l);
  }
  addIdentityCertificateListener(l: grpc.experimental.IdentityCertificateUpdateListener): void {
    this.idListeners.add(l);
    queueMicrotask(() => {
      if (this.identity && this.idListeners.has(l)) l(this.identity);
    });
  }
  removeIdentityCertificateListener(l: grpc.experimental.IdentityCertificateUpdateListener): void {
    this.idListeners.delete(l);
  }
}

/**
 * Server credentials for the CA endpoint: TLS with the serving identity, asking for (not requiring) a
 * client certificate verified against the trust bundle, so both token bootstrap and mTLS renewal work.
 */
export function createCaServerCredentials(provider: MemoryCertificateProvider): grpc.ServerCredentials {
  return grpc.experimental.createCertificateProviderServerCredentials(provider, provider, false);
}
