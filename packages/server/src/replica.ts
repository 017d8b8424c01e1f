/**
 * One meridiand replica: wires store, cluster-state watch, registry, translation, xDS, registration,
 * membership/election and the admin HTTP server (issue 5).
 *
 * Data flow: admin API write -> etcd transaction -> every replica's watch (ClusterState) -> a new
 * immutable (ConfigSnapshot, RegistrySnapshot) pair stamped with the etcd revision -> a
 * ProxySnapshot (translate + encode per proxy, lazily) -> XdsServer.update with a change event ->
 * debounce -> only streams whose resources changed are sent anything (content-hashed versions).
 */
import type { Server as HttpServer } from 'node:http';
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import type { ConfigObject, ServiceEntryConfig, WorkloadEntryConfig } from '@meridian/api';
import { encodeResource, TypeUrl } from '@meridian/envoy';
import { LocalSource, RegistrationService, Registry, type RegistrySource } from '@meridian/registry';
import { EtcdStore, Keyspace, type Store } from '@meridian/store';
import {
  type ConfigSnapshot,
  createConfigSnapshot,
  type RegistrySnapshot,
  Translator,
} from '@meridian/translate';
import { decodeDeltaRequest, decodeSotwRequest, ResourceCache, XdsServer } from '@meridian/xds';
import pino, { type Logger } from 'pino';
import { startAdminServer } from './admin-http.js';
import { ClusterState, type StateChange } from './cluster-state.js';
import { ConfigService } from './config-service.js';
import { ReplicaFederation } from './federation.js';
import { StoreHealth } from './health.js';
import { Membership, type ReplicaInfo } from './membership.js';
import { ReplicaMtls } from './mtls.js';
import { type ServerOptions, splitAddress } from './options.js';
import { Encoder, ProxySnapshot } from './proxy-snapshot.js';
import { Telemetry } from './telemetry.js';

/** meridiand's version, registered with the replica's membership entry. */
export const MERIDIAN_VERSION = '0.1.0';

const TRANSLATED_KINDS = new Set(['VirtualService', 'DestinationRule', 'Sidecar', 'PeerAuthentication']);
const REGISTRY_KINDS = new Set(['ServiceEntry', 'WorkloadEntry']);
const ALL_TYPES = new Set([
  TypeUrl.Listener,
  TypeUrl.RouteConfiguration,
  TypeUrl.Cluster,
  TypeUrl.ClusterLoadAssignment,
]);

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
  readonly xds: XdsServer;
  readonly registry: Registry;
  readonly local: LocalSource;
  #store!: Store;
  #health!: StoreHealth;
  #state!: ClusterState;
  #config!: ConfigService;
  #membership!: Membership;
  #registration!: RegistrationService;
  #grpc: grpc.Server | undefined;
  #admin: HttpServer | undefined;
  /** CA runtime, SDS and mTLS translation (issue 6), when the CA is configured. */
  #mtls: ReplicaMtls | undefined;
  #federation: ReplicaFederation | undefined;
  readonly #translator = new Translator();
  readonly #encoder = new Encoder(new ResourceCache());
  #snapshot: ProxySnapshot | undefined;
  #configSnapshot: ConfigSnapshot | undefined;
  #registrySnapshot: RegistrySnapshot | undefined;
  #draining = false;
  #stopped: Promise<void> | undefined;
  /** Bound addresses (with the real ports when 0 was asked for). */
  xdsAddress = '';
  adminAddress = '';
  /** The CreateCertificate TLS address, when served. */
  caAddress = '';
  readonly startedAt = new Date();
  #snapshotsBuilt = 0;

  private constructor(
    readonly options: ServerOptions,
    logger: Logger | undefined,
  ) {
    this.log =
      logger ?? pino({ name: 'meridiand', level: options.logLevel, base: { replica: options.replicaId } });
    this.telemetry = new Telemetry({
      'meridian.mesh_id': options.meshId,
      'meridian.cluster_id': options.clusterId,
      'meridian.replica_id': options.replicaId,
    });
    this.xds = new XdsServer({
      logger: this.log.child({ part: 'xds' }),
      debounce: { quietMs: options.debounceMs, maxDelayMs: Math.max(options.debounceMs * 10, 100) },
    });
    this.local = new LocalSource(options.clusterId);
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
        return await EtcdStore.connect({
          endpoints: o.etcdEndpoints,
          keyspace: Keyspace.of(o.meshId, o.clusterId),
          requestTimeoutMs: o.storeTimeoutMs,
          connectTimeoutMs: Math.min(o.storeTimeoutMs * 2, 5000),
          writeAttemptTimeoutMs: Math.min(1000, o.storeTimeoutMs),
        });
      } catch (error) {
        if (Date.now() > until) throw error;
        this.log.warn({ err: error }, 'etcd not reachable yet; retrying');
        await sleep(500);
      }
    }
  }

  async #start(extra: ReplicaStartOptions): Promise<void> {
    const o = this.options;
    const xdsAddr = splitAddress(o.xdsAddress, '--xds-address');
    const adminAddr = splitAddress(o.adminAddress, '--admin-address');
    warmUpSchemas();
    this.#store = await this.#connect(extra.connectTimeoutMs ?? 60_000);
    this.#health = new StoreHealth(this.#store, this.log.child({ part: 'health' }));
    this.#state = new ClusterState(
      this.#store,
      this.log.child({ part: 'state' }),
      (change) => this.#rebuild(change),
      (status) => this.#health.watchStatus(status === 'connected'),
    );
    this.#config = new ConfigService(this.#store, this.#health, this.#state);
    await this.#state.start();
    if (o.caAddress) {
      this.#mtls = await ReplicaMtls.start({
        store: this.#store,
        clusterId: o.clusterId,
        trustDomain: o.trustDomain,
        kekFile: o.caKekFile || undefined,
        servingDnsNames: [...new Set(['localhost', splitAddress(o.caAddress, '--ca-address').host])],
        log: this.log.child({ part: 'ca' }),
      });
      this.#mtls?.attach(this.xds);
    }
    this.#rebuild({ revision: this.#state.revision, kinds: new Set(), workloads: true, resync: true }, true);

    this.#registration = new RegistrationService({
      store: this.#store,
      replicaId: o.replicaId,
      defaultTtlSeconds: o.registrationTtlSeconds,
      logger: this.log.child({ part: 'registration' }),
    });
    const server = new grpc.Server(this.xds.grpcServerOptions());
    this.xds.register(server);
    this.#registration.register(server);
    for (const ext of extra.extensions ?? []) ext(server, this);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(
        `${xdsAddr.host}:${xdsAddr.port}`,
        grpc.ServerCredentials.createInsecure(),
        (err, p) => (err ? reject(err) : resolve(p)),
      ),
    );
    this.#grpc = server;
    this.xdsAddress = `${xdsAddr.host}:${port}`;

    if (this.#mtls) {
      // CreateCertificate and mTLS-authenticated xDS (SDS `default`) on the CA's TLS port.
      this.caAddress = await this.#mtls.listen(
        this.xds,
        splitAddress(o.caAddress, '--ca-address'),
        this.xds.grpcServerOptions(),
      );
      this.log.info({ address: this.caAddress }, 'CreateCertificate and xDS with SDS served (TLS)');
    }

    const admin = await startAdminServer(
      {
        log: this.log.child({ part: 'admin' }),
        config: this.#config,
        notReady: () =>
          this.#draining ? 'shutting down' : this.#snapshot ? undefined : 'not ready: no config snapshot yet',
        readiness: () => this.#health.describe(),
        metrics: (req, res) => this.telemetry.handle(req, res),
        debug: this.xds.debugHandler(),
        debugInfo: (path) => this.#debugInfo(path),
      },
      adminAddr,
    );
    this.#admin = admin.server;
    this.adminAddress = `${adminAddr.host}:${admin.port}`;

    const info: ReplicaInfo = {
      id: o.replicaId,
      meshId: o.meshId,
      clusterId: o.clusterId,
      xdsAddress: this.xdsAddress,
      adminAddress: this.adminAddress,
      locality: o.locality,
      version: MERIDIAN_VERSION,
      startedAt: this.startedAt.toISOString(),
    };
    this.#membership = new Membership(this.#store, info, this.log.child({ part: 'membership' }), {
      leaseTtlSeconds: o.replicaLeaseTtlSeconds,
      dutyIntervalMs: 1000,
      servedRevision: () => this.#snapshot?.revision ?? 0,
    });
    if (o.natsUrls.length > 0) {
      // Issue 7: import on every replica, export while leading (before the first campaign).
      const membership = this.#membership;
      this.#federation = await ReplicaFederation.start({
        options: o,
        store: this.#store,
        local: this.local,
        log: this.log.child({ part: 'federation' }),
        addSource: (source) => this.addRegistrySource(source),
        onLeadership: (listener) => membership.onLeadership(listener),
      });
    }
    this.#membership.start();
    this.#health.start();
    this.log.info(
      { xdsAddress: this.xdsAddress, adminAddress: this.adminAddress, revision: this.#state.revision },
      'meridiand ready',
    );
  }

  /** The current snapshot (undefined before the first). */
  get snapshot(): ProxySnapshot | undefined {
    return this.#snapshot;
  }

  get isLeader(): boolean {
    return this.#membership?.isLeader ?? false;
  }

  #rebuild(change: StateChange, initial = false): void {
    const at = performance.now();
    const kinds = [...change.kinds];
    const configDirty = initial || change.resync || kinds.some((k) => TRANSLATED_KINDS.has(k));
    const registryDirty =
      initial || change.resync || change.workloads || kinds.some((k) => REGISTRY_KINDS.has(k));
    if (!configDirty && !registryDirty) return;
    const objects: ConfigObject[] = this.#state.configs();
    let config = this.#configSnapshot;
    if (configDirty || !config) config = createConfigSnapshot(change.revision, objects);
    let registry = this.#registrySnapshot;
    if (registryDirty || !registry) {
      this.local.update({
        serviceEntries: objects.filter((x): x is ServiceEntryConfig => x.kind === 'ServiceEntry'),
        workloadEntries: objects.filter((x): x is WorkloadEntryConfig => x.kind === 'WorkloadEntry'),
        registrations: this.#state.registrations(),
      });
      registry = this.registry.snapshot(change.revision);
    }
    if (!initial && this.#snapshot && config === this.#configSnapshot && registry === this.#registrySnapshot)
      return;
    this.#configSnapshot = config;
    this.#registrySnapshot = registry;
    const snapshot = new ProxySnapshot(
      change.revision,
      config,
      registry,
      this.#mtls?.translators.translatorFor(objects) ?? this.#translator,
      this.#encoder,
      this.log,
    );
    this.#snapshot = snapshot;
    this.#snapshotsBuilt++;
    if (this.#snapshotsBuilt % 50 === 0) this.#encoder.cache.sweep();
    const reason = [
      ...kinds,
      ...(change.workloads ? ['endpoints'] : []),
      ...(change.resync ? ['resync'] : []),
    ];
    this.xds.update(
      this.#mtls ? this.#mtls.wrap(snapshot) : snapshot,
      initial
        ? undefined
        : { full: false, types: ALL_TYPES, reason: reason.length ? reason : ['config'], at },
    );
    this.log.debug({ revision: change.revision, reason }, 'new snapshot');
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
      this.#rebuild({ revision: this.#state.revision, kinds: new Set(), workloads: true, resync: false });
    });
    if (this.#state)
      this.#rebuild({ revision: this.#state.revision, kinds: new Set(), workloads: true, resync: false });
    return off;
  }

  #debugInfo(path: string): unknown | undefined {
    if (path === '/debug/leader') return this.#membership?.status();
    if (path === '/debug/federation') return this.#federation?.status();
    if (path === '/debug/replica') {
      return {
        id: this.options.replicaId,
        meshId: this.options.meshId,
        clusterId: this.options.clusterId,
        locality: this.options.locality,
        version: MERIDIAN_VERSION,
        startedAt: this.startedAt.toISOString(),
        xdsAddress: this.xdsAddress,
        adminAddress: this.adminAddress,
        caAddress: this.caAddress || undefined,
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
    const timeout = this.options.drainTimeoutMs;
    this.log.info('shutting down: draining');
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
    await this.#membership?.stop().catch((error) => this.log.warn({ err: error }, 'membership stop failed'));
    this.#health?.stop();
    await this.#state?.close().catch(() => undefined);
    await this.#store?.close().catch(() => undefined);
    const admin = this.#admin;
    if (admin) {
      await new Promise<void>((resolve) => {
        admin.close(() => resolve());
        admin.closeAllConnections();
      });
    }
    await this.telemetry.shutdown();
    this.log.info('stopped');
  }
}
