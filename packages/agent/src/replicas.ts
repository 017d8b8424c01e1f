// Replica discovery and choice for one agent (shared by every relayed stream of the agent): learns
// the replicas from seeds and from the replicas themselves, measures each one's round-trip time with
// the same discovery call (which doubles as its health check), ranks them (rank.ts), keeps a warm
// channel to the best and the next-best (the standby), and tells its listeners when a nearer replica
// is back, after a random delay so a recovered replica is not hit by every agent at once.
import type * as grpc from '@grpc/grpc-js';
import { type DiscoveredReplica, ReplicaDiscoveryClient } from '@meridian/registry';
import type { Logger } from 'pino';
import { type AgentPlace, type Candidate, localityTier, rankCandidates } from './rank.js';

/** What a {@link ReplicaSelector} needs. */
export interface ReplicaSelectorOptions {
  /** Replica addresses to start from (any reachable one lists its cluster; list one per cluster). */
  readonly seeds: readonly string[];
  readonly place: AgentPlace;
  /** Dial the replicas' TLS port (mTLS with the workload certificate) rather than plaintext xDS. */
  readonly tls: boolean;
  /** Channel credentials for a new channel (read at each dial, so rotated certificates are used). */
  readonly credentials: () => grpc.ChannelCredentials;
  readonly channelOptions?: grpc.ChannelOptions;
  /** Re-discovery and re-rank period (default 5 s). */
  readonly refreshMs?: number;
  /** Upper bound of the random delay before moving back to a nearer replica (default 3 s). */
  readonly moveBackJitterMs?: number;
  /** How long a replica that failed a stream is skipped (default 3 s, or until it answers again). */
  readonly failedHoldMs?: number;
  /** How long a replica that shed a stream is not moved back to (default 60 s). */
  readonly shedHoldMs?: number;
  /** Discovery call deadline (default 2 s). */
  readonly deadlineMs?: number;
  readonly log: Logger;
  readonly random?: () => number;
}

/** Chooses and tracks the replica an agent's streams use. */
export class ReplicaSelector {
  readonly #o: ReplicaSelectorOptions;
  readonly #known = new Map<string, DiscoveredReplica>();
  readonly #rtt = new Map<string, number | undefined>();
  readonly #channels = new Map<string, ReplicaDiscoveryClient>();
  /** Streams open on each channel: a channel in use is never closed by a refresh. */
  readonly #inUse = new Map<string, number>();
  readonly #failedAt = new Map<string, number>();
  /** Replicas that shed a stream of this agent, and when: not moved back to for a while. */
  readonly #shedAt = new Map<string, number>();
  readonly #listeners = new Set<(best: Candidate) => void>();
  #ranked: Candidate[] = [];
  #timer: NodeJS.Timeout | undefined;
  #moveBack: NodeJS.Timeout | undefined;
  #current: string | undefined;
  #stopped = false;
  #refreshing: Promise<void> | undefined;

  constructor(options: ReplicaSelectorOptions) {
    this.#o = options;
  }

  /** Discovers once (resolves even when nothing answered) and starts the periodic refresh. */
  async start(): Promise<void> {
    await this.refresh();
    // Replicas learned from the seeds are measured in a second round, so the first choice is ranked.
    if (this.#ranked.length < this.#known.size) await this.refresh();
    const loop = () => {
      if (this.#stopped) return;
      this.#timer = setTimeout(() => {
        void this.refresh().finally(loop);
      }, this.#o.refreshMs ?? 5000);
      this.#timer.unref();
    };
    loop();
  }

  #addressOf(r: DiscoveredReplica): string {
    return this.#o.tls ? r.caAddress : r.xdsAddress;
  }

  /** The channel to `address` (created on first use, kept while the replica is known). */
  channel(address: string): ReplicaDiscoveryClient {
    let c = this.#channels.get(address);
    if (!c) {
      c = new ReplicaDiscoveryClient(address, this.#o.credentials(), {
        'grpc.max_receive_message_length': -1,
        // A dead peer on a silent network is noticed within seconds, not at the TCP timeout.
        'grpc.keepalive_time_ms': 10_000,
        'grpc.keepalive_timeout_ms': 5_000,
        'grpc.keepalive_permit_without_calls': 1,
        'grpc.initial_reconnect_backoff_ms': 200,
        'grpc.max_reconnect_backoff_ms': 2_000,
        ...(this.#o.channelOptions ?? {}),
      });
      this.#channels.set(address, c);
    }
    return c;
  }

  /** Asks the seeds and every known replica for the list, measuring each one's round trip. */
  refresh(): Promise<void> {
    this.#refreshing ??= this.#refresh().finally(() => {
      this.#refreshing = undefined;
    });
    return this.#refreshing;
  }

  async #refresh(): Promise<void> {
    const targets = new Set<string>(this.#o.seeds);
    for (const r of this.#known.values()) {
      const a = this.#addressOf(r);
      if (a) targets.add(a);
    }
    const answered = new Set<string>();
    const seen = new Map<string, DiscoveredReplica>();
    await Promise.all(
      [...targets].map(async (address) => {
        const started = performance.now();
        try {
          const res = await this.channel(address).list(this.#o.deadlineMs ?? 2000);
          const rtt = performance.now() - started;
          answered.add(address);
          for (const r of res.replicas) {
            seen.set(r.id, r);
            if (r.id === res.responder) this.#rtt.set(this.#addressOf(r), rtt);
          }
        } catch {
          this.#rtt.set(address, undefined);
        }
      }),
    );
    if (seen.size > 0) {
      // Replicas no reachable replica lists any more (their lease expired) are forgotten.
      this.#known.clear();
      for (const [id, r] of seen) this.#known.set(id, r);
    }
    for (const a of answered) {
      const failed = this.#failedAt.get(a);
      if (failed !== undefined && performance.now() - failed > (this.#o.failedHoldMs ?? 3000))
        this.#failedAt.delete(a);
    }
    const live = new Set([...this.#known.values()].map((r) => this.#addressOf(r)));
    for (const [address, c] of this.#channels) {
      if (!live.has(address) && !this.#o.seeds.includes(address) && !this.#inUse.get(address)) {
        c.close();
        this.#channels.delete(address);
      }
    }
    this.#ranked = rankCandidates(
      this.#o.place,
      [...this.#known.values()].map((replica) => {
        const address = this.#addressOf(replica);
        return { replica, address, rttMs: answered.has(address) ? this.#rtt.get(address) : undefined };
      }),
    );
    this.#keepWarm();
    this.#maybeMoveBack();
  }

  /** Keeps the best two replicas' channels connected (the standby is one handshake ahead). */
  #keepWarm(): void {
    for (const c of this.usable().slice(0, 2))
      this.channel(c.address).client.getChannel().getConnectivityState(true);
  }

  /** Ranked candidates that did not fail recently. */
  usable(): Candidate[] {
    const now = performance.now();
    return this.#ranked.filter((c) => {
      const failed = this.#failedAt.get(c.address);
      return failed === undefined || now - failed > (this.#o.failedHoldMs ?? 3000);
    });
  }

  /** Every ranked candidate (for status output). */
  get ranked(): readonly Candidate[] {
    return this.#ranked;
  }

  /** The best usable replica other than `exclude`. */
  pick(exclude?: string): Candidate | undefined {
    return this.usable().find((c) => c.address !== exclude);
  }

  /** A stream opened on `address`'s channel (keeps the channel open until released). */
  retain(address: string): void {
    this.#inUse.set(address, (this.#inUse.get(address) ?? 0) + 1);
  }

  /** A stream on `address`'s channel ended. */
  release(address: string): void {
    const n = (this.#inUse.get(address) ?? 0) - 1;
    if (n > 0) this.#inUse.set(address, n);
    else this.#inUse.delete(address);
  }

  /** Records that a stream to `address` failed: it is skipped for a while. */
  markFailed(address: string): void {
    this.#failedAt.set(address, performance.now());
  }

  /** Records that `address` shed a stream to rebalance: no move back to it for `shedHoldMs`. */
  noteShed(address: string): void {
    this.#shedAt.set(address, performance.now());
  }

  #shedRecently(address: string): boolean {
    const shed = this.#shedAt.get(address);
    return shed !== undefined && performance.now() - shed < (this.#o.shedHoldMs ?? 60_000);
  }

  /** Records which replica the agent's streams are on. */
  setCurrent(address: string | undefined): void {
    this.#current = address;
  }

  get current(): string | undefined {
    return this.#current;
  }

  /** The rank (0 = best) of `address` among the usable replicas, or -1. */
  rankOf(address: string | undefined): number {
    return address === undefined ? -1 : this.usable().findIndex((c) => c.address === address);
  }

  /** Calls `listener` when a strictly nearer replica than the current one is usable again. */
  onBetter(listener: (best: Candidate) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #maybeMoveBack(): void {
    if (this.#moveBack || this.#current === undefined) return;
    const best = this.usable().find((c) => !this.#shedRecently(c.address));
    const current = this.#ranked.find((c) => c.address === this.#current);
    if (!best || best.address === this.#current) return;
    // Only a better locality tier is worth a move (RTT noise within a tier is not).
    if (current && localityTier(this.#o.place, best.replica) >= localityTier(this.#o.place, current.replica))
      return;
    const delay = (this.#o.random ?? Math.random)() * (this.#o.moveBackJitterMs ?? 3000);
    this.#moveBack = setTimeout(() => {
      this.#moveBack = undefined;
      const target = this.usable().find((c) => !this.#shedRecently(c.address));
      if (target && target.address === best.address && target.address !== this.#current) {
        this.#o.log.info(
          { from: this.#current, to: target.address, replica: target.replica.id },
          'moving to a nearer replica',
        );
        for (const l of this.#listeners) l(target);
      }
    }, delay);
    this.#moveBack.unref();
  }

  /** Stops refreshing and closes every channel. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    clearTimeout(this.#moveBack);
    for (const c of this.#channels.values()) c.close();
    this.#channels.clear();
  }
}
