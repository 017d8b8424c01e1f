/**
 * A replica's entry in its cluster (`replicas/<id>`: {@link ReplicaInfo}) and its candidacy in the
 * singleton election, both under one lease ({@link ReplicaElection}). Not the store's `Membership`,
 * which is a generic group of members under `members/<group>/`.
 *
 * Each replica holds one lease (TTL
 * `leaseTtlSeconds`, default 1 s) under which it registers itself at `replicas/<id>` and campaigns in
 * the `singleton` election (store's Election, etcd's algorithm). The leader runs the singleton
 * duties; every duty write is fenced by a transaction on the leader's candidate key, so a replica
 * that lost leadership (lease lost, key gone) cannot write, and two replicas never do the same
 * singleton work. When the lease is lost the replica stops leading at once, then registers and
 * campaigns again with a new lease. A killed leader's lease expires after its TTL and the next
 * candidate (watching its predecessor's key) takes over.
 */

import { WORKLOADS_PREFIX } from '@meridian/registry';
import {
  type Candidate,
  Collection,
  ConflictError,
  Election,
  type Leadership,
  type Lease,
  type Observer,
  type Store,
  type WriteOp,
} from '@meridian/store';
import { metrics } from '@opentelemetry/api';
import type { Logger } from 'pino';

/** What a replica registers about itself. */
export interface ReplicaInfo {
  readonly id: string;
  readonly meshId: string;
  readonly clusterId: string;
  /** Plaintext xDS (`''` when not served). */
  readonly xdsAddress: string;
  readonly adminAddress: string;
  /** xDS, CreateCertificate and registration over TLS, when the CA is served. */
  readonly caAddress?: string;
  /**
   * The host (IP or DNS name) proxies and agents reach this replica at (`--advertise-address`):
   * it stands for the unspecified host (`0.0.0.0`, `::`) of `caAddress` and `xdsAddress`, which are
   * the bind addresses, wherever another party is told where this replica is
   * ({@link advertisedAddress}). The TLS port's serving certificate names it. Absent in records of
   * older replicas, and when none could be found: a wildcard-bound address then reaches no one.
   */
  readonly advertiseAddress?: string;
  readonly locality: string;
  readonly version: string;
  readonly startedAt: string;
}

/** Whether `host` is an unspecified (wildcard) bind host, which no one can connect to. */
export function isUnspecifiedHost(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '[::]' || host === '' || host === '*';
}

/**
 * Where another party reaches the replica's `bound` address (`host:port`, as in {@link ReplicaInfo}):
 * when it is bound to an unspecified host (`0.0.0.0`, `[::]`) and the replica advertises a host, the
 * same port at the advertised host (IPv6 in brackets); else `bound` unchanged (a specific bind host is
 * where the port is, and the serving certificate names it too). `''` stays `''` (not served).
 */
export function advertisedAddress(bound: string | undefined, advertise: string | undefined): string {
  if (!bound) return '';
  const m = /^(?:\[([^\]]*)\]|([^:]*)):(\d+)$/.exec(bound);
  if (!advertise || !m || !isUnspecifiedHost(m[1] ?? m[2] ?? '')) return bound;
  return `${advertise.includes(':') ? `[${advertise}]` : advertise}:${m[3]}`;
}

/** Keyspace-relative prefix of replica membership entries. */
export const REPLICAS_PREFIX = 'replicas/';
/** The leader's status record. */
export const LEADER_STATUS_KEY = 'status/leader';
/** The election singleton duties run under. */
export const SINGLETON_ELECTION = 'singleton';

/** One term of leadership as seen by this replica. */
export interface Term {
  readonly since: string;
  readonly until: string | undefined;
  /** The candidate key's create revision: the term's fencing token. */
  readonly token: number;
}

/** What `/debug/leader` shows. */
export interface LeaderStatus {
  readonly replicaId: string;
  readonly isLeader: boolean;
  readonly leader: string | undefined;
  readonly terms: readonly Term[];
  readonly dutyRuns: number;
  readonly gcDeleted: number;
  readonly statusWrites: number;
}

const encoder = new TextEncoder();
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * One replica's registration and election: registers the replica under its lease, campaigns in the
 * singleton election, and runs the singleton duties while leading.
 */
export class ReplicaElection {
  readonly #election: Election;
  readonly #abort = new AbortController();
  #lease: Lease | undefined;
  #leadership: Leadership | undefined;
  #observer: Observer | undefined;
  #leader: Candidate | undefined;
  readonly #terms: { since: string; until: string | undefined; token: number }[] = [];
  #dutyRuns = 0;
  #gcDeleted = 0;
  #statusWrites = 0;
  #lastStatus = '';
  #loop: Promise<void> | undefined;
  #stopped = false;
  readonly #meter = metrics.getMeter('@meridian/server');
  readonly #leadershipListeners = new Set<(leadership: Leadership) => void>();
  readonly #leaderChanges = this.#meter.createCounter('meridian_leader_elected', {
    description: 'Times this replica became the leader of the singleton election.',
  });

  constructor(
    private readonly store: Store,
    readonly info: ReplicaInfo,
    private readonly log: Logger,
    private readonly opts: {
      readonly leaseTtlSeconds: number;
      readonly dutyIntervalMs: number;
      /** The config revision the replica serves (written in the leader's status). */
      readonly servedRevision: () => number;
    },
  ) {
    this.#election = new Election(store, SINGLETON_ELECTION);
    this.#meter
      .createObservableGauge('meridian_is_leader', {
        description: '1 while this replica leads the singleton election.',
      })
      .addCallback((r) => r.observe(this.isLeader ? 1 : 0));
  }

  /**
   * Every replica of the cluster with a live membership entry, sorted by id: what `/debug/replicas`
   * answers (each replica's admin address, so `meridian proxy-status` can ask every one of them).
   */
  static async list(store: Store): Promise<ReplicaInfo[]> {
    const { items } = await new Collection<ReplicaInfo>(store, REPLICAS_PREFIX).list();
    return items.map((kv) => kv.value).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  get isLeader(): boolean {
    return this.#leadership?.isLeader ?? false;
  }

  status(): LeaderStatus {
    return {
      replicaId: this.info.id,
      isLeader: this.isLeader,
      leader: this.#leader?.value,
      terms: this.#terms.map((t) => ({ ...t })),
      dutyRuns: this.#dutyRuns,
      gcDeleted: this.#gcDeleted,
      statusWrites: this.#statusWrites,
    };
  }

  /**
   * Calls `listener` at the start of every term this replica leads, with the term's leadership (its
   * candidate's create revision is the term's fencing token; `lost` settles when the term ends).
   * Federation's exporter runs for the term (one exporter per cluster). Returns an unsubscribe function.
   */
  onLeadership(listener: (leadership: Leadership) => void): () => void {
    this.#leadershipListeners.add(listener);
    return () => this.#leadershipListeners.delete(listener);
  }

  /** Starts the membership loop (registration, campaign, duties); returns at once. */
  start(): void {
    this.#loop = this.#run();
    void this.#election
      .observe((leader) => {
        this.#leader = leader;
      })
      .then(
        (o) => {
          if (this.#stopped) void o.close();
          else this.#observer = o;
        },
        (error) => this.log.warn({ err: error }, 'leader observer failed to start'),
      );
  }

  async #run(): Promise<void> {
    let backoff = 100;
    while (!this.#stopped) {
      try {
        const lease = await this.store.grantLease(this.opts.leaseTtlSeconds);
        this.#lease = lease;
        if (this.#stopped) break;
        await this.store.put(`${REPLICAS_PREFIX}${this.info.id}`, encoder.encode(JSON.stringify(this.info)), {
          lease: lease.id,
        });
        this.log.info({ lease: lease.id, ttl: lease.ttlSeconds }, 'replica registered; campaigning');
        const leadership = await this.#election.campaign(lease, this.info.id, { signal: this.#abort.signal });
        backoff = 100;
        await this.#lead(leadership);
        if (lease.state === 'alive' && !this.#stopped) await lease.revoke().catch(() => lease.release());
      } catch (error) {
        if (this.#stopped) break;
        this.log.warn({ err: error }, 'membership: lease or campaign failed; retrying');
        this.#lease?.release();
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 1000);
      }
    }
  }

  async #lead(leadership: Leadership): Promise<void> {
    this.#leadership = leadership;
    const term = {
      since: new Date().toISOString(),
      until: undefined as string | undefined,
      token: leadership.candidate.createRevision,
    };
    this.#terms.push(term);
    this.#leaderChanges.add(1);
    this.#lastStatus = '';
    this.log.info({ token: term.token }, 'elected leader: running singleton duties');
    for (const listener of [...this.#leadershipListeners]) {
      try {
        listener(leadership);
      } catch (error) {
        this.log.error({ err: error }, 'leadership listener failed');
      }
    }
    const lost = leadership.lost.then((e) => e);
    while (leadership.isLeader && !this.#stopped) {
      await this.#duties(leadership);
      const outcome = await Promise.race([lost, sleep(this.opts.dutyIntervalMs).then(() => undefined)]);
      if (outcome) break;
    }
    term.until = new Date().toISOString();
    if (!leadership.isLeader && !this.#stopped) this.log.warn('leadership lost: singleton duties stopped');
  }

  /** A transaction fenced on the leader's candidate key. */
  async #fenced(leadership: Leadership, ops: WriteOp[]): Promise<boolean> {
    if (!leadership.isLeader) return false;
    try {
      await this.store.txn({
        expect: [{ key: leadership.candidate.key, modRevision: leadership.candidate.modRevision }],
        ops,
      });
      return true;
    } catch (error) {
      if (error instanceof ConflictError) return false;
      throw error;
    }
  }

  /** One round of singleton duties: leader status, and GC of registry entries without a lease. */
  async #duties(leadership: Leadership): Promise<void> {
    try {
      this.#dutyRuns++;
      const status = JSON.stringify({
        leader: this.info.id,
        token: leadership.candidate.createRevision,
        servedRevision: this.opts.servedRevision(),
      });
      if (status !== this.#lastStatus) {
        const value = JSON.stringify({ ...JSON.parse(status), at: new Date().toISOString() });
        if (
          await this.#fenced(leadership, [
            { op: 'put', key: LEADER_STATUS_KEY, value: encoder.encode(value) },
          ])
        ) {
          this.#lastStatus = status;
          this.#statusWrites++;
        }
      }
      // Registrations are always leased; one without a lease was left by a bug or a manual write.
      const stale = (await this.store.list(WORKLOADS_PREFIX)).items.filter((kv) => kv.lease === undefined);
      if (stale.length > 0) {
        const ok = await this.#fenced(
          leadership,
          stale.map((kv) => ({ op: 'delete', key: kv.key })),
        );
        if (ok) {
          this.#gcDeleted += stale.length;
          this.log.info({ keys: stale.map((kv) => kv.key) }, 'GC: removed registry entries without a lease');
        }
      }
    } catch (error) {
      this.log.warn({ err: error }, 'singleton duties failed this round');
    }
  }

  /** Stops campaigning, resigns, and revokes the lease (the membership entry goes with it). */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#abort.abort(new Error('replica shutting down'));
    const leadership = this.#leadership;
    if (leadership?.isLeader) await leadership.resign().catch(() => undefined);
    await this.#observer?.close().catch(() => undefined);
    await this.#lease?.revoke().catch(() => this.#lease?.release());
    await this.#loop?.catch(() => undefined);
  }
}
