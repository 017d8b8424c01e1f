/**
 * Mesh identity on the replica (issue 6, items 4 and 5): when the cluster CA is configured
 * (`--ca-address` and the key-encryption key), the replica
 * - runs `@meridian/ca`'s ClusterCaRuntime (intermediate from etcd, reloaded on rotation; token keys);
 * - serves, on the CA's TLS port (istiod's 15012 model), Istio's CreateCertificate and the same xDS
 *   service as the plaintext port: there a proxy presenting its workload certificate is authenticated
 *   and gets SDS `default` (its own key and chain) besides `ROOTCA`; without a client certificate only
 *   `ROOTCA`;
 * - translates with the mTLS hooks: PeerAuthentication (mesh/namespace/workload/port) -> inbound filter
 *   chains (Envoy) or DownstreamTlsContext (proxyless gRPC servers); DestinationRule ISTIO_MUTUAL and
 *   automatic mTLS -> UpstreamTlsContext, checking the peer's SPIFFE id against the destination
 *   service's accounts (or the rule's `subjectAltNames`).
 * Without a CA the replica keeps one plain Translator and plaintext output. The replica owns the
 * snapshot and the push: this module supplies the translator options, the SDS wrapper and the
 * secret-change events.
 */
import * as grpc from '@grpc/grpc-js';
import type { ConfigObject, PeerAuthenticationConfig } from '@meridian/api';
import {
  ClusterCaRuntime,
  createCaServerCredentials,
  grpcServerTransportSocket,
  inboundFilterChains,
  KEK_ENV,
  loadKek,
  modeForPort,
  resolvePeerAuthentication,
  upstreamTransportSocket,
  withSecrets,
} from '@meridian/ca';
import type { Store } from '@meridian/store';
import { type TranslateOptions, Translator } from '@meridian/translate';
import type { ChangeEvent, XdsServer, XdsSnapshot } from '@meridian/xds';
import type { Logger } from 'pino';
import type { AdminTlsSource } from './admin-http.js';

const ROOT_NAMESPACE = 'istio-system';

/** The translator options that apply `peerAuthentications` (pure: a new set needs a new Translator). */
export function mtlsTranslateOptions(
  peerAuthentications: readonly PeerAuthenticationConfig[],
  trustDomain: string,
  rootNamespace = ROOT_NAMESPACE,
): TranslateOptions {
  return {
    rootNamespace,
    upstreamTls: (c) =>
      upstreamTransportSocket(
        {
          service: {
            hostname: c.service.hostname,
            namespace: c.service.namespace,
            meshExternal: c.service.meshExternal,
            subjectAltNames: c.service.subjectAltNames,
          },
          port: c.port,
          subset: c.subset,
          // The destination's identities: the upstream peer must prove one of them (exact SANs).
          serviceAccounts: c.serviceAccounts,
          tls: c.tls,
          proxy: c.proxy,
        },
        {
          trustDomain,
          peerAuthentications,
          rootNamespace,
          // Istio's grpcgen leaves automatic mTLS off for proxyless clients: a gRPC server cannot
          // sniff TLS, so a PERMISSIVE server is plaintext-only; only ISTIO_MUTUAL turns TLS on.
          autoMtls: String(c.proxy.kind) !== 'grpc',
        },
      ),
    inboundFilterChains: ({ proxy, port, chain }) => {
      const mode = modeForPort(
        resolvePeerAuthentication(
          peerAuthentications,
          { namespace: proxy.namespace, labels: proxy.labels },
          rootNamespace,
        ),
        port,
      );
      if (String(proxy.kind) !== 'grpc') return inboundFilterChains(mode, chain);
      const socket = grpcServerTransportSocket(mode);
      return [socket ? { ...chain, transport_socket: socket } : chain];
    },
  };
}

/**
 * Keeps one Translator per PeerAuthentication set: the translator's cluster cache outlives config
 * snapshots (it is keyed on Service and DestinationRule objects), so a PeerAuthentication change
 * (automatic mTLS) needs a fresh one.
 */
export class MtlsTranslators {
  #key = '';
  #translator: Translator | undefined;

  constructor(readonly trustDomain: string) {}

  /** The translator for the PeerAuthentications among `objects`. */
  translatorFor(objects: readonly ConfigObject[]): Translator {
    const pas = objects
      .filter((o): o is PeerAuthenticationConfig => o.kind === 'PeerAuthentication')
      .sort((a, b) =>
        `${a.metadata.namespace}/${a.metadata.name}` < `${b.metadata.namespace}/${b.metadata.name}` ? -1 : 1,
      );
    const key = JSON.stringify(pas.map((p) => [p.metadata, p.spec]));
    if (!this.#translator || key !== this.#key) {
      this.#key = key;
      this.#translator = new Translator(mtlsTranslateOptions(pas, this.trustDomain));
    }
    return this.#translator;
  }
}

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
  readonly translators: MtlsTranslators;
  #server: grpc.Server | undefined;
  address = '';

  private constructor(
    readonly runtime: ClusterCaRuntime,
    trustDomain: string,
  ) {
    this.translators = new MtlsTranslators(trustDomain);
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
    return withSecrets(base, this.runtime.sds);
  }

  /** Tells `listener` of secret rotations and CA changes (the replica pushes them). */
  onSecretChange(listener: (change: ChangeEvent) => void): void {
    this.runtime.onSecretChange(listener);
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
    await this.runtime.close();
  }
}
