/**
 * The global rate-limit service: every replica serves Envoy's
 * `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit` on its gRPC server, and the
 * replicas of a cluster share the counters through etcd, so a limit holds whichever replica a proxy
 * asks.
 *
 * ## Counting: fixed windows, shares claimed in batches
 * A limit (`meridian_limit=<ns>/<name>/<i>` plus the value of its key: principal, header or path)
 * has one counter per fixed window (`unit`), the etcd key
 * `ratelimit/<ns>/<name>/<i>/<hash of the value>/<window start ms>`, holding how many requests the
 * replicas have *claimed* in that window. A replica does not go to etcd per request: it claims a
 * batch (a compare-and-swap raising the counter, never above the limit), then answers from its
 * batch locally until it is used up, then claims again. The batch is a tenth of what is left of the
 * limit (at least 1, at most 1000), so it shrinks as the window fills and the last requests are
 * claimed one by one.
 *
 * - **Never over the limit**: every allowed request was claimed by a compare-and-swap, and claims
 *   never sum above `requestsPerUnit`.
 * - **Under the limit only by unused claims**: a replica that holds claimed but unused tokens when
 *   the window ends (traffic stopped reaching it), or that dies, loses those tokens: at most its
 *   current batch, i.e. at most a tenth of what was left when it claimed. With traffic spread over
 *   replicas until the limit is reached, every claim is used and exactly `requestsPerUnit` requests
 *   are allowed.
 * - **Cost**: one etcd read and one compare-and-swap per claim. Each claim takes a tenth of what is
 *   left (batches capped at 1000, the last ten one by one), so a window of N needs a few dozen
 *   claims plus N / 1000 across the cluster (N = 300: about 40; N = 1,000,000: about 1,070), not N round
 *   trips. Concurrent requests for one counter on one replica wait for the same claim.
 * - A request asking more hits than are left uses the window up (hits are 1 unless Envoy's
 *   `hits_addend` says otherwise).
 * - Windows follow each replica's clock: replicas whose clocks differ may count the requests near a
 *   window's edge in different windows (keep clocks synchronised, as etcd leases already need).
 * - Counter keys are bound to a lease that expires one minute after the window ends. The lease is
 *   not kept alive, so the keys expire even if the replica that wrote them dies (a key outliving
 *   its writer must keep its count until the window ends).
 * - If etcd cannot be reached, the call fails (UNAVAILABLE) and the proxy applies the RateLimit's
 *   `failureModeDeny` (default: allow).
 *
 * ## Who may ask (SECURITY.md)
 * A call spends a limit's budget, so it is authenticated and authorised like the rest of the mesh:
 * - **On the CA's mTLS port** (where proxies are pointed when the replica has the CA: the Envoy
 *   cluster presents the workload certificate, translate's `replicaServiceTransportSocket`), the
 *   caller is the SPIFFE identity of its client certificate, in the CA's trust domain. It may spend
 *   only the limits that can apply to a workload of its own: the RateLimit is in the caller's
 *   namespace or in the root namespace (as `selectRateLimits` selects), and, when the registry
 *   lists workloads running as that identity, the RateLimit's selector matches one of them. A
 *   call naming any other limit is refused whole (PERMISSION_DENIED, naming the limit); the proxy
 *   then applies `failureModeDeny`. A caller the registry does not list (a sidecar that never
 *   registered) is held to its namespace only. Descriptor values (principal, header, path) are the
 *   caller's to choose: they only split its own counters.
 * - **Without a client certificate** (the plaintext xDS port, or TLS without one) calls are refused
 *   (UNAUTHENTICATED) unless `--rate-limit-plaintext on` (development only): then anyone who reaches
 *   the port may spend any limit, and proxies are pointed at the plaintext port only when the
 *   replica has no CA.
 */
import { createHash } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { type RateLimitConfig, type RateLimitUnit, rateLimitWindowMs } from '@meridian/api';
import { identityFromPeerCertificate } from '@meridian/ca';
import { envoyProtoIncludeDirs } from '@meridian/envoy';
import { ConflictError, type Lease, type Store } from '@meridian/store';
import {
  LIMIT_DESCRIPTOR_KEY,
  RATE_LIMIT_DOMAIN,
  type RegistrySnapshot,
  type ReplicaServiceAddress,
  selectRateLimits,
} from '@meridian/translate';
import { type Meter, metrics } from '@opentelemetry/api';
import type { Logger } from 'pino';
import { advertisedAddress, isUnspecifiedHost } from './membership.js';

/** The keyspace prefix of the counters. */
export const RATE_LIMIT_PREFIX = 'ratelimit/';
const RLS_PROTO = 'envoy/service/ratelimit/v3/rls.proto';
const MAX_BATCH = 1000;
const CAS_ATTEMPTS = 20;

/** One descriptor entry as Envoy sends it. */
export interface DescriptorEntry {
  readonly key: string;
  readonly value: string;
}

/** The decision for one descriptor. */
export interface DescriptorStatus {
  readonly code: 'OK' | 'OVER_LIMIT';
  /** The limit that applied (absent: no Meridian limit matched the descriptor). */
  readonly limit?: { readonly requestsPerUnit: number; readonly unit: RateLimitUnit };
  /** What is left in the window, as far as this replica knows. */
  readonly remaining?: number;
  /** Milliseconds until the window ends. */
  readonly resetMs?: number;
}

/** A decision: OVER_LIMIT if any descriptor is over its limit. */
export interface RateLimitDecision {
  readonly overall: 'OK' | 'OVER_LIMIT';
  readonly statuses: readonly DescriptorStatus[];
}

/** Settings of a {@link GlobalRateLimiter}. */
export interface GlobalRateLimiterOptions {
  readonly store: Store;
  /** The RateLimits of the current config (the replica's config snapshot). */
  readonly limits: () => readonly RateLimitConfig[];
  readonly log: Logger;
  /** Clock (ms since the epoch); tests move windows with it. */
  readonly now?: () => number;
  /** Largest batch claimed at once (default 1000). */
  readonly maxBatch?: number;
  readonly meter?: Meter;
}

/** One counter's state on this replica. */
interface Counter {
  readonly key: string;
  readonly windowEnd: number;
  readonly limit: number;
  /** Claimed by this replica and not used yet. */
  available: number;
  /** Claimed by this replica in this window (used + available). */
  claimed: number;
  /** The cluster-wide claimed count when last read (for `remaining`). */
  clusterClaimed: number;
  /** True once the cluster-wide count reached the limit. */
  exhausted: boolean;
  claiming?: Promise<void>;
}

/** What this replica holds for one counter (tests and `/debug`). */
export interface CounterShare {
  readonly key: string;
  readonly claimed: number;
  readonly available: number;
  readonly limit: number;
}

/**
 * Decides `ShouldRateLimit` requests against the RateLimits of the config, with counters shared by
 * the cluster's replicas through etcd (see the module comment for the algorithm and its accuracy).
 */
export class GlobalRateLimiter {
  readonly #o: GlobalRateLimiterOptions;
  readonly #counters = new Map<string, Counter>();
  readonly #leases = new Map<number, Promise<Lease>>();
  readonly #decisions;
  readonly #claims;
  #index: { source: readonly RateLimitConfig[]; byName: Map<string, RateLimitConfig> } | undefined;

  constructor(options: GlobalRateLimiterOptions) {
    this.#o = options;
    const meter = options.meter ?? metrics.getMeter('@meridian/server');
    this.#decisions = meter.createCounter('meridian_ratelimit_decisions', {
      description: 'Global rate-limit descriptors decided, by result (ok, over_limit, unknown limit).',
    });
    this.#claims = meter.createCounter('meridian_ratelimit_claims', {
      description: 'Batches of a global limit claimed from etcd, by result (claimed, exhausted, conflict).',
    });
  }

  /** The RateLimit a `meridian_limit` descriptor value (`<ns>/<name>/<i>`) names, if the config has it. */
  rateLimitOf(id: string): { config: RateLimitConfig; index: number } | undefined {
    const m = /^([^/]+)\/([^/]+)\/(\d+)$/.exec(id);
    if (!m) return undefined;
    const source = this.#o.limits();
    if (this.#index?.source !== source) {
      const byName = new Map<string, RateLimitConfig>();
      for (const l of source) byName.set(`${l.metadata.namespace}/${l.metadata.name}`, l);
      this.#index = { source, byName };
    }
    const config = this.#index.byName.get(`${m[1]}/${m[2]}`);
    return config ? { config, index: Number(m[3]) } : undefined;
  }

  /** The limit a `meridian_limit` descriptor value names, if the config has it. */
  #limitOf(id: string): { requestsPerUnit: number; unit: RateLimitUnit } | undefined {
    const found = this.rateLimitOf(id);
    const limit = found?.config.spec.global?.limits?.[found.index];
    if (!limit?.requestsPerUnit || !limit.unit || limit.unit === 'UNSPECIFIED') return undefined;
    return { requestsPerUnit: limit.requestsPerUnit, unit: limit.unit };
  }

  /** Decides one request: each descriptor is counted (`hits` each, default 1). */
  async decide(
    domain: string,
    descriptors: readonly (readonly DescriptorEntry[])[],
    hits = 1,
  ): Promise<RateLimitDecision> {
    const statuses: DescriptorStatus[] = [];
    for (const entries of descriptors) {
      const id = entries.find((e) => e.key === LIMIT_DESCRIPTOR_KEY)?.value;
      const limit = domain === RATE_LIMIT_DOMAIN && id !== undefined ? this.#limitOf(id) : undefined;
      if (id === undefined || limit === undefined) {
        this.#decisions.add(1, { result: 'unknown' });
        statuses.push({ code: 'OK' });
        continue;
      }
      const value = entries
        .filter((e) => e.key !== LIMIT_DESCRIPTOR_KEY)
        .map((e) => `${e.key}=${e.value}`)
        .join('\u0000');
      statuses.push(await this.#take(id, value, limit, Math.max(1, hits)));
    }
    const over = statuses.some((s) => s.code === 'OVER_LIMIT');
    return { overall: over ? 'OVER_LIMIT' : 'OK', statuses };
  }

  async #take(
    id: string,
    value: string,
    limit: { requestsPerUnit: number; unit: RateLimitUnit },
    hits: number,
  ): Promise<DescriptorStatus> {
    const now = this.#now();
    const windowMs = rateLimitWindowMs(limit.unit);
    const start = Math.floor(now / windowMs) * windowMs;
    const hash = createHash('sha256').update(value).digest('hex').slice(0, 32);
    const key = `${RATE_LIMIT_PREFIX}${id}/${hash}/${start}`;
    let c = this.#counters.get(key);
    if (!c || c.limit !== limit.requestsPerUnit) {
      this.#sweep(now);
      c = {
        key,
        windowEnd: start + windowMs,
        limit: limit.requestsPerUnit,
        available: 0,
        claimed: 0,
        clusterClaimed: 0,
        exhausted: false,
      };
      this.#counters.set(key, c);
    }
    for (;;) {
      if (c.available >= hits) {
        c.available -= hits;
        this.#decisions.add(1, { result: 'ok' });
        return this.#status('OK', c, limit);
      }
      if (c.exhausted || hits > c.limit) {
        this.#decisions.add(1, { result: 'over_limit' });
        return this.#status('OVER_LIMIT', c, limit);
      }
      c.claiming ??= this.#claim(c, hits).finally(() => {
        c.claiming = undefined;
      });
      await c.claiming;
    }
  }

  #status(
    code: 'OK' | 'OVER_LIMIT',
    c: Counter,
    limit: { requestsPerUnit: number; unit: RateLimitUnit },
  ): DescriptorStatus {
    return {
      code,
      limit,
      remaining: Math.max(0, c.limit - c.clusterClaimed) + c.available,
      resetMs: Math.max(0, c.windowEnd - this.#now()),
    };
  }

  /** Claims a batch for `c` (at least `want`) with a compare-and-swap on its etcd key. */
  async #claim(c: Counter, want: number): Promise<void> {
    const store = this.#o.store;
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const kv = await store.get(c.key);
      const count = kv ? Number(Buffer.from(kv.value).toString('utf8')) || 0 : 0;
      const left = c.limit - count;
      c.clusterClaimed = count;
      if (left <= 0 || left < want) {
        // Not enough left for this request: the window is used up (for a request of this size).
        if (left <= 0) c.exhausted = true;
        this.#claims.add(1, { result: 'exhausted' });
        if (left > 0 && left < want) c.exhausted = true;
        return;
      }
      const batch = Math.min(
        left,
        Math.max(want, Math.ceil(left / 10), 1),
        Math.max(want, this.#o.maxBatch ?? MAX_BATCH),
      );
      const lease = await this.#leaseFor(c.windowEnd);
      try {
        await store.put(c.key, Buffer.from(String(count + batch)), {
          lease: lease.id,
          expectModRevision: kv?.modRevision ?? 0,
        });
      } catch (error) {
        if (error instanceof ConflictError) {
          this.#claims.add(1, { result: 'conflict' });
          continue;
        }
        throw error;
      }
      c.available += batch;
      c.claimed += batch;
      c.clusterClaimed = count + batch;
      this.#claims.add(1, { result: 'claimed' });
      return;
    }
    throw new Error(`rate-limit counter ${c.key}: ${CAS_ATTEMPTS} conflicting claims in a row`);
  }

  /** A lease expiring a minute after `windowEnd`, not kept alive (shared by this window's keys). */
  #leaseFor(windowEnd: number): Promise<Lease> {
    let lease = this.#leases.get(windowEnd);
    if (!lease) {
      const ttl = Math.max(1, Math.ceil((windowEnd - this.#now()) / 1000) + 60);
      lease = this.#o.store.grantLease(ttl).then((l) => {
        l.release();
        return l;
      });
      lease.catch(() => this.#leases.delete(windowEnd));
      this.#leases.set(windowEnd, lease);
    }
    return lease;
  }

  /** Forgets counters and leases of windows that ended. */
  #sweep(now: number): void {
    for (const [k, c] of this.#counters) if (c.windowEnd <= now && !c.claiming) this.#counters.delete(k);
    for (const end of this.#leases.keys()) if (end <= now) this.#leases.delete(end);
  }

  #now(): number {
    return (this.#o.now ?? Date.now)();
  }

  /** What this replica holds per counter (claimed and unused), for tests and `/debug`. */
  shares(): CounterShare[] {
    return [...this.#counters.values()].map((c) => ({
      key: c.key,
      claimed: c.claimed,
      available: c.available,
      limit: c.limit,
    }));
  }
}

let loaded: grpc.GrpcObject | undefined;

/** The `envoy.service.ratelimit.v3.RateLimitService` definition, from Envoy's own proto. */
export function rateLimitServiceDefinition(): grpc.ServiceDefinition {
  return rateLimitServiceClient().service;
}

/** A client constructor of Envoy's rate-limit service (tests, benchmarks). */
export function rateLimitServiceClient(): grpc.ServiceClientConstructor {
  if (!loaded) {
    const def = protoLoader.loadSync(RLS_PROTO, {
      keepCase: true,
      longs: Number,
      enums: String,
      defaults: false,
      oneofs: true,
      includeDirs: envoyProtoIncludeDirs(),
    });
    loaded = grpc.loadPackageDefinition(def);
  }
  const g = (path: string[]) =>
    path.reduce<grpc.GrpcObject>((o, k) => o[k] as grpc.GrpcObject, loaded as grpc.GrpcObject);
  return g(['envoy', 'service', 'ratelimit', 'v3']).RateLimitService as grpc.ServiceClientConstructor;
}

interface WireRequest {
  domain?: string;
  descriptors?: Array<{ entries?: Array<{ key?: string; value?: string }> }>;
  hits_addend?: number;
}

/** A workload identity proven by a client certificate. */
export interface CallerIdentity {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
}

/** Who may call the rate-limit service on one gRPC server (see "Who may ask" above). */
export interface RateLimitAccess {
  /** True on the CA's mTLS port: a client certificate is the caller's identity. */
  readonly secure: boolean;
  /** `--rate-limit-plaintext on`: answer callers without a client certificate (development only). */
  readonly plaintext: boolean;
  /** The trust domain client certificates must be of (the CA's). */
  readonly trustDomain?: () => string;
  /** The registry (whose workloads run as the caller's identity, with which labels). */
  readonly registry?: () => RegistrySnapshot | undefined;
  /** The mesh root namespace, whose RateLimits apply in every namespace (default `istio-system`). */
  readonly rootNamespace?: string;
  /** Clock for certificate validity (tests). */
  readonly now?: () => number;
  readonly meter?: Meter;
}

/** A refused call: a gRPC status and why (the `details` the caller sees). */
export class RateLimitRefusedError extends Error {
  override readonly name = 'RateLimitRefusedError';
  constructor(
    readonly code: grpc.status,
    readonly reason: 'unauthenticated' | 'forbidden' | 'internal',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Labels of the registry's workloads by identity `namespace/serviceAccount`, cached per snapshot. */
const workloadLabelsCache = new WeakMap<RegistrySnapshot, Map<string, Readonly<Record<string, string>>[]>>();

function workloadLabels(
  registry: RegistrySnapshot | undefined,
  namespace: string,
  serviceAccount: string,
): readonly Readonly<Record<string, string>>[] {
  if (!registry) return [];
  let index = workloadLabelsCache.get(registry);
  if (!index) {
    index = new Map();
    const namespaces = new Map(registry.services.map((s) => [s.hostname, s.namespace]));
    for (const [host, endpoints] of registry.endpoints)
      for (const e of endpoints) {
        if (!e.serviceAccount) continue;
        const sa = /^spiffe:\/\/[^/]+\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(e.serviceAccount);
        const key = sa
          ? `${sa[1]}/${sa[2]}`
          : `${e.namespace ?? namespaces.get(host) ?? ''}/${e.serviceAccount}`;
        const list = index.get(key) ?? [];
        list.push(e.labels);
        index.set(key, list);
      }
    workloadLabelsCache.set(registry, index);
  }
  return index.get(`${namespace}/${serviceAccount}`) ?? [];
}

/**
 * Why `caller` may not spend the limits `descriptors` name, or undefined when it may (pure; the
 * rules are in the module comment). A descriptor naming no limit of the config spends nothing and
 * is allowed.
 */
export function rateLimitRefusal(
  limiter: Pick<GlobalRateLimiter, 'rateLimitOf'>,
  caller: CallerIdentity,
  descriptors: readonly (readonly DescriptorEntry[])[],
  registry: RegistrySnapshot | undefined,
  rootNamespace = 'istio-system',
): string | undefined {
  const principal = `spiffe://${caller.trustDomain}/ns/${caller.namespace}/sa/${caller.serviceAccount}`;
  for (const entries of descriptors) {
    const id = entries.find((e) => e.key === LIMIT_DESCRIPTOR_KEY)?.value;
    if (id === undefined) continue;
    const found = limiter.rateLimitOf(id);
    if (!found) continue;
    const rl = found.config;
    const name = `${rl.metadata.namespace}/${rl.metadata.name}`;
    const ns = rl.metadata.namespace;
    if (ns !== caller.namespace && ns !== rootNamespace)
      return `${principal} may not use the limit ${id}: RateLimit ${name} is in namespace "${ns}", not the caller's`;
    const labels = workloadLabels(registry, caller.namespace, caller.serviceAccount);
    if (
      labels.length > 0 &&
      !labels.some(
        (l) => selectRateLimits([rl], { namespace: caller.namespace, labels: l }, rootNamespace).length > 0,
      )
    )
      return `${principal} may not use the limit ${id}: RateLimit ${name} selects none of the caller's workloads`;
  }
  return undefined;
}

/**
 * Registers `ShouldRateLimit` on a gRPC server: the replica's plaintext xDS server
 * (`access.secure` false) or its CA mTLS server (true). Callers are authenticated and authorised as
 * the module comment says; a refusal is UNAUTHENTICATED or PERMISSION_DENIED with the reason. A
 * failure to reach etcd is answered UNAVAILABLE (the proxy then applies `failure_mode_deny`).
 */
export function addRateLimitService(
  server: grpc.Server,
  limiter: GlobalRateLimiter,
  log: Logger,
  access: RateLimitAccess,
): void {
  const refused = (access.meter ?? metrics.getMeter('@meridian/server')).createCounter(
    'meridian_ratelimit_refused',
    {
      description:
        'Rate-limit calls refused, by reason (unauthenticated, forbidden, internal) and port (mtls, plaintext).',
    },
  );
  const port = access.secure ? 'mtls' : 'plaintext';
  server.addService(rateLimitServiceDefinition(), {
    ShouldRateLimit: (
      call: grpc.ServerUnaryCall<WireRequest, unknown>,
      callback: grpc.sendUnaryData<unknown>,
    ) => {
      const req = call.request;
      const descriptors = (req.descriptors ?? []).map((d) =>
        (d.entries ?? []).map((e) => ({ key: e.key ?? '', value: e.value ?? '' })),
      );
      try {
        const caller = rateLimitCaller(call, access);
        const why = caller
          ? rateLimitRefusal(limiter, caller, descriptors, access.registry?.(), access.rootNamespace)
          : undefined;
        if (why) throw new RateLimitRefusedError(grpc.status.PERMISSION_DENIED, 'forbidden', why);
      } catch (error) {
        const e =
          error instanceof RateLimitRefusedError
            ? error
            : new RateLimitRefusedError(grpc.status.INTERNAL, 'internal', String(error), { cause: error });
        refused.add(1, { reason: e.reason, port });
        log.debug({ reason: e.reason, err: e.message }, 'rate-limit call refused');
        callback({ code: e.code, details: e.message });
        return;
      }
      limiter.decide(req.domain ?? '', descriptors, req.hits_addend || 1).then(
        (d) =>
          callback(null, {
            overall_code: d.overall,
            statuses: d.statuses.map((s) => ({
              code: s.code,
              ...(s.limit
                ? { current_limit: { requests_per_unit: s.limit.requestsPerUnit, unit: s.limit.unit } }
                : {}),
              ...(s.remaining !== undefined ? { limit_remaining: s.remaining } : {}),
              ...(s.resetMs !== undefined
                ? {
                    duration_until_reset: {
                      seconds: Math.floor(s.resetMs / 1000),
                      nanos: (s.resetMs % 1000) * 1e6,
                    },
                  }
                : {}),
            })),
          }),
        (error: unknown) => {
          log.warn({ err: error }, 'rate-limit decision failed');
          callback({
            code: grpc.status.UNAVAILABLE,
            details: `rate-limit counters unavailable: ${(error as Error).message}`,
          });
        },
      );
    },
  });
}

/**
 * The identity of the caller of `call`, or undefined for an accepted unauthenticated caller
 * (`--rate-limit-plaintext on`); throws RateLimitRefusedError (UNAUTHENTICATED) otherwise.
 */
function rateLimitCaller(
  call: grpc.ServerUnaryCall<WireRequest, unknown>,
  access: RateLimitAccess,
): CallerIdentity | undefined {
  const peer = access.secure ? call.getAuthContext?.()?.sslPeerCertificate : undefined;
  if (peer?.raw) {
    let id: CallerIdentity;
    try {
      id = identityFromPeerCertificate(peer.raw, new Date((access.now ?? Date.now)()));
    } catch (error) {
      throw new RateLimitRefusedError(
        grpc.status.UNAUTHENTICATED,
        'unauthenticated',
        `client certificate: ${(error as Error).message}`,
        { cause: error },
      );
    }
    const td = access.trustDomain?.();
    if (td === undefined || id.trustDomain !== td)
      throw new RateLimitRefusedError(
        grpc.status.UNAUTHENTICATED,
        'unauthenticated',
        `client certificate of trust domain "${id.trustDomain}", not "${td ?? '(none)'}"`,
      );
    return id;
  }
  if (access.plaintext) return undefined;
  throw new RateLimitRefusedError(
    grpc.status.UNAUTHENTICATED,
    'unauthenticated',
    access.secure
      ? 'the rate-limit service needs the workload certificate: none was presented'
      : 'the rate-limit service needs the workload certificate (the CA mTLS port); unauthenticated callers are off (--rate-limit-plaintext)',
  );
}

/** How proxies reach the replicas' rate-limit service: mTLS, plaintext (development), or not at all. */
export type RateLimitTransport = 'mtls' | 'plaintext' | 'off';

/**
 * Where proxies reach the rate-limit service: the `--rate-limit-address` setting (`host:port`,
 * comma-separated), else the cluster's replicas (sorted by replica id, so every replica translates
 * the same cluster): their CA mTLS addresses for `mtls` (each marked `mtls`), their plaintext xDS
 * addresses for `plaintext`, none for `off`; each at the replica's advertised host
 * (`--advertise-address`, which its serving certificate names) when its record has one. A replica
 * that advertises nothing and binds an unspecified address such as `0.0.0.0` is left out.
 */
export function rateLimitServiceAddresses(
  setting: string,
  replicas:
    | readonly {
        readonly id: string;
        readonly xdsAddress: string;
        readonly caAddress?: string;
        readonly advertiseAddress?: string;
      }[]
    | undefined,
  transport: RateLimitTransport,
): ReplicaServiceAddress[] {
  if (transport === 'off') return [];
  const mtls = transport === 'mtls';
  const parse = (a: string): ReplicaServiceAddress | undefined => {
    const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(a.trim());
    if (!m || m[1] === '') return undefined;
    return { host: m[1] as string, port: Number(m[2]), ...(mtls ? { mtls: true } : {}) };
  };
  const list =
    (setting ?? '').trim() !== ''
      ? setting.split(',').map(parse)
      : [...(replicas ?? [])]
          .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
          .map((r) => parse(advertisedAddress(mtls ? r.caAddress : r.xdsAddress, r.advertiseAddress)))
          .filter((a) => a !== undefined && !isUnspecifiedHost(a.host));
  return list.filter((a): a is ReplicaServiceAddress => a !== undefined);
}

/** A string equal exactly when two address lists are (what the config snapshot was built with). */
export function replicaServiceKey(addresses: readonly ReplicaServiceAddress[] | undefined): string {
  return (addresses ?? []).map((a) => `${a.mtls ? 'mtls' : 'plain'}:${a.host}:${a.port}`).join(',');
}
