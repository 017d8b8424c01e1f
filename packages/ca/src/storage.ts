// Installing a cluster's CA into its etcd and loading it on every replica.
//
// The CA needs only get/put of string values under the cluster's key prefix, plus one create-if-absent
// with an expiry (single-use bootstrap tokens). `CaStore` is that narrow seam; `@meridian/store`'s Store satisfies it through `caStoreFrom` (see index.ts), and tests of pure
// logic use `MemoryCaStore`.
import { ConflictError, type Store, StoreUnavailableError, type Watch } from '@meridian/store';
import { type ClusterCaMaterial, SigningCa } from './authority.js';
import { CaConfigError } from './errors.js';
import { openPrivateKey, type SealedKey, sealPrivateKey } from './keywrap.js';

/** What the CA needs from the cluster's store: string values under keys relative to its prefix. */
export interface CaStore {
  get(key: string): Promise<string | undefined>;
  put(key: string, value: string): Promise<void>;
  /**
   * Atomically writes `key` only if it does not exist, and makes it expire `ttlSeconds` (whole
   * seconds, >= 1) later. Resolves true when this call created it, false when the key already existed
   * (nothing written). Rejects when the store cannot say (unreachable, outcome unknown).
   */
  createIfAbsent(key: string, value: string, ttlSeconds: number): Promise<boolean>;
  /** Where the keys live, for messages: the etcd keyspace root, e.g. `/meridian/mesh1/cluster1/`. */
  readonly location?: string;
}

/** Keys the CA uses, relative to the cluster's prefix. */
export const CA_KEYS = {
  /** The cluster intermediate: certificates in clear, private key sealed. */
  intermediate: 'ca/intermediate',
  /** Public keys that verify bootstrap tokens (JWK set). */
  tokenKeys: 'ca/token-keys',
  /** Prefix of the records of spent single-use bootstrap tokens (`<prefix><jti>`, expire with the token). */
  usedTokens: 'ca/tokens/used/',
} as const;

function checkTtl(ttlSeconds: number): void {
  if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1) {
    throw new RangeError(`TTL must be a whole number of seconds >= 1, got ${ttlSeconds}`);
  }
}

/** The stored form of a cluster CA. */
export interface StoredClusterCa {
  readonly version: 1;
  readonly clusterId: string;
  readonly trustDomain: string;
  readonly caCert: string;
  readonly certChain: string;
  readonly rootCerts: string;
  readonly key: SealedKey;
}

/** Seals and writes a cluster's CA material (validated first: nothing inconsistent is installed). */
export async function installClusterCa(store: CaStore, m: ClusterCaMaterial, kek: Buffer): Promise<void> {
  SigningCa.fromMaterial(m);
  const record: StoredClusterCa = {
    version: 1,
    clusterId: m.clusterId,
    trustDomain: m.trustDomain,
    caCert: m.caCertPem,
    certChain: m.certChainPem,
    rootCerts: m.rootCertPem,
    key: sealPrivateKey(m.caKeyPem, kek, m.clusterId),
  };
  await store.put(CA_KEYS.intermediate, JSON.stringify(record));
}

/** Parses a stored record (as read from etcd or delivered by a watch). */
export function parseStoredClusterCa(value: string, kek: Buffer, clusterId: string): ClusterCaMaterial {
  let r: StoredClusterCa;
  try {
    r = JSON.parse(value) as StoredClusterCa;
  } catch (err) {
    throw new CaConfigError(`${CA_KEYS.intermediate}: not valid JSON`, CA_KEYS.intermediate, { cause: err });
  }
  if (r?.version !== 1 || typeof r.caCert !== 'string' || typeof r.certChain !== 'string' || !r.key) {
    throw new CaConfigError(
      `${CA_KEYS.intermediate}: unsupported or incomplete record`,
      CA_KEYS.intermediate,
    );
  }
  if (r.clusterId !== clusterId) {
    throw new CaConfigError(
      `${CA_KEYS.intermediate}: record is for cluster "${r.clusterId}", this replica is in "${clusterId}"`,
      CA_KEYS.intermediate,
    );
  }
  return {
    clusterId: r.clusterId,
    trustDomain: r.trustDomain,
    caCertPem: r.caCert,
    certChainPem: r.certChain,
    rootCertPem: r.rootCerts,
    caKeyPem: openPrivateKey(r.key, kek, clusterId),
  };
}

/** Loads and checks the cluster's CA from the store (what every replica does at start and on change). */
export async function loadClusterCa(
  store: CaStore,
  opts: { clusterId: string; kek: Buffer },
): Promise<SigningCa> {
  const value = await store.get(CA_KEYS.intermediate);
  if (value === undefined) {
    // Name the keyspace looked in: a CA installed under another mesh id is the usual cause.
    const mesh = /^\/meridian\/([^/]+)\/[^/]+\/$/.exec(store.location ?? '')?.[1];
    throw new CaConfigError(
      store.location === undefined
        ? `no CA installed for cluster "${opts.clusterId}" (run: meridian ca install --cluster ${opts.clusterId})`
        : `no CA installed for cluster "${opts.clusterId}" in etcd keyspace ${store.location} (run: meridian ca install --cluster ${opts.clusterId}${mesh ? ` --mesh ${mesh}` : ''})`,
      CA_KEYS.intermediate,
    );
  }
  return SigningCa.fromMaterial(parseStoredClusterCa(value, opts.kek, opts.clusterId));
}

/** A CaStore in memory, for unit tests and for the CLI's dry runs. Expiry follows `now`. */
export class MemoryCaStore implements CaStore {
  readonly data = new Map<string, string>();
  /** Expiry instants (ms) of keys written by createIfAbsent. */
  private readonly expiry = new Map<string, number>();

  constructor(private readonly now: () => number = Date.now) {}

  async get(key: string): Promise<string | undefined> {
    this.expire(key);
    return this.data.get(key);
  }
  async put(key: string, value: string): Promise<void> {
    this.expiry.delete(key);
    this.data.set(key, value);
  }
  async createIfAbsent(key: string, value: string, ttlSeconds: number): Promise<boolean> {
    checkTtl(ttlSeconds);
    this.expire(key);
    if (this.data.has(key)) return false;
    this.data.set(key, value);
    this.expiry.set(key, this.now() + ttlSeconds * 1000);
    return true;
  }

  private expire(key: string): void {
    const at = this.expiry.get(key);
    if (at !== undefined && this.now() >= at) {
      this.expiry.delete(key);
      this.data.delete(key);
    }
  }
}

/**
 * The cluster's `@meridian/store` Store seen as a CaStore (UTF-8 values). `createIfAbsent` is one
 * compare-and-put (expect mod revision 0) of a key attached to a fresh lease of `ttlSeconds` whose
 * keepalive is stopped at once: etcd (or the memory store) deletes the key when the lease runs out.
 */
export function caStoreFrom(store: Store): CaStore {
  return {
    location: store.keyspace.root,
    async get(key) {
      const kv = await store.get(key);
      return kv === undefined ? undefined : new TextDecoder().decode(kv.value);
    },
    async put(key, value) {
      await store.put(key, new TextEncoder().encode(value));
    },
    async createIfAbsent(key, value, ttlSeconds) {
      checkTtl(ttlSeconds);
      const lease = await store.grantLease(ttlSeconds);
      // never kept alive: the lease (and the key) expire ttlSeconds after the grant
      lease.release();
      try {
        await store.put(key, new TextEncoder().encode(value), { lease: lease.id, expectModRevision: 0 });
        return true;
      } catch (err) {
        if (err instanceof ConflictError) {
          void store.revokeLease(lease.id).catch(() => {}); // unused; it would expire anyway
          return false;
        }
        if (err instanceof StoreUnavailableError) {
          // Outcome unknown (an abandoned attempt may have been applied): the key carries our lease
          // only if our own write created it.
          const kv = await store.get(key).catch(() => undefined);
          if (kv?.lease === lease.id) return true;
          if (kv !== undefined) return false;
        }
        throw err;
      }
    },
  };
}

/**
 * Loads the cluster CA now and calls `onChange` with the reloaded CA whenever it changes in the store
 * (re-issued intermediate, trust bundle step of a rotation): every replica follows the same record.
 * A record that fails to load is reported to `onError` and the previous CA stays in use.
 */
export async function watchClusterCa(
  store: Store,
  opts: { clusterId: string; kek: Buffer },
  onChange: (ca: SigningCa) => void,
  onError: (err: unknown) => void = () => {},
): Promise<{ ca: SigningCa; watch: Watch }> {
  const ca = await loadClusterCa(caStoreFrom(store), opts);
  const watch = store.watchPrefix('ca/', (batch) => {
    const values =
      batch.kind === 'events'
        ? batch.events.flatMap((e) =>
            e.type === 'put' && e.kv.key === CA_KEYS.intermediate ? [e.kv.value] : [],
          )
        : batch.items.filter((kv) => kv.key === CA_KEYS.intermediate).map((kv) => kv.value);
    const last = values[values.length - 1];
    if (last === undefined) return;
    try {
      onChange(
        SigningCa.fromMaterial(
          parseStoredClusterCa(new TextDecoder().decode(last), opts.kek, opts.clusterId),
        ),
      );
    } catch (err) {
      onError(err);
    }
  });
  await watch.ready;
  return { ca, watch };
}
