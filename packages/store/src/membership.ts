import { type Codec, jsonCodec } from './codec.js';
import { Collection, type CollectionOptions, type Mirror, type MirrorOptions } from './collection.js';
import { ConflictError } from './errors.js';
import type { KeyValue, Lease, Store } from './types.js';

/**
 * The live members of a group, e.g. the replicas of a cluster: each member's entry
 * (`members/<group>/<id>`) is attached to the member's lease, so a member that crashes disappears
 * when its lease expires, and one that loses its lease must join again with a new one.
 */
export class Membership<T> {
  private readonly entries: Collection<T>;

  constructor(
    readonly store: Store,
    /** Group name, one keyspace segment, e.g. `replicas`. */
    readonly group: string,
    codec: Codec<T> = jsonCodec<T>(),
    options?: CollectionOptions,
  ) {
    this.entries = new Collection(store, store.keyspace.prefix('members', group), codec, options);
  }

  /**
   * Registers `id` with `info` under `lease`; joining again with the same lease updates `info`.
   * Throws `ConflictError` when `id` is held by another live lease (two members with one id).
   */
  async join(id: string, info: T, lease: Lease): Promise<void> {
    const name = this.store.keyspace.key(id);
    try {
      await this.entries.put(name, info, { lease: lease.id, expectModRevision: 0 });
    } catch (error) {
      if (!(error instanceof ConflictError)) throw error;
      const current = await this.store.get(this.entries.key(name));
      if (current === undefined) return this.join(id, info, lease);
      if (current.lease !== lease.id) throw error;
      await this.entries.put(name, info, { lease: lease.id, expectModRevision: current.modRevision });
    }
  }

  /** Removes `id` (a no-op when it is not registered). */
  async leave(id: string): Promise<void> {
    await this.entries.delete(id);
  }

  /** The current members, sorted by id; entries that do not decode are reported and skipped. */
  async list(): Promise<KeyValue<T>[]> {
    return (await this.entries.list()).items;
  }

  /** The id of a member entry's key. */
  idOf(kv: KeyValue<T>): string {
    return this.entries.nameOf(kv.key);
  }

  /** Follows the members (last known state while the store is unreachable). */
  mirror(options?: MirrorOptions<T>): Promise<Mirror<T>> {
    return this.entries.mirror(options);
  }
}
