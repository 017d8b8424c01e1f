// Workload certificates for the mTLS tests: issued by a replica's CreateCertificate with a
// bootstrap token signed by the cluster CA's key, as a sidecar or proxyless workload gets them.
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as grpcXds from '@grpc/grpc-js-xds';
import {
  type CertificateServiceClient,
  createBootstrapToken,
  createCertificate,
  createCertificateServiceClient,
  createCsr,
  type WorkloadIdentity,
} from '@meridian/ca';
import type { EnvoyJson } from '@meridian/envoy';
import { rawUnaryMethod } from '@meridian/testkit';

/** A workload's certificate as CreateCertificate issued it, with its new P-256 key. */
export interface WorkloadCertificate {
  /** The SPIFFE ID in the certificate's URI SAN. */
  readonly uri: string;
  /** The private key, PKCS#8 PEM. */
  readonly keyPem: string;
  /** As CreateCertificate returns it: the leaf first, the root last. */
  readonly chain: readonly string[];
  /** The chain without the root: what the workload presents. */
  readonly chainPem: string;
  /** The bootstrap token it was issued for. */
  readonly token: string;
}

/**
 * Runs `fn` with a CreateCertificate client of the replica CA port at `address` (TLS trusting
 * `rootPem` and checking the serving certificate's `localhost` SAN), closed afterwards.
 */
export async function withCertificateClient<T>(
  address: string,
  rootPem: string,
  fn: (ca: CertificateServiceClient) => Promise<T>,
): Promise<T> {
  const ca = createCertificateServiceClient(address, grpc.credentials.createSsl(Buffer.from(rootPem)), {
    'grpc.ssl_target_name_override': 'localhost',
    'grpc.default_authority': 'localhost',
  });
  try {
    return await fn(ca);
  } finally {
    ca.close();
  }
}

/**
 * Issues the certificate of `identity` from `ca` (a replica's CreateCertificate): a bootstrap token
 * for it signed with `signingKeyPem` (10 minutes), a CSR of a new P-256 key naming its SPIFFE ID.
 */
export async function issueWorkloadCertificate(
  ca: CertificateServiceClient,
  signingKeyPem: string,
  identity: WorkloadIdentity,
): Promise<WorkloadCertificate> {
  const token = await createBootstrapToken({ signingKeyPem, identity, ttlSeconds: 600 });
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const uri = `spiffe://${identity.trustDomain}/ns/${identity.namespace}/sa/${identity.serviceAccount}`;
  const chain = await createCertificate(ca, { csr: createCsr({ key: privateKey, uris: [uri] }) }, { token });
  return {
    uri,
    keyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    chain,
    chainPem: chain.slice(0, -1).join(''),
    token,
  };
}

/**
 * Writes `cert` as a file-watcher certificate provider reads it: `cert-chain.pem` (without the
 * root), `key.pem` and `root-cert.pem` in `dir` (created if missing). Returns `dir`.
 */
export function writeWorkloadCertificateFiles(dir: string, cert: WorkloadCertificate): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'cert-chain.pem'), cert.chainPem);
  writeFileSync(join(dir, 'key.pem'), cert.keyPem);
  writeFileSync(join(dir, 'root-cert.pem'), cert.chain.at(-1) as string);
  return dir;
}

const pass = (b: Buffer): Buffer => b;

/**
 * Starts a grpc-js-xds server on 127.0.0.1:`port` (its listener, and so its TLS, from the xDS of the
 * registered bootstrap) answering `/test.Echo/Peer` with the SAN of the client's certificate as it
 * saw it (`none` without one).
 */
export async function startPeerIdentityXdsServer(port: number): Promise<grpcXds.XdsServer> {
  const server = new grpcXds.XdsServer();
  server.addService(
    { Peer: rawUnaryMethod('/test.Echo/Peer') },
    {
      Peer: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
        cb(null, Buffer.from(call.getAuthContext().sslPeerCertificate?.subjectaltname ?? 'none'));
      },
    },
  );
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(
      `127.0.0.1:${port}`,
      new grpcXds.XdsServerCredentials(grpc.ServerCredentials.createInsecure()),
      (e) => (e ? reject(e) : resolve()),
    ),
  );
  return server;
}

/** Calls `/test.Echo/Peer` (see startPeerIdentityXdsServer) through `client`: the answer as text. */
export function callPeer(client: grpc.Client, timeoutMs = 3000): Promise<string> {
  return new Promise((resolve, reject) =>
    client.makeUnaryRequest(
      '/test.Echo/Peer',
      pass,
      pass,
      Buffer.alloc(0),
      { deadline: Date.now() + timeoutMs },
      (e, r) => (e ? reject(e) : resolve(r!.toString())),
    ),
  );
}

/** The default validation context of a (decoded) cluster's upstream TLS: what it checks the peer with. */
export const upstreamValidationContext = (c: EnvoyJson | undefined): EnvoyJson | undefined =>
  (
    (
      ((c?.transport_socket as EnvoyJson | undefined)?.typed_config as EnvoyJson | undefined)
        ?.common_tls_context as EnvoyJson | undefined
    )?.combined_validation_context as EnvoyJson | undefined
  )?.default_validation_context as EnvoyJson | undefined;
