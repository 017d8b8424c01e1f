/**
 * One meridiand replica: the composition root that wires store, cluster-state watch, registry,
 * translation, xDS, registration, membership/election and the admin HTTP server, starts them in
 * order and stops them in the reverse order. The parts live in their own modules:
 * - `replica-startup.ts`: listen addresses, the KEK file, the etcd client or the snapshot on disk;
 * - `push-pipeline.ts`: changes -> debounce -> push context -> `xds.update`;
 * - `replica-ca.ts`: the cluster CA runtime and its TLS port;
 * - `registration-auth.ts`: who may register workloads;
 * - `replica-membership.ts`: directory, convergence, the election (leader-only duties), federation;
 * - `replica-services.ts`: the replicas' own services (rate limits, access logs) as proxies see them;
 * - `replica-admin.ts`: probes, the admin, monitoring and webhook ports, `/debug/*`.
 *
 * Data flow: admin API write -> etcd transaction -> every replica's watch (ClusterState) -> a new
 * immutable (ConfigSnapshot, RegistrySnapshot) pair stamped with the etcd revision -> a
 * ProxySnapshot (translate + encode per proxy, lazily) -> XdsServer.update with a change event ->
 * debounce -> only streams whose resources changed are sent anything (content-hashed versions).
 */
import type { Server as HttpServer } from 'node:http';
import * as grpc from '@grpc/grpc-js';
import { AdminAuthority } from '@meridian/auth';
import {
  addReplicaDiscoveryService,
  LocalSource,
  type RegistrationService,
  Registry,
  type RegistrySource,
} from '@meridian/registry';
import type { Store } from '@meridian/store';
import { XdsServer } from '@meridian/xds';
import pino, { type Logger } from 'pino';
import { ClusterState } from './cluster-state.js';
import { CONFIG_PREFIX, ConfigService } from './config-service.js';
import { type DiskSnapshot, describeServing } from './disk-snapshot.js';
import { ServerConfigError } from './errors.js';
import { StoreHealth } from './health.js';
import { JwksResolver } from './jwks.js';
import { isOff, listenFailure, resolveAdvertiseAddress } from './listen-address.js';
import type { ReplicaMtls } from './mtls.js';
import type { ServerOptions } from './options.js';
import type { ProxySnapshot } from './proxy-snapshot.js';
import { PushPipeline } from './push-pipeline.js';
import type { RateLimitAccess } from './ratelimit-access.js';
import { addRateLimitService } from './ratelimit-service.js';
import { GlobalRateLimiter } from './ratelimit-windows.js';
import { createRegistrationService } from './registration-auth.js';
import {
  adminOpener,
  type DebugSources,
  openMonitoring,
  openWebhook,
  replicaDebugInfo,
  replicaProbes,
} from './replica-admin.js';
import { ReplicaCa } from './replica-ca.js';
import { ReplicaMembership, replicaInfo } from './replica-membership.js';
import { rateLimitAccess } from './replica-services.js';
import {
  checkKekFile,
  diskSnapshotOf,
  type ListenAt,
  listenAddresses,
  openStore,
  sleep,
  warmUpSchemas,
} from './replica-startup.js';
import { Telemetry } from './telemetry.js';
import { TelemetryIngest } from './telemetry-ingest.js';
import { readMeshTracing, startPushTracing } from './tracing.js';

/** meridiand's version, registered with the replica's membership entry. */
export const MERIDIAN_VERSION = '0.1.0';

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
  /** Changes -> debounce -> push context -> xds.update. */
  readonly #push: PushPipeline;
  /** CA runtime, SDS and mTLS translation, when the CA is configured. */
  readonly #ca: ReplicaCa;
  /** Directory, convergence, election and federation, once etcd answers. */
  readonly #membership = new ReplicaMembership();
  readonly #debug: DebugSources;
  #store!: Store;
  #health!: StoreHealth;
  #state!: ClusterState;
  #config!: ConfigService;
  #registration!: RegistrationService;
  #grpc: grpc.Server | undefined;
  #admin: HttpServer | undefined;
  #monitoring: HttpServer | undefined;
  #webhook: HttpServer | undefined;
  #auth: AdminAuthority | undefined;
  /** The last-known-good snapshot on disk (`--snapshot-dir`), unless off. */
  #disk: DiskSnapshot | undefined;
  /** The JWKS of RequestAuthentications (jwks.ts) and the global rate limits' counters. */
  #jwks: JwksResolver | undefined;
  #rateLimiter: GlobalRateLimiter | undefined;
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
      snapshot: () => this.#push.snapshot,
      ca: () => this.#ca.mtls?.metrics(),
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
    // Changes are debounced by the push pipeline, before the push context is built; the xDS server
    // pushes each debounced change at once (its own debouncer off).
    this.xds = new XdsServer({
      logger: this.log.child({ part: 'xds' }),
      debounce: { quietMs: 0 },
      pushConcurrency: options.pushConcurrency,
    });
    const meshTracing = readMeshTracing(options.meshConfig);
    const tracing = startPushTracing({
      replicaId: options.replicaId,
      clusterId: options.clusterId,
      meshId: options.meshId,
    });
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
    this.#push = new PushPipeline({
      options,
      log: this.log,
      xds: this.xds,
      local: this.local,
      registry: this.registry,
      ingest: this.#ingest,
      tracing,
      meshTracing,
      state: () => this.#state,
      mtls: () => this.#ca.mtls,
      jwks: () => this.#jwks,
      replicas: () => this.#membership.directory?.replicas(),
      convergence: () => this.#membership.convergence,
      disk: () => this.#disk,
      draining: () => this.#draining,
    });
    this.#ca = new ReplicaCa({
      options,
      log: this.log,
      store: () => this.#store,
      advertiseAddress: () => this.advertiseAddress,
      onSecretChange: (change) => this.#push.secretChanged(change),
      resyncAll: () => this.#push.resyncAll(),
      draining: () => this.#draining,
    });
    this.#debug = {
      options,
      version: MERIDIAN_VERSION,
      startedAt: this.startedAt,
      addresses: this,
      xds: this.xds,
      ingest: this.#ingest,
      membership: this.#membership,
      push: this.#push,
      store: () => this.#store,
      state: () => this.#state,
      health: () => this.#health,
      registration: () => this.#registration,
      jwks: () => this.#jwks,
    };
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

  async #start(extra: ReplicaStartOptions): Promise<void> {
    const o = this.options;
    const listen = await listenAddresses(o);
    // The host proxies and agents reach this replica at (membership, serving certificate).
    this.advertiseAddress = resolveAdvertiseAddress(o, this.log);
    await checkKekFile(o);
    warmUpSchemas();
    // If etcd cannot be reached at start, serve the last-known-good snapshot from
    // disk at once (xDS, admin and health ports open), and attach the parts that need etcd when it
    // answers; without a usable snapshot, keep trying until --store-connect-timeout-ms (then exit 2).
    const disk = diskSnapshotOf(o, this.log);
    this.#disk = disk;
    const { store, fromDisk } = await openStore(
      o,
      this.log,
      disk,
      extra.connectTimeoutMs ?? o.storeConnectTimeoutMs,
    );
    this.#store = store;
    this.#health = new StoreHealth(this.#store, this.log.child({ part: 'health' }));
    this.#state = new ClusterState(
      this.#store,
      this.log.child({ part: 'state' }),
      (change) => this.#push.changed(change),
      (status) => this.#health.watchStatus(status === 'connected'),
    );
    this.#config = new ConfigService(this.#store, this.#health, this.#state, {
      log: this.log.child({ part: 'config' }),
    });
    const jwksChanged = new Set(['RequestAuthentication']);
    this.#jwks = new JwksResolver({
      log: this.log.child({ part: 'jwks' }),
      onChange: () =>
        this.#push.changed({
          revision: this.#state.revision,
          kinds: jwksChanged,
          configs: new Set(),
          workloads: false,
          resync: false,
        }),
    });
    this.#rateLimiter = new GlobalRateLimiter({
      store: this.#store,
      limits: () => this.#push.configSnapshot?.rateLimits ?? [],
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
      if (listen.ca) await this.#ca.openFromDisk(listen.ca.host);
    } else {
      await this.#state.start();
      this.#auth = await AdminAuthority.open(this.#store);
      if (listen.ca) await this.#ca.open(listen.ca.host);
    }
    this.#push.start(this.#state.revision);

    this.#registration = createRegistrationService(this.#store, o, this.log, {
      auth: () => this.#auth,
      mtls: () => this.#ca.mtls,
    });
    if (listen.xds) {
      const xdsAddr = listen.xds;
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
    } else if (!this.#ca.mtls && !fromDisk) {
      this.log.error(
        '--xds-address is off and no CA port serves xDS: proxies cannot connect to this replica',
      );
    }
    const mtlsFromDisk = this.#ca.mtls;
    if (fromDisk && mtlsFromDisk && listen.ca)
      this.caAddress = await this.#ca.listen(mtlsFromDisk, this.xds, listen.ca);

    const probes = replicaProbes({
      draining: () => this.#draining,
      snapshot: () => this.#push.snapshot,
      caProblem: () => this.#ca.problem,
      disk: () => this.#disk,
      health: this.#health,
      telemetry: this.telemetry,
    });
    const openAdmin = adminOpener(
      {
        options: o,
        log: this.log,
        probes,
        config: this.#config,
        auth: () => this.#auth,
        disk: () => this.#disk,
        xds: this.xds,
        debugInfo: (path) => replicaDebugInfo(this.#debug, path),
        adminTls: () => this.#ca.adminTls(),
      },
      listen.admin,
    );
    const startAdmin = async () => {
      const admin = await openAdmin();
      this.#admin = admin.server;
      this.adminAddress = admin.address;
    };
    // HTTPS admin needs the CA's serving certificate, which needs etcd: after a start from disk it
    // opens once etcd answers (the monitoring port serves health meanwhile).
    const adminLater = fromDisk !== undefined && o.adminTls === 'on';
    if (adminLater)
      this.log.warn('--admin-tls on: the admin port opens once etcd answers (the CA certificate is in etcd)');
    else await startAdmin();
    if (listen.monitoring) {
      const monitoring = await openMonitoring(o, probes, listen.monitoring);
      this.#monitoring = monitoring.server;
      this.monitoringAddress = monitoring.address;
    }
    if (!isOff(o.webhookAddress)) {
      const hook = await openWebhook(o, this.log, () =>
        this.#state.list(CONFIG_PREFIX).map((kv) => kv.value),
      );
      this.#webhook = hook.server;
      this.webhookAddress = hook.address;
    }
    this.#health.start();
    const attach = async () => {
      await this.#attach(listen.ca);
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
  async #attach(caAddr: ListenAt | undefined): Promise<void> {
    const o = this.options;
    this.#auth ??= await AdminAuthority.open(this.#store);
    if (caAddr) await this.#ca.attach(caAddr.host);
    const directory = await this.#membership.openDirectory(this.#store, o.replicaId, this.xds, this.log, () =>
      this.#push.replicaServicesChanged(),
    );
    if (this.#grpc) addReplicaDiscoveryService(this.#grpc, directory);
    const convergence = await this.#membership.openConvergence(this.#store, this.xds, o, this.log, () =>
      replicaDebugInfo(this.#debug, '/debug/replica'),
    );
    await this.#ingest.attach(this.#store);
    const snapshot = this.#push.snapshot;
    if (snapshot) convergence.pushed(snapshot.revision, snapshot.version, Date.now());

    // CreateCertificate and mTLS-authenticated xDS (SDS `default`) on the CA's TLS port.
    const serveCa = async (mtls: ReplicaMtls) => {
      this.caAddress = await this.#ca.listen(mtls, this.xds, caAddr!, (server) => {
        this.#registration.register(server);
        addReplicaDiscoveryService(server, directory);
        this.#ingest.register(server, true);
        addRateLimitService(
          server,
          this.#rateLimiter!,
          this.log.child({ part: 'ratelimit' }),
          this.#rateLimitAccess(true),
        );
      });
      this.log.info({ address: this.caAddress }, 'CreateCertificate and xDS with SDS served (TLS)');
    };
    const mtls = this.#ca.mtls;
    if (mtls) await serveCa(mtls);
    else if (caAddr) this.#ca.retry(caAddr.host, serveCa);

    await this.#membership.join({
      options: o,
      store: this.#store,
      log: this.log,
      info: replicaInfo(o, this, MERIDIAN_VERSION, this.startedAt),
      servedRevision: () => this.#push.snapshot?.revision ?? 0,
      local: this.local,
      addSource: (source) => this.addRegistrySource(source),
    });
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

  /** Who may call the rate-limit service on the plaintext (`secure` false) or the CA mTLS port. */
  #rateLimitAccess(secure: boolean): RateLimitAccess {
    return rateLimitAccess(this.options, secure, {
      caTrustDomain: () => this.#ca.mtls?.trustDomain,
      registry: () => this.#push.registrySnapshot,
      rootNamespace: this.#push.translator.rootNamespace,
    });
  }

  /** The current snapshot (undefined before the first). */
  get snapshot(): ProxySnapshot | undefined {
    return this.#push.snapshot;
  }

  get isLeader(): boolean {
    return this.#membership.isLeader;
  }

  /**
   * Adds a registry source after the local one (federation's imported services and endpoints):
   * its changes rebuild the registry snapshot and push the proxies they affect. Imported
   * changes carry no etcd revision; the snapshot keeps the last one seen.
   */
  addRegistrySource(source: RegistrySource): () => void {
    return this.#push.addRegistrySource(source);
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
    this.#ca.cancelRetry();
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
    await Promise.all([this.xds.drain(timeout), shutdown, this.#ca.stop(timeout)]);
    await this.#membership.leave(this.log);
    this.#health?.stop();
    this.#config?.close();
    await this.#state?.close().catch(() => undefined);
    await this.#disk?.close();
    await this.#store?.close().catch(() => undefined);
    await this.#auth?.close().catch(() => undefined);
    await this.#membership.close();
    await this.#ingest.close().catch(() => undefined);
    await this.#push.close();
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
