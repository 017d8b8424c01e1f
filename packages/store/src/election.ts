import { stringCodec } from './codec.js';
import { Collection, type Mirror } from './collection.js';
import { ConflictError, LeadershipLostError, LeaseLostError, type StoreError } from './errors.js';
import type { KeyValue, Lease, Store, Watch } from './types.js';

/** A candidate's entry in an election: its value (e.g. a replica id) and when it entered. */
export interface Candidate {
  readonly key: string;
  readonly value: string;
  readonly createRevision: number;
  readonly lease: string | undefined;
}

const toCandidate = (kv: KeyValue<string>): Candidate => ({
  key: kv.key,
  value: kv.value,
  createRevision: kv.createRevision,
  lease: kv.lease,
});

/** The leader among candidates: the oldest entry (lowest create revision). */
function oldest(items: readonly KeyValue<string>[]): KeyValue<string> | undefined {
  let best: KeyValue<string> | undefined;
  for (const kv of items) if (!best || kv.createRevision < best.createRevision) best = kv;
  return best;
}

/**
 * Leader election over any {@link Store}, etcd's algorithm (as in etcd's `concurrency` package):
 * each candidate writes `elections/<name>/<lease id>` under its lease; the candidate whose key has
 * the lowest create revision leads; the others wait for the deletion of the key just before theirs.
 * A leader whose lease is lost (expired, revoked, or no keepalive acknowledged within its TTL) stops
 * leading at once, before etcd can expire it and let the next candidate in: at most one leader.
 */
export class Election {
  private readonly candidates: Collection<string>;

  constructor(
    readonly store: Store,
    /** Election name, one keyspace segment, e.g. `federation-exporter`. */
    readonly name: string,
  ) {
    this.candidates = new Collection(store, store.keyspace.prefix('elections', name), stringCodec);
  }

  /**
   * Enters the election with `value` and resolves once this candidate leads. Rejects with a
   * `LeaseLostError` if the lease is lost while waiting, or with the signal's reason when `signal`
   * aborts (the candidate key is then removed).
   */
  async campaign(lease: Lease, value: string, options: { signal?: AbortSignal } = {}): Promise<Leadership> {
    const name = lease.id.padStart(20, '0');
    const key = this.candidates.key(name);
    try {
      await this.candidates.put(name, value, { lease: lease.id, expectModRevision: 0 });
    } catch (error) {
      if (!(error instanceof ConflictError)) throw error;
      await this.candidates.put(name, value, { lease: lease.id }); // campaigning again with the same lease
    }
    const mine = await this.candidates.get(name);
    if (!mine) throw new LeaseLostError(lease.id, 'candidate key vanished right after it was written');
    const myRevision = mine.createRevision;
    try {
      for (;;) {
        options.signal?.throwIfAborted();
        if (lease.state !== 'alive')
          throw new LeaseLostError(lease.id, 'lease no longer alive while campaigning');
        const { items, revision } = await this.candidates.list();
        if (!items.some((kv) => kv.key === key)) {
          throw new LeaseLostError(lease.id, 'candidate key deleted while campaigning');
        }
        const before = items.filter((kv) => kv.createRevision < myRevision);
        if (before.length === 0) break;
        const predecessor = before.reduce((a, b) => (a.createRevision > b.createRevision ? a : b));
        await this.waitForDeletion(predecessor.key, revision + 1, lease, options.signal);
      }
    } catch (error) {
      await this.candidates.delete(name).catch(() => undefined);
      throw error;
    }
    return Leadership.start(this, this.candidates, name, mine, lease);
  }

  private waitForDeletion(
    key: string,
    fromRevision: number,
    lease: Lease,
    signal?: AbortSignal,
  ): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const finish = (error?: unknown) => {
        if (settled) return;
        settled = true;
        offLost();
        signal?.removeEventListener('abort', onAbort);
        void watch.close();
        if (error) reject(error);
        else resolve();
      };
      const onAbort = () => finish(signal?.reason);
      const offLost = lease.onLost((error) => finish(error));
      signal?.addEventListener('abort', onAbort);
      const watch: Watch = this.store.watchPrefix(
        this.candidates.prefix,
        (batch) => {
          if (batch.kind === 'resync') return finish(); // history gone: re-read the candidates
          if (batch.events.some((e) => e.type === 'delete' && e.key === key)) finish();
        },
        { fromRevision },
      );
    });
  }

  /** The current leader, or undefined when there is no candidate. */
  async leader(): Promise<Candidate | undefined> {
    const best = oldest((await this.candidates.list()).items);
    return best && toCandidate(best);
  }

  /**
   * Follows the leader: calls `onLeader` with the current leader now and on every change of leader.
   * Keeps the last known leader while the store is unreachable.
   */
  async observe(onLeader: (leader: Candidate | undefined) => void): Promise<Observer> {
    let current: Candidate | undefined;
    let started = false;
    const mirror = await this.candidates.mirror({
      onChange: (m) => {
        if (!started) return;
        const next = oldest(m.list());
        if (next?.key !== current?.key || next?.createRevision !== current?.createRevision) {
          current = next && toCandidate(next);
          onLeader(current);
        }
      },
    });
    const first = oldest(mirror.list());
    current = first && toCandidate(first);
    started = true;
    onLeader(current);
    return new Observer(mirror, () => current);
  }
}

/** A running observation of an election's leader. */
export class Observer {
  constructor(
    private readonly mirror: Mirror<string>,
    private readonly read: () => Candidate | undefined,
  ) {}

  /** The leader as last seen. */
  get leader(): Candidate | undefined {
    return this.read();
  }

  close(): Promise<void> {
    return this.mirror.close();
  }
}

/**
 * Leadership held by this candidate. Lost (once, with an event) when the lease is lost or the
 * candidate key is deleted or replaced by someone else; ended by {@link Leadership.resign}.
 */
export class Leadership {
  private leading = true;
  private resolveLost!: (error: StoreError) => void;
  private readonly callbacks = new Set<(error: StoreError) => void>();
  private offLease: () => void = () => {};
  private watch: Watch | undefined;
  /** Resolves (never rejects) when leadership is lost; stays pending after `resign`. */
  readonly lost: Promise<StoreError> = new Promise((resolve) => {
    this.resolveLost = resolve;
  });

  private constructor(
    readonly election: Election,
    private readonly candidates: Collection<string>,
    private readonly name: string,
    /** This candidate's entry. */
    readonly candidate: KeyValue<string>,
    readonly lease: Lease,
  ) {}

  /** Starts holding leadership (called by {@link Election.campaign}). */
  static start(
    election: Election,
    candidates: Collection<string>,
    name: string,
    mine: KeyValue<string>,
    lease: Lease,
  ): Leadership {
    const l = new Leadership(election, candidates, name, mine, lease);
    l.offLease = lease.onLost((error) =>
      l.lose(new LeadershipLostError(election.name, 'lease lost', { cause: error })),
    );
    if (lease.state !== 'alive') l.lose(new LeadershipLostError(election.name, 'lease lost'));
    l.watch = election.store.watchPrefix(
      candidates.key(name),
      (batch) => {
        if (batch.kind === 'resync') {
          if (!batch.items.some((kv) => kv.key === mine.key)) {
            l.lose(new LeadershipLostError(election.name, 'candidate key deleted'));
          }
          return;
        }
        for (const e of batch.events) {
          if (e.type === 'delete') {
            if (e.key === mine.key) l.lose(new LeadershipLostError(election.name, 'candidate key deleted'));
          } else if (e.kv.key === mine.key && e.kv.createRevision !== mine.createRevision) {
            l.lose(new LeadershipLostError(election.name, 'candidate key replaced'));
          }
        }
      },
      { fromRevision: mine.modRevision + 1 },
    );
    return l;
  }

  /** Whether this candidate still leads (as far as it can know locally). */
  get isLeader(): boolean {
    return this.leading;
  }

  /** Registers a callback for the loss of leadership; returns a function that unregisters it. */
  onLost(callback: (error: StoreError) => void): () => void {
    this.callbacks.add(callback);
    return () => this.callbacks.delete(callback);
  }

  private lose(error: StoreError): void {
    if (!this.leading) return;
    this.leading = false;
    this.stop();
    this.resolveLost(error);
    for (const cb of [...this.callbacks]) {
      try {
        cb(error);
      } catch {
        // one listener's failure must not affect the others
      }
    }
  }

  private stop(): void {
    this.offLease();
    void this.watch?.close();
  }

  /** Gives up leadership: deletes the candidate key (the lease stays). Safe to call twice. */
  async resign(): Promise<void> {
    if (!this.leading) return;
    this.leading = false;
    this.stop();
    await this.candidates.delete(this.name);
  }
}
