/**
 * Config through the admin API: apply / get / list / delete of the config kinds, stored in
 * etcd at `config/<Kind>/<namespace>/<name>` as the kind's canonical JSON.
 *
 * - Validation first (`@meridian/api`): an invalid object fails the whole request with its field
 *   errors and nothing is written.
 * - Optimistic concurrency: `metadata.resourceVersion` is the etcd revision that last changed the
 *   object. A write that carries one must match it (else a `CONFLICT` error). Every write is ordered
 *   against every other by `config-commit` (config-commit.ts): a write planned on a state that changed
 *   before it committed is planned again on the new state, never applied on the old one.
 * - An apply is all or nothing, and atomic to every watcher, at any size up to
 *   {@link MAX_APPLY_OBJECTS} objects (past it: `TOO_LARGE`, HTTP 413): one transaction when it fits
 *   etcd's limits, else staged in chunks and committed by one small transaction (config-commit.ts).
 * - A write returns only after etcd has committed it (the revision is in the result).
 */
import {
  ALL_KINDS,
  ANALYZED_KINDS,
  type AnalysisMessage,
  analyzeConfigs,
  type ConfigObject,
  canonicalJSON,
  configKey,
  type KindName,
  parseConfigDocuments,
  ValidationError,
} from '@meridian/api';
import {
  ConflictError,
  type Expectation,
  type KeyValue,
  type Store,
  StoreError,
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
  MAX_APPLY_OBJECTS,
  newApplyId,
  parseCommit,
  STAGING_GRACE_MS,
  STAGING_PREFIX,
  stagedEntry,
  stagingKey,
  visibleEntry,
} from './config-commit.js';
import { AdminError } from './errors.js';

export { CONFIG_PREFIX, MAX_APPLY_OBJECTS };

/** The key of one object. */
export function configStoreKey(kind: string, namespace: string, name: string): string {
  return `${CONFIG_PREFIX}${kind}/${namespace}/${name}`;
}

/** kubectl's resource name of a kind, e.g. `virtualservices.networking.istio.io`. */
export function resourceName(kind: KindName): string {
  const info = ALL_KINDS.find((k) => k.kind === kind);
  const k = kind.toLowerCase();
  return `${k.endsWith('y') ? `${k.slice(0, -1)}ies` : `${k}s`}.${info?.group ?? ''}`;
}

const SHORT_NAMES: Record<string, KindName> = {
  vs: 'VirtualService',
  dr: 'DestinationRule',
  se: 'ServiceEntry',
  we: 'WorkloadEntry',
  pa: 'PeerAuthentication',
  ap: 'AuthorizationPolicy',
  ra: 'RequestAuthentication',
};

/**
 * The kind a user typed: the kind itself in any case, its plural, its kubectl resource name or an
 * Istio short name (`vs`, `dr`, `se`, `we`). Undefined when unknown.
 */
export function resolveKind(text: string): KindName | undefined {
  const t = text.toLowerCase();
  if (SHORT_NAMES[t]) return SHORT_NAMES[t];
  for (const info of ALL_KINDS) {
    const k = info.kind.toLowerCase();
    const full = resourceName(info.kind);
    if (t === k || t === full || t === full.split('.')[0] || t === `${k}.${info.group}`) return info.kind;
  }
  return undefined;
}

/** A kind name or a `BAD_REQUEST` error listing the known kinds. */
export function requireKind(text: string): KindName {
  const kind = resolveKind(text);
  if (!kind) {
    throw new AdminError(
      'BAD_REQUEST',
      `the server doesn't have a resource type "${text}" (known: ${ALL_KINDS.map((k) => k.kind).join(', ')})`,
    );
  }
  return kind;
}

/** What happened to one object of an apply. */
export interface ApplyItem {
  readonly kind: KindName;
  readonly namespace: string;
  readonly name: string;
  readonly resourceVersion: string;
  /** kubectl's words: `created`, `configured`, `unchanged`. */
  readonly action: 'created' | 'configured' | 'unchanged';
}

/** The result of an apply: every object, and the etcd revision of the transaction. */
export interface ApplyResult {
  readonly revision: number;
  readonly items: readonly ApplyItem[];
  /**
   * `analyze` findings about the applied objects against the whole config (never a refusal), e.g.
   * an AuthorizationPolicy a proxyless gRPC server cannot enforce exactly (MER0001).
   */
  readonly warnings?: readonly AnalysisMessage[];
  /** True when the apply was a dry run: validated and planned against the store, nothing written. */
  readonly dryRun?: boolean;
}

/** Reads served while etcd is unreachable (the replica's watched state). */
export interface LastKnownConfig {
  get(key: string): KeyValue<ConfigObject> | undefined;
  list(prefix: string): KeyValue<ConfigObject>[];
  /** Staged applies not named by `config-commit` (candidates for garbage collection). */
  unnamedStagedApplies?(): string[];
}

/** Options of {@link ConfigService}. */
export interface ConfigServiceOptions {
  /** Where background work (folds, staging garbage collection) reports failures. */
  readonly log?: Logger;
  /** Most operations per transaction to try first (default etcd's 128; lowered when etcd refuses). */
  readonly maxTxnOps?: number;
}

/** Largest transaction (bytes of keys and values) to try first: under etcd's 1.5 MiB default. */
const MAX_TXN_BYTES = 1024 * 1024;
/** Plans made again when another write committed first, before giving up with a CONFLICT. */
const MAX_ATTEMPTS = 20;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Tells whether the store is known to be unavailable, and since when. */
export interface StoreAvailability {
  readonly unavailableSince: number | undefined;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function stored(obj: ConfigObject): ConfigObject {
  const { resourceVersion: _rv, ...metadata } = obj.metadata;
  return { ...obj, metadata } as ConfigObject;
}

function withVersion(kv: KeyValue<ConfigObject>): ConfigObject {
  return { ...kv.value, metadata: { ...kv.value.metadata, resourceVersion: String(kv.modRevision) } };
}

/** Apply/get/list/delete of config objects over a store. */
export class ConfigService {
  /** Operations per transaction etcd accepts, as learnt (halved on each refusal). */
  #maxOps: number;
  #maxBytes = MAX_TXN_BYTES;
  readonly #log: Logger | undefined;
  #foldRetry: NodeJS.Timeout | undefined;
  /** The background fold of this service's last large apply, if any. */
  #folding: Promise<void> | undefined;

  constructor(
    private readonly store: Store,
    private readonly availability: StoreAvailability,
    private readonly lastKnown?: LastKnownConfig,
    options: ConfigServiceOptions = {},
  ) {
    this.#maxOps = options.maxTxnOps ?? 128;
    this.#log = options.log;
  }

  #unavailable(operation: string, cause?: unknown): AdminError {
    const since = this.availability.unavailableSince;
    const when = since === undefined ? '' : ` since ${new Date(since).toISOString()}`;
    return new AdminError(
      'STORE_UNAVAILABLE',
      `store unavailable${when}: ${operation} refused; the write was not applied${cause instanceof StoreUnavailableError ? ' (or its outcome is unknown)' : ''}`,
      {},
      { cause },
    );
  }

  /** Fails fast while the store is known to be down. */
  #checkWritable(operation: string): void {
    if (this.availability.unavailableSince !== undefined) throw this.#unavailable(operation);
  }

  #decode(kv: KeyValue): KeyValue<ConfigObject> {
    return { ...kv, value: JSON.parse(decoder.decode(kv.value)) as ConfigObject };
  }

  /** Parses and applies a multi-document YAML/JSON text. */
  async applyText(text: string, source?: string, options: { dryRun?: boolean } = {}): Promise<ApplyResult> {
    const parsed = parseConfigDocuments(text, source === undefined ? {} : { source });
    if (!parsed.ok) throw this.#invalid(parsed.error);
    if (parsed.configs.length === 0) throw new AdminError('BAD_REQUEST', 'no objects passed to apply');
    const result = await this.apply(parsed.configs, options);
    const warnings = this.#analyze(parsed.configs);
    return warnings.length > 0 ? { ...result, warnings } : result;
  }

  /** The analysis findings about `applied`, checked against the rest of the watched config. */
  #analyze(applied: readonly ConfigObject[]): AnalysisMessage[] {
    // Only objects of the analyzed kinds take part; an apply of none of them (endpoint churn through
    // WorkloadEntries) has nothing to report and skips reading the whole config.
    const analyzed = applied.filter((o) => ANALYZED_KINDS.has(o.kind));
    if (analyzed.length === 0) return [];
    try {
      const byKey = new Map<string, ConfigObject>();
      for (const kind of ANALYZED_KINDS)
        for (const kv of this.lastKnown?.list(`${CONFIG_PREFIX}${kind}/`) ?? [])
          byKey.set(configKey(kv.value), kv.value);
      for (const o of analyzed) byKey.set(configKey(o), o);
      const ids = new Set(analyzed.map((o) => configKey(o)));
      return analyzeConfigs([...byKey.values()]).filter((m) => m.object !== undefined && ids.has(m.object));
    } catch (error) {
      this.#log?.warn({ err: error }, 'analysis of an apply failed; applied without warnings');
      return [];
    }
  }

  #invalid(error: ValidationError): AdminError {
    return new AdminError('INVALID_CONFIG', error.message, { errors: error.errors }, { cause: error });
  }

  /**
   * Applies validated objects, all or nothing and atomic to watchers (see config-commit.ts): one
   * transaction when the changed objects fit etcd's limits, else staged and flipped visible at once.
   * With `dryRun`, everything is checked and planned against the store but nothing is written (the
   * items say what an apply would do: created, configured or unchanged).
   */
  async apply(objects: readonly ConfigObject[], options: { dryRun?: boolean } = {}): Promise<ApplyResult> {
    if (objects.length > MAX_APPLY_OBJECTS) {
      throw new AdminError(
        'TOO_LARGE',
        `apply of ${objects.length} objects refused: at most ${MAX_APPLY_OBJECTS} objects per apply (MAX_APPLY_OBJECTS); split the file`,
      );
    }
    const seen = new Set<string>();
    for (const o of objects) {
      const id = configKey(o);
      if (seen.has(id)) {
        throw this.#invalid(
          new ValidationError([
            { object: id, path: 'metadata.name', message: 'appears more than once in one apply' },
          ]),
        );
      }
      seen.add(id);
      const rv = o.metadata.resourceVersion;
      if (rv !== undefined && !/^\d+$/.test(rv)) {
        throw this.#invalid(
          new ValidationError([
            { object: id, path: 'metadata.resourceVersion', message: `must be a whole number, got "${rv}"` },
          ]),
        );
      }
    }
    this.#checkWritable('apply');
    const keys = objects.map((o) => configStoreKey(o.kind, o.metadata.namespace, o.metadata.name));
    const texts = objects.map((o) => canonicalJSON(stored(o)));
    try {
      for (let attempt = 1; ; attempt++) {
        const commit = await this.#settle();
        const current = await this.#readFolded(keys);
        const plan = objects.map((obj, i) => {
          const existing = current.get(keys[i]!);
          const rv = obj.metadata.resourceVersion;
          const actual = existing?.version ?? 0;
          if (rv !== undefined && Number(rv) !== actual) throw this.#conflict(obj, Number(rv), actual);
          const action: ApplyItem['action'] =
            existing === undefined ? 'created' : existing.text === texts[i] ? 'unchanged' : 'configured';
          return { obj, key: keys[i]!, text: texts[i]!, action, existing };
        });
        const changed = plan.filter((p) => p.action !== 'unchanged');
        if (options.dryRun)
          return {
            revision: commit.revision,
            dryRun: true,
            items: plan.map((p) => ({
              kind: p.obj.kind,
              namespace: p.obj.metadata.namespace,
              name: p.obj.metadata.name,
              resourceVersion: String(p.existing?.version ?? 0),
              action: p.action,
            })),
          };
        let revision: number | undefined;
        if (changed.length === 0) revision = Math.max(...plan.map((p) => p.existing?.version ?? 0));
        else revision = await this.#write(commit, changed);
        if (revision !== undefined) {
          const r = revision;
          if (changed.length > 0) this.#collectStaging();
          return {
            revision: r,
            items: plan.map((p) => ({
              kind: p.obj.kind,
              namespace: p.obj.metadata.namespace,
              name: p.obj.metadata.name,
              resourceVersion: String(p.action === 'unchanged' ? p.existing!.version : r),
              action: p.action,
            })),
          };
        }
        // Another write committed first: plan again on the new state.
        if (attempt >= MAX_ATTEMPTS)
          throw new AdminError(
            'CONFLICT',
            `apply gave up after ${MAX_ATTEMPTS} attempts: other writes kept committing first; try again`,
          );
        await sleep(Math.random() * 20 * attempt);
      }
    } catch (error) {
      throw this.#storeError('apply', error);
    }
  }

  /**
   * Writes the changed objects of a plan made at `commit`; resolves with the revision, or undefined
   * when another write committed first (nothing of this one is visible then).
   */
  async #write(
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
  async #settle(): Promise<CommitState> {
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
    const current = await this.#readFolded(entries.map((e) => e.key));
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
      this.#settle().catch(() => this.#scheduleFold(Math.min(delayMs * 2, 30_000)));
    }, delayMs);
    this.#foldRetry.unref();
  }

  /** Removes staging that no commit names and that is older than {@link STAGING_GRACE_MS}. */
  #collectStaging(): void {
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
  async #readFolded(keys: readonly string[]): Promise<Map<string, Entry>> {
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

  #conflict(
    obj: { kind: string; metadata: { namespace: string; name: string } },
    expected: number,
    actual: number,
  ): AdminError {
    const what =
      actual === 0
        ? 'the object no longer exists'
        : expected === 0
          ? 'the object already exists'
          : 'the object has been modified';
    return new AdminError(
      'CONFLICT',
      `Operation cannot be fulfilled on ${resourceName(obj.kind as KindName)} "${obj.metadata.name}": ${what}; please apply your changes to the latest version and try again (resourceVersion ${expected}, current ${actual})`,
      { object: configKey(obj) },
    );
  }

  #storeError(operation: string, error: unknown): unknown {
    if (error instanceof AdminError) return error;
    if (error instanceof StoreUnavailableError) return this.#unavailable(operation, error);
    if (error instanceof TxnTooLargeError)
      return new AdminError(
        'TOO_LARGE',
        `${operation} refused: one object is larger than etcd accepts in one request (--max-request-bytes): ${error.message}`,
        {},
        { cause: error },
      );
    if (error instanceof StoreError)
      return new AdminError('STORE_UNAVAILABLE', error.message, {}, { cause: error });
    return error;
  }

  #notFound(kind: KindName, name: string, namespace: string): AdminError {
    return new AdminError('NOT_FOUND', `${resourceName(kind)} "${name}" not found`, {
      object: `${kind}/${namespace}/${name}`,
    });
  }

  /**
   * The visible objects under `prefix` (`config/...`) as of one `config-commit` state: `config/`
   * overlaid by the staging of the named apply while its fold is unfinished (config-commit.ts).
   * Read again if a write committed in between (so a read never mixes two states).
   */
  async #readVisible(
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

  /** One object with its resourceVersion; served from the last known state while etcd is down. */
  async get(kind: KindName, namespace: string, name: string): Promise<ConfigObject> {
    const key = configStoreKey(kind, namespace, name);
    let kv: KeyValue<ConfigObject> | undefined;
    if (this.availability.unavailableSince !== undefined && this.lastKnown) kv = this.lastKnown.get(key);
    else {
      try {
        kv = (await this.#readVisible(key, true)).items[0];
      } catch (error) {
        if (!this.lastKnown || !(error instanceof StoreError)) throw this.#storeError('get', error);
        kv = this.lastKnown.get(key);
      }
    }
    if (!kv) throw this.#notFound(kind, name, namespace);
    return withVersion(kv);
  }

  /** Every object of a kind (optionally of one namespace), sorted by namespace and name. */
  async list(kind: KindName, namespace?: string): Promise<{ revision: number; items: ConfigObject[] }> {
    const prefix = namespace ? `${CONFIG_PREFIX}${kind}/${namespace}/` : `${CONFIG_PREFIX}${kind}/`;
    let items: KeyValue<ConfigObject>[];
    let revision = 0;
    const fromLastKnown = () => {
      items = this.lastKnown?.list(prefix) ?? [];
      revision = Math.max(0, ...items.map((i) => i.modRevision));
    };
    if (this.availability.unavailableSince !== undefined && this.lastKnown) fromLastKnown();
    else {
      try {
        const res = await this.#readVisible(prefix, false);
        items = res.items;
        revision = res.revision;
      } catch (error) {
        if (!this.lastKnown || !(error instanceof StoreError)) throw this.#storeError('list', error);
        fromLastKnown();
      }
    }
    return { revision, items: items!.map(withVersion) };
  }

  /** Deletes one object; with `resourceVersion`, only if it is still at that version. */
  async delete(
    kind: KindName,
    namespace: string,
    name: string,
    resourceVersion?: string,
  ): Promise<{ revision: number }> {
    this.#checkWritable('delete');
    if (resourceVersion !== undefined && !/^\d+$/.test(resourceVersion))
      throw new AdminError('BAD_REQUEST', `resourceVersion must be a whole number, got "${resourceVersion}"`);
    const key = configStoreKey(kind, namespace, name);
    const obj = { kind, metadata: { namespace, name } };
    try {
      for (let attempt = 1; ; attempt++) {
        const commit = await this.#settle();
        const existing = (await this.#readFolded([key])).get(key);
        if (!existing) throw this.#notFound(kind, name, namespace);
        if (resourceVersion !== undefined && Number(resourceVersion) !== existing.version)
          throw this.#conflict(obj, Number(resourceVersion), existing.version);
        try {
          const res = await this.store.txn({
            expect: [{ key: COMMIT_KEY, modRevision: commit.revision }],
            ops: [
              { op: 'put', key: COMMIT_KEY, value: commitValue(null, 1) },
              { op: 'delete', key },
            ],
          });
          return { revision: res.revision };
        } catch (error) {
          if (!(error instanceof ConflictError)) throw error;
        }
        if (attempt >= MAX_ATTEMPTS)
          throw new AdminError(
            'CONFLICT',
            `delete gave up after ${MAX_ATTEMPTS} attempts: other writes kept committing first; try again`,
          );
        await sleep(Math.random() * 20 * attempt);
      }
    } catch (error) {
      throw this.#storeError('delete', error);
    }
  }
}
