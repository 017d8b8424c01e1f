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
 *
 * This module decides what to write (validation, plans, conflicts, errors); the transactions that
 * write and the consistent reads are config-txn.ts's, the kind names users type config-kinds.ts's.
 */
import {
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
  type KeyValue,
  type Store,
  StoreError,
  StoreUnavailableError,
  TxnTooLargeError,
} from '@meridian/store';
import type { Logger } from 'pino';
import { COMMIT_KEY, CONFIG_PREFIX, commitValue, MAX_APPLY_OBJECTS } from './config-commit.js';
import { resourceName } from './config-kinds.js';
import { ConfigTransactions } from './config-txn.js';
import { AdminError } from './errors.js';

export { CONFIG_PREFIX, MAX_APPLY_OBJECTS };

/** The key of one object. */
export function configStoreKey(kind: string, namespace: string, name: string): string {
  return `${CONFIG_PREFIX}${kind}/${namespace}/${name}`;
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

/** Plans made again when another write committed first, before giving up with a CONFLICT. */
const MAX_ATTEMPTS = 20;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Tells whether the store is known to be unavailable, and since when. */
export interface StoreAvailability {
  readonly unavailableSince: number | undefined;
}

function stored(obj: ConfigObject): ConfigObject {
  const { resourceVersion: _rv, ...metadata } = obj.metadata;
  return { ...obj, metadata } as ConfigObject;
}

function withVersion(kv: KeyValue<ConfigObject>): ConfigObject {
  return { ...kv.value, metadata: { ...kv.value.metadata, resourceVersion: String(kv.modRevision) } };
}

/** Apply/get/list/delete of config objects over a store. */
export class ConfigService {
  readonly #log: Logger | undefined;
  /** Writes and consistent reads of `config/` by the rules of config-commit.ts. */
  readonly #txns: ConfigTransactions;

  constructor(
    private readonly store: Store,
    private readonly availability: StoreAvailability,
    private readonly lastKnown?: LastKnownConfig,
    options: ConfigServiceOptions = {},
  ) {
    this.#log = options.log;
    this.#txns = new ConfigTransactions(store, lastKnown, options);
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

  /** Resolves when the background fold of the last large apply has finished (or failed). */
  async folded(): Promise<void> {
    await this.#txns.folded();
  }

  /** Stops background retries. */
  close(): void {
    this.#txns.close();
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
        const commit = await this.#txns.settle();
        const current = await this.#txns.readFolded(keys);
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
        else revision = await this.#txns.write(commit, changed);
        if (revision !== undefined) {
          const r = revision;
          if (changed.length > 0) this.#txns.collectStaging();
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

  /** One object with its resourceVersion; served from the last known state while etcd is down. */
  async get(kind: KindName, namespace: string, name: string): Promise<ConfigObject> {
    const key = configStoreKey(kind, namespace, name);
    let kv: KeyValue<ConfigObject> | undefined;
    if (this.availability.unavailableSince !== undefined && this.lastKnown) kv = this.lastKnown.get(key);
    else {
      try {
        kv = (await this.#txns.readVisible(key, true)).items[0];
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
        const res = await this.#txns.readVisible(prefix, false);
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
        const commit = await this.#txns.settle();
        const existing = (await this.#txns.readFolded([key])).get(key);
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
