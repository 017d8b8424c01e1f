// @meridian/auth without I/O beyond the in-memory store: roles, admin tokens, the authority's
// checks and the credentials file.
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AdminAuthority,
  AdminTokenVerifier,
  bootstrapCredential,
  ensureSigningKey,
  ForbiddenError,
  generateAdminSigningKey,
  grants,
  InvalidAuthInputError,
  isAdminToken,
  mintAdminToken,
  operatorSubject,
  parseCredentials,
  parseRoleBinding,
  REVOKED_TOKENS_PREFIX,
  readCredentials,
  saveContext,
  selectContext,
  UnauthenticatedError,
} from '@meridian/auth';
import { Keyspace, MemoryStore } from '@meridian/store';
import { describe, expect, it, vi } from 'vitest';

const ALICE = 'spiffe://cluster.local/ns/meridian-system/sa/alice';

describe('roles', () => {
  it('admin grants everything, edit grants view, registrar only registration', () => {
    expect(grants(['admin'], 'registrar')).toBe(true);
    expect(grants(['admin'], 'edit')).toBe(true);
    expect(grants(['edit'], 'view')).toBe(true);
    expect(grants(['edit'], 'admin')).toBe(false);
    expect(grants(['view'], 'edit')).toBe(false);
    expect(grants(['registrar'], 'view')).toBe(false);
    expect(grants(['view', 'registrar'], 'registrar')).toBe(true);
    expect(grants([], 'view')).toBe(false);
  });

  it('role bindings are parsed strictly, naming the field', () => {
    expect(parseRoleBinding({ subject: ALICE, role: 'view' })).toEqual({ subject: ALICE, role: 'view' });
    expect(() => parseRoleBinding({ subject: ALICE, role: 'root' })).toThrow(
      'role: expected one of view, edit, registrar, admin, got "root"',
    );
    expect(() => parseRoleBinding({ subject: 'alice', role: 'view' })).toThrow(InvalidAuthInputError);
    expect(() => parseRoleBinding({ subject: ALICE, role: 'view', extra: 1 })).toThrow(
      'extra: unknown field',
    );
  });
});

describe('admin tokens', () => {
  it('verify with the key that signed them, within their lifetime, for the admin audience only', async () => {
    const key = await generateAdminSigningKey();
    const { publicJwk } = await import('../src/tokens.js');
    const { token, claims } = await mintAdminToken(key, ALICE, 60, new Date('2026-01-01T00:00:00Z'));
    expect(isAdminToken(token)).toBe(true);
    expect(isAdminToken('not.a.token')).toBe(false);
    const jwk = await publicJwk(key);
    const at = async (iso: string) => new AdminTokenVerifier([jwk], () => new Date(iso));
    const ok = await (await at('2026-01-01T00:00:30Z')).verify(token);
    expect(ok).toEqual({
      subject: ALICE,
      tokenId: claims.tokenId,
      expiresAt: new Date('2026-01-01T00:01:00Z'),
    });
    await expect((await at('2026-01-01T00:02:00Z')).verify(token)).rejects.toThrow('token expired');
    const other = await generateAdminSigningKey();
    await expect(new AdminTokenVerifier([await publicJwk(other)]).verify(token)).rejects.toThrow(
      UnauthenticatedError,
    );
    const [h, p, s] = token.split('.') as [string, string, string];
    const body = JSON.parse(Buffer.from(p, 'base64url').toString());
    const tampered = `${h}.${Buffer.from(JSON.stringify({ ...body, sub: 'spiffe://cluster.local/ns/x/sa/root' })).toString('base64url')}.${s}`;
    await expect((await at('2026-01-01T00:00:30Z')).verify(tampered)).rejects.toThrow('does not verify');
  });

  it('refuse bad subjects and lifetimes before signing', async () => {
    const key = await generateAdminSigningKey();
    await expect(mintAdminToken(key, 'alice', 60)).rejects.toThrow('subject: expected a SPIFFE id');
    await expect(mintAdminToken(key, ALICE, 0)).rejects.toThrow('ttlSeconds');
    expect(() => operatorSubject('cluster.local', 'Alice')).toThrow('invalid user name "Alice"');
  });
});

describe('AdminAuthority', () => {
  it('one signing key however many start at once; roles from bindings; 403 names the role needed', async () => {
    const store = new MemoryStore({ keyspace: Keyspace.of('m', 'c') });
    const keys = await Promise.all([
      ensureSigningKey(store),
      ensureSigningKey(store),
      ensureSigningKey(store),
    ]);
    expect(new Set(keys.map((k) => k.kid)).size).toBe(1);
    const authority = await AdminAuthority.open(store);
    try {
      const { token } = await bootstrapCredential(store, {
        subject: ALICE,
        role: 'edit',
        bindingName: 'alice',
        ttlSeconds: 60,
      });
      const caller = await authority.authenticateToken(token);
      expect([...caller.roles]).toEqual(['edit']);
      expect(() => authority.authorize(caller, 'view', 'read')).not.toThrow();
      expect(() => authority.authorize(caller, 'admin', 'mint tokens')).toThrow(ForbiddenError);
      expect(() => authority.authorize(caller, 'admin', 'mint tokens')).toThrow(
        `${ALICE} (role edit) may not mint tokens: needs role admin`,
      );
      await authority.deleteBinding('alice');
      const after = await authority.authenticateToken(token);
      expect(after.roles.size).toBe(0);
    } finally {
      await authority.close();
      await store.close();
    }
  });
});

describe('token revocation', () => {
  it('a revoked token is refused by every authority of the cluster; others of the subject still work; the entry is under a lease', async () => {
    const store = new MemoryStore({ keyspace: Keyspace.of('m', 'c') });
    const here = await AdminAuthority.open(store);
    const there = await AdminAuthority.open(store);
    try {
      const { token } = await bootstrapCredential(store, {
        subject: ALICE,
        role: 'view',
        bindingName: 'alice',
        ttlSeconds: 60,
      });
      const session = (await here.mint(ALICE, 120)).token;
      expect((await there.authenticateToken(session)).subject).toBe(ALICE);
      const revoked = await here.revoke(session);
      expect(revoked.subject).toBe(ALICE);
      // Refused here at once, and on the other replica once its watch has the entry.
      await expect(here.authenticateToken(session)).rejects.toThrow(UnauthenticatedError);
      await expect(here.authenticateToken(session)).rejects.toThrow('token revoked');
      await vi.waitFor(() => expect(there.authenticateToken(session)).rejects.toThrow('token revoked'));
      // Another token of the same subject is not affected.
      expect((await there.authenticateToken(token)).subject).toBe(ALICE);
      // A token that does not verify cannot be revoked (nothing to do).
      await expect(here.revoke('not-a-token')).rejects.toThrow(UnauthenticatedError);
      // The entry lives under a lease (it goes by itself after the token's expiry).
      const entries = await store.list(REVOKED_TOKENS_PREFIX);
      expect(entries.items).toHaveLength(1);
      expect(entries.items[0]!.lease).toBeDefined();
    } finally {
      await Promise.all([here.close(), there.close()]);
      await store.close();
    }
  });
});

describe('credentials file', () => {
  it('round-trips contexts with mode 0600 and picks the current one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'meridian-auth-creds-'));
    try {
      const file = join(dir, 'sub', 'credentials.yaml');
      expect(await readCredentials(file)).toEqual({ currentContext: undefined, contexts: [] });
      await saveContext(file, { name: 'east', server: 'http://e:15080', token: 't1' });
      await saveContext(file, { name: 'west', server: 'http://w:15080', token: 't2' });
      await saveContext(file, { name: 'east', server: 'http://e:15080', token: 't3' });
      expect((await stat(file)).mode & 0o777).toBe(0o600);
      const creds = await readCredentials(file);
      expect(creds.currentContext).toBe('east');
      expect(selectContext(creds)).toEqual({ name: 'east', server: 'http://e:15080', token: 't3' });
      expect(selectContext(creds, 'west')?.token).toBe('t2');
      expect(selectContext(creds, 'nope')).toBeUndefined();
      expect(await readFile(file, 'utf8')).toContain('kind: Credentials');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('errors name the file and field', () => {
    expect(() => parseCredentials('contexts: [{name: a, server: s}]', 'c.yaml')).toThrow(
      'c.yaml: contexts[0].token: required',
    );
    expect(() => parseCredentials('kind: Secret', 'c.yaml')).toThrow('c.yaml: kind: expected Credentials');
    expect(() =>
      parseCredentials('contexts: [{name: a, server: s, client-certificate: c.pem}]', 'c.yaml'),
    ).toThrow('c.yaml: contexts[0].client-key: client-certificate and client-key go together');
    expect(
      parseCredentials(
        'contexts: [{name: a, server: https://s, client-certificate: c.pem, client-key: k.pem, certificate-authority: r.pem}]',
        'c.yaml',
      ).contexts[0],
    ).toEqual({
      name: 'a',
      server: 'https://s',
      clientCertificate: 'c.pem',
      clientKey: 'k.pem',
      certificateAuthority: 'r.pem',
    });
  });
});
