/**
 * The etcd side of the global rate limits' windows: the key layout of a counter
 * (`ratelimit/<ns>/<name>/<i>/<hash of the value>/<window start ms>`), claiming a batch of a window
 * with a compare-and-swap that never raises the count above the limit, and the one lease per window
 * end that expires the window's keys a minute after it ends (not kept alive, so the keys expire even
 * if the replica that wrote them dies). The counting rules these serve are in ratelimit-windows.ts.
 */
import { createHash } from 'node:crypto';
import { ConflictError, type Lease, type Store } from '@meridian/store';
import type { Meter } from '@opentelemetry/api';

/** The keyspace prefix of the counters. */
export const RATE_LIMIT_PREFIX = 'ratelimit/';
const MAX_BATCH = 1000;
const CAS_ATTEMPTS = 20;

/** The etcd key of the counter of limit `id` for descriptor value `value` in the window starting at `start`. */
export function counterKey(id: string, value: string, start: number): string {
  const hash = createHash('sha256').update(value).digest('hex').slice(0, 32);
  return `${RATE_LIMIT_PREFIX}${id}/${hash}/${start}`;
}

/** One counter's state on this replica, updated by each claim. */
export interface WindowCounter {
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

/** Settings of {@link WindowClaims}. */
export interface WindowClaimsOptions {
  readonly store: Store;
  /** Clock (ms since the epoch); tests move windows with it. */
  readonly now: () => number;
  /** Largest batch claimed at once (default 1000). */
  readonly maxBatch?: number;
  readonly meter: Meter;
}

/** Claims batches of windows' counters in etcd for one replica. */
export class WindowClaims {
  readonly #o: WindowClaimsOptions;
  readonly #leases = new Map<number, Promise<Lease>>();
  readonly #claims;

  constructor(options: WindowClaimsOptions) {
    this.#o = options;
    this.#claims = options.meter.createCounter('meridian_ratelimit_claims', {
      description: 'Batches of a global limit claimed from etcd, by result (claimed, exhausted, conflict).',
    });
  }

  /**
   * Claims a batch for `c` (at least `want`) with a compare-and-swap on its etcd key: a tenth of
   * what is left (at least `want`, at most the largest batch); marks `c` exhausted when less than
   * `want` is left.
   */
  async claim(c: WindowCounter, want: number): Promise<void> {
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
      const ttl = Math.max(1, Math.ceil((windowEnd - this.#o.now()) / 1000) + 60);
      lease = this.#o.store.grantLease(ttl).then((l) => {
        l.release();
        return l;
      });
      lease.catch(() => this.#leases.delete(windowEnd));
      this.#leases.set(windowEnd, lease);
    }
    return lease;
  }

  /** Forgets the leases of windows that ended. */
  sweep(now: number): void {
    for (const end of this.#leases.keys()) if (end <= now) this.#leases.delete(end);
  }
}
