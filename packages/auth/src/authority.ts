// The cluster's control-plane credentials in etcd, and the checks every replica makes against them.
//
// Keys (relative to the cluster keyspace):
// - `auth/signing-keys/<generation>`: admin token signing keys (ES256 PKCS#8, with their key id;
//   the first is `0001`). The newest signs; every one listed verifies, so a key is rotated by adding
//   the next generation and deleting the old one later.
// - `auth/rolebindings/<name>`: `{subject, role}`; a subject's roles are those of its bindings.
// - `auth/revoked-tokens/<token id>`: `{subject, expiresAt}`, a token revoked before it expires (a
//   dashboard session ended by its logout), under a lease that outlives the token, so the entry goes
//   by itself once the token could no longer verify anyway.
//
// etcd is the trust root of a cluster (whoever can write it can rewrite the mesh), so the signing
// key lives there, readable only by etcd clients: the replicas and the operator's bootstrap command.
import { Collection, ConflictError, jsonCodec, type Mirror, type Store } from '@meridian/store';
import { ForbiddenError, InvalidAuthInputError, UnauthenticatedError } from './errors.js';
import { grants, isRole, type Role } from './roles.js';
import {
  type AdminSigningKey,
  AdminTokenVerifier,
  generateAdminSigningKey,
  mintAdminToken,
  publicJwk,
  validateSubject,
} from './tokens.js';

export const SIGNING_KEYS_PREFIX = 'auth/signing-keys/';
export const ROLE_BINDINGS_PREFIX = 'auth/rolebindings/';
export const REVOKED_TOKENS_PREFIX = 'auth/revoked-tokens/';
/** A revocation entry outlives its token by this much (clock skew between replicas). */
const REVOCATION_MARGIN_S = 60;
/** A subject with no role is checked against etcd at most this often (see #freshRolesOf). */
const FRESH_READ_INTERVAL_MS = 1_000;
/** Bound on the subjects remembered for that (cleared when full). */
const MAX_FRESH_READ_SUBJECTS = 10_000;
const FIRST_KEY_NAME = '0001';

/** A role binding: `subject` holds `role`. */
export interface RoleBinding {
  readonly subject: string;
  readonly role: Role;
}

/** An authenticated caller of a control-plane API. */
export interface Caller {
  /** Its identity: a SPIFFE id. */
  readonly subject: string;
  /** How it proved it. */
  readonly via: 'token' | 'mtls';
  /** The roles bound to it when it was authenticated. */
  readonly roles: ReadonlySet<Role>;
}

const NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

/** Checks a role binding name (DNS-label-like). */
export function validateBindingName(name: unknown): string {
  if (typeof name !== 'string' || !NAME.test(name) || name.length > 253)
    throw new InvalidAuthInputError(
      'name',
      `invalid role binding name ${JSON.stringify(name)} (lower-case DNS label expected)`,
    );
  return name;
}

/** Parses a role binding from untrusted JSON; the error names the field. */
export function parseRoleBinding(value: unknown): RoleBinding {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new InvalidAuthInputError('body', 'expected an object {subject, role}');
  const v = value as Record<string, unknown>;
  for (const k of Object.keys(v))
    if (k !== 'subject' && k !== 'role')
      throw new InvalidAuthInputError(k, 'unknown field (known: subject, role)');
  const subject = validateSubject(v.subject);
  if (!isRole(v.role))
    throw new InvalidAuthInputError(
      'role',
      `expected one of view, edit, registrar, admin, got ${JSON.stringify(v.role)}`,
    );
  return { subject, role: v.role };
}

const keyCodec = jsonCodec<AdminSigningKey>((v) => {
  const k = v as AdminSigningKey;
  if (typeof k?.kid !== 'string' || typeof k.privateKeyPem !== 'string') throw new Error('not a signing key');
  return k;
});
const bindingCodec = jsonCodec<RoleBinding>(parseRoleBinding);

/** A token revoked before its expiry. */
export interface RevokedToken {
  readonly subject: string;
  /** ISO time the token expires (the entry is useless after it). */
  readonly expiresAt: string;
}

const revokedCodec = jsonCodec<RevokedToken>((v) => {
  const r = v as RevokedToken;
  if (typeof r?.subject !== 'string' || typeof r.expiresAt !== 'string')
    throw new Error('not a revoked token');
  return r;
});

/** The signing-key, role-binding and revoked-token collections of a store. */
function collections(store: Store): {
  keys: Collection<AdminSigningKey>;
  bindings: Collection<RoleBinding>;
  revoked: Collection<RevokedToken>;
} {
  return {
    keys: new Collection(store, SIGNING_KEYS_PREFIX, keyCodec),
    bindings: new Collection(store, ROLE_BINDINGS_PREFIX, bindingCodec),
    revoked: new Collection(store, REVOKED_TOKENS_PREFIX, revokedCodec),
  };
}

/**
 * Makes sure the cluster has an admin token signing key: creates one unless one exists (a
 * create-if-absent transaction, so replicas and the bootstrap command racing make exactly one).
 * Returns the newest key.
 */
export async function ensureSigningKey(store: Store): Promise<AdminSigningKey> {
  const { keys } = collections(store);
  const existing = await keys.list();
  if (existing.items.length > 0) return newest(existing.items.map((kv) => kv.value))!;
  const key = await generateAdminSigningKey();
  try {
    // A fixed name for the first key, so racing creators conflict and exactly one key is made.
    await keys.put(FIRST_KEY_NAME, key, { expectModRevision: 0 });
    return key;
  } catch (error) {
    if (!(error instanceof ConflictError)) throw error;
    return ensureSigningKey(store);
  }
}

function newest(keys: readonly AdminSigningKey[]): AdminSigningKey | undefined {
  return [...keys].sort((a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : 0))[0];
}

/** Writes (creates or replaces) a role binding. */
export async function putRoleBinding(store: Store, name: string, binding: RoleBinding): Promise<number> {
  const { bindings } = collections(store);
  return (await bindings.put(validateBindingName(name), parseRoleBinding(binding))).revision;
}

/** Deletes a role binding; false when there was none. */
export async function deleteRoleBinding(store: Store, name: string): Promise<boolean> {
  const { bindings } = collections(store);
  return (await bindings.delete(validateBindingName(name))).deleted > 0;
}

/**
 * What the operator's first credential needs, done directly against etcd (whoever can reach etcd
 * already controls the cluster): the signing key, a binding `subject -> role`, and a token.
 */
export async function bootstrapCredential(
  store: Store,
  o: { subject: string; role: Role; bindingName: string; ttlSeconds: number },
): Promise<{ token: string; expiresAt: Date }> {
  const key = await ensureSigningKey(store);
  await putRoleBinding(store, o.bindingName, { subject: o.subject, role: o.role });
  const { token, claims } = await mintAdminToken(key, o.subject, o.ttlSeconds);
  return { token, expiresAt: claims.expiresAt };
}

/**
 * A replica's view of the cluster's credentials (signing keys and role bindings), kept current by
 * a watch: authentication never waits on etcd, and keeps working from the last known state while
 * etcd is unreachable.
 */
export class AdminAuthority {
  #verifier: AdminTokenVerifier = new AdminTokenVerifier([]);
  #keys: readonly AdminSigningKey[] = [];
  #generation = 0;
  /** Tokens this replica revoked (token id -> expiry, ms), refused before the watch reports them. */
  readonly #revokedHere = new Map<string, number>();
  /** Subject -> when its bindings were last read from etcd because the mirror had none. */
  readonly #freshReads = new Map<string, number>();

  private constructor(
    private readonly store: Store,
    private readonly keyMirror: Mirror<AdminSigningKey>,
    private readonly bindingMirror: Mirror<RoleBinding>,
    private readonly revokedMirror: Mirror<RevokedToken>,
    private readonly now: () => Date,
  ) {}

  /** Loads the credentials (creating the signing key if the cluster has none) and follows them. */
  static async open(store: Store, o: { now?: () => Date } = {}): Promise<AdminAuthority> {
    await ensureSigningKey(store);
    const { keys, bindings, revoked } = collections(store);
    let authority: AdminAuthority | undefined;
    const keyMirror = await keys.mirror({
      onChange: () => {
        if (authority) void authority.#reloadKeys();
      },
    });
    const bindingMirror = await bindings.mirror();
    const revokedMirror = await revoked.mirror();
    authority = new AdminAuthority(
      store,
      keyMirror,
      bindingMirror,
      revokedMirror,
      o.now ?? (() => new Date()),
    );
    await authority.#reloadKeys();
    return authority;
  }

  async #reloadKeys(): Promise<void> {
    const generation = ++this.#generation;
    const keys = this.keyMirror.list().map((kv) => kv.value);
    const jwks = await Promise.all(keys.map(publicJwk));
    if (generation !== this.#generation) return;
    this.#keys = keys;
    this.#verifier = new AdminTokenVerifier(jwks, this.now);
  }

  /** The roles bound to `subject`. */
  rolesOf(subject: string): Set<Role> {
    const roles = new Set<Role>();
    for (const kv of this.bindingMirror.list()) if (kv.value.subject === subject) roles.add(kv.value.role);
    return roles;
  }

  /**
   * The caller an admin bearer token proves (401 `UnauthenticatedError` otherwise, also for a token
   * revoked on any replica of the cluster).
   */
  async authenticateToken(token: string): Promise<Caller> {
    const claims = await this.#verifier.verify(token);
    if (this.#revokedHere.has(claims.tokenId) || this.revokedMirror.get(claims.tokenId))
      throw new UnauthenticatedError('token revoked');
    let roles = this.rolesOf(claims.subject);
    if (roles.size === 0) roles = await this.#freshRolesOf(claims.subject);
    return { subject: claims.subject, via: 'token', roles };
  }

  /**
   * The roles bound to `subject` as etcd holds them now. A binding written a moment ago (on another
   * replica, or by `meridian` bootstrapping a credential) may not have reached this replica's mirror
   * when its first request arrives; a verified subject with no role is checked against etcd before it
   * is refused, at most once a second per subject. An unreachable etcd leaves the mirror's answer.
   */
  async #freshRolesOf(subject: string): Promise<Set<Role>> {
    const roles = new Set<Role>();
    const nowMs = Date.now();
    const last = this.#freshReads.get(subject);
    if (last !== undefined && nowMs - last < FRESH_READ_INTERVAL_MS) return roles;
    if (this.#freshReads.size >= MAX_FRESH_READ_SUBJECTS) this.#freshReads.clear();
    this.#freshReads.set(subject, nowMs);
    try {
      const { items } = await this.bindingMirror.collection.list();
      for (const kv of items) if (kv.value.subject === subject) roles.add(kv.value.role);
    } catch {
      // etcd unreachable: the mirror's (empty) answer stands.
    }
    return roles;
  }

  /**
   * Revokes a token before it expires, for every replica of the cluster: written to etcd (resolves
   * once etcd has it) under a lease that ends a minute after the token's expiry, and refused by this
   * replica at once. A token that does not verify (expired, foreign, malformed) needs nothing and is
   * refused with `UnauthenticatedError`. Returns what was revoked.
   */
  async revoke(token: string): Promise<{ subject: string; expiresAt: Date }> {
    const claims = await this.#verifier.verify(token);
    const nowMs = this.now().getTime();
    for (const [id, until] of this.#revokedHere) if (until <= nowMs) this.#revokedHere.delete(id);
    this.#revokedHere.set(claims.tokenId, claims.expiresAt.getTime());
    const ttl = Math.max(1, Math.ceil((claims.expiresAt.getTime() - nowMs) / 1000)) + REVOCATION_MARGIN_S;
    const lease = await this.store.grantLease(ttl);
    try {
      await this.revokedMirror.collection.put(
        claims.tokenId,
        {
          subject: claims.subject,
          expiresAt: claims.expiresAt.toISOString(),
        },
        { lease: lease.id },
      );
    } finally {
      // No keepalives: the lease (and the entry) ends with its TTL.
      lease.release();
    }
    return { subject: claims.subject, expiresAt: claims.expiresAt };
  }

  /** The caller a verified mTLS client identity is (its roles from the bindings). */
  callerFromIdentity(subject: string): Caller {
    return { subject, via: 'mtls', roles: this.rolesOf(subject) };
  }

  /** Throws a 403 `ForbiddenError` unless `caller` holds a role granting `needed`. */
  authorize(caller: Caller, needed: Role, action: string): void {
    if (grants(caller.roles, needed)) return;
    const held = caller.roles.size === 0 ? 'no role' : `role ${[...caller.roles].sort().join(', ')}`;
    throw new ForbiddenError(
      caller.subject,
      `${caller.subject} (${held}) may not ${action}: needs role ${needed}`,
    );
  }

  /** Mints a token for `subject` with the newest signing key. */
  async mint(subject: string, ttlSeconds: number): Promise<{ token: string; expiresAt: Date }> {
    const key = newest(this.#keys);
    if (!key) throw new UnauthenticatedError('this cluster has no token signing key');
    const { token, claims } = await mintAdminToken(key, subject, ttlSeconds, this.now());
    return { token, expiresAt: claims.expiresAt };
  }

  /** Every role binding, by name. */
  bindings(): Array<{ name: string } & RoleBinding> {
    return this.bindingMirror
      .list()
      .map((kv) => ({ name: this.bindingMirror.collection.nameOf(kv.key), ...kv.value }));
  }

  /** Writes a role binding through the store. */
  putBinding(name: string, binding: RoleBinding): Promise<number> {
    return putRoleBinding(this.store, name, binding);
  }

  /** Deletes a role binding through the store. */
  deleteBinding(name: string): Promise<boolean> {
    return deleteRoleBinding(this.store, name);
  }

  /** Stops following etcd. */
  async close(): Promise<void> {
    await Promise.all([this.keyMirror.close(), this.bindingMirror.close(), this.revokedMirror.close()]);
  }
}
