import type { Store } from '@meridian/store';
import { metrics } from '@opentelemetry/api';
import type { Logger } from 'pino';

/**
 * Whether the replica can reach a healthy etcd quorum, from two signals: the cluster-state watch's
 * connection status (fast: etcd cancels watches on a member that lost its leader) and a periodic
 * linearizable probe. While unavailable the replica keeps serving its last snapshot, `/readyz` says
 * `degraded: store unavailable since ...` and writes fail fast.
 */
export class StoreHealth {
  #since: number | undefined;
  #watchDown = false;
  #probeDown = false;
  #timer: NodeJS.Timeout | undefined;
  #watchTimer: NodeJS.Timeout | undefined;
  #probing = false;
  #stopped = false;
  /** While serving a snapshot from disk: how to describe it, and what to do once etcd answers. */
  #disk: { describe: () => string; onAvailable: () => void } | undefined;
  readonly #meter = metrics.getMeter('@meridian/server');

  constructor(
    private readonly store: Store,
    private readonly log: Logger,
    private readonly probeIntervalMs = 1000,
    private readonly watchGraceMs = 1000,
  ) {
    this.#meter
      .createObservableGauge('meridian_store_available', {
        description:
          '1 while the replica reaches a healthy etcd quorum, 0 while degraded (serving the last snapshot).',
      })
      .addCallback((r) => r.observe(this.#since === undefined ? 1 : 0));
    this.#meter
      .createObservableGauge('meridian_store_unavailable_seconds', {
        description: 'Seconds since the store became unavailable (0 while available).',
        unit: 's',
      })
      .addCallback((r) => r.observe(this.#since === undefined ? 0 : (Date.now() - this.#since) / 1000));
  }

  /** When the store became unavailable (ms since epoch), or undefined while it is available. */
  get unavailableSince(): number | undefined {
    return this.#since;
  }

  /**
   * `ok`, `degraded: store unavailable since <ISO time>`, or while a snapshot from disk is served,
   * what {@link servingFromDisk} was given (`degraded: store unreachable, serving revision N from disk
   * (age ...)`).
   */
  describe(): string {
    if (this.#disk) return this.#disk.describe();
    return this.#since === undefined
      ? 'ok'
      : `degraded: store unavailable since ${new Date(this.#since).toISOString()}`;
  }

  /**
   * The replica started without reaching etcd and serves a snapshot from disk: unavailable from now
   * until the store answers (probe and watch), then `onAvailable` is called once.
   */
  servingFromDisk(describe: () => string, onAvailable: () => void): void {
    this.#disk = { describe, onAvailable };
    this.#watchDown = true;
    this.#update();
  }

  #update(): void {
    const down = this.#watchDown || this.#probeDown;
    if (down && this.#since === undefined) {
      this.#since = Date.now();
      this.log.warn(
        { since: new Date(this.#since).toISOString() },
        'store unavailable: serving the last snapshot',
      );
    } else if (!down && this.#since !== undefined) {
      this.log.info({ downForMs: Date.now() - this.#since }, 'store available again');
      this.#since = undefined;
      const disk = this.#disk;
      this.#disk = undefined;
      disk?.onAvailable();
    }
  }

  /**
   * The cluster-state watch's connection status. A watch that re-establishes itself within
   * `watchGraceMs` (a member restarted, a stream was recycled) does not count as an outage.
   */
  watchStatus(connected: boolean): void {
    clearTimeout(this.#watchTimer);
    if (connected) {
      this.#watchDown = false;
      this.#update();
      return;
    }
    this.#watchTimer = setTimeout(() => {
      this.#watchDown = true;
      this.#update();
    }, this.watchGraceMs);
    this.#watchTimer.unref();
  }

  start(): void {
    this.#timer = setInterval(() => void this.probe(), this.probeIntervalMs);
    this.#timer.unref();
  }

  /**
   * One probe: a linearizable read bounded by the store's request timeout. While the store counts as
   * available, a failed read is tried once more before it counts: a read can time out only because
   * this process's event loop was too busy to take the answer in time (a long push), and marking the
   * store down for that would refuse every write for a second or more.
   */
  async probe(): Promise<void> {
    if (this.#probing || this.#stopped) return;
    this.#probing = true;
    try {
      await this.store.revision();
      this.#probeDown = false;
    } catch (first) {
      let error = first;
      if (!this.#probeDown && !this.#stopped) {
        try {
          await this.store.revision();
          this.log.info({ err: first }, 'store probe failed once; the second read answered');
          return;
        } catch (second) {
          error = second;
        }
      }
      if (!this.#probeDown) this.log.warn({ err: error }, 'store probe failed twice in a row');
      this.#probeDown = true;
    } finally {
      this.#probing = false;
      if (!this.#stopped) this.#update();
    }
  }

  stop(): void {
    this.#stopped = true;
    clearInterval(this.#timer);
    clearTimeout(this.#watchTimer);
  }
}
