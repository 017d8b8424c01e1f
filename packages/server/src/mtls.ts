/**
 * Mesh identity on the replica (issue 6, items 4 and 5): when the cluster CA is configured
 * (`--ca-address` and the key-encryption key), the replica
 * - runs `@meridian/ca`'s ClusterCaRuntime (intermediate from etcd, reloaded on rotation; token keys);
 * - serves, on the CA's TLS port (istiod's 15012 model), Istio's CreateCertificate and the same xDS
 *   service as the plaintext port: there a proxy presenting its workload certificate is authenticated
 *   and gets SDS `default` (its own key and chain) besides `ROOTCA`; without a client certificate only
 *   `ROOTCA`;
 * - translates with `@meridian/translate`'s mTLS (`new Translator({ mtls })`, which reads the config
 *   snapshot's PeerAuthentications): PeerAuthentication (mesh/namespace/workload/port) -> inbound
 *   filter chains (Envoy) or DownstreamTlsContext (proxyless gRPC servers); DestinationRule
 *   ISTIO_MUTUAL and automatic mTLS -> UpstreamTlsContext, checking the peer's SPIFFE id against the
 *   destination service's accounts (or the rule's `subjectAltNames`).
 * Without a CA the replica keeps one plain Translator and plaintext output. The replica owns the
 * snapshot and the push: this module supplies the translator, the SDS wrapper (sds.ts) and the
 * secret-change events (the CA runtime's changes and the rotations, as xDS ChangeEvents).
 */
import * as grpc from '@grpc/grpc-js';
import { ClusterCaRuntime, createCaServerCredentials, KEK_ENV, loadKek } from '@meridian/ca';
import type { Store } from '@meridian/store';
import { Translator } from '@meridian/translate';
import type { ChangeEvent, XdsServer, XdsSnapshot } from '@meridian/xds';
import type { Logger } from 'pino';
import type { AdminTlsSource } from './admin-http.js';
import { SdsSecretSource, withSecrets } from './sds.js';

/** What {@link ReplicaMtls.start} needs. */
export interface ReplicaMtlsOptions {
  readonly store: Store;
  readonly clusterId: string;
  readonly trustDomain: string;
  readonly kekFile: string | undefined;
  /** DNS names of the TLS port's serving certificate. */
  readonly servingDnsNames: readonly string[];
  readonly log: Logger;
  /** Told why, when the CA cannot be loaded (for `/readyz`). */
  readonly onUnavailable?: (reason: string) => void;
}

/** The replica's CA runtime, mTLS translation and SDS. */
export class ReplicaMtls {
  /** The replica's translator: mTLS on, in the CA's trust domain. */
  readonly translator: Translator;
  /** The Secret resources per proxy (SDS), following rotations and CA changes. */
  readonly sds: SdsSecretSource;
  #secretListener: (change: ChangeEvent) => void = () => {};
  #server: grpc.Server | undefined;
  address = '';

  private constructor(
    readonly runtime: ClusterCaRuntime,
    trustDomain: string,
  ) {
    this.translator = new Translator({ mtls: { trustDomain } });
    this.sds = new SdsSecretSource(runtime.secrets, (change) => this.#secretListener(change));
    runtime.onSecretChange((change) => this.sds.caChanged(change.at));
  }

  /** Starts the CA runtime, or resolves undefined (logged) when the CA cannot be loaded. */
  static async start(o: ReplicaMtlsOptions): Promise<ReplicaMtls | undefined> {
    if (!o.kekFile && !process.env[KEK_ENV]) {
      const reason = `--ca-address given without --ca-kek-file or ${KEK_ENV}`;
      o.log.warn(`${reason}: CA, SDS and mTLS off`);
      o.onUnavailable?.(reason);
      return undefined;
    }
    try {
      const kek = await loadKek(o.kekFile ? { file: o.kekFile } : {});
      const runtime = await ClusterCaRuntime.start({
        store: o.store,
        clusterId: o.clusterId,
        kek,
        servingDnsNames: o.servingDnsNames,
        logger: o.log,
      });
      if (runtime.ca.trustDomain !== o.trustDomain)
        o.log.warn(
          { ca: runtime.ca.trustDomain, option: o.trustDomain },
          'the cluster CA trust domain differs from --trust-domain; mTLS uses the CA one',
        );
      return new ReplicaMtls(runtime, runtime.ca.trustDomain);
    } catch (error) {
      o.log.error({ err: error }, 'cluster CA not loaded: CA, SDS and mTLS off');
      o.onUnavailable?.(error instanceof Error ? error.message : String(error));
      return undefined;
    }
  }

  /** The snapshot xDS serves: `base`, plus Secret resources (SDS). */
  wrap(base: XdsSnapshot): XdsSnapshot {
    return withSecrets(base, this.sds);
  }

  /** Tells `listener` of secret rotations and CA changes, as xDS ChangeEvents (the replica pushes them). */
  onSecretChange(listener: (change: ChangeEvent) => void): void {
    this.#secretListener = listener;
  }

  /** Serves CreateCertificate and xDS (mTLS-authenticated streams) on `host:port` over TLS. */
  async listen(
    xds: XdsServer,
    address: { host: string; port: number },
    serverOptions: grpc.ServerOptions,
    mount: (server: grpc.Server) => void = () => undefined,
  ): Promise<string> {
    const server = new grpc.Server(serverOptions);
    xds.register(server);
    this.runtime.mount(server);
    mount(server);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(
        `${address.host}:${address.port}`,
        createCaServerCredentials(this.runtime.serving),
        (err, p) => (err ? reject(err) : resolve(p)),
      ),
    );
    this.#server = server;
    this.address = `${address.host}:${port}`;
    return this.address;
  }

  /** The CA port's serving certificate and trust bundle, for the admin port's TLS. */
  adminTls(): AdminTlsSource {
    const serving = this.runtime.serving;
    return {
      onChange: (apply) => {
        const push = () => {
          const m = serving.current();
          if (m) apply(m);
        };
        push();
        serving.onChange(push);
      },
    };
  }

  /** Stops the TLS listener (bounded) and the CA runtime. */
  async stop(timeoutMs: number): Promise<void> {
    const server = this.#server;
    if (server) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, timeoutMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    this.sds.close();
    await this.runtime.close();
  }
}
