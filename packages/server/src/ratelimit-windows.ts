/**
 * The global rate limits' decisions: which RateLimit a descriptor names, its fixed window, and
 * whether this replica's share of the window's counter covers a request. The replicas of a cluster
 * share the counters through etcd (ratelimit-claims.ts), so a limit holds whichever replica a proxy
 * asks; the gRPC service that asks is ratelimit-service.ts.
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
 */
import { type RateLimitConfig, type RateLimitUnit, rateLimitWindowMs } from '@meridian/api';
import type { Store } from '@meridian/store';
import { LIMIT_DESCRIPTOR_KEY, RATE_LIMIT_DOMAIN } from '@meridian/translate';
import { type Meter, metrics } from '@opentelemetry/api';
import type { Logger } from 'pino';
import { counterKey, WindowClaims, type WindowCounter } from './ratelimit-claims.js';

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
  readonly #counters = new Map<string, WindowCounter>();
  readonly #decisions;
  readonly #claims: WindowClaims;
  #index: { source: readonly RateLimitConfig[]; byName: Map<string, RateLimitConfig> } | undefined;

  constructor(options: GlobalRateLimiterOptions) {
    this.#o = options;
    const meter = options.meter ?? metrics.getMeter('@meridian/server');
    this.#decisions = meter.createCounter('meridian_ratelimit_decisions', {
      description: 'Global rate-limit descriptors decided, by result (ok, over_limit, unknown limit).',
    });
    this.#claims = new WindowClaims({
      store: options.store,
      now: () => this.#now(),
      ...(options.maxBatch !== undefined ? { maxBatch: options.maxBatch } : {}),
      meter,
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
    const key = counterKey(id, value, start);
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
      c.claiming ??= this.#claims.claim(c, hits).finally(() => {
        c.claiming = undefined;
      });
      await c.claiming;
    }
  }

  #status(
    code: 'OK' | 'OVER_LIMIT',
    c: WindowCounter,
    limit: { requestsPerUnit: number; unit: RateLimitUnit },
  ): DescriptorStatus {
    return {
      code,
      limit,
      remaining: Math.max(0, c.limit - c.clusterClaimed) + c.available,
      resetMs: Math.max(0, c.windowEnd - this.#now()),
    };
  }

  /** Forgets counters and leases of windows that ended. */
  #sweep(now: number): void {
    for (const [k, c] of this.#counters) if (c.windowEnd <= now && !c.claiming) this.#counters.delete(k);
    this.#claims.sweep(now);
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
