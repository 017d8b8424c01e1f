/**
 * Config through the admin API (issue 5): apply / get / list / delete of the config kinds, stored in
 * etcd at `config/<Kind>/<namespace>/<name>` as the kind's canonical JSON.
 *
 * - Validation first (`@meridian/api`): an invalid object fails the whole request with its field
 *   errors and nothing is written.
 * - Optimistic concurrency: `metadata.resourceVersion` is the object's etcd mod revision. A write
 *   that carries one must match it; a write without one is compared against the revision read just
 *   before (so two concurrent writers never overwrite each other silently). A mismatch is a
 *   `CONFLICT` error.
 * - A multi-object apply is one etcd transaction: all or nothing.
 * - A write returns only after etcd has committed it (the revision is in the result).
 */
import {
  ALL_KINDS,
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
  type WriteOp,
} from '@meridian/store';
import { AdminError } from './errors.js';

/** Keyspace-relative prefix of config objects. */
export const CONFIG_PREFIX = 'config/';

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
}

/** Reads served while etcd is unreachable (the replica's watched state). */
export interface LastKnownConfig {
  get(key: string): KeyValue<ConfigObject> | undefined;
  list(prefix: string): KeyValue<ConfigObject>[];
}

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
  constructor(
    private readonly store: Store,
    private readonly availability: StoreAvailability,
    private readonly lastKnown?: LastKnownConfig,
  ) {}

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
  async applyText(text: string, source?: string): Promise<ApplyResult> {
    const parsed = parseConfigDocuments(text, source === undefined ? {} : { source });
    if (!parsed.ok) throw this.#invalid(parsed.error);
    if (parsed.configs.length === 0) throw new AdminError('BAD_REQUEST', 'no objects passed to apply');
    return this.apply(parsed.configs);
  }

  #invalid(error: ValidationError): AdminError {
    return new AdminError('INVALID_CONFIG', error.message, { errors: error.errors }, { cause: error });
  }

  /** Applies validated objects in one transaction (all or nothing). */
  async apply(objects: readonly ConfigObject[]): Promise<ApplyResult> {
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
    let current: (KeyValue | undefined)[];
    try {
      current = await Promise.all(keys.map((k) => this.store.get(k)));
    } catch (error) {
      throw this.#storeError('apply', error);
    }
    const expect: Expectation[] = [];
    const ops: WriteOp[] = [];
    const plan: { obj: ConfigObject; action: ApplyItem['action']; existing: KeyValue | undefined }[] = [];
    objects.forEach((obj, i) => {
      const key = keys[i]!;
      const existing = current[i];
      const rv = obj.metadata.resourceVersion;
      const actual = existing?.modRevision ?? 0;
      if (rv !== undefined && Number(rv) !== actual) throw this.#conflict(obj, Number(rv), actual);
      const bytes = encoder.encode(canonicalJSON(stored(obj)));
      const unchanged = existing !== undefined && Buffer.from(existing.value).equals(Buffer.from(bytes));
      expect.push({ key, modRevision: actual });
      if (!unchanged) ops.push({ op: 'put', key, value: bytes });
      plan.push({ obj, action: unchanged ? 'unchanged' : existing ? 'configured' : 'created', existing });
    });
    let revision: number;
    if (ops.length === 0) {
      revision = Math.max(...plan.map((p) => p.existing?.modRevision ?? 0));
    } else {
      try {
        revision = (await this.store.txn({ expect, ops })).revision;
      } catch (error) {
        if (error instanceof ConflictError) {
          const i = keys.indexOf(error.key);
          const obj = objects[Math.max(i, 0)]!;
          throw this.#conflict(obj, error.expected, error.actual);
        }
        throw this.#storeError('apply', error);
      }
    }
    return {
      revision,
      items: plan.map((p) => ({
        kind: p.obj.kind,
        namespace: p.obj.metadata.namespace,
        name: p.obj.metadata.name,
        resourceVersion: String(p.action === 'unchanged' ? p.existing!.modRevision : revision),
        action: p.action,
      })),
    };
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
    if (error instanceof StoreUnavailableError) return this.#unavailable(operation, error);
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
        const raw = await this.store.get(key);
        kv = raw && this.#decode(raw);
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
        const res = await this.store.list(prefix);
        items = res.items.map((kv) => this.#decode(kv));
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
    const key = configStoreKey(kind, namespace, name);
    const obj = { kind, metadata: { namespace, name } };
    let expected: number;
    if (resourceVersion !== undefined) {
      if (!/^\d+$/.test(resourceVersion))
        throw new AdminError(
          'BAD_REQUEST',
          `resourceVersion must be a whole number, got "${resourceVersion}"`,
        );
      expected = Number(resourceVersion);
    } else {
      let existing: KeyValue | undefined;
      try {
        existing = await this.store.get(key);
      } catch (error) {
        throw this.#storeError('delete', error);
      }
      if (!existing) throw this.#notFound(kind, name, namespace);
      expected = existing.modRevision;
    }
    try {
      const res = await this.store.delete(key, { expectModRevision: expected });
      return { revision: res.revision };
    } catch (error) {
      if (error instanceof ConflictError) {
        if (error.actual === 0) throw this.#notFound(kind, name, namespace);
        throw this.#conflict(obj, error.expected, error.actual);
      }
      throw this.#storeError('delete', error);
    }
  }
}
