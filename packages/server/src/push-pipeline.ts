/**
 * A replica's push pipeline: state changes (etcd watch batches, imported services, membership,
 * JWKS, the CA loaded) and secret changes (SDS) are debounced; each debounced change builds one push
 * context (a ProxySnapshot over new immutable config and registry snapshots stamped with the etcd
 * revision) and says which types it can alter; then the one call that hands xDS a snapshot is made,
 * followed by its push trace until the proxies converge. The last-known-good snapshot on disk is
 * scheduled after every revision applied from etcd.
 */
import { performance } from 'node:perf_hooks';
import type { ConfigObject, ServiceEntryConfig, WorkloadEntryConfig } from '@meridian/api';
import { type ResourceTypeUrl, TypeUrl } from '@meridian/envoy';
import type { LocalSource, Registry, RegistrySource } from '@meridian/registry';
import {
  type ConfigSnapshot,
  createConfigSnapshot,
  type MeshTracing,
  type RegistrySnapshot,
  Translator,
} from '@meridian/translate';
import { type ChangeEvent, Debouncer, mergeChanges, ResourceCache, type XdsServer } from '@meridian/xds';
import type { Logger } from 'pino';
import type { ClusterState, StateChange } from './cluster-state.js';
import type { ConvergenceTracker } from './convergence.js';
import type { DiskSnapshot } from './disk-snapshot.js';
import type { JwksResolver } from './jwks.js';
import type { ReplicaMtls } from './mtls.js';
import type { ServerOptions } from './options.js';
import { Encoder, ProxySnapshot } from './proxy-snapshot.js';
import { type MemberAddresses, replicaServices } from './replica-services.js';
import { type TelemetryIngest, workloadNames } from './telemetry-ingest.js';
import { PushTrace, type PushTracing, TraceConvergence } from './tracing.js';

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
/** Kinds whose changes only move endpoints (with registrations and imports: no kind at all). */
const ENDPOINT_KINDS = new Set(['WorkloadEntry']);
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

/** What a {@link PushPipeline} reads from the replica; the getters answer undefined until a part exists. */
export interface PushPipelineOptions {
  readonly options: ServerOptions;
  /** The replica's logger. */
  readonly log: Logger;
  readonly xds: XdsServer;
  readonly local: LocalSource;
  readonly registry: Registry;
  /** Told of every new registry snapshot (access-log labels, the service graph). */
  readonly ingest: TelemetryIngest;
  readonly tracing: PushTracing;
  /** Tracing providers of `--mesh-config` for Telemetry's `tracing`. */
  readonly meshTracing: MeshTracing | undefined;
  readonly state: () => ClusterState | undefined;
  readonly mtls: () => ReplicaMtls | undefined;
  readonly jwks: () => JwksResolver | undefined;
  /** The cluster's replicas as the directory lists them (their service addresses). */
  readonly replicas: () => readonly MemberAddresses[] | undefined;
  readonly convergence: () => ConvergenceTracker | undefined;
  readonly disk: () => DiskSnapshot | undefined;
  readonly draining: () => boolean;
}

/** Changes in, one push context per debounced change, one `xds.update` per push context. */
export class PushPipeline {
  readonly #o: PushPipelineOptions;
  readonly #translator = new Translator();
  readonly #encoder = new Encoder(new ResourceCache());
  /** Debounces state and secret changes before a push context is built. */
  readonly #debouncer: Debouncer;
  #snapshot: ProxySnapshot | undefined;
  #configSnapshot: ConfigSnapshot | undefined;
  #registrySnapshot: RegistrySnapshot | undefined;
  /** The replicas' service addresses the current config snapshot was built with (membership). */
  #replicaServicesKey = '';
  #snapshotsBuilt = 0;
  #pendingState: StateChange | undefined;
  #pendingSecrets: ChangeEvent | undefined;
  /** How many push contexts were built at the current snapshot's revision after the first. */
  #rebuildsAtRevision = 0;
  #trace: TraceConvergence | undefined;
  #traceSyncs: (() => void) | undefined;

  constructor(options: PushPipelineOptions) {
    this.#o = options;
    this.#debouncer = new Debouncer(
      { quietMs: options.options.debounceMs, maxDelayMs: options.options.maxDebounceMs },
      (change) => this.#fire(change.at),
    );
  }

  /** The current push context (undefined before the first). */
  get snapshot(): ProxySnapshot | undefined {
    return this.#snapshot;
  }

  /** The config snapshot of the current push context. */
  get configSnapshot(): ConfigSnapshot | undefined {
    return this.#configSnapshot;
  }

  /** The merged registry (local and imported) the current push context translates from. */
  get registrySnapshot(): RegistrySnapshot | undefined {
    return this.#registrySnapshot;
  }

  /** The translator in use: the CA's (with translate's `mtls` option) once loaded, else the plain one. */
  get translator(): Translator {
    return this.#o.mtls()?.translator ?? this.#translator;
  }

  /** Builds the first push context at `revision` and hands it to xDS. */
  start(revision: number): void {
    this.#rebuild(
      { revision, kinds: new Set(), configs: new Set(), workloads: true, resync: true },
      performance.now(),
      true,
    );
    this.serve(undefined);
  }

  /** Rebuilds everything at the current revision for every proxy: the CA loaded, or available again. */
  resyncAll(): void {
    this.changed({
      revision: this.#o.state()!.revision,
      kinds: new Set(),
      configs: new Set(),
      workloads: false,
      resync: true,
    });
  }

  /** A state change (etcd watch batch, imported services, the CA loaded): debounced, then built. */
  changed(change: StateChange): void {
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
    // Endpoint-only changes (Istio's EDS updates) are bounded by the shorter endpoint wait, so
    // steady endpoint churn reaches proxies in about a quiet period instead of the longest debounce.
    const endpointOnly = !change.resync && [...change.kinds].every((k) => ENDPOINT_KINDS.has(k));
    this.#debouncer.enqueue(
      { full: true, reason: [], at: performance.now() },
      endpointOnly ? this.#o.options.endpointDebounceMaxMs : this.#o.options.maxDebounceMs,
    );
  }

  /** Secret rotations and CA changes (SDS): pushed with the next debounced change. */
  secretChanged(change: ChangeEvent): void {
    this.#pendingSecrets = this.#pendingSecrets ? mergeChanges(this.#pendingSecrets, change) : change;
    this.#debouncer.enqueue({ full: true, reason: [], at: change.at });
  }

  /** The debounced change: one push context (snapshot) built, then one push. */
  #fire(at: number): void {
    const state = this.#pendingState;
    const secrets = this.#pendingSecrets;
    this.#pendingState = undefined;
    this.#pendingSecrets = undefined;
    if (this.#o.draining() || !this.#o.state()) return;
    const firedAt = Date.now();
    const tracing = this.#o.tracing;
    const trace = tracing.exporting
      ? new PushTrace(tracing.tracer, firedAt - Math.max(0, performance.now() - at), firedAt)
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
    this.serve(change);
    if (trace) this.#traceConvergence(trace, sendStart);
  }

  /**
   * Ends the push trace's send and converge spans as the pushes are written and ACKed, counting
   * ACKs incrementally (tracing.ts TraceConvergence: no recount of every proxy per ACK).
   */
  #traceConvergence(trace: PushTrace, sendStart: number): void {
    const xds = this.#o.xds;
    this.#trace?.supersede();
    const follower = new TraceConvergence(trace, this.#snapshot?.version, () => xds.convergence());
    this.#trace = follower;
    void xds.idle().then(() => follower.sent(sendStart));
    this.#traceSyncs ??= xds.onProxySynced((conn, version) => this.#trace?.synced(conn, version));
  }

  /** The one place that hands xDS a snapshot: the current push context plus secrets (SDS). */
  serve(change: ChangeEvent | undefined): void {
    const snapshot = this.#snapshot;
    if (!snapshot) return;
    const mtls = this.#o.mtls();
    this.#o.xds.update(mtls ? mtls.wrap(snapshot) : snapshot, change);
    this.#o
      .convergence()
      ?.pushed(
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
    const state = this.#o.state()!;
    const kinds = [...change.kinds];
    const configDirty = initial || change.resync || kinds.some((k) => TRANSLATED_KINDS.has(k));
    const registryDirty =
      initial || change.resync || change.workloads || kinds.some((k) => REGISTRY_KINDS.has(k));
    if (!configDirty && !registryDirty) return undefined;
    const objects: ConfigObject[] = state.configs();
    let config = this.#configSnapshot;
    if (configDirty || !config) {
      const { key, ...services } = this.#replicaServices();
      this.#replicaServicesKey = key;
      config = createConfigSnapshot(change.revision, objects, {
        jwks: this.#o.jwks()?.resolve(objects) ?? new Map(),
        ...services,
        ...(this.#o.meshTracing ? { tracing: this.#o.meshTracing } : {}),
      });
    }
    let registry = this.#registrySnapshot;
    if (registryDirty || !registry) {
      this.#o.local.update({
        serviceEntries: objects.filter((x): x is ServiceEntryConfig => x.kind === 'ServiceEntry'),
        workloadEntries: objects.filter((x): x is WorkloadEntryConfig => x.kind === 'WorkloadEntry'),
        registrations: state.registrations(),
      });
      registry = this.#o.registry.snapshot(change.revision);
      this.#o.ingest.setRegistry(registry, workloadNames(objects, state.registrations()));
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
      this.translator,
      this.#encoder,
      this.#o.log,
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
    this.#o.log.debug(
      { revision: change.revision, reason, configs: change.configs.size, services: services.size },
      'new push context',
    );
    // The last-known-good snapshot on disk follows every revision applied from etcd (not while the
    // state is the one read from disk).
    const disk = this.#o.disk();
    if (disk && !disk.serving) disk.schedule(() => state.snapshotState());
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
    this.#o.registry.addSource(source);
    const importedChanged = (state: ClusterState) =>
      this.changed({
        revision: state.revision,
        kinds: new Set(),
        configs: new Set(),
        workloads: true,
        resync: false,
      });
    const off = source.onChange(() => {
      const state = this.#o.state();
      if (state && !this.#o.draining()) importedChanged(state);
    });
    const state = this.#o.state();
    if (state) importedChanged(state);
    return off;
  }

  /** The replicas' service addresses from the current membership (replica-services.ts). */
  #replicaServices(): ReturnType<typeof replicaServices> {
    return replicaServices(this.#o.options, this.#o.replicas(), this.#o.mtls() !== undefined);
  }

  /** A replica joined or left: a new push context when the replicas' service addresses changed. */
  replicaServicesChanged(): void {
    const state = this.#o.state();
    if (!state || this.#o.draining()) return;
    if (this.#replicaServices().key === this.#replicaServicesKey) return;
    this.changed({
      revision: state.revision,
      // The kinds whose translation reads the addresses (the rate-limit and access-log clusters).
      kinds: new Set(['RateLimit', 'Telemetry']),
      configs: new Set(),
      workloads: false,
      resync: false,
    });
  }

  /** Stops following ACKs for push traces and flushes the trace exporter (shutdown). */
  async close(): Promise<void> {
    this.#traceSyncs?.();
    await this.#o.tracing.shutdown().catch(() => undefined);
  }
}
