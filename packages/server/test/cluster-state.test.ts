// ClusterState follows only the prefixes it owns (config and agent registrations): the keys other
// parts of the replica write often (membership, load, convergence, rate-limit windows, telemetry)
// never reach it, and a compaction of one part resyncs that part without losing the other.
import { Keyspace, MemoryStore, type Store, type WatchBatch, type WatchHandler } from '@meridian/store';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { StateChange } from '../src/cluster-state.js';
import { ClusterState } from '../src/cluster-state.js';

const encode = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

const serviceEntry = (name: string) => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'ServiceEntry',
  metadata: { name, namespace: 'default' },
  spec: { hosts: [`${name}.example.com`], ports: [{ number: 80, name: 'http', protocol: 'HTTP' }] },
});

const registration = (name: string) => ({
  name,
  namespace: 'default',
  address: '10.0.0.1',
  labels: { app: name },
  ports: { http: 8080 },
});

/** A store that counts the events its watches hand to their handlers. */
function countingStore(inner: MemoryStore): { store: Store; delivered: () => number } {
  let delivered = 0;
  const store = new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === 'watchPrefix')
        return (prefix: string, handler: WatchHandler, options?: Parameters<Store['watchPrefix']>[2]) =>
          target.watchPrefix(
            prefix,
            (batch: WatchBatch) => {
              delivered += batch.kind === 'events' ? batch.events.length : batch.items.length;
              return handler(batch);
            },
            options,
          );
      const value = Reflect.get(target, prop, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { store, delivered: () => delivered };
}

describe('ClusterState', () => {
  let backing: MemoryStore;
  let state: ClusterState;
  let changes: StateChange[];
  let delivered: () => number;

  const settled = () => new Promise((r) => setTimeout(r, 20));

  beforeEach(async () => {
    backing = new MemoryStore({ keyspace: Keyspace.of('m', 'c') });
    const counting = countingStore(backing);
    delivered = counting.delivered;
    changes = [];
    state = new ClusterState(
      counting.store,
      pino({ level: 'silent' }),
      (c) => changes.push(c),
      () => undefined,
    );
    await backing.put('config/ServiceEntry/default/a', encode(serviceEntry('a')));
    await backing.put('ratelimit/window/1', encode({ n: 1 }));
    await state.start();
  });
  afterEach(async () => {
    await state.close();
  });

  it('loads and follows config and registrations, and nothing else of the keyspace', async () => {
    expect(state.configs().map((c) => c.metadata.name)).toEqual(['a']);
    for (let i = 0; i < 50; i++) {
      await backing.put(`ratelimit/window/${i}`, encode({ n: i }));
      await backing.put(`convergence/replica-${i % 3}`, encode({ acked: i }));
      await backing.put(`replicas/r${i % 3}`, encode({ at: i }));
      await backing.put(`load/r${i % 3}`, encode({ proxies: i }));
      await backing.put(`telemetry/graph/r${i % 3}`, encode({ edges: i }));
      await backing.put('status/leader', encode({ leader: `r${i % 3}` }));
    }
    await settled();
    expect(delivered()).toBe(0);
    expect(changes).toEqual([]);

    const { revision } = await backing.put('config/ServiceEntry/default/b', encode(serviceEntry('b')));
    const wl = await backing.put('workloads/default/w1', encode(registration('w1')));
    await settled();
    expect(delivered()).toBe(2);
    expect(state.configs().map((c) => c.metadata.name)).toEqual(['a', 'b']);
    expect(state.registrations().map((r) => r.name)).toEqual(['w1']);
    expect(changes.map((c) => [[...c.configs], c.workloads])).toEqual([
      [['ServiceEntry/default/b'], false],
      [[], true],
    ]);
    expect(state.revision).toBe(wl.revision);
    expect(revision).toBeLessThan(wl.revision);
    // Both watches have delivered up to their last event: the state is known up to the older one.
    expect(state.watchedRevision).toBeGreaterThanOrEqual(revision);
  });

  it('a compaction under one part resyncs that part and keeps the other', async () => {
    await backing.put('workloads/default/w1', encode(registration('w1')));
    await settled();
    await state.close();
    // Restart after a gap that was compacted: both watches resume from the old revision.
    const snapshot = state.snapshotState();
    await backing.delete('config/ServiceEntry/default/a');
    await backing.put('config/ServiceEntry/default/c', encode(serviceEntry('c')));
    const last = await backing.put('ratelimit/window/x', encode({ n: 2 }));
    await backing.compact(last.revision);
    changes = [];
    state = new ClusterState(
      backing,
      pino({ level: 'silent' }),
      (c) => changes.push(c),
      () => undefined,
    );
    state.startFrom(snapshot);
    await settled();
    expect(state.configs().map((c) => c.metadata.name)).toEqual(['c']);
    expect(state.registrations().map((r) => r.name)).toEqual(['w1']);
    expect(changes.some((c) => c.resync && c.configs.has('ServiceEntry/default/c'))).toBe(true);
  });
});
