/**
 * Mesh identity on the replica: when the cluster CA is configured
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
 *
 * Restarted while etcd is unreachable, the CA (in etcd) cannot be loaded, but the TLS port
 * still opens: `ReplicaMtls.fromDisk` serves it with the serving certificate, key and trust bundle kept
 * on disk (serving-material.ts, written by every online replica whenever its serving certificate
 * changes). Offline, proxies are authenticated against that bundle and served config and `ROOTCA`;
 * nothing is issued (CreateCertificate answers UNAVAILABLE, SDS has no `default`). `connect()` loads
 * the CA once etcd answers, on the same listener: CreateCertificate is mounted, the serving certificate
 * renewed, and a Secret change pushes `default` to the proxies that proved an identity.
 */
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import {
  CaUnavailableError,
  ClusterCaRuntime,
  createCaServerCredentials,
  KEK_ENV,
  loadCaProto,
  loadKek,
  MemoryCertificateProvider,
  SDS_DEFAULT_SECRET,
  SDS_ROOT_SECRET,
  type VerifiedBootstrapToken,
  validationContextSecretJson,
} from '@meridian/ca';
import { encodeResource, TypeUrl } from '@meridian/envoy';
import type { Store } from '@meridian/store';
import { Translator } from '@meridian/translate';
import type { ChangeEvent, ResourceMap, XdsServer, XdsSnapshot } from '@meridian/xds';
import { encodedResource } from '@meridian/xds';
import type { Logger } from 'pino';
import type { AdminTlsSource } from './admin-http.js';
import { isUnspecifiedHost } from './membership.js';
import { SdsSecretSource, withSecrets } from './sds.js';
import {
  loadServingMaterial,
  namesNotCovered,
  type ServingMaterial,
  saveServingMaterial,
} from './serving-material.js';

/** What {@link ReplicaMtls.start} and {@link ReplicaMtls.fromDisk} need. */
export interface ReplicaMtlsOptions {
  readonly store: Store;
  readonly clusterId: string;
  readonly trustDomain: string;
  readonly kekFile: string | undefined;
  /** The key-encryption key as text (the `MERIDIAN_CA_KEK` setting), used when there is no `kekFile`. */
  readonly kek?: string | undefined;
  /**
   * DNS names and IP addresses of the TLS port's serving certificate (an IP becomes an IP SAN):
   * {@link servingCertificateNames}.
   */
  readonly servingDnsNames: readonly string[];
  readonly log: Logger;
  /** Told why, when the CA cannot be loaded (for `/readyz`). */
  readonly onUnavailable?: (reason: string) => void;
  /** Told when the CA is loaded after a start from disk (`connect`). */
  readonly onAvailable?: () => void;
  /**
   * Where the TLS port's serving certificate, its key (sealed with the KEK) and the trust bundle are
   * kept (serving-material.ts): written on every change while online, read by `fromDisk`. None: not kept.
   */
  readonly servingFile?: string;
  /** Pause between attempts of `connect` (default 5 s). */
  readonly retryMs?: number;
}

/**
 * The names of the TLS port's serving certificate, in order, without repeats: `localhost`, the bind
 * host unless it is unspecified (`0.0.0.0`, `::`: no one connects to it), the advertised host
 * (`--advertise-address`, which proxies' rate-limit and access-log clusters check as a DNS or IP SAN)
 * and the extra names (`--serving-names`, such as the Kubernetes Service name).
 */
export function servingCertificateNames(
  bindHost: string,
  advertise: string | undefined,
  extra: readonly string[] = [],
): string[] {
  const names = ['localhost', ...(isUnspecifiedHost(bindHost) ? [] : [bindHost]), advertise ?? '', ...extra];
  return [...new Set(names.map((n) => n.replace(/^\[(.*)\]$/, '$1')).filter((n) => n !== ''))];
}

/** The replica's CA runtime, mTLS translation and SDS. */
export class ReplicaMtls {
  /** The TLS port's serving identity and trust bundle (the CA runtime's, or the one kept on disk). */
  readonly serving = new MemoryCertificateProvider();
  #translator: Translator;
  #trustDomain: string;
  #runtime: ClusterCaRuntime | undefined;
  #sds: SdsSecretSource | undefined;
  /** Offline: the Secret resources of every proxy (`ROOTCA` of the bundle kept on disk). */
  #rootOnly: ResourceMap = new Map();
  #secretListener: (change: ChangeEvent) => void = () => {};
  #server: grpc.Server | undefined;
  #retry: NodeJS.Timeout | undefined;
  #saving: Promise<void> = Promise.resolve();
  #stopped = false;
  address = '';

  private constructor(
    private readonly o: ReplicaMtlsOptions,
    private readonly kek: Buffer,
    trustDomain: string,
  ) {
    this.#trustDomain = trustDomain;
    this.#translator = new Translator({ mtls: { trustDomain } });
  }

  /** Starts the CA runtime, or resolves undefined (logged) when the CA cannot be loaded. */
  static async start(o: ReplicaMtlsOptions): Promise<ReplicaMtls | undefined> {
    const kek = await ReplicaMtls.#kek(o);
    if (!kek) return undefined;
    try {
      const runtime = await ReplicaMtls.#startRuntime(o, kek);
      const mtls = new ReplicaMtls(o, kek, runtime.ca.trustDomain);
      mtls.#adopt(runtime);
      return mtls;
    } catch (error) {
      o.log.error({ err: error }, 'cluster CA not loaded: CA, SDS and mTLS off');
      o.onUnavailable?.(error instanceof Error ? error.message : String(error));
      return undefined;
    }
  }

  /**
   * Offline (etcd unreachable at start): the TLS port's identity and trust bundle from `servingFile`,
   * or undefined (logged) when there is none that can be served. Call `connect` once etcd answers.
   */
  static async fromDisk(o: ReplicaMtlsOptions): Promise<ReplicaMtls | undefined> {
    if (!o.servingFile) return undefined;
    const kek = await ReplicaMtls.#kek(o);
    if (!kek) return undefined;
    let m: Awaited<ReturnType<typeof loadServingMaterial>>;
    try {
      m = await loadServingMaterial(o.servingFile, kek, o.clusterId);
    } catch (error) {
      o.log.error({ err: error }, 'the TLS port cannot open before etcd answers');
      return undefined;
    }
    const mtls = new ReplicaMtls(o, kek, m.trustDomain);
    mtls.serving.setIdentity(m.certChainPem, m.keyPem);
    mtls.serving.setTrustBundle(m.trustBundlePem);
    mtls.#rootOnly = rootOnly(m.trustBundlePem);
    o.log.warn(
      { file: o.servingFile, writtenAt: m.writtenAt.toISOString(), notAfter: m.notAfter.toISOString() },
      'etcd unreachable: the TLS port serves with the certificate kept on disk; nothing is issued until the CA loads',
    );
    const missing = namesNotCovered(m.certChainPem, o.servingDnsNames);
    if (missing.length > 0)
      o.log.warn(
        { file: o.servingFile, missing, carried: m.servingNames },
        'the certificate kept on disk does not name every host of this replica (--advertise-address or --serving-names changed): clients that check those names fail their handshake until the CA loads',
      );
    return mtls;
  }

  static async #kek(o: ReplicaMtlsOptions): Promise<Buffer | undefined> {
    if (!o.kekFile && !o.kek) {
      const reason = `--ca-address given without --ca-kek-file or ${KEK_ENV}`;
      o.log.warn(`${reason}: CA, SDS and mTLS off`);
      o.onUnavailable?.(reason);
      return undefined;
    }
    try {
      return await loadKek(o.kekFile ? { file: o.kekFile } : { value: o.kek, source: KEK_ENV });
    } catch (error) {
      o.log.error({ err: error }, 'cluster CA not loaded: CA, SDS and mTLS off');
      o.onUnavailable?.(error instanceof Error ? error.message : String(error));
      return undefined;
    }
  }

  static async #startRuntime(o: ReplicaMtlsOptions, kek: Buffer): Promise<ClusterCaRuntime> {
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
    return runtime;
  }

  /** Whether the CA is loaded (false while serving with the certificate kept on disk). */
  get online(): boolean {
    return this.#runtime !== undefined;
  }

  /** The CA runtime, once loaded. */
  get runtime(): ClusterCaRuntime | undefined {
    return this.#runtime;
  }

  /** The replica's translator: mTLS on, in the CA's trust domain. */
  get translator(): Translator {
    return this.#translator;
  }

  /** The CA's trust domain (offline: the one kept on disk with the serving certificate). */
  get trustDomain(): string {
    return this.#trustDomain;
  }

  /** The Secret resources per proxy (SDS), following rotations and CA changes; undefined offline. */
  get sds(): SdsSecretSource | undefined {
    return this.#sds;
  }

  /** The CA counters and expiry gauges (undefined offline). */
  metrics(): Record<string, number> | undefined {
    return this.#runtime?.metrics();
  }

  /** Authenticates a bootstrap token (ClusterCaRuntime.authenticateToken); offline: CaUnavailableError. */
  authenticateToken(token: string): Promise<VerifiedBootstrapToken> {
    if (!this.#runtime)
      return Promise.reject(
        new CaUnavailableError(
          'the cluster CA is not loaded yet (etcd unreachable since this replica started)',
        ),
      );
    return this.#runtime.authenticateToken(token);
  }

  /**
   * After `fromDisk`: loads the CA from the store now, and again every `retryMs` until it is loaded
   * (or `stop`). Once loaded, the TLS port (same listener) mounts CreateCertificate, serves a freshly
   * issued certificate, and a Secret change is announced. Resolves after the first attempt.
   */
  async connect(): Promise<void> {
    if (this.#runtime || this.#stopped) return;
    try {
      const runtime = await ReplicaMtls.#startRuntime(this.o, this.kek);
      if (this.#stopped) {
        await runtime.close();
        return;
      }
      this.#adopt(runtime);
      this.o.log.info('cluster CA loaded: the TLS port serves a certificate of the CA');
      this.o.onAvailable?.();
      this.#secretListener(secretChange([SDS_DEFAULT_SECRET, SDS_ROOT_SECRET], 'ca-loaded'));
    } catch (error) {
      this.o.log.warn({ err: error }, 'cluster CA not loaded yet; serving with the certificate kept on disk');
      this.o.onUnavailable?.(error instanceof Error ? error.message : String(error));
      this.#retry = setTimeout(() => void this.connect(), this.o.retryMs ?? 5000);
      this.#retry.unref();
    }
  }

  #adopt(runtime: ClusterCaRuntime): void {
    this.#runtime = runtime;
    if (runtime.ca.trustDomain !== this.#trustDomain) {
      this.#trustDomain = runtime.ca.trustDomain;
      this.#translator = new Translator({ mtls: { trustDomain: this.#trustDomain } });
    }
    this.#sds = new SdsSecretSource(runtime.secrets, (change) => this.#secretListener(change));
    const sds = this.#sds;
    runtime.onSecretChange((change) => sds.caChanged(change.at));
    const mirror = () => {
      const m = runtime.serving.current();
      if (!m) return;
      this.serving.setIdentity(m.certChainPem, m.keyPem);
      this.serving.setTrustBundle(m.trustBundlePem);
      this.#save({ ...m, trustDomain: runtime.ca.trustDomain });
    };
    mirror();
    runtime.serving.onChange(mirror);
    if (this.#server) {
      this.#server.removeService(certificateService());
      runtime.mount(this.#server);
    }
  }

  /** Keeps the serving material on disk (one write at a time; a failure is a warning). */
  #save(m: ServingMaterial): void {
    const file = this.o.servingFile;
    if (!file) return;
    this.#saving = this.#saving
      .then(() => saveServingMaterial(file, m, this.kek, this.o.clusterId))
      .catch((error: unknown) =>
        this.o.log.warn({ err: error, file }, 'cannot keep the serving certificate on disk'),
      );
  }

  /** The snapshot xDS serves: `base`, plus Secret resources (SDS; offline only `ROOTCA`). */
  wrap(base: XdsSnapshot): XdsSnapshot {
    if (this.#sds) return withSecrets(base, this.#sds);
    const roots = this.#rootOnly;
    return {
      version: base.version,
      resources: (proxy, typeUrl) => (typeUrl === TypeUrl.Secret ? roots : base.resources(proxy, typeUrl)),
    };
  }

  /** Tells `listener` of secret rotations and CA changes, as xDS ChangeEvents (the replica pushes them). */
  onSecretChange(listener: (change: ChangeEvent) => void): void {
    this.#secretListener = listener;
  }

  /**
   * Serves CreateCertificate and xDS (mTLS-authenticated streams) on `host:port` over TLS, and what
   * `mount` adds. Called again once listening (after a start from disk), it only adds `mount`'s services.
   */
  async listen(
    xds: XdsServer,
    address: { host: string; port: number },
    serverOptions: grpc.ServerOptions,
    mount: (server: grpc.Server) => void = () => undefined,
  ): Promise<string> {
    if (this.#server) {
      mount(this.#server);
      return this.address;
    }
    const server = new grpc.Server(serverOptions);
    xds.register(server);
    if (this.#runtime) this.#runtime.mount(server);
    else server.addService(certificateService(), { CreateCertificate: unavailable });
    mount(server);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(
        `${address.host}:${address.port}`,
        createCaServerCredentials(this.serving),
        (err, p) => (err ? reject(err) : resolve(p)),
      ),
    );
    this.#server = server;
    this.address = `${address.host}:${port}`;
    return this.address;
  }

  /** The CA port's serving certificate and trust bundle, for the admin port's TLS. */
  adminTls(): AdminTlsSource {
    const serving = this.serving;
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
    this.#stopped = true;
    clearTimeout(this.#retry);
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
    this.#sds?.close();
    await this.#runtime?.close();
    await this.#saving;
  }
}

/** IstioCertificateService's definition (to mount a stand-in offline and remove it later). */
function certificateService(): grpc.ServiceDefinition {
  const pkg = loadCaProto() as unknown as {
    istio: { v1: { auth: { IstioCertificateService: grpc.ServiceClientConstructor } } };
  };
  return pkg.istio.v1.auth.IstioCertificateService.service;
}

/** CreateCertificate while the CA is not loaded: UNAVAILABLE (agents keep their certificate and retry). */
const unavailable: grpc.handleUnaryCall<unknown, unknown> = (_call, callback) =>
  callback({
    code: grpc.status.UNAVAILABLE,
    details: 'the cluster CA is not loaded yet (etcd unreachable since this replica started)',
  });

/** `ROOTCA` of `trustBundlePem`, as the Secret resources of every proxy. */
function rootOnly(trustBundlePem: string): ResourceMap {
  const root = encodedResource(
    TypeUrl.Secret,
    SDS_ROOT_SECRET,
    encodeResource(TypeUrl.Secret, validationContextSecretJson(trustBundlePem)),
  );
  return new Map([[SDS_ROOT_SECRET, root]]);
}

function secretChange(names: string[], reason: string): ChangeEvent {
  return {
    full: false,
    types: new Set([TypeUrl.Secret]),
    names: new Map([[TypeUrl.Secret, new Set(names)]]),
    reason: [reason],
    at: performance.now(),
  };
}
