import { build, type Histogram } from 'hdr-histogram-js';

/** Latency figures in milliseconds. */
export interface LatencySummary {
  count: number;
  min: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

/** Monotonic time in ms (fractional). */
export const nowMs = (): number => performance.now();

/**
 * Records latencies into an HDR histogram (microsecond resolution, 3 significant digits, up to one
 * hour) and reports p50/p90/p99/p99.9/max in milliseconds.
 */
export class LatencyRecorder {
  readonly #hist: Histogram;
  #sumUs = 0;

  constructor() {
    this.#hist = build({
      lowestDiscernibleValue: 1,
      highestTrackableValue: 3_600_000_000,
      numberOfSignificantValueDigits: 3,
    });
  }

  /** Records one latency given in ms (negative values are an error: they mean a clock mix-up). */
  record(ms: number): void {
    if (!(ms >= 0) || !Number.isFinite(ms))
      throw new RangeError(`LatencyRecorder.record: latency must be a finite ms value >= 0, got ${ms}`);
    const us = Math.max(1, Math.round(ms * 1_000));
    this.#hist.recordValue(us);
    this.#sumUs += us;
  }

  /** Times `fn` and records its duration; returns its result. */
  async time<T>(fn: () => Promise<T> | T): Promise<T> {
    const t0 = nowMs();
    try {
      return await fn();
    } finally {
      this.record(nowMs() - t0);
    }
  }

  /** Adds every value of `other` to this recorder. */
  add(other: LatencyRecorder): void {
    this.#hist.add(other.#hist);
    this.#sumUs += other.#sumUs;
  }

  get count(): number {
    return this.#hist.totalCount;
  }

  /** The value at `percentile` (0..100) in ms. */
  percentile(percentile: number): number {
    return this.#hist.getValueAtPercentile(percentile) / 1_000;
  }

  summary(): LatencySummary {
    const n = this.#hist.totalCount;
    const h = this.#hist;
    const ms = (us: number) => us / 1_000;
    return {
      count: n,
      min: n ? ms(h.minNonZeroValue) : 0,
      mean: n ? ms(this.#sumUs / n) : 0,
      p50: ms(h.getValueAtPercentile(50)),
      p90: ms(h.getValueAtPercentile(90)),
      p99: ms(h.getValueAtPercentile(99)),
      p999: ms(h.getValueAtPercentile(99.9)),
      max: ms(h.maxValue),
    };
  }

  reset(): void {
    this.#hist.reset();
    this.#sumUs = 0;
  }
}
