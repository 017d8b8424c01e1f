/**
 * The replica's part in spreading proxies over its cluster:
 * - answers node agents' ReplicaDiscovery with the live members of its cluster (the membership entries
 *   each replica keeps under its lease, mirrored by a watch, so a dead replica drops out within the
 *   lease TTL), their localities, addresses (at each one's advertised host, `--advertise-address`)
 *   and xDS stream counts;
 * - publishes its own stream count (`load/<replica id>`, under a lease of its own) every few seconds;
 * - sheds streams when it holds more than its fair share, ceil(streams / replicas x 1.1): at a bounded
 *   rate (10% of its streams per round, at least one), only streams whose last pushes are all ACKed,
 *   chosen at random, each ended with UNAVAILABLE and the trailer `x-meridian-move-to: <replica id>`
 *   naming the least-loaded replica, so a relaying agent resumes there at once (a joining replica
 *   fills up in seconds instead of waiting for connections to age out).
 */
import type { DiscoveredReplica, ReplicaDiscoverySource } from '@meridian/registry';
import { Collection, type Lease, type Mirror, type Store } from '@meridian/store';
import type { Logger } from 'pino';
import { advertisedAddress, REPLICAS_PREFIX, type ReplicaInfo } from './membership.js';

/** Keyspace-relative prefix of the replicas' published stream counts. */
export const LOAD_PREFIX = 'load/';
/** The trailer of a shed stream naming the replica to move to. */
export const MOVE_TO_TRAILER = 'x-meridian-move-to';

interface LoadEntry {
  readonly connections: number;
  readonly at: string;
}

/** What the directory needs of the replica's xDS server. */
export interface SheddableXds {
  readonly connectionCount: number;
  shed(count: number, reason: string, trailers: Readonly<Record<string, string>>): number;
}

/** Tuning of {@link ReplicaDirectory}. */
export interface ReplicaDirectoryOptions {
  /** Round period: publish the count and shed if above the fair share (default 1 s). */
  readonly roundMs?: number;
  /** Headroom over an equal share before shedding (default 1.1). */
  readonly headroom?: number;
  /** Largest share of its streams a replica sheds per round (default 0.1). */
  readonly shedFraction?: number;
  /** Set false to never shed (default true). */
  readonly rebalance?: boolean;
  readonly log?: Logger;
  /** Told after each change of the membership entries (a replica joined, left or changed address). */
  readonly onMembersChange?: () => void;
}

/** The fair share of one replica: ceil(total / replicas x headroom). Pure. */
export function fairShare(total: number, replicas: number, headroom: number): number {
  return replicas <= 0 ? total : Math.ceil((total / replicas) * headroom);
}

/** A watched view of the cluster's replicas, and this replica's load balancing. */
export class ReplicaDirectory implements ReplicaDiscoverySource {
  #timer: NodeJS.Timeout | undefined;
  #lease: Lease | undefined;
  #published = -1;
  #publishedAt = 0;
  #stopped = false;
  /** Streams shed to each replica whose published count may not show them yet. */
  readonly #inFlight = new Map<string, { n: number; at: number }>();

  private constructor(
    readonly selfId: string,
    private readonly store: Store,
    private readonly members: Mirror<ReplicaInfo>,
    private readonly loads: Mirror<LoadEntry>,
    private readonly xds: SheddableXds,
    private readonly o: ReplicaDirectoryOptions,
  ) {}

  /** Loads the membership and load entries, follows them, and starts the publish/shed rounds. */
  static async open(
    store: Store,
    selfId: string,
    xds: SheddableXds,
    options: ReplicaDirectoryOptions = {},
  ): Promise<ReplicaDirectory> {
    const onChange = options.onMembersChange;
    const members = await new Collection<ReplicaInfo>(store, REPLICAS_PREFIX).mirror(
      onChange ? { onChange: () => onChange() } : {},
    );
    const loads = await new Collection<LoadEntry>(store, LOAD_PREFIX).mirror();
    const d = new ReplicaDirectory(selfId, store, members, loads, xds, options);
    d.#schedule();
    return d;
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      void this.#round().finally(() => this.#schedule());
    }, this.o.roundMs ?? 1000);
    this.#timer.unref();
  }

  #connectionsOf(id: string): number {
    if (id === this.selfId) return this.xds.connectionCount;
    const entry = this.loads.get(id)?.value;
    const published = entry?.connections ?? 0;
    // Streams shed to it after its last report are counted as its own until it reports again.
    const moved = this.#inFlight.get(id);
    if (moved && (!entry || Date.parse(entry.at) < moved.at)) return published + moved.n;
    if (moved) this.#inFlight.delete(id);
    return published;
  }

  replicas(): DiscoveredReplica[] {
    return this.members.list().map(({ value: r }) => ({
      id: r.id,
      meshId: r.meshId,
      clusterId: r.clusterId,
      locality: r.locality,
      // Where agents reach it: the advertised host (--advertise-address), not a 0.0.0.0 bind address.
      xdsAddress: advertisedAddress(r.xdsAddress, r.advertiseAddress),
      caAddress: advertisedAddress(r.caAddress, r.advertiseAddress),
      connections: this.#connectionsOf(r.id),
    }));
  }

  async #round(): Promise<void> {
    const own = this.xds.connectionCount;
    try {
      // Published when it changed, and at least every 10 s (the lease outlives a few missed rounds).
      if (own !== this.#published || Date.now() - this.#publishedAt > 10_000) {
        this.#lease ??= await this.store.grantLease(15);
        await this.store.put(
          `${LOAD_PREFIX}${this.selfId}`,
          new TextEncoder().encode(JSON.stringify({ connections: own, at: new Date().toISOString() })),
          { lease: this.#lease.id },
        );
        this.#published = own;
        this.#publishedAt = Date.now();
      }
    } catch (error) {
      this.o.log?.debug({ err: error }, 'could not publish the stream count');
      this.#lease = undefined;
    }
    if (this.o.rebalance === false) return;
    const members = this.members.list().map((kv) => kv.value);
    if (members.length < 2 || !members.some((m) => m.id === this.selfId)) return;
    const total = members.reduce((sum, m) => sum + this.#connectionsOf(m.id), 0);
    const fair = fairShare(total, members.length, this.o.headroom ?? 1.1);
    const excess = own - fair;
    if (excess <= 0) return;
    const target = members
      .filter((m) => m.id !== this.selfId)
      .sort((a, b) => this.#connectionsOf(a.id) - this.#connectionsOf(b.id) || (a.id < b.id ? -1 : 1))[0]!;
    const count = Math.min(excess, Math.max(1, Math.ceil(own * (this.o.shedFraction ?? 0.1))));
    const shed = this.xds.shed(count, `rebalancing: ${own} streams, fair share ${fair}`, {
      [MOVE_TO_TRAILER]: target.id,
    });
    if (shed > 0) {
      this.o.log?.info({ shed, own, fair, total, to: target.id }, 'shed xDS streams above the fair share');
      const prior = this.#inFlight.get(target.id);
      this.#inFlight.set(target.id, { n: (prior?.n ?? 0) + shed, at: prior?.at ?? Date.now() });
    }
  }

  async close(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await Promise.all([this.members.close(), this.loads.close()]);
    await this.#lease?.revoke().catch(() => this.#lease?.release());
  }
}
