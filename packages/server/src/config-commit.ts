/**
 * How config objects are laid out in etcd, so that an apply of any size up to
 * {@link MAX_APPLY_OBJECTS} is all-or-nothing and atomic to every watcher whatever etcd's
 * `--max-txn-ops`.
 *
 * etcd bounds one transaction (`--max-txn-ops` compares and as many operations, 128 by default;
 * `--max-request-bytes`, 1.5 MiB), so a large apply cannot be one transaction, and a series of
 * transactions straight into `config/` would let watchers (every replica) see half of it, and leave
 * half of it behind if etcd or the writer fails in the middle. Instead:
 *
 * | key (in the cluster keyspace) | holds |
 * |---|---|
 * | `config/<Kind>/<namespace>/<name>` | folded objects (canonical JSON; a folded object carries its `metadata.resourceVersion`) |
 * | `config-staging/<applyId>/<Kind>/<namespace>/<name>` | the objects of one large apply: invisible until committed |
 * | `config-commit` | `{"applyId": <id> or null}`: the committed apply not yet known to be folded |
 *
 * **The visible config** at revision R is `config/` overlaid by `config-staging/<C>/`, where C is the
 * apply `config-commit` names at R. A staged object's resourceVersion is the mod revision of
 * `config-commit`; a folded one's is the one it carries, else its mod revision; for one key, the newer
 * resourceVersion wins (a tie is the same object). The replica's watch ({@link ClusterState}) and the
 * admin API's reads ({@link ConfigService}) both compute it with {@link visibleEntry}.
 *
 * **Every writer** follows four rules:
 * 1. Every config write is one transaction that compares the mod revision of `config-commit` with the
 *    one read when the write was planned, and puts `config-commit`: any two writes are ordered, and a
 *    plan made on a state that has changed since is refused and made again (never applied).
 * 2. A write that fits one transaction puts its `config/` keys directly, with `config-commit` = null.
 * 3. A larger apply first writes its objects under `config-staging/<id>/` in chunks (invisible), then
 *    flips them visible with one transaction of one compare and one put: `config-commit` = `<id>`.
 *    Every watcher sees the whole apply at that one revision, or nothing of it: a writer that dies or
 *    loses etcd before the flip leaves only invisible staging, removed later
 *    ({@link STAGING_GRACE_MS}).
 * 4. After the flip the apply is folded: each staged object is copied into `config/` with its
 *    resourceVersion (compare-and-swap per key, in chunks), then the staging prefix is deleted. A fold
 *    never changes the visible config, so watchers are not told of it. Before planning any write, the
 *    writer folds the apply `config-commit` names if it is not folded yet (finishing the fold of a
 *    writer that died after its flip), so whenever `config-commit` moves on, `config/` already holds
 *    that apply.
 */
import type { ConfigObject } from '@meridian/api';
import type { KeyValue } from '@meridian/store';

/** Keyspace-relative prefix of (folded) config objects. */
export const CONFIG_PREFIX = 'config/';
/** Keyspace-relative prefix of staged applies: `config-staging/<applyId>/<Kind>/<ns>/<name>`. */
export const STAGING_PREFIX = 'config-staging/';
/** The key whose mod revision orders every config write and whose value names the committed apply. */
export const COMMIT_KEY = 'config-commit';

/**
 * Most objects in one apply. With the admin API's 8 MiB body limit, objects average under 800 bytes
 * at this count; typical Istio objects are 300-1,500 bytes.
 */
export const MAX_APPLY_OBJECTS = 10_000;

/** Staging left behind by a writer that never flipped it is removed after this long. */
export const STAGING_GRACE_MS = 10 * 60_000;

/** What `config-commit` says. */
export interface CommitState {
  /** The committed apply whose staged objects overlay `config/`, or null. */
  readonly applyId: string | null;
  /** Mod revision of `config-commit` (0 when absent): the resourceVersion of staged objects. */
  readonly revision: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Reads `config-commit` (absent or unreadable: no apply named). */
export function parseCommit(kv: KeyValue | undefined): CommitState {
  if (!kv) return { applyId: null, revision: 0 };
  try {
    const v = JSON.parse(decoder.decode(kv.value)) as { applyId?: unknown };
    return { applyId: typeof v.applyId === 'string' ? v.applyId : null, revision: kv.modRevision };
  } catch {
    return { applyId: null, revision: kv.modRevision };
  }
}

/** The value of `config-commit` naming `applyId` (null: a direct write). */
export function commitValue(applyId: string | null, objects: number): Uint8Array {
  return encoder.encode(JSON.stringify({ applyId, objects, at: new Date().toISOString() }));
}

/** A new apply id: creation time (base 36 ms, for {@link STAGING_GRACE_MS}) and randomness. */
export function newApplyId(now = Date.now()): string {
  return `${now.toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
}

/** When an apply id was made (ms), or NaN. */
export function applyIdTime(applyId: string): number {
  return Number.parseInt(applyId.split('-')[0] ?? '', 36);
}

/** The staging key of `configKey` (`config/...`) in apply `applyId`. */
export function stagingKey(applyId: string, configKey: string): string {
  return `${STAGING_PREFIX}${applyId}/${configKey.slice(CONFIG_PREFIX.length)}`;
}

/** `config-staging/<id>/<rest>` -> the apply id and the config key `config/<rest>`. */
export function parseStagingKey(key: string): { applyId: string; configKey: string } | undefined {
  if (!key.startsWith(STAGING_PREFIX)) return undefined;
  const rest = key.slice(STAGING_PREFIX.length);
  const slash = rest.indexOf('/');
  if (slash <= 0) return undefined;
  return { applyId: rest.slice(0, slash), configKey: `${CONFIG_PREFIX}${rest.slice(slash + 1)}` };
}

/** One stored object, decoded. */
export interface StoredObject {
  /** The object, without `metadata.resourceVersion`. */
  readonly value: ConfigObject;
  /** The canonical JSON of `value` (what a direct write stores): equal texts are the same object. */
  readonly text: string;
  /** The resourceVersion it carries (folded objects), else undefined. */
  readonly carried: number | undefined;
}

/** Decodes a stored value (throws on malformed JSON). */
export function decodeStored(bytes: Uint8Array): StoredObject {
  const value = JSON.parse(decoder.decode(bytes)) as ConfigObject;
  const rv = (value.metadata as { resourceVersion?: unknown } | undefined)?.resourceVersion;
  if (rv === undefined) return { value, text: JSON.stringify(value), carried: undefined };
  const { resourceVersion: _rv, ...metadata } = value.metadata;
  const stripped = { ...value, metadata } as ConfigObject;
  return { value: stripped, text: JSON.stringify(stripped), carried: Number(rv) };
}

/**
 * The folded form of a staged object committed at `revision`: the same JSON with
 * `metadata.resourceVersion` last, so {@link decodeStored} gives back the same text.
 */
export function foldedValue(text: string, revision: number): Uint8Array {
  const value = JSON.parse(text) as ConfigObject;
  return encoder.encode(
    JSON.stringify({ ...value, metadata: { ...value.metadata, resourceVersion: String(revision) } }),
  );
}

/** A decoded entry of `config/` or of a staging prefix. */
export interface Entry extends StoredObject {
  /** Its resourceVersion (staged entries: filled in from the commit). */
  readonly version: number;
  /** The etcd mod revision of the key (folds compare-and-swap on it; 0 for staged entries). */
  readonly modRevision: number;
}

/** Decodes a `config/` key-value into an entry. */
export function foldedEntry(kv: KeyValue): Entry {
  const stored = decodeStored(kv.value);
  return { ...stored, version: stored.carried ?? kv.modRevision, modRevision: kv.modRevision };
}

/** Decodes a staged key-value into an entry (its version is the commit's). */
export function stagedEntry(kv: KeyValue): Entry {
  return { ...decodeStored(kv.value), version: 0, modRevision: 0 };
}

/**
 * What a reader sees for one key: the staged object of the named commit if it is newer than the
 * folded one (or there is none), else the folded one. Staged entries get the commit's revision.
 */
export function visibleEntry(
  folded: Entry | undefined,
  staged: Entry | undefined,
  commit: CommitState,
): Entry | undefined {
  if (staged && commit.applyId !== null && (!folded || commit.revision > folded.version))
    return { ...staged, version: commit.revision };
  return folded;
}

/** A visible entry as the key-value the admin API and snapshots use (mod revision = resourceVersion). */
export function entryKeyValue(key: string, e: Entry): KeyValue<ConfigObject> {
  return {
    key,
    value: e.value,
    createRevision: e.version,
    modRevision: e.version,
    version: 1,
    lease: undefined,
  };
}
