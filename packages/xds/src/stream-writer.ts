// The write side of one ADS stream: hands response bytes to grpc-js and keeps the stream's write buffer
// bounded. It counts what was written but not yet taken by HTTP/2; a stream past the bound (or whose
// write asked to wait) is blocked, its pushes deferred by the connection until the writes drain, and a
// stream whose writes make no progress for stuckTimeoutMs is reported stuck (the proxy stopped
// reading; HTTP/2 flow control holds the data). A push waits for its writes to be taken, or
// pushReleaseMs, so a slow stream holds a push slot for a bounded time only.
import type { ServerDuplexStream } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { XdsMetrics } from './metrics.js';

/** The limits the write side applies (part of StreamLimits). */
export interface WriteLimits {
  /** Bytes written but not yet taken by HTTP/2 beyond which the stream counts as blocked. */
  readonly maxBufferedBytes: number;
  /** A stream blocked this long is closed (the proxy stopped reading). */
  readonly stuckTimeoutMs: number;
}

/** What the write side needs of its stream. */
export interface WriterOwner {
  readonly log: Logger;
  readonly metrics: XdsMetrics;
  readonly limits: WriteLimits;
  isClosed(): boolean;
  /** Log fields naming the stream (its id changes once its node is known). */
  logFields(): Record<string, unknown>;
  /** Every write handed over so far was taken by HTTP/2: deferred work may go now. */
  drained(): void;
  /** A write threw (the stream must end). */
  writeFailed(error: Error): void;
  /** No write made progress for stuckTimeoutMs (the stream must end at once). */
  stuck(reason: string): void;
}

/** Writes and backpressure of one stream. */
export class StreamWriter {
  #outstandingBytes = 0;
  #outstandingWrites = 0;
  #blocked = false;
  #lastProgressAt = 0;
  #stuckTimer: NodeJS.Timeout | undefined;
  #releaseWaiters: (() => void)[] = [];

  constructor(
    private readonly call: ServerDuplexStream<Buffer, Buffer>,
    private readonly owner: WriterOwner,
  ) {}

  get blocked(): boolean {
    return this.#blocked;
  }

  /** Bytes handed to grpc-js and not yet written to the socket. */
  get bufferedBytes(): number {
    return this.#outstandingBytes;
  }

  /** Whether writes are still waiting for HTTP/2 to take them. */
  get pending(): boolean {
    return this.#outstandingWrites > 0;
  }

  /** Writes one response; `short` is its type's short name (for the send-error counter). */
  write(bytes: Buffer, short: string): void {
    const { metrics, limits } = this.owner;
    this.#outstandingBytes += bytes.length;
    if (this.#outstandingWrites++ === 0) {
      this.#lastProgressAt = performance.now();
      this.#armStuckTimer(limits.stuckTimeoutMs);
    }
    let ok = true;
    try {
      const writeAt = performance.now();
      ok = this.call.write(bytes, () => {
        metrics.sendTime.record((performance.now() - writeAt) / 1000);
        this.#written(bytes.length);
      });
    } catch (e) {
      metrics.pushes.add(1, { type: `${short}_senderr` });
      this.owner.writeFailed(e as Error);
      return;
    }
    if (!ok || this.#outstandingBytes > limits.maxBufferedBytes) this.#block();
  }

  /**
   * Resolves when the writes of the push just made are taken by HTTP/2, or after `releaseMs`; at once
   * when nothing is pending or the stream is blocked (its push is deferred anyway).
   */
  released(releaseMs: number): Promise<void> {
    if (this.#outstandingWrites === 0 || this.#blocked) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, releaseMs);
      timer.unref();
      this.#releaseWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** The stream ended: no stuck check any more, and nobody waits for its writes. */
  stop(): void {
    if (this.#stuckTimer) clearTimeout(this.#stuckTimer);
    this.#release();
  }

  #written(length: number): void {
    this.#outstandingBytes -= length;
    this.#outstandingWrites--;
    this.#lastProgressAt = performance.now();
    if (this.#outstandingWrites === 0) {
      if (this.#stuckTimer) clearTimeout(this.#stuckTimer);
      this.#stuckTimer = undefined;
      this.#release();
      this.#blocked = false;
      this.owner.drained();
    }
  }

  /** Reports the stream stuck when its writes make no progress for `stuckTimeoutMs` (the proxy
   * stopped reading; HTTP/2 flow control holds the data). */
  #armStuckTimer(ms: number): void {
    if (this.#stuckTimer) clearTimeout(this.#stuckTimer);
    this.#stuckTimer = setTimeout(() => {
      this.#stuckTimer = undefined;
      if (this.owner.isClosed() || this.#outstandingWrites === 0) return;
      const limit = this.owner.limits.stuckTimeoutMs;
      const idle = performance.now() - this.#lastProgressAt;
      if (idle < limit) {
        this.#armStuckTimer(limit - idle);
        return;
      }
      this.owner.metrics.writeTimeout.add(1);
      this.owner.stuck(
        `proxy stopped reading: ${this.#outstandingBytes} bytes unwritten for ${Math.round(idle)} ms`,
      );
    }, ms);
    this.#stuckTimer.unref();
  }

  #release(): void {
    const waiters = this.#releaseWaiters;
    this.#releaseWaiters = [];
    for (const w of waiters) w();
  }

  #block(): void {
    if (this.#blocked) return;
    this.#blocked = true;
    this.#release();
    this.owner.log.debug(
      { ...this.owner.logFields(), buffered: this.#outstandingBytes },
      'stream blocked: proxy is not reading',
    );
  }
}
