/**
 * One meridiand replica: wires store, cluster-state watch, registry, translation, xDS, registration,
 * membership/election and the admin HTTP server.
 *
 * Data flow: admin API write -> etcd transaction -> every replica's watch (ClusterState) -> a new
 * immutable (ConfigSnapshot, RegistrySnapshot) pair stamped with the etcd revision -> a
 * ProxySnapshot (translate + encode per proxy, lazily) -> XdsServer.update with a change event ->
 * debounce -> only streams whose resources changed are sent anything (content-hashed versions).
 */
import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import type { Server as HttpServer, IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import type { ConfigObject, ServiceEntryConfig, WorkloadEntryConfig } from '@meridian/api';
import { AdminAuthority, grants, isAdminToken } from '@meridian/auth';
import { identityFromPeerCertificate } from '@meridian/ca';
import { encodeResource, type ResourceTypeUrl, TypeUrl } from '@meridian/envoy';
import {
  addReplicaDiscoveryService,
  LocalSource,
  type RegistrationCaller,
  RegistrationRefusedError,
  RegistrationService,
  Registry,
  type RegistrySource,
} from '@meridian/registry';
import { EtcdStore, type EtcdStoreOptions, Keyspace, type Store } from '@meridian/store';
import {
  type ConfigSnapshot,
  createConfigSnapshot,
  type MeshTracing,
  type PolicyInputs,
  type RegistrySnapshot,
  Translator,
} from '@meridian/translate';
import {
  type ChangeEvent,
  Debouncer,
  decodeDeltaRequest,
  decodeSotwRequest,
  mergeChanges,
  ResourceCache,
  XdsServer,
} from '@meridian/xds';
import { metrics } from '@opentelemetry/api';
import pino, { type Logger } from 'pino';
import { type AdminTlsSource, startAdminServer, startMonitoringServer } from './admin-http.js';
import { startAdmissionWebhook } from './admission.js';
import { ClusterState, type StateChange } from './cluster-state.js';
import { CONFIG_PREFIX, ConfigService } from './config-service.js';
import { ConvergenceTracker, mergeConvergence, mergeMeshConvergence } from './convergence.js';
import { ReplicaDirectory } from './discovery.js';
import { DiskSnapshot, describeServing, type LoadedSnapshot } from './disk-snapshot.js';
import { AdminError, ServerConfigError } from './errors.js';
import { ReplicaFederation } from './federation.js';
import { StoreHealth } from './health.js';
import { JwksResolver } from './jwks.js';
import {
  checkListenAddresses,
  isOff,
  listenFailure,
  resolveAdvertiseAddress,
  splitAddress,
} from './listen-address.js';
import { ReplicaElection, type ReplicaInfo } from './membership.js';
import { ReplicaMtls, type ReplicaMtlsOptions, servingCertificateNames } from './mtls.js';
import type { ServerOptions } from './options.js';
import { Encoder, ProxySnapshot } from './proxy-snapshot.js';
import {
  addRateLimitService,
  GlobalRateLimiter,
  type RateLimitAccess,
  rateLimitServiceAddresses,
  replicaServiceKey,
} from './ratelimit-service.js';
import { servingMaterialFile } from './serving-material.js';
import { Telemetry } from './telemetry.js';
import { TelemetryIngest, workloadNames } from './telemetry-ingest.js';
import {
  PushTrace,
  type PushTracing,
  readMeshTracing,
  startPushTracing,
  TraceConvergence,
} from './tracing.js';

/** meridiand's version, registered with the replica's membership entry. */
export const MERIDIAN_VERSION = '0.1.0';

const TRANSLATED_KINDS = new Set([
  'VirtualService',
  'DestinationRule',
  'Sidecar',
  'PeerAuthentication',
  'AuthorizationPolicy',
  'RequestAuthentication',
  'RateLimit',
  'Telemetry',
]);
const REGISTRY_KINDS = new Set(['ServiceEntry', 'WorkloadEntry']);
const ALL_TYPES = new Set([
  TypeUrl.Listener,
  TypeUrl.RouteConfiguration,
  TypeUrl.Cluster,
  TypeUrl.ClusterLoadAssignment,
]);

const ROUTING_TYPES = new Set([TypeUrl.Listener, TypeUrl.RouteConfiguration]);
const ENDPOINT_TYPES = new Set([TypeUrl.Cluster, TypeUrl.ClusterLoadAssignment, TypeUrl.Listener]);

/**
 * The types a change can alter (Istio's per-kind push scoping): VirtualServices only listeners and
 * routes; endpoints alone (same services) load assignments, DNS clusters and upstream SAN checks in
 * clusters, and the workload's own inbound listener; anything else every type. Streams whose
 * resources did not change are skipped by the server whatever the types (immutable maps).
 */
function affectedTypes(
  everything: boolean,
  configKinds: readonly string[],
  servicesChanged: boolean,
): ReadonlySet<ResourceTypeUrl> {
  if (everything || servicesChanged) return ALL_TYPES;
  if (configKinds.length === 0) return ENDPOINT_TYPES;
  if (configKinds.every((k) => k === 'VirtualService')) return ROUTING_TYPES;
  return ALL_TYPES;
}

/** Hostnames whose endpoint lists are not the same objects in `after` as in `before`. */
function endpointChanges(before: RegistrySnapshot | undefined, after: RegistrySnapshot): ReadonlySet<string> {
  const out = new Set<string>();
  if (!before) return out;
  for (const [host, list] of after.endpoints) if (before.endpoints.get(host) !== list) out.add(host);
  for (const host of before.endpoints.keys()) if (!after.endpoints.has(host)) out.add(host);
  return out;
}

/**
 * Loads Envoy's protobuf schemas (seconds on a loaded machine) before the replica says it is ready,
 * so the first proxy is not the one that waits for them.
 */
function warmUpSchemas(): void {
  encodeResource(TypeUrl.Listener, { name: 'warm-up' });
  encodeResource(TypeUrl.RouteConfiguration, { name: 'warm-up' });
  encodeResource(TypeUrl.Cluster, { name: 'warm-up' });
  encodeResource(TypeUrl.ClusterLoadAssignment, { cluster_name: 'warm-up' });
  encodeResource('envoy.config.core.v3.Node', { id: 'warm-up' });
  decodeDeltaRequest(Buffer.alloc(0));
  decodeSotwRequest(Buffer.alloc(0));
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Hook for the parts mounted on the replica's gRPC server by later steps (CA's CreateCertificate,
 * federation): called with the server before it binds.
 */
export type GrpcExtension = (server: grpc.Server, replica: Replica) => void;

/** Options of {@link Replica.start} beyond the settings. */
export interface ReplicaStartOptions {
  readonly logger?: Logger;
  readonly extensions?: readonly GrpcExtension[];
  /** Bound on connecting to etcd at start-up (default 60 s, retried). */
  readonly connectTimeoutMs?: number;
}

/** A running replica. */
export class Replica {
  readonly log: Logger;
  readonly telemetry: Telemetry;
  /** Access logs and stats from the proxies: Istio's metrics and the service graph. */
  readonly #ingest: TelemetryIngest;
  readonly xds: XdsServer;
  readonly registry: Registry;
  readonly local: LocalSource;
  #store!: Store;
  #health!: StoreHealth;
  #state!: ClusterState;
  #config!: ConfigService;
  #election!: ReplicaElection;
  #registration!: RegistrationService;
  #grpc: grpc.Server | undefined;
  #admin: HttpServer | undefined;
  #monitoring: HttpServer | undefined;
  #webhook: HttpServer | undefined;
  #auth: AdminAuthority | undefined;
  #directory: ReplicaDirectory | undefined;
  #convergence: ConvergenceTracker | undefined;
  readonly #tracing: PushTracing;
  /** Tracing providers of `--mesh-config` for Telemetry's `tracing`. */
  readonly #meshTracing: MeshTracing | undefined;
  #trace: TraceConvergence | undefined;
  #traceSyncs: (() => void) | undefined;
  /** CA runtime, SDS and mTLS translation, when the CA is configured. */
  #mtls: ReplicaMtls | undefined;
  /** Why the CA configured with `--ca-address` is not loaded (reported by `/readyz`), if it is not. */
  #caProblem: string | undefined;
  #caRetry: NodeJS.Timeout | undefined;
  /** The last-known-good snapshot on disk (`--snapshot-dir`), unless off. */
  #disk: DiskSnapshot | undefined;
  #federation: ReplicaFederation | undefined;
  readonly #translator = new Translator();
  readonly #encoder = new Encoder(new ResourceCache());
  #snapshot: ProxySnapshot | undefined;
  #configSnapshot: ConfigSnapshot | undefined;
  /** The JWKS of RequestAuthentications (jwks.ts) and the global rate limits' counters. */
  #jwks: JwksResolver | undefined;
  #rateLimiter: GlobalRateLimiter | undefined;
  /** The replicas' service addresses the current config snapshot was built with (membership). */
  #replicaServicesKey = '';
  #registrySnapshot: RegistrySnapshot | undefined;
  #draining = false;
  #stopped: Promise<void> | undefined;
  /** Bound addresses (with the real ports when 0 was asked for; '' when not served). */
  xdsAddress = '';
  adminAddress = '';
  monitoringAddress = '';
  webhookAddress = '';
  /** The CreateCertificate TLS address, when served. */
  caAddress = '';
  /** The host proxies and agents reach this replica at (`--advertise-address` or its default); '' = none. */
  advertiseAddress = '';
  readonly startedAt = new Date();
  #snapshotsBuilt = 0;
  /** Debounces state and secret changes before a push context is built. */
  readonly #debouncer: Debouncer;
  #pendingState: StateChange | undefined;
  #pendingSecrets: ChangeEvent | undefined;
  /** How many push contexts were built at the current snapshot's revision after the first. */
  #rebuildsAtRevision = 0;

  private constructor(
    readonly options: ServerOptions,
    logger: Logger | undefined,
  ) {
    this.telemetry = new Telemetry({
      'meridian.mesh_id': options.meshId,
      'meridian.cluster_id': options.clusterId,
      'meridian.replica_id': options.replicaId,
    });
    this.telemetry.observeReplica({
      version: MERIDIAN_VERSION,
      snapshot: () => this.#snapshot,
      ca: () => this.#mtls?.metrics(),
    });
    this.log =
      logger ??
      pino({
        name: 'meridiand',
        level: options.logLevel,
        base: { replica: options.replicaId },
        // Never log a credential, even if a future log line passes a request's headers.
        redact: {
          paths: ['authorization', '*.authorization', '*.headers.authorization'],
          censor: '[redacted]',
        },
      });
    // Changes are debounced here, before the push context is built; the xDS server pushes each
    // debounced change at once (its own debouncer off).
    this.xds = new XdsServer({
      logger: this.log.child({ part: 'xds' }),
      debounce: { quietMs: 0 },
      pushConcurrency: options.pushConcurrency,
    });
    this.#meshTracing = readMeshTracing(options.meshConfig);
    this.#tracing = startPushTracing({
      replicaId: options.replicaId,
      clusterId: options.clusterId,
      meshId: options.meshId,
    });
    this.#debouncer = new Debouncer(
      { quietMs: options.debounceMs, maxDelayMs: options.maxDebounceMs },
      (change) => this.#fire(change.at),
    );
    this.local = new LocalSource(options.clusterId);
    this.#ingest = new TelemetryIngest({
      ...options,
      plaintext: options.telemetryPlaintext === 'on',
      log: this.log.child({ part: 'telemetry' }),
    });
    this.telemetry.addExposition(() => this.#ingest.istio.serialize());
    // What dry-run AuthorizationPolicies would have denied (authz-dry-run.ts).
    this.telemetry.addExposition(() => this.#ingest.dryRun.serialize());
    this.registry = new Registry([this.local]);
  }

  /** Starts a replica: connects to etcd, loads the state, serves. */
  static async start(options: ServerOptions, extra: ReplicaStartOptions = {}): Promise<Replica> {
    const r = new Replica(options, extra.logger);
    try {
      await r.#start(extra);
    } catch (error) {
      await r.stop().catch(() => undefined);
      throw error;
    }
    return r;
  }

  async #connect(timeoutMs: number): Promise<Store> {
    const o = this.options;
    const until = Date.now() + timeoutMs;
    for (;;) {
      try {
        return await EtcdStore.connect(this.#storeOptions());
      } catch (error) {
        if (Date.now() > until) {
          const cause = (error as Error).cause;
          throw new ServerConfigError(
            '--etcd-endpoints',
            `etcd not reachable at ${o.etcdEndpoints.join(', ')} within ${Math.round(timeoutMs / 1000)} s${cause instanceof Error ? ` (${cause.message})` : ''}`,
          );
        }
        this.log.warn({ err: error }, 'etcd not reachable yet; retrying');
        await sleep(500);
      }
    }
  }

  async #start(extra: ReplicaStartOptions): Promise<void> {
    const o = this.options;
    const xdsAddr = isOff(o.xdsAddress) ? undefined : splitAddress(o.xdsAddress, '--xds-address');
    const adminAddr = splitAddress(o.adminAddress, '--admin-address');
    const monitoringAddr = isOff(o.monitoringAddress)
      ? undefined
      : splitAddress(o.monitoringAddress, '--monitoring-address');
    const caAddr = isOff(o.caAddress) ? undefined : splitAddress(o.caAddress, '--ca-address');
    await checkListenAddresses([
      ...(xdsAddr ? [{ setting: '--xds-address', ...xdsAddr }] : []),
      { setting: '--admin-address', ...adminAddr },
      ...(monitoringAddr ? [{ setting: '--monitoring-address', ...monitoringAddr }] : []),
      ...(caAddr ? [{ setting: '--ca-address', ...caAddr }] : []),
    ]);
    // The host proxies and agents reach this replica at (membership, serving certificate).
    this.advertiseAddress = resolveAdvertiseAddress(o, this.log);
    if (o.caKekFile) {
      try {
        await access(o.caKekFile, constants.R_OK);
      } catch (error) {
        throw new ServerConfigError(
          '--ca-kek-file',
          `cannot read ${o.caKekFile}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
        );
      }
    }
    warmUpSchemas();
    // If etcd cannot be reached at start, serve the last-known-good snapshot from
    // disk at once (xDS, admin and health ports open), and attach the parts that need etcd when it
    // answers; without a usable snapshot, keep trying until --store-connect-timeout-ms (then exit 2).
    const disk = isOff(o.snapshotDir)
      ? undefined
      : new DiskSnapshot(
          o.snapshotDir,
          o.meshId,
          o.clusterId,
          o.etcdEndpoints,
          this.log.child({ part: 'snapshot' }),
        );
    this.#disk = disk;
    let fromDisk: LoadedSnapshot | undefined;
    let store: Store | undefined;
    if (disk) {
      store = await this.#connectOnce().catch((error: unknown) => {
        this.log.warn({ err: error }, 'etcd not reachable at start; looking for a snapshot on disk');
        return undefined;
      });
      if (!store) fromDisk = await disk.load();
    }
    if (fromDisk) store = EtcdStore.open(this.#storeOptions());
    this.#store = store ?? (await this.#connect(extra.connectTimeoutMs ?? o.storeConnectTimeoutMs));
    this.#health = new StoreHealth(this.#store, this.log.child({ part: 'health' }));
    this.#state = new ClusterState(
      this.#store,
      this.log.child({ part: 'state' }),
      (change) => this.#changed(change),
      (status) => this.#health.watchStatus(status === 'connected'),
    );
    this.#config = new ConfigService(this.#store, this.#health, this.#state, {
      log: this.log.child({ part: 'config' }),
    });
    const jwksChanged = new Set(['RequestAuthentication']);
    this.#jwks = new JwksResolver({
      log: this.log.child({ part: 'jwks' }),
      onChange: () =>
        this.#changed({
          revision: this.#state.revision,
          kinds: jwksChanged,
          configs: new Set(),
          workloads: false,
          resync: false,
        }),
    });
    this.#rateLimiter = new GlobalRateLimiter({
      store: this.#store,
      limits: () => this.#configSnapshot?.rateLimits ?? [],
      log: this.log.child({ part: 'ratelimit' }),
    });
    if (fromDisk) {
      const served = fromDisk;
      this.#state.startFrom(served);
      disk!.setServing(served);
      this.log.warn(
        { file: served.file, revision: served.revision, writtenAt: served.writtenAt.toISOString() },
        'etcd unreachable: serving the last-known-good snapshot from disk',
      );
      // The CA is in etcd, but the TLS port opens with the serving certificate kept on disk.
      if (caAddr) {
        this.#mtls = await ReplicaMtls.fromDisk(
          this.#mtlsOptions(caAddr.host, this.log.child({ part: 'ca' })),
        );
        this.#mtls?.onSecretChange((change) => this.#secretChanged(change));
      }
    } else {
      await this.#state.start();
      this.#auth = await AdminAuthority.open(this.#store);
      if (caAddr) {
        this.#mtls = await this.#loadCa(caAddr.host, this.log.child({ part: 'ca' }));
        this.#mtls?.onSecretChange((change) => this.#secretChanged(change));
      }
    }
    this.#rebuild(
      { revision: this.#state.revision, kinds: new Set(), configs: new Set(), workloads: true, resync: true },
      performance.now(),
      true,
    );
    this.#serve(undefined);

    const refusedRegistrations = metrics
      .getMeter('@meridian/server')
      .createCounter('meridian_registrations_refused', {
        description: 'Workload registrations refused (no credential, another identity, another address).',
      });
    this.#registration = new RegistrationService({
      store: this.#store,
      replicaId: o.replicaId,
      defaultTtlSeconds: o.registrationTtlSeconds,
      logger: this.log.child({ part: 'registration' }),
      authenticate: (call) => this.#authenticateRegistration(call),
      onRefused: (reason) => refusedRegistrations.add(1, { reason }),
    });
    if (xdsAddr) {
      const server = new grpc.Server(this.xds.grpcServerOptions());
      this.xds.register(server);
      this.#registration.register(server);
      addRateLimitService(
        server,
        this.#rateLimiter!,
        this.log.child({ part: 'ratelimit' }),
        this.#rateLimitAccess(false),
      );
      this.#ingest.register(server, false);
      for (const ext of extra.extensions ?? []) ext(server, this);
      const port = await new Promise<number>((resolve, reject) =>
        server.bindAsync(
          `${xdsAddr.host}:${xdsAddr.port}`,
          grpc.ServerCredentials.createInsecure(),
          (err, p) => (err ? reject(listenFailure('--xds-address', o.xdsAddress, err)) : resolve(p)),
        ),
      );
      this.#grpc = server;
      this.xdsAddress = `${xdsAddr.host}:${port}`;
    } else if (!this.#mtls && !fromDisk) {
      this.log.error(
        '--xds-address is off and no CA port serves xDS: proxies cannot connect to this replica',
      );
    }
    if (fromDisk && this.#mtls && caAddr)
      this.caAddress = await this.#mtls
        .listen(this.xds, caAddr, this.xds.grpcServerOptions())
        .catch((error: unknown) => {
          throw listenFailure('--ca-address', o.caAddress, error);
        });

    const probes = {
      notReady: () =>
        this.#draining
          ? 'shutting down'
          : !this.#snapshot
            ? 'not ready: no config snapshot yet'
            : this.#caProblem !== undefined && !this.#disk?.serving
              ? `not ready: --ca-address is set but the CA is not loaded: ${this.#caProblem}`
              : undefined,
      readiness: () => this.#health.describe(),
      metrics: (req: IncomingMessage, res: ServerResponse) => this.telemetry.handle(req, res),
    };
    const refusedAdmin = metrics
      .getMeter('@meridian/server')
      .createCounter('meridian_admin_requests_refused', {
        description:
          'Admin API requests refused (no or bad credential, role too weak, cross-origin, bad media type).',
      });
    const replica = this;
    const startAdmin = async () => {
      const admin = await startAdminServer(
        {
          ...probes,
          log: this.log.child({ part: 'admin' }),
          config: this.#config,
          // Until etcd has been reached (a start from disk), every authenticated call is refused with 503.
          get auth(): AdminAuthority {
            return replica.#auth ?? replica.#authUnavailable();
          },
          trustDomain: o.trustDomain,
          debug: this.xds.debugHandler(),
          debugInfo: (path) => this.#debugInfo(path),
          onRefused: (reason) => refusedAdmin.add(1, { reason }),
        },
        adminAddr,
        o.adminTls === 'on' ? this.#adminTls() : undefined,
      ).catch((error: unknown) => {
        throw listenFailure('--admin-address', o.adminAddress, error);
      });
      this.#admin = admin.server;
      this.adminAddress = `${adminAddr.host}:${admin.port}`;
    };
    // HTTPS admin needs the CA's serving certificate, which needs etcd: after a start from disk it
    // opens once etcd answers (the monitoring port serves health meanwhile).
    const adminLater = fromDisk !== undefined && o.adminTls === 'on';
    if (adminLater)
      this.log.warn('--admin-tls on: the admin port opens once etcd answers (the CA certificate is in etcd)');
    else await startAdmin();
    if (monitoringAddr) {
      const monitoring = await startMonitoringServer(probes, monitoringAddr).catch((error: unknown) => {
        throw listenFailure('--monitoring-address', o.monitoringAddress, error);
      });
      this.#monitoring = monitoring.server;
      this.monitoringAddress = `${monitoringAddr.host}:${monitoring.port}`;
    }
    if (!isOff(o.webhookAddress)) {
      const at = splitAddress(o.webhookAddress, '--webhook-address');
      const { webhookCertFile: certFile, webhookKeyFile: keyFile, webhookClientCaFile: ca } = o;
      const hook = await startAdmissionWebhook(
        { ...at, certFile, keyFile, ...(ca ? { clientCaFile: ca } : {}) },
        {
          log: this.log.child({ part: 'webhook' }),
          currentConfig: () => this.#state.list(CONFIG_PREFIX).map((kv) => kv.value),
        },
      );
      this.#webhook = hook.server;
      this.webhookAddress = `${at.host}:${hook.port}`;
    }
    this.#health.start();
    const attach = async () => {
      await this.#attach(caAddr);
      if (adminLater && !this.#admin) await startAdmin();
    };
    if (fromDisk) {
      const served = fromDisk;
      this.#health.servingFromDisk(
        () => describeServing(served),
        () => {
          disk!.setServing(undefined);
          this.log.info(
            { servedRevision: served.revision, revision: this.#state.revision },
            'etcd reachable again: caught up from the snapshot on disk',
          );
          void this.#attachWhenReachable(attach);
        },
      );
    } else await attach();
    this.log.info(
      {
        xdsAddress: this.xdsAddress || 'off',
        caAddress: this.caAddress || 'off',
        adminAddress: this.adminAddress,
        monitoringAddress: this.monitoringAddress || 'off',
        revision: this.#state.revision,
        ...(fromDisk ? { servedFromDisk: fromDisk.file } : {}),
      },
      'meridiand ready',
    );
  }

  /**
   * The parts that need etcd: workload discovery between replicas, the CA port, membership and
   * election, federation. At start, or once etcd answers after a start from disk.
   */
  async #attach(caAddr: { host: string; port: number } | undefined): Promise<void> {
    const o = this.options;
    this.#auth ??= await AdminAuthority.open(this.#store);
    // Started from disk with the TLS port open on the certificate kept on disk: the CA loads now.
    if (caAddr && this.#mtls && !this.#mtls.online) await this.#mtls.connect();
    if (caAddr && !this.#mtls && this.#caProblem === undefined) {
      // Started from disk: the CA is loaded now that etcd answers.
      this.#mtls = await this.#loadCa(caAddr.host, this.log.child({ part: 'ca' }));
      if (this.#mtls) {
        this.#mtls.onSecretChange((change) => this.#secretChanged(change));
        this.#resyncAll();
      }
    }
    this.#directory = await ReplicaDirectory.open(this.#store, o.replicaId, this.xds, {
      log: this.log.child({ part: 'rebalance' }),
      onMembersChange: () => this.#replicaServicesChanged(),
    });
    const directory = this.#directory;
    if (this.#grpc) addReplicaDiscoveryService(this.#grpc, directory);
    this.#convergence = await ConvergenceTracker.open(
      this.#store,
      this.xds,
      { replicaId: o.replicaId, clusterId: o.clusterId },
      this.log.child({ part: 'convergence' }),
      {
        natsUrls: o.natsUrls,
        natsCreds: o.natsCreds,
        meshId: o.meshId,
        status: () => this.#debugInfo('/debug/replica'),
      },
    );
    await this.#ingest.attach(this.#store);
    if (this.#snapshot) this.#convergence.pushed(this.#snapshot.revision, this.#snapshot.version, Date.now());

    // CreateCertificate and mTLS-authenticated xDS (SDS `default`) on the CA's TLS port.
    const serveCa = async (mtls: ReplicaMtls) => {
      this.caAddress = await mtls
        .listen(this.xds, caAddr!, this.xds.grpcServerOptions(), (server) => {
          this.#registration.register(server);
          addReplicaDiscoveryService(server, directory);
          this.#ingest.register(server, true);
          addRateLimitService(
            server,
            this.#rateLimiter!,
            this.log.child({ part: 'ratelimit' }),
            this.#rateLimitAccess(true),
          );
        })
        .catch((error: unknown) => {
          throw listenFailure('--ca-address', o.caAddress, error);
        });
      this.log.info({ address: this.caAddress }, 'CreateCertificate and xDS with SDS served (TLS)');
    };
    if (this.#mtls) await serveCa(this.#mtls);
    else if (caAddr) this.#retryCa(caAddr.host, serveCa);

    const info: ReplicaInfo = {
      id: o.replicaId,
      meshId: o.meshId,
      clusterId: o.clusterId,
      xdsAddress: this.xdsAddress,
      adminAddress: this.adminAddress,
      ...(this.caAddress ? { caAddress: this.caAddress } : {}),
      ...(this.advertiseAddress ? { advertiseAddress: this.advertiseAddress } : {}),
      locality: o.locality,
      version: MERIDIAN_VERSION,
      startedAt: this.startedAt.toISOString(),
    };
    this.#election = new ReplicaElection(this.#store, info, this.log.child({ part: 'membership' }), {
      leaseTtlSeconds: o.replicaLeaseTtlSeconds,
      dutyIntervalMs: 1000,
      servedRevision: () => this.#snapshot?.revision ?? 0,
    });
    if (o.natsUrls.length > 0) {
      // Import on every replica, export while leading (one exporter per cluster; subscribed before the
      // first campaign, so no term is missed).
      const election = this.#election;
      this.#federation = await ReplicaFederation.start({
        options: o,
        store: this.#store,
        local: this.local,
        log: this.log.child({ part: 'federation' }),
        addSource: (source) => this.addRegistrySource(source),
        onLeadership: (listener) => election.onLeadership(listener),
      });
    }
    this.#election.start();
  }

  /** Runs `attach` once etcd answers (after a start from disk), retrying while it fails. */
  async #attachWhenReachable(attach: () => Promise<void>): Promise<void> {
    for (let pause = 500; !this.#draining; pause = Math.min(pause * 2, 5000)) {
      try {
        await attach();
        return;
      } catch (error) {
        if (error instanceof ServerConfigError) {
          this.log.fatal({ err: error }, error.message);
          void this.stop();
          return;
        }
        this.log.warn({ err: error }, 'attaching to etcd failed; retrying');
        await sleep(pause);
      }
    }
  }

  /** The admin authority's stand-in before etcd has been reached: every call is a 503. */
  #authUnavailable(): AdminAuthority {
    const served = this.#disk?.serving;
    const error = () =>
      new AdminError(
        'STORE_UNAVAILABLE',
        `store unreachable${served ? `: serving revision ${served.revision} from disk` : ''}; the admin API needs etcd to check credentials`,
      );
    return new Proxy({} as AdminAuthority, {
      get: () => () => {
        throw error();
      },
    });
  }

  /** Settings of the etcd client. */
  #storeOptions(): EtcdStoreOptions {
    const o = this.options;
    return {
      endpoints: o.etcdEndpoints,
      keyspace: Keyspace.of(o.meshId, o.clusterId),
      requestTimeoutMs: o.storeTimeoutMs,
      connectTimeoutMs: Math.min(o.storeTimeoutMs * 2, 5000),
      writeAttemptTimeoutMs: Math.min(1000, o.storeTimeoutMs),
    };
  }

  /** One short attempt to reach etcd (at most 2 s), before falling back to the snapshot on disk. */
  #connectOnce(): Promise<Store> {
    return EtcdStore.connect({
      ...this.#storeOptions(),
      connectTimeoutMs: Math.min(this.options.storeTimeoutMs, 2000),
    });
  }

  #adminTls(): AdminTlsSource {
    if (!this.#mtls)
      throw new ServerConfigError(
        '--admin-tls',
        'needs the cluster CA (--ca-address and its key-encryption key)',
      );
    return this.#mtls.adminTls();
  }

  /** Loads the cluster CA; undefined (with `#caProblem` set, e.g. no CA in this keyspace) if it cannot. */
  async #loadCa(host: string, log: Logger): Promise<ReplicaMtls | undefined> {
    let problem: string | undefined;
    const mtls = await ReplicaMtls.start({
      ...this.#mtlsOptions(host, log),
      onUnavailable: (reason) => {
        problem = reason;
      },
    });
    if (!mtls) this.#caProblem = problem;
    return mtls;
  }

  /** Settings of the replica's CA runtime; the TLS port's certificate is kept beside the disk snapshot. */
  #mtlsOptions(host: string, log: Logger): ReplicaMtlsOptions {
    const o = this.options;
    return {
      store: this.#store,
      clusterId: o.clusterId,
      trustDomain: o.trustDomain,
      kekFile: o.caKekFile || undefined,
      kek: o.caKek || undefined,
      servingDnsNames: servingCertificateNames(host, this.advertiseAddress, o.servingNames),
      log,
      ...(isOff(o.snapshotDir)
        ? {}
        : { servingFile: servingMaterialFile(o.snapshotDir, o.meshId, o.clusterId) }),
      onUnavailable: (reason) => {
        this.#caProblem = reason;
      },
      onAvailable: () => {
        this.#caProblem = undefined;
        this.#resyncAll();
      },
    };
  }

  /**
   * While the CA is missing, tries again every 5 s (quietly): a CA installed after the replica
   * started (`meridian ca install`) is picked up without a restart, and the CA port opens then.
   */
  #retryCa(host: string, serve: (mtls: ReplicaMtls) => Promise<void>): void {
    const quiet = this.log.child({ part: 'ca' }, { level: 'fatal' });
    const attempt = async () => {
      if (this.#draining) return;
      const mtls = await this.#loadCa(host, quiet).catch(() => undefined);
      if (this.#draining) {
        await mtls?.stop(0);
        return;
      }
      if (!mtls) {
        this.#caRetry = setTimeout(() => void attempt(), 5000);
        this.#caRetry.unref();
        return;
      }
      this.#mtls = mtls;
      mtls.onSecretChange((change) => this.#secretChanged(change));
      this.log.info('cluster CA loaded');
      this.#resyncAll();
      try {
        await serve(mtls);
        this.#caProblem = undefined;
      } catch (error) {
        this.#caProblem = (error as Error).message;
        this.log.error({ err: error }, 'cannot serve the CA port');
      }
    };
    this.#caRetry = setTimeout(() => void attempt(), 5000);
    this.#caRetry.unref();
  }

  /**
   * Who opened a registration stream: an admin token (role registrar: any workload, any address),
   * a bootstrap token (its workload identity; single-use tokens are spent), or the workload
   * certificate of an mTLS connection on the CA port. Anything else is refused.
   */
  async #authenticateRegistration(
    call: grpc.ServerDuplexStream<unknown, unknown>,
  ): Promise<RegistrationCaller> {
    const refuse = (message: string, cause?: unknown): never => {
      throw new RegistrationRefusedError('UNAUTHENTICATED', 'unauthenticated', message, { cause });
    };
    const header = call.metadata.get('authorization')[0];
    if (header !== undefined) {
      const m = /^Bearer\s+(\S+)$/i.exec(String(header));
      if (!m) return refuse('authorization metadata must be "Bearer <token>"');
      const token = m[1]!;
      if (isAdminToken(token)) {
        let caller: Awaited<ReturnType<AdminAuthority['authenticateToken']>>;
        try {
          caller = await this.#auth!.authenticateToken(token);
        } catch (error) {
          return refuse(`admin token: ${(error as Error).message}`, error);
        }
        if (!grants(caller.roles, 'registrar'))
          throw new RegistrationRefusedError(
            'PERMISSION_DENIED',
            'forbidden',
            `${caller.subject} has no role allowing workload registration (registrar or admin)`,
          );
        return { subject: caller.subject, registrar: true };
      }
      if (!this.#mtls) return refuse('bootstrap tokens are not accepted: this replica has no CA');
      try {
        const verified = await this.#mtls.authenticateToken(token);
        const id = verified.identity;
        return {
          subject: `spiffe://${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`,
          workload: { namespace: id.namespace, serviceAccount: id.serviceAccount },
          registrar: false,
        };
      } catch (error) {
        return refuse(`bootstrap token: ${(error as Error).message}`, error);
      }
    }
    const peer = call.getAuthContext?.()?.sslPeerCertificate;
    if (peer?.raw && this.#mtls) {
      try {
        const id = identityFromPeerCertificate(peer.raw, new Date());
        if (id.trustDomain !== this.#mtls.trustDomain)
          return refuse(`certificate of trust domain "${id.trustDomain}", not "${this.#mtls.trustDomain}"`);
        return {
          subject: `spiffe://${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`,
          workload: { namespace: id.namespace, serviceAccount: id.serviceAccount },
          registrar: false,
        };
      } catch (error) {
        return refuse(`client certificate: ${(error as Error).message}`, error);
      }
    }
    return refuse(
      'no credentials: register over mTLS with the workload certificate, or send "authorization: Bearer <token>"',
    );
  }

  /** The current snapshot (undefined before the first). */
  get snapshot(): ProxySnapshot | undefined {
    return this.#snapshot;
  }

  get isLeader(): boolean {
    return this.#election?.isLeader ?? false;
  }

  /** Rebuilds everything at the current revision for every proxy: the CA loaded, or available again. */
  #resyncAll(): void {
    this.#changed({
      revision: this.#state.revision,
      kinds: new Set(),
      configs: new Set(),
      workloads: false,
      resync: true,
    });
  }

  /** A state change (etcd watch batch, imported services, the CA loaded): debounced, then built. */
  #changed(change: StateChange): void {
    const p = this.#pendingState;
    this.#pendingState = p
      ? {
          revision: Math.max(p.revision, change.revision),
          kinds: new Set([...p.kinds, ...change.kinds]),
          configs: new Set([...p.configs, ...change.configs]),
          workloads: p.workloads || change.workloads,
          resync: p.resync || change.resync,
        }
      : change;
    this.#debouncer.enqueue({ full: true, reason: [], at: performance.now() });
  }

  /** Secret rotations and CA changes (SDS): pushed with the next debounced change. */
  #secretChanged(change: ChangeEvent): void {
    this.#pendingSecrets = this.#pendingSecrets ? mergeChanges(this.#pendingSecrets, change) : change;
    this.#debouncer.enqueue({ full: true, reason: [], at: change.at });
  }

  /** The debounced change: one push context (snapshot) built, then one push. */
  #fire(at: number): void {
    const state = this.#pendingState;
    const secrets = this.#pendingSecrets;
    this.#pendingState = undefined;
    this.#pendingSecrets = undefined;
    if (this.#draining || !this.#state) return;
    const firedAt = Date.now();
    const trace = this.#tracing.exporting
      ? new PushTrace(this.#tracing.tracer, firedAt - Math.max(0, performance.now() - at), firedAt)
      : undefined;
    const built = state ? this.#rebuild(state, at) : undefined;
    const change = built && secrets ? mergeChanges(built, secrets) : (built ?? secrets);
    trace?.built(firedAt, {
      'meridian.revision': this.#snapshot?.revision ?? 0,
      'meridian.version': this.#snapshot?.version ?? '',
      'meridian.configs_changed': state?.configs.size ?? 0,
      'meridian.services_changed': built?.services?.size ?? 0,
      'meridian.reason': change?.reason.join(',') ?? 'none',
    });
    if (!change) {
      trace?.converged(0, 0, true);
      return;
    }
    const sendStart = Date.now();
    this.#serve(change);
    if (trace) this.#traceConvergence(trace, sendStart);
  }

  /**
   * Ends the push trace's send and converge spans as the pushes are written and ACKed, counting
   * ACKs incrementally (tracing.ts TraceConvergence: no recount of every proxy per ACK).
   */
  #traceConvergence(trace: PushTrace, sendStart: number): void {
    this.#trace?.supersede();
    const follower = new TraceConvergence(trace, this.#snapshot?.version, () => this.xds.convergence());
    this.#trace = follower;
    void this.xds.idle().then(() => follower.sent(sendStart));
    this.#traceSyncs ??= this.xds.onProxySynced((conn, version) => this.#trace?.synced(conn, version));
  }

  /** The one place that hands xDS a snapshot: the current push context plus secrets (SDS). */
  #serve(change: ChangeEvent | undefined): void {
    const snapshot = this.#snapshot;
    if (!snapshot) return;
    this.xds.update(this.#mtls ? this.#mtls.wrap(snapshot) : snapshot, change);
    this.#convergence?.pushed(
      snapshot.revision,
      snapshot.version,
      change ? Date.now() - Math.max(0, performance.now() - change.at) : Date.now(),
    );
  }

  /**
   * Builds the push context of `change` (a new ProxySnapshot over new config and registry
   * snapshots) and says what changed, or undefined when nothing translation reads did.
   */
  #rebuild(change: StateChange, at: number, initial = false): ChangeEvent | undefined {
    const kinds = [...change.kinds];
    const configDirty = initial || change.resync || kinds.some((k) => TRANSLATED_KINDS.has(k));
    const registryDirty =
      initial || change.resync || change.workloads || kinds.some((k) => REGISTRY_KINDS.has(k));
    if (!configDirty && !registryDirty) return undefined;
    const objects: ConfigObject[] = this.#state.configs();
    let config = this.#configSnapshot;
    if (configDirty || !config) {
      const { key, ...services } = this.#replicaServices();
      this.#replicaServicesKey = key;
      config = createConfigSnapshot(change.revision, objects, {
        jwks: this.#jwks?.resolve(objects) ?? new Map(),
        ...services,
        ...(this.#meshTracing ? { tracing: this.#meshTracing } : {}),
      });
    }
    let registry = this.#registrySnapshot;
    if (registryDirty || !registry) {
      this.local.update({
        serviceEntries: objects.filter((x): x is ServiceEntryConfig => x.kind === 'ServiceEntry'),
        workloadEntries: objects.filter((x): x is WorkloadEntryConfig => x.kind === 'WorkloadEntry'),
        registrations: this.#state.registrations(),
      });
      registry = this.registry.snapshot(change.revision);
      this.#ingest.setRegistry(registry, workloadNames(objects, this.#state.registrations()));
    }
    const before = this.#registrySnapshot;
    const configChanged = config !== this.#configSnapshot;
    if (!initial && this.#snapshot && !configChanged && registry === before) return undefined;
    this.#configSnapshot = config;
    this.#registrySnapshot = registry;
    const rebuild = this.#snapshot?.revision === change.revision ? this.#rebuildsAtRevision + 1 : 0;
    this.#rebuildsAtRevision = rebuild;
    const snapshot = new ProxySnapshot(
      change.revision,
      config,
      registry,
      this.#mtls?.translator ?? this.#translator,
      this.#encoder,
      this.log,
      rebuild,
    );
    this.#snapshot = snapshot;
    this.#snapshotsBuilt++;
    if (this.#snapshotsBuilt % 50 === 0) this.#encoder.sweep();
    const services = endpointChanges(before, registry);
    const reason = [
      ...kinds,
      ...(change.workloads || services.size > 0 ? ['endpoints'] : []),
      ...(change.resync ? ['resync'] : []),
    ];
    this.log.debug(
      { revision: change.revision, reason, configs: change.configs.size, services: services.size },
      'new push context',
    );
    // The last-known-good snapshot on disk follows every revision applied from etcd (not while the
    // state is the one read from disk).
    if (this.#disk && !this.#disk.serving) this.#disk.schedule(() => this.#state.snapshotState());
    return {
      full: false,
      types: affectedTypes(
        change.resync || initial,
        configChanged ? kinds.filter((k) => TRANSLATED_KINDS.has(k)) : [],
        before?.services !== registry.services,
      ),
      reason: reason.length ? reason : ['config'],
      at,
      configs: change.configs,
      services,
    };
  }

  /**
   * Adds a registry source after the local one (federation's imported services and endpoints):
   * its changes rebuild the registry snapshot and push the proxies they affect. Imported
   * changes carry no etcd revision; the snapshot keeps the last one seen.
   */
  addRegistrySource(source: RegistrySource): () => void {
    this.registry.addSource(source);
    const off = source.onChange(() => {
      if (!this.#state || this.#draining) return;
      this.#changed({
        revision: this.#state.revision,
        kinds: new Set(),
        configs: new Set(),
        workloads: true,
        resync: false,
      });
    });
    if (this.#state)
      this.#changed({
        revision: this.#state.revision,
        kinds: new Set(),
        configs: new Set(),
        workloads: true,
        resync: false,
      });
    return off;
  }

  /**
   * Where proxies reach the replicas' own services, from the current membership: the
   * rate-limit service on the replicas' CA mTLS ports when this replica has the CA, on their
   * plaintext xDS ports only with `--rate-limit-plaintext on` and no CA, else nowhere; sidecars'
   * access logs (Telemetry provider `meridian`) likewise: the CA mTLS ports, else the plaintext
   * xDS ports with `--telemetry-plaintext on`. `key` tells two results apart.
   */
  #replicaServices(): Pick<PolicyInputs, 'rateLimitService' | 'accessLogService'> & { key: string } {
    const replicas = this.#directory?.replicas();
    const rateLimitService = rateLimitServiceAddresses(
      this.options.rateLimitAddress,
      replicas,
      this.#mtls ? 'mtls' : this.options.rateLimitPlaintext === 'on' ? 'plaintext' : 'off',
    );
    // Access logs to the CA's mTLS ports when this replica has the CA (the workload
    // certificate identifies the reporter), else the plaintext xDS ports with --telemetry-plaintext on.
    const accessLogService = this.#mtls
      ? rateLimitServiceAddresses('', replicas, 'mtls')
      : this.options.telemetryPlaintext === 'on'
        ? rateLimitServiceAddresses('', replicas, 'plaintext')
        : undefined;
    return {
      rateLimitService,
      ...(accessLogService ? { accessLogService } : {}),
      key: `${replicaServiceKey(rateLimitService)}|${replicaServiceKey(accessLogService)}`,
    };
  }

  /** A replica joined or left: a new push context when the replicas' service addresses changed. */
  #replicaServicesChanged(): void {
    if (!this.#state || this.#draining) return;
    if (this.#replicaServices().key === this.#replicaServicesKey) return;
    this.#changed({
      revision: this.#state.revision,
      // The kinds whose translation reads the addresses (the rate-limit and access-log clusters).
      kinds: new Set(['RateLimit', 'Telemetry']),
      configs: new Set(),
      workloads: false,
      resync: false,
    });
  }

  /** Who may call the rate-limit service on the plaintext (`secure` false) or the CA mTLS port. */
  #rateLimitAccess(secure: boolean): RateLimitAccess {
    return {
      secure,
      plaintext: this.options.rateLimitPlaintext === 'on',
      trustDomain: () => this.#mtls?.trustDomain ?? this.options.trustDomain,
      registry: () => this.#registrySnapshot,
      rootNamespace: (this.#mtls?.translator ?? this.#translator).rootNamespace,
    };
  }

  #debugInfo(path: string): unknown | undefined {
    if (path === '/debug/leader') return this.#election?.status();
    if (path === '/debug/federation') return this.#federation?.status();
    if (path === '/debug/replicas') return ReplicaElection.list(this.#store);
    if (path === '/debug/convergence')
      return this.#convergence
        ? {
            cluster: this.#convergence.report(),
            replica: this.#convergence.summary(),
            mesh: this.#convergence.meshReport(),
            remoteProxies: this.#convergence.remoteProxies(),
            remoteReplicas: this.#convergence.remoteReplicas(),
          }
        : { cluster: mergeConvergence([]), mesh: mergeMeshConvergence([]) };
    if (path === '/debug/jwks') return this.#jwks?.status() ?? [];
    if (path === '/debug/graph') return this.#ingest.graph();
    if (path === '/debug/registry') {
      // The merged registry this replica translates from: local and imported (federated) services,
      // each endpoint with its cluster, network, locality and health.
      const r = this.#registrySnapshot;
      return {
        revision: r?.revision ?? 0,
        services: (r?.services ?? []).map((s) => ({ ...s, endpoints: r?.endpoints.get(s.hostname) ?? [] })),
      };
    }
    if (path === '/debug/replica') {
      return {
        id: this.options.replicaId,
        meshId: this.options.meshId,
        clusterId: this.options.clusterId,
        locality: this.options.locality,
        version: MERIDIAN_VERSION,
        startedAt: this.startedAt.toISOString(),
        xdsAddress: this.xdsAddress || undefined,
        adminAddress: this.adminAddress,
        monitoringAddress: this.monitoringAddress || undefined,
        caAddress: this.caAddress || undefined,
        advertiseAddress: this.advertiseAddress || undefined,
        rootNamespace: (this.#mtls?.translator ?? this.#translator).rootNamespace,
        snapshotRevision: this.#snapshot?.revision,
        watchedRevision: this.#state?.watchedRevision,
        store: this.#health?.describe(),
        connections: this.xds.connectionCount,
        registrations: this.#registration?.activeCount,
        isLeader: this.isLeader,
      };
    }
    return undefined;
  }

  /**
   * Graceful shutdown: not ready; stop accepting (GOAWAY) and end every xDS stream with UNAVAILABLE
   * so proxies reconnect elsewhere; end registration streams without revoking their leases (agents
   * re-register elsewhere within the TTL); resign and revoke the replica lease; close. Bounded by
   * `drainTimeoutMs`. Safe to call twice.
   */
  stop(): Promise<void> {
    this.#stopped ??= this.#stop();
    return this.#stopped;
  }

  async #stop(): Promise<void> {
    this.#draining = true;
    clearTimeout(this.#caRetry);
    this.#jwks?.stop();
    const timeout = this.options.drainTimeoutMs;
    // Nothing to drain when start-up failed before reaching the store (a settings error).
    const started = this.#store !== undefined;
    if (started) this.log.info('shutting down: draining');
    this.#registration?.drain();
    const server = this.#grpc;
    const shutdown = server
      ? new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            server.forceShutdown();
            resolve();
          }, timeout);
          server.tryShutdown(() => {
            clearTimeout(timer);
            resolve();
          });
        })
      : Promise.resolve();
    await Promise.all([this.xds.drain(timeout), shutdown, this.#mtls?.stop(timeout)]);
    await this.#federation?.stop().catch((error) => this.log.warn({ err: error }, 'federation stop failed'));
    await this.#election?.stop().catch((error) => this.log.warn({ err: error }, 'membership stop failed'));
    this.#health?.stop();
    this.#config?.close();
    await this.#state?.close().catch(() => undefined);
    await this.#disk?.close();
    await this.#store?.close().catch(() => undefined);
    await this.#auth?.close().catch(() => undefined);
    await this.#directory?.close().catch(() => undefined);
    await this.#convergence?.close().catch(() => undefined);
    await this.#ingest.close().catch(() => undefined);
    this.#traceSyncs?.();
    await this.#tracing.shutdown().catch(() => undefined);
    for (const http of [this.#admin, this.#monitoring, this.#webhook]) {
      if (!http) continue;
      await new Promise<void>((resolve) => {
        http.close(() => resolve());
        http.closeAllConnections();
      });
    }
    await this.telemetry.shutdown();
    if (started) this.log.info('stopped');
  }
}
