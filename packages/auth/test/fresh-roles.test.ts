// A role binding written a moment ago may not have reached a replica's mirror when the subject's first
// request arrives there: a verified subject with no role is checked against the store before it is
// refused (at most once a second per subject).
import { AdminAuthority, bootstrapCredential } from '@meridian/auth';
import { Keyspace, MemoryStore, type Store, type WatchBatch, type WatchHandler } from '@meridian/store';
import { describe, expect, it } from 'vitest';

const ALICE = 'spiffe://cluster.local/ns/meridian-system/sa/alice';
const BOB = 'spiffe://cluster.local/ns/meridian-system/sa/bob';

/** A view of `inner` whose watches deliver nothing while `held` is true, and that counts lists. */
function laggingStore(inner: MemoryStore) {
  const state = { held: false, lists: 0 };
  const parked: (() => void)[] = [];
  const store = new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === 'watchPrefix')
        return (prefix: string, handler: WatchHandler, options?: Parameters<Store['watchPrefix']>[2]) =>
          target.watchPrefix(
            prefix,
            (batch: WatchBatch) => {
              if (!state.held) return handler(batch);
              parked.push(() => void handler(batch));
            },
            options,
          );
      if (prop === 'list')
        return (prefix: string) => {
          state.lists++;
          return target.list(prefix);
        };
      const value = Reflect.get(target, prop, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return {
    store,
    state,
    release: () => {
      for (const deliver of parked.splice(0)) deliver();
    },
  };
}

describe('AdminAuthority: a binding the mirror has not seen yet', () => {
  it('is read from the store before a verified subject is treated as having no role', async () => {
    const backing = new MemoryStore({ keyspace: Keyspace.of('m', 'c') });
    const lagging = laggingStore(backing);
    const authority = await AdminAuthority.open(lagging.store);
    try {
      lagging.state.held = true;
      const { token } = await bootstrapCredential(backing, {
        subject: ALICE,
        role: 'edit',
        bindingName: 'alice',
        ttlSeconds: 60,
      });
      expect(authority.rolesOf(ALICE).size).toBe(0); // the mirror has not seen it
      const caller = await authority.authenticateToken(token);
      expect([...caller.roles]).toEqual(['edit']);
      expect(() => authority.authorize(caller, 'edit', 'apply config')).not.toThrow();

      // A subject with no binding at all: one read, then none for a second.
      const bob = await bootstrapCredential(backing, {
        subject: BOB,
        role: 'view',
        bindingName: 'bob',
        ttlSeconds: 60,
      });
      await authority.deleteBinding('bob');
      const listsBefore = lagging.state.lists;
      expect((await authority.authenticateToken(bob.token)).roles.size).toBe(0);
      expect((await authority.authenticateToken(bob.token)).roles.size).toBe(0);
      expect(lagging.state.lists - listsBefore).toBe(1);

      lagging.state.held = false;
      lagging.release();
      expect([...authority.rolesOf(ALICE)]).toEqual(['edit']);
    } finally {
      await authority.close();
      await backing.close();
    }
  });
});
