/**
 * Leases of the etcd store: kept alive over a keepalive stream, reported lost as soon as etcd may
 * already have expired them.
 */
import type { IDuplexStream, ILeaseKeepAliveRequest, ILeaseKeepAliveResponse } from 'etcd3';
import { LeaseLostError } from './errors.js';
import { type EtcdInternals, quietEnd } from './etcd-shared.js';
import { LeaseBase } from './internal.js';
import type { LeaseId } from './types.js';

/**
 * A lease kept alive over a keepalive stream, every TTL/3. It is reported lost when etcd answers
 * TTL 0 (expired or revoked) or when no keepalive sent less than a TTL ago has been acknowledged:
 * from then on etcd may already have expired it, so leadership and keys tied to it must be dropped.
 */
export class EtcdLease extends LeaseBase {
  /** Before this instant the lease surely still exists on the server. */
  private validUntil: number;
  private stopped = false;
  private stream: IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse> | undefined;
  private readonly ticker: NodeJS.Timeout;
  private readonly watchdog: NodeJS.Timeout;
  private pending: number[] = [];
  private opening = false;

  constructor(
    private readonly store: EtcdInternals,
    id: LeaseId,
    ttlSeconds: number,
    grantedSentAt: number,
    private readonly forget: () => void,
  ) {
    super(id, ttlSeconds);
    this.validUntil = grantedSentAt + ttlSeconds * 1000;
    this.ticker = setInterval(() => this.tick(), Math.max((ttlSeconds * 1000) / 3, 100)).unref();
    this.watchdog = setInterval(() => {
      if (Date.now() >= this.validUntil) {
        this.markLost(new LeaseLostError(id, `no keepalive acknowledged within its TTL of ${ttlSeconds} s`));
      }
    }, 50).unref();
    this.tick();
  }

  private tick(): void {
    if (this.stopped) return;
    if (!this.stream) {
      if (!this.opening) this.openStream();
      return;
    }
    const oldest = this.pending[0];
    if (oldest !== undefined && Date.now() - oldest > (this.ttlSeconds * 1000) / 3) {
      // no answer for a third of the TTL: the member may be partitioned, try another one
      const stale = this.stream;
      this.stream = undefined;
      quietEnd(stale, false);
      this.openStream();
      return;
    }
    this.pending.push(Date.now());
    this.stream.write({ ID: this.id });
  }

  private openStream(): void {
    this.opening = true;
    this.store.openKeepAliveStream().then(
      (stream) => {
        this.opening = false;
        if (this.stopped) {
          quietEnd(stream, true);
          return;
        }
        this.stream = stream;
        this.pending = [];
        const drop = () => {
          if (this.stream === stream) this.stream = undefined;
          quietEnd(stream, false);
        };
        stream.on('error', drop);
        stream.on('end', drop);
        stream.on('data', (res: ILeaseKeepAliveResponse) => {
          if (this.stream !== stream) return;
          const sentAt = this.pending.shift() ?? Date.now();
          if (res.TTL === '0' || Number(res.TTL) <= 0) {
            this.markLost(new LeaseLostError(this.id, 'expired or revoked'));
            return;
          }
          this.validUntil = Math.max(this.validUntil, sentAt + Number(res.TTL) * 1000);
        });
        this.tick();
      },
      () => {
        this.opening = false; // retried on the next tick
      },
    );
  }

  protected stopKeepAlive(): void {
    this.stopped = true;
    this.forget();
    clearInterval(this.ticker);
    clearInterval(this.watchdog);
    const stream = this.stream;
    this.stream = undefined;
    if (stream) quietEnd(stream, true);
  }

  async revoke(): Promise<void> {
    if (this.markRevoked() && !this.store.isClosed()) await this.store.revokeLease(this.id);
  }
}
