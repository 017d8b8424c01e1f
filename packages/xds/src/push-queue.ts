import { type ChangeEvent, mergeChanges } from './types.js';

/** The clock and timers the debouncer uses; tests pass a fake one. */
export interface Timer {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** Real time: `performance.now()` and the global timers. */
export const realTimer: Timer = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** Debounce settings (istiod's PILOT_DEBOUNCE_AFTER / PILOT_DEBOUNCE_MAX). */
export interface DebounceOptions {
  /** Quiet period: fire once no change arrived for this long. Default 100 ms. */
  readonly quietMs?: number;
  /** Fire at the latest this long after the first change of a burst. Default 1000 ms. */
  readonly maxDelayMs?: number;
  readonly timer?: Timer;
}

/**
 * Merges bursts of changes into one event: fires `quietMs` after the last change, or `maxDelayMs` after
 * the first one, whichever comes first (istiod's `debounce` in pilot/pkg/xds/discovery.go).
 */
export class Debouncer {
  readonly #quietMs: number;
  readonly #maxDelayMs: number;
  readonly #timer: Timer;
  #pending: ChangeEvent | undefined;
  #lastAt = 0;
  /** When the current burst must fire at the latest (the earliest of its changes' bounds). */
  #deadline = 0;
  #handle: unknown;
  #stopped = false;

  constructor(
    options: DebounceOptions,
    private readonly fire: (change: ChangeEvent, merged: number) => void,
  ) {
    this.#quietMs = options.quietMs ?? 100;
    this.#maxDelayMs = options.maxDelayMs ?? 1000;
    this.#timer = options.timer ?? realTimer;
  }
  #merged = 0;

  /**
   * Adds a change to the current burst. `maxDelayMs` shortens the burst's longest wait for this
   * change (endpoint-only changes, which should reach proxies quickly even while changes keep
   * coming); the burst fires at the earliest of its changes' bounds.
   */
  enqueue(change: ChangeEvent, maxDelayMs = this.#maxDelayMs): void {
    if (this.#stopped) return;
    const now = this.#timer.now();
    if (this.#pending === undefined) {
      this.#pending = change;
      this.#merged = 1;
      this.#deadline = now + maxDelayMs;
    } else {
      this.#pending = mergeChanges(this.#pending, change);
      this.#merged++;
      this.#deadline = Math.min(this.#deadline, now + maxDelayMs);
    }
    this.#lastAt = now;
    if (this.#quietMs <= 0) {
      this.flush();
      return;
    }
    this.#schedule();
  }

  #schedule(): void {
    if (this.#handle !== undefined) this.#timer.clearTimeout(this.#handle);
    const now = this.#timer.now();
    const untilQuiet = this.#lastAt + this.#quietMs - now;
    const untilMax = this.#deadline - now;
    const wait = Math.max(0, Math.min(untilQuiet, untilMax));
    this.#handle = this.#timer.setTimeout(() => {
      this.#handle = undefined;
      this.flush();
    }, wait);
  }

  /** Fires the pending burst now (if any). */
  flush(): void {
    if (this.#handle !== undefined) {
      this.#timer.clearTimeout(this.#handle);
      this.#handle = undefined;
    }
    const change = this.#pending;
    const merged = this.#merged;
    this.#pending = undefined;
    this.#merged = 0;
    if (change) this.fire(change, merged);
  }

  stop(): void {
    this.#stopped = true;
    if (this.#handle !== undefined) this.#timer.clearTimeout(this.#handle);
    this.#pending = undefined;
  }
}

/** Something the queue pushes to: a connection. `push` resolves when the push's writes are done. */
export interface Pushable {
  push(change: ChangeEvent): Promise<void>;
}

/**
 * Per-connection merge queue with a concurrency cap (istiod's PushQueue + PILOT_PUSH_THROTTLE): a
 * connection is queued at most once; a change for a queued connection is merged into its pending
 * change; at most `concurrency` pushes are in flight.
 */
export class PushQueue<C extends Pushable> {
  readonly #pending = new Map<C, ChangeEvent>();
  /** When each pending connection was queued (`performance.now()`; merges keep the first time). */
  readonly #queuedAt = new Map<C, number>();
  readonly #inFlight = new Set<C>();
  /** Changes that arrived for a connection while it was being pushed; queued again after. */
  readonly #again = new Map<C, ChangeEvent>();
  #waiters: (() => void)[] = [];
  /** A slice ended with pushes still to start: the pump resumes on the next turn of the loop. */
  #resumeScheduled = false;
  /** When the current slice began (`performance.now()`), while one is open. */
  #sliceStart: number | undefined;

  /**
   * `onDequeue` sees every push as it leaves the queue, with how long the connection waited in it
   * (istiod's `pilot_proxy_queue_time`).
   */
  constructor(
    readonly concurrency: number,
    private readonly onError: (conn: C, error: unknown) => void,
    private readonly onDequeue?: (conn: C, change: ChangeEvent, waitedMs: number) => void,
    /** How long the pump starts pushes before it lets the event loop take other work. */
    readonly sliceMs = 10,
  ) {}

  enqueue(conn: C, change: ChangeEvent): void {
    if (this.#inFlight.has(conn)) {
      const prev = this.#again.get(conn);
      this.#again.set(conn, prev ? mergeChanges(prev, change) : change);
      return;
    }
    const prev = this.#pending.get(conn);
    this.#pending.set(conn, prev ? mergeChanges(prev, change) : change);
    if (!prev) this.#queuedAt.set(conn, performance.now());
    this.#pump();
  }

  /** Forgets a connection (closed). */
  remove(conn: C): void {
    this.#pending.delete(conn);
    this.#queuedAt.delete(conn);
    this.#again.delete(conn);
  }

  get size(): number {
    return this.#pending.size + this.#inFlight.size;
  }

  /** Resolves when nothing is queued or in flight. */
  idle(): Promise<void> {
    if (this.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  #pump(): void {
    if (this.#resumeScheduled) return;
    if (this.#sliceStart === undefined) {
      // The slice spans every pump of this turn of the loop (an update enqueues connections one
      // by one, each enqueue pumps); it ends when the loop comes round.
      this.#sliceStart = performance.now();
      setImmediate(() => {
        this.#sliceStart = undefined;
      });
    }
    const sliceStart = this.#sliceStart;
    while (this.#inFlight.size < this.concurrency && this.#pending.size > 0) {
      // A push's synchronous part (resolve, translate on a cache miss, encode, write) can take
      // milliseconds; starting a hundred of them in one go would hold the event loop for seconds,
      // and admin requests, etcd answers and ACKs would wait behind it. After a slice, the rest
      // starts on the next turn of the loop.
      if (performance.now() - sliceStart >= this.sliceMs) {
        this.#resumeScheduled = true;
        setImmediate(() => {
          this.#resumeScheduled = false;
          this.#sliceStart = undefined;
          this.#pump();
        });
        return;
      }
      const [conn, change] = this.#pending.entries().next().value as [C, ChangeEvent];
      this.#pending.delete(conn);
      const queuedAt = this.#queuedAt.get(conn);
      this.#queuedAt.delete(conn);
      this.#inFlight.add(conn);
      if (this.onDequeue && queuedAt !== undefined)
        this.onDequeue(conn, change, performance.now() - queuedAt);
      let pushed: Promise<void>;
      try {
        pushed = conn.push(change);
      } catch (error) {
        pushed = Promise.reject(error);
      }
      pushed
        .catch((error: unknown) => this.onError(conn, error))
        .finally(() => {
          this.#inFlight.delete(conn);
          const again = this.#again.get(conn);
          if (again) {
            this.#again.delete(conn);
            this.enqueue(conn, again);
          }
          this.#pump();
        });
    }
    if (this.size === 0) {
      const waiters = this.#waiters;
      this.#waiters = [];
      for (const w of waiters) w();
    }
  }
}
