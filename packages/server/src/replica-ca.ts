/**
 * The cluster CA as one replica runs it (`--ca-address`): loading the CA runtime from etcd (or
 * opening the TLS port on the serving certificate kept on disk after a start from disk), retrying
 * every 5 s while no CA is installed, why it is not loaded (for `/readyz`), the TLS port's
 * listener, and the admin port's TLS material. Secret rotations and CA changes are handed to the
 * push pipeline; the CA loaded or available again resyncs every proxy.
 */
import type * as grpc from '@grpc/grpc-js';
import type { Store } from '@meridian/store';
import type { ChangeEvent, XdsServer } from '@meridian/xds';
import type { Logger } from 'pino';
import type { AdminTlsSource } from './admin-http.js';
import { ServerConfigError } from './errors.js';
import { isOff, listenFailure } from './listen-address.js';
import { ReplicaMtls, type ReplicaMtlsOptions, servingCertificateNames } from './mtls.js';
import type { ServerOptions } from './options.js';
import { servingMaterialFile } from './serving-material.js';

/** What a {@link ReplicaCa} needs from the replica. */
export interface ReplicaCaOptions {
  readonly options: ServerOptions;
  /** The replica's logger. */
  readonly log: Logger;
  readonly store: () => Store;
  /** The host the replica advertises (named by the serving certificate). */
  readonly advertiseAddress: () => string;
  /** Secret rotations and CA changes (SDS), pushed with the next debounced change. */
  readonly onSecretChange: (change: ChangeEvent) => void;
  /** Rebuilds everything for every proxy (the CA loaded, or available again). */
  readonly resyncAll: () => void;
  readonly draining: () => boolean;
}

/** The replica's CA runtime, SDS and mTLS translation, when the CA is configured and loaded. */
export class ReplicaCa {
  readonly #o: ReplicaCaOptions;
  #mtls: ReplicaMtls | undefined;
  /** Why the CA configured with `--ca-address` is not loaded (reported by `/readyz`), if it is not. */
  #problem: string | undefined;
  #retry: NodeJS.Timeout | undefined;

  constructor(options: ReplicaCaOptions) {
    this.#o = options;
  }

  /** The CA runtime, once loaded (or opened from disk). */
  get mtls(): ReplicaMtls | undefined {
    return this.#mtls;
  }

  /** Why the CA is not loaded, if it is not. */
  get problem(): string | undefined {
    return this.#problem;
  }

  /** Started from disk: the CA is in etcd, but the TLS port opens with the serving certificate kept on disk. */
  async openFromDisk(host: string): Promise<void> {
    this.#mtls = await ReplicaMtls.fromDisk(this.#mtlsOptions(host, this.#o.log.child({ part: 'ca' })));
    this.#mtls?.onSecretChange((change) => this.#o.onSecretChange(change));
  }

  /** Loads the CA from etcd at start. */
  async open(host: string): Promise<void> {
    this.#mtls = await this.#load(host, this.#o.log.child({ part: 'ca' }));
    this.#mtls?.onSecretChange((change) => this.#o.onSecretChange(change));
  }

  /** Once etcd answers: the CA opened from disk connects, or a CA not loaded yet loads now. */
  async attach(host: string): Promise<void> {
    // Started from disk with the TLS port open on the certificate kept on disk: the CA loads now.
    if (this.#mtls && !this.#mtls.online) await this.#mtls.connect();
    if (!this.#mtls && this.#problem === undefined) {
      // Started from disk: the CA is loaded now that etcd answers.
      this.#mtls = await this.#load(host, this.#o.log.child({ part: 'ca' }));
      if (this.#mtls) {
        this.#mtls.onSecretChange((change) => this.#o.onSecretChange(change));
        this.#o.resyncAll();
      }
    }
  }

  /**
   * Serves CreateCertificate and mTLS-authenticated xDS (SDS `default`) on the CA's TLS port, with
   * what `mount` adds; resolves with the bound address.
   */
  listen(
    mtls: ReplicaMtls,
    xds: XdsServer,
    address: { host: string; port: number },
    mount?: (server: grpc.Server) => void,
  ): Promise<string> {
    return mtls.listen(xds, address, xds.grpcServerOptions(), mount).catch((error: unknown) => {
      throw listenFailure('--ca-address', this.#o.options.caAddress, error);
    });
  }

  /** The admin port's TLS material (`--admin-tls on`): the CA port's serving certificate. */
  adminTls(): AdminTlsSource {
    if (!this.#mtls)
      throw new ServerConfigError(
        '--admin-tls',
        'needs the cluster CA (--ca-address and its key-encryption key)',
      );
    return this.#mtls.adminTls();
  }

  /** Loads the cluster CA; undefined (with `problem` set, e.g. no CA in this keyspace) if it cannot. */
  async #load(host: string, log: Logger): Promise<ReplicaMtls | undefined> {
    let problem: string | undefined;
    const mtls = await ReplicaMtls.start({
      ...this.#mtlsOptions(host, log),
      onUnavailable: (reason) => {
        problem = reason;
      },
    });
    if (!mtls) this.#problem = problem;
    return mtls;
  }

  /** Settings of the replica's CA runtime; the TLS port's certificate is kept beside the disk snapshot. */
  #mtlsOptions(host: string, log: Logger): ReplicaMtlsOptions {
    const o = this.#o.options;
    return {
      store: this.#o.store(),
      clusterId: o.clusterId,
      trustDomain: o.trustDomain,
      kekFile: o.caKekFile || undefined,
      kek: o.caKek || undefined,
      servingDnsNames: servingCertificateNames(host, this.#o.advertiseAddress(), o.servingNames),
      log,
      ...(isOff(o.snapshotDir)
        ? {}
        : { servingFile: servingMaterialFile(o.snapshotDir, o.meshId, o.clusterId) }),
      onUnavailable: (reason) => {
        this.#problem = reason;
      },
      onAvailable: () => {
        this.#problem = undefined;
        this.#o.resyncAll();
      },
    };
  }

  /**
   * While the CA is missing, tries again every 5 s (quietly): a CA installed after the replica
   * started (`meridian ca install`) is picked up without a restart, and the CA port opens then
   * (`serve`).
   */
  retry(host: string, serve: (mtls: ReplicaMtls) => Promise<void>): void {
    const quiet = this.#o.log.child({ part: 'ca' }, { level: 'fatal' });
    const attempt = async () => {
      if (this.#o.draining()) return;
      const mtls = await this.#load(host, quiet).catch(() => undefined);
      if (this.#o.draining()) {
        await mtls?.stop(0);
        return;
      }
      if (!mtls) {
        this.#retry = setTimeout(() => void attempt(), 5000);
        this.#retry.unref();
        return;
      }
      this.#mtls = mtls;
      mtls.onSecretChange((change) => this.#o.onSecretChange(change));
      this.#o.log.info('cluster CA loaded');
      this.#o.resyncAll();
      try {
        await serve(mtls);
        this.#problem = undefined;
      } catch (error) {
        this.#problem = (error as Error).message;
        this.#o.log.error({ err: error }, 'cannot serve the CA port');
      }
    };
    this.#retry = setTimeout(() => void attempt(), 5000);
    this.#retry.unref();
  }

  /** Stops retrying (shutdown). */
  cancelRetry(): void {
    clearTimeout(this.#retry);
  }

  /** Closes the CA runtime and its TLS port (within `timeoutMs`). */
  async stop(timeoutMs: number): Promise<void> {
    await this.#mtls?.stop(timeoutMs);
  }
}
