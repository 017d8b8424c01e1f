/**
 * Watches of the etcd store: one prefix watch per gRPC stream that resumes on another member after a
 * failure or a silent connection, delivering each revision exactly once, in order.
 */
import type { IWatchResponse } from 'etcd3';
import { type EtcdInternals, prefixEnd, quietEnd } from './etcd-shared.js';
import { SerialDelivery } from './internal.js';
import type { Watch, WatchEvent, WatchHandler, WatchOptions } from './types.js';

/**
 * One prefix watch on its own gRPC stream. It remembers the last revision it received and, whenever
 * the stream fails (member killed, member lost its leader, network), opens a new stream on any
 * member starting at that revision + 1, and drops anything at or below it: exactly once, in order.
 * A compacted start revision turns into a `resync` batch (snapshot + revision).
 */
export class EtcdWatch implements Watch {
  readonly ready: Promise<number>;
  readonly ended: Promise<void>;
  reconnects = 0;
  private resolveReady!: (revision: number) => void;
  private delivery: SerialDelivery<Uint8Array>;
  /** Highest revision received and queued for the handler; resume from here + 1. */
  private received: number | undefined;
  private start = 0;
  private closed = false;
  private endStream: (() => void) | undefined;
  private wake: (() => void) | undefined;

  constructor(
    private readonly store: EtcdInternals,
    private readonly key: Buffer,
    private readonly prefix: string,
    handler: WatchHandler,
    private readonly options: WatchOptions,
  ) {
    this.delivery = new SerialDelivery(handler, options.onError);
    this.ready = new Promise((resolve) => {
      this.resolveReady = resolve;
    });
    if (options.fromRevision !== undefined && options.fromRevision > 0) {
      this.received = options.fromRevision - 1;
    }
    this.ended = this.run();
  }

  get lastRevision(): number {
    return Math.max(this.start, this.delivery.lastDelivered);
  }

  private async run(): Promise<void> {
    let backoff = 0;
    let connectedOnce = false;
    while (!this.closed) {
      let outcome: { error?: unknown; compactRevision?: number };
      try {
        outcome = await this.streamOnce(() => {
          backoff = 0;
          if (connectedOnce) this.reconnects++;
          connectedOnce = true;
        });
      } catch (error) {
        outcome = { error };
      }
      if (this.closed) break;
      if (outcome.compactRevision !== undefined) {
        await this.resync(outcome.compactRevision);
        continue;
      }
      this.status('disconnected', outcome.error);
      if (backoff > 0) await this.sleep(backoff);
      backoff = Math.min(Math.max(backoff * 2, 25), this.store.maxWatchBackoffMs);
    }
  }

  private lastStatus: 'connected' | 'disconnected' | undefined;

  /** Reports connection state changes (not every failed attempt). */
  private status(status: 'connected' | 'disconnected', cause?: unknown): void {
    if (status === this.lastStatus) return;
    this.lastStatus = status;
    try {
      this.options.onStatus?.(status, cause);
    } catch (error) {
      this.delivery.report(error);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /** Runs one stream until it fails; resolves with why it ended. */
  private async streamOnce(onCreated: () => void): Promise<{ error?: unknown; compactRevision?: number }> {
    const stream = await this.store.openWatchStream();
    if (this.closed) {
      quietEnd(stream, true);
      return {};
    }
    const livenessMs = this.store.watchLivenessMs;
    return new Promise((resolve) => {
      let done = false;
      let lastHeard = Date.now();
      // A silent stream (blackholed connection, hung member) is noticed here rather than after TCP or
      // gRPC keepalive timeouts: after half the bound without a message, ask etcd for a progress
      // notification; after the whole bound, give up on this stream and resume elsewhere.
      const liveness = setInterval(
        () => {
          const silentMs = Date.now() - lastHeard;
          if (silentMs >= livenessMs) {
            finish({ error: new Error(`watch stream silent for ${silentMs} ms`) }, false);
          } else if (silentMs >= livenessMs / 2) {
            stream.write({ progress_request: {} });
          }
        },
        Math.max(livenessMs / 4, 10),
      ).unref();
      const finish = (outcome: { error?: unknown; compactRevision?: number }, graceful = true) => {
        if (done) return;
        done = true;
        clearInterval(liveness);
        this.endStream = undefined;
        quietEnd(stream, graceful);
        resolve(outcome);
      };
      this.endStream = () => finish({});
      stream.on('error', (error: unknown) => finish({ error }, false));
      stream.on('end', () => finish({ error: new Error('watch stream ended') }));
      stream.on('data', (res: IWatchResponse) => {
        if (done) return;
        lastHeard = Date.now();
        if (Number(res.compact_revision) > 0)
          return finish({ compactRevision: Number(res.compact_revision) });
        if (res.canceled) return finish({ error: new Error(`watch canceled: ${res.cancel_reason}`) });
        if (res.created) {
          if (this.received === undefined) this.received = Number(res.header.revision);
          if (this.start === 0) {
            this.start = this.received;
            this.resolveReady(this.start);
          }
          onCreated();
          this.status('connected');
        }
        this.onEvents(res);
      });
      stream.write({
        create_request: {
          key: this.key,
          range_end: prefixEnd(this.key),
          ...(this.received === undefined ? {} : { start_revision: this.received + 1 }),
          progress_notify: true,
        },
      });
    });
  }

  private onEvents(res: IWatchResponse): void {
    if (res.events.length === 0 || this.received === undefined) return;
    const events: WatchEvent[] = [];
    let revision = this.received;
    for (const ev of res.events) {
      const rev = Number(ev.kv.mod_revision);
      // Never hand out a revision twice, whatever the server or client library replays.
      if (rev <= this.received) continue;
      revision = Math.max(revision, rev);
      if (ev.type === 'Put') {
        events.push({ type: 'put', kv: this.store.toKeyValue(ev.kv) });
      } else {
        const key = ev.kv.key.toString();
        events.push({ type: 'delete', key: this.store.keyspace.relative(key) ?? key, modRevision: rev });
      }
    }
    if (events.length === 0) return;
    this.received = revision;
    this.delivery.push({ kind: 'events', revision, events });
  }

  /** The start revision was compacted: deliver a fresh snapshot and continue after it. */
  private async resync(compactRevision: number): Promise<void> {
    let pause = 25;
    while (!this.closed) {
      try {
        const snapshot = await this.store.list(this.prefix);
        if (this.closed) return;
        this.received = snapshot.revision;
        if (this.start === 0) {
          this.start = snapshot.revision;
          this.resolveReady(snapshot.revision);
        }
        this.delivery.push({
          kind: 'resync',
          revision: snapshot.revision,
          compactRevision,
          items: snapshot.items,
        });
        return;
      } catch (error) {
        this.status('disconnected', error);
        await this.sleep(pause);
        pause = Math.min(pause * 2, this.store.maxWatchBackoffMs);
      }
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.endStream?.();
    this.wake?.();
    this.resolveReady(this.start);
    await this.delivery.close();
    await this.ended;
  }
}
