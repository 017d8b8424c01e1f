// StoreHealth's probe: one failed read while available is tried again before the store counts as
// unavailable (a busy event loop can time out a read etcd answered); two in a row mark it down, and
// one good read marks it up again.
import type { Store } from '@meridian/store';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { StoreHealth } from '../src/health.js';

/** A store whose revision() answers from a script: true succeeds, false throws. */
function scriptedStore(script: boolean[]): { store: Store; reads: () => number } {
  let reads = 0;
  const store = {
    revision: async () => {
      const ok = script[reads++] ?? true;
      if (!ok) throw new Error('revision did not complete within 2000 ms');
      return reads;
    },
  } as unknown as Store;
  return { store, reads: () => reads };
}

const silent = pino({ level: 'silent' });

describe('StoreHealth probe', () => {
  it('stays available when a failed read is followed by a good one', async () => {
    const { store, reads } = scriptedStore([false, true]);
    const health = new StoreHealth(store, silent);
    await health.probe();
    expect(reads()).toBe(2);
    expect(health.unavailableSince).toBeUndefined();
    expect(health.describe()).toBe('ok');
  });

  it('marks the store unavailable after two failed reads in a row, and available after one good read', async () => {
    const { store, reads } = scriptedStore([false, false, false, true]);
    const health = new StoreHealth(store, silent);
    await health.probe();
    expect(reads()).toBe(2);
    expect(health.unavailableSince).toBeTypeOf('number');
    expect(health.describe()).toMatch(/^degraded: store unavailable since /);
    // While down, each probe is a single read: the first failure keeps it down...
    await health.probe();
    expect(reads()).toBe(3);
    expect(health.unavailableSince).toBeTypeOf('number');
    // ...and the first good read brings it back.
    await health.probe();
    expect(reads()).toBe(4);
    expect(health.unavailableSince).toBeUndefined();
  });
});
