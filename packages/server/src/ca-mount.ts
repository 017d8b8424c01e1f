/**
 * The CA on the replica (issue 5 leaves it a hook; the CA package owns issuance): when the replica
 * is given a CA listen address (`--ca-address`) and the key-encryption key (`--ca-kek-file` or
 * `MERIDIAN_CA_KEK`), it loads the cluster's intermediate CA from etcd (`meridian ca install`),
 * issues itself a serving certificate, and serves Istio's `CreateCertificate` on a TLS port of its
 * own (bootstrap tokens are bearer secrets: never on the plaintext xDS port). Token verification keys
 * are re-read from etcd every 30 s (`meridian token publish`).
 */
import * as grpc from '@grpc/grpc-js';
import {
  addCertificateService,
  caStoreFrom,
  createCaServerCredentials,
  KEK_ENV,
  loadClusterCa,
  loadKek,
  MemoryCertificateProvider,
  readTokenKeys,
  TokenVerifier,
  WorkloadCertificateIssuer,
} from '@meridian/ca';
import type { Store } from '@meridian/store';
import type { Logger } from 'pino';

/** What the CA listener needs. */
export interface CaMountOptions {
  readonly store: Store;
  readonly clusterId: string;
  readonly trustDomain: string;
  /** `host:port` to serve CreateCertificate on (TLS). */
  readonly address: { host: string; port: number };
  readonly kekFile: string | undefined;
  readonly log: Logger;
}

/** A running CA listener. */
export interface CaMount {
  readonly address: string;
  stop(): Promise<void>;
}

/** Starts the CA listener, or resolves undefined (logged) when the CA cannot be served. */
export async function mountCa(o: CaMountOptions): Promise<CaMount | undefined> {
  if (!o.kekFile && !process.env[KEK_ENV]) {
    o.log.warn(`--ca-address given without --ca-kek-file or ${KEK_ENV}: CreateCertificate not served`);
    return undefined;
  }
  const caStore = caStoreFrom(o.store);
  let issuer: WorkloadCertificateIssuer;
  try {
    const kek = await loadKek(o.kekFile ? { file: o.kekFile } : {});
    issuer = new WorkloadCertificateIssuer(await loadClusterCa(caStore, { clusterId: o.clusterId, kek }));
  } catch (error) {
    o.log.error({ err: error }, 'cluster CA not loaded: CreateCertificate not served');
    return undefined;
  }
  let verifier: TokenVerifier | undefined;
  const refresh = async () => {
    try {
      const keys = await readTokenKeys(caStore);
      verifier = keys.length > 0 ? new TokenVerifier(o.trustDomain, keys) : undefined;
    } catch (error) {
      o.log.warn({ err: error }, 'token keys not refreshed (keeping the last ones)');
    }
  };
  await refresh();
  const timer = setInterval(() => void refresh(), 30_000);
  timer.unref();
  const names = [...new Set(['localhost', o.address.host === '0.0.0.0' ? 'localhost' : o.address.host])];
  const serving = issuer.issueServingCertificate(names);
  const provider = new MemoryCertificateProvider();
  provider.setIdentity(serving.certChain.slice(0, -1).join(''), serving.keyPem);
  provider.setTrustBundle(issuer.signingCa.trustBundle.pem);
  const server = new grpc.Server();
  addCertificateService(server, { issuer, tokens: () => verifier });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${o.address.host}:${o.address.port}`, createCaServerCredentials(provider), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  const address = `${o.address.host}:${port}`;
  o.log.info({ address, tokens: verifier !== undefined }, 'CreateCertificate served (TLS)');
  return {
    address,
    stop: () =>
      new Promise<void>((resolve) => {
        clearInterval(timer);
        server.tryShutdown(() => resolve());
      }),
  };
}
