/**
 * Writes and reads of the config objects in etcd by the rules of config-commit.ts, for
 * ConfigService (config-service.ts), which decides what to write:
 * - a write is one transaction when it fits etcd's limits (rule 2), else it is staged in chunks and
 *   made visible by one small transaction on `config-commit` (rule 3), then folded into `config/` in
 *   the background (rule 4); the limits are learnt from etcd's refusals;
 * - staging that no commit names is collected once it is older than {@link STAGING_GRACE_MS};
 * - a read sees one commit state: `config/` overlaid by the staging of an apply not folded yet.
 */
import type { ConfigObject } from '@meridian/api';
import {
  ConflictError,
  type Expectation,
  type KeyValue,
  type Store,
  StoreUnavailableError,
  TxnTooLargeError,
  type WriteOp,
} from '@meridian/store';
import type { Logger } from 'pino';
import {
  applyIdTime,
  COMMIT_KEY,
  CONFIG_PREFIX,
  type CommitState,
  commitValue,
  type Entry,
  entryKeyValue,
  foldedEntry,
  foldedValue,
  newApplyId,
  parseCommit,
  STAGING_GRACE_MS,
  STAGING_PREFIX,
  stagedEntry,
  stagingKey,
  visibleEntry,
} from './config-commit.js';

/** Largest transaction (bytes of keys and values) to try first: under etcd's 1.5 MiB default. */
const MAX_TXN_BYTES = 1024 * 1024;

const encoder = new TextEncoder();

/** Staged applies a commit does not name, from the replica's watched state. */
export interface StagedApplies {
  /** Staged applies not named by `config-commit` (candidates for garbage collection). */
  unnamedStagedApplies?(): string[];
}

/** The transactions of config writes and the consistent reads, over one store. */
export class ConfigTransactions {
  /** Operations per transaction etcd accepts, as learnt (halved on each refusal). */
  #maxOps: number;
  #maxBytes = MAX_TXN_BYTES;
  readonly #log: Logger | undefined;
  #foldRetry: NodeJS.Timeout | undefined;
  /** The background fold of this service's last large apply, if any. */
  #folding: Promise<void> | undefined;

  constructor(
    private readonly store: Store,
    private readonly lastKnown: StagedApplies | undefined,
    options: { readonly log?: Logger; readonly maxTxnOps?: number } = {},
  ) {
    this.#maxOps = options.maxTxnOps ?? 128;
    this.#log = options.log;
  }

  /**
   * Writes the changed objects of a plan made at `commit`; resolves with the revision, or undefined
   * when another write committed first (nothing of this one is visible then).
   */
  async write(
    commit: CommitState,
    changed: readonly { key: string; text: string }[],
  ): Promise<number | undefined> {
    const expect: Expectation[] = [{ key: COMMIT_KEY, modRevision: commit.revision }];
    const bytes = changed.reduce((n, c) => n + c.key.length + c.text.length, 0);
    if (changed.length + 1 <= this.#maxOps && bytes <= this.#maxBytes) {
      // Rule 2: small enough for one transaction.
      try {
        const ops: WriteOp[] = [
          { op: 'put', key: COMMIT_KEY, value: commitValue(null, changed.length) },
          ...changed.map((c): WriteOp => ({ op: 'put', key: c.key, value: encoder.encode(c.text) })),
        ];
        return (await this.store.txn({ expect, ops })).revision;
      } catch (error) {
        if (error instanceof ConflictError) return undefined;
        if (!(error instanceof TxnTooLargeError)) throw error;
        this.#learn(error, changed.length + 1, bytes);
      }
    }
    // Rule 3: stage in chunks (invisible), then flip visible with one compare and one put.
    const applyId = newApplyId();
    const staged = changed.map((c) => ({ key: stagingKey(applyId, c.key), text: c.text }));
    let revision: number;
    try {
      await this.#inChunks(staged, (chunk) => ({
        ops: chunk.map((c): WriteOp => ({ op: 'put', key: c.key, value: encoder.encode(c.text) })),
      }));
      revision = (
        await this.store.txn({
          expect,
          ops: [{ op: 'put', key: COMMIT_KEY, value: commitValue(applyId, changed.length) }],
        })
      ).revision;
    } catch (error) {
      // Not committed (or outcome unknown: then a later writer folds it if it was).
      if (!(error instanceof StoreUnavailableError))
        void this.store.deletePrefix(`${STAGING_PREFIX}${applyId}/`).catch(() => undefined);
      if (error instanceof ConflictError) return undefined;
      throw error;
    }
    // Rule 4: the apply is committed and visible: answer now and fold in the background (the next
    // write folds it first if this has not finished; a failure is retried).
    this.#folding = this.#fold({ applyId, revision }).catch((error: unknown) => {
      this.#log?.warn({ err: error, applyId }, 'fold of a committed apply failed; retried later');
      this.#scheduleFold();
    });
    return revision;
  }

  /**
   * Reads `config-commit` and folds the apply it names, if that is not done yet (rule 4), so that
   * `config/` holds the whole visible config as of the returned commit state.
   */
  async settle(): Promise<CommitState> {
    const commit = parseCommit(await this.store.get(COMMIT_KEY));
    if (commit.applyId !== null) await this.#fold(commit);
    return commit;
  }

  /** Copies the staged objects of a committed apply into `config/`, then deletes its staging. */
  async #fold(commit: CommitState): Promise<void> {
    const applyId = commit.applyId!;
    const prefix = `${STAGING_PREFIX}${applyId}/`;
    const staged = (await this.store.list(prefix)).items;
    if (staged.length === 0) return;
    const entries = staged.map((kv) => {
      const entry = stagedEntry(kv);
      return { key: `${CONFIG_PREFIX}${kv.key.slice(prefix.length)}`, text: entry.text };
    });
    const current = await this.readFolded(entries.map((e) => e.key));
    await this.#inChunks(
      entries,
      (chunk) => {
        const todo = chunk.filter((e) => (current.get(e.key)?.version ?? 0) < commit.revision);
        return {
          expect: todo.map((e) => ({ key: e.key, modRevision: current.get(e.key)?.modRevision ?? 0 })),
          ops: todo.map(
            (e): WriteOp => ({ op: 'put', key: e.key, value: foldedValue(e.text, commit.revision) }),
          ),
        };
      },
      async (chunk) => {
        // Someone else folded (part of) it meanwhile: look again at these keys.
        for (const e of chunk) {
          const kv = await this.store.get(e.key);
          if (kv) current.set(e.key, foldedEntry(kv));
          else current.delete(e.key);
        }
      },
    );
    await this.store.deletePrefix(prefix);
  }

  /** Retries folding the named apply in the background until it is done. */
  #scheduleFold(delayMs = 1000): void {
    if (this.#foldRetry) return;
    this.#foldRetry = setTimeout(() => {
      this.#foldRetry = undefined;
      this.settle().catch(() => this.#scheduleFold(Math.min(delayMs * 2, 30_000)));
    }, delayMs);
    this.#foldRetry.unref();
  }

  /** Removes staging that no commit names and that is older than {@link STAGING_GRACE_MS}. */
  collectStaging(): void {
    const now = Date.now();
    for (const id of this.lastKnown?.unnamedStagedApplies?.() ?? []) {
      if (!(now - applyIdTime(id) > STAGING_GRACE_MS)) continue;
      this.store
        .deletePrefix(`${STAGING_PREFIX}${id}/`)
        .then(() => this.#log?.info({ applyId: id }, 'abandoned staged apply removed'))
        .catch(() => undefined);
    }
  }

  /** Resolves when the background fold of the last large apply has finished (or failed). */
  async folded(): Promise<void> {
    await this.#folding;
  }

  /** Stops background retries. */
  close(): void {
    clearTimeout(this.#foldRetry);
  }

  /** Current `config/` entries of `keys` (gets for a few, one list for many). */
  async readFolded(keys: readonly string[]): Promise<Map<string, Entry>> {
    const out = new Map<string, Entry>();
    const add = (kv: KeyValue | undefined) => {
      if (!kv) return;
      try {
        out.set(kv.key, foldedEntry(kv));
      } catch {
        // malformed: overwritten like an absent key
      }
    };
    if (keys.length <= 32) {
      for (const kv of await Promise.all(keys.map((k) => this.store.get(k)))) add(kv);
      return out;
    }
    const wanted = new Set(keys);
    for (const kv of (await this.store.list(CONFIG_PREFIX)).items) if (wanted.has(kv.key)) add(kv);
    return out;
  }

  /** Lowers the transaction bounds after etcd refused one of `ops` operations and `bytes` bytes. */
  #learn(error: TxnTooLargeError, ops: number, bytes: number): void {
    if (error.limit === 'operations') {
      if (ops <= 1) throw error;
      this.#maxOps = Math.max(1, Math.min(this.#maxOps, Math.floor(ops / 2)));
    } else {
      if (ops <= 1) throw error;
      this.#maxBytes = Math.max(1, Math.min(this.#maxBytes, Math.floor(bytes / 2)));
    }
    this.#log?.info(
      { maxTxnOps: this.#maxOps, maxTxnBytes: this.#maxBytes },
      'etcd refused a transaction for its size; using smaller ones',
    );
  }

  /**
   * Runs `build(chunk)` as one transaction per chunk, chunks as large as etcd accepts (learnt from
   * its refusals). On a conflict, `onConflict(chunk)` refreshes what `build` reads and the chunk is
   * built again.
   */
  async #inChunks<T extends { key: string; text: string }>(
    items: readonly T[],
    build: (chunk: readonly T[]) => { expect?: Expectation[]; ops: WriteOp[] },
    onConflict?: (chunk: readonly T[]) => Promise<void>,
  ): Promise<void> {
    let i = 0;
    let conflicts = 0;
    while (i < items.length) {
      let n = 0;
      let bytes = 0;
      while (i + n < items.length && n < this.#maxOps) {
        const size = items[i + n]!.key.length + items[i + n]!.text.length;
        if (n > 0 && bytes + size > this.#maxBytes) break;
        bytes += size;
        n++;
      }
      const chunk = items.slice(i, i + n);
      const request = build(chunk);
      try {
        if (request.ops.length > 0) await this.store.txn(request);
        i += n;
      } catch (error) {
        if (error instanceof TxnTooLargeError) this.#learn(error, n, bytes);
        else if (error instanceof ConflictError && onConflict && ++conflicts < 100) await onConflict(chunk);
        else throw error;
      }
    }
  }

  /**
   * The visible objects under `prefix` (`config/...`) as of one `config-commit` state: `config/`
   * overlaid by the staging of the named apply while its fold is unfinished (config-commit.ts).
   * Read again if a write committed in between (so a read never mixes two states).
   */
  async readVisible(
    prefix: string,
    single: boolean,
  ): Promise<{ revision: number; items: KeyValue<ConfigObject>[] }> {
    for (let attempt = 0; ; attempt++) {
      const first = await this.store.get(COMMIT_KEY);
      const commit = parseCommit(first);
      const read = async (p: string) => {
        if (!single) return this.store.list(p);
        const kv = await this.store.get(p);
        return { items: kv ? [kv] : [], revision: 0 };
      };
      const staged = new Map<string, Entry>();
      if (commit.applyId !== null) {
        const stagePrefix = `${STAGING_PREFIX}${commit.applyId}/`;
        for (const kv of (await read(`${stagePrefix}${prefix.slice(CONFIG_PREFIX.length)}`)).items)
          staged.set(`${CONFIG_PREFIX}${kv.key.slice(stagePrefix.length)}`, stagedEntry(kv));
      }
      const res = await read(prefix);
      const folded = new Map(res.items.map((kv) => [kv.key, foldedEntry(kv)]));
      const again = await this.store.get(COMMIT_KEY);
      if ((again?.modRevision ?? 0) !== commit.revision && attempt < 5) continue;
      const keys = [...new Set([...folded.keys(), ...staged.keys()])].sort();
      const items: KeyValue<ConfigObject>[] = [];
      for (const key of keys) {
        const e = visibleEntry(folded.get(key), staged.get(key), commit);
        if (e) items.push(entryKeyValue(key, e));
      }
      return { revision: Math.max(res.revision, commit.revision), items };
    }
  }
}
