// The etcd floor shared by benchmarks that compare a write's end-to-end latency with the time etcd
// itself takes: put -> watch round trips through @meridian/store, in a keyspace of their own.
import { EtcdStore, Keyspace, type Watch } from '@meridian/store';
import type { EtcdCluster } from '@meridian/testkit';
import { LatencyRecorder } from './latency.js';

/** etcd put -> watch samples through @meridian/store, on the benchmark's etcd (its own keyspace). */
export class EtcdFloor {
  readonly rec = new LatencyRecorder();
  waiting: { key: string; resolve: () => void } | undefined;
  #n = 0;

  private constructor(
    private readonly store: EtcdStore,
    private readonly watch: Watch,
  ) {}

  static async open(etcd: EtcdCluster): Promise<EtcdFloor> {
    const store = await EtcdStore.connect({
      endpoints: etcd.endpoints,
      keyspace: Keyspace.of('bench', 'floor'),
    });
    let floor: EtcdFloor | undefined;
    const watch = store.watchPrefix('floor/', (batch) => {
      const w = floor?.waiting;
      if (batch.kind === 'events' && w && batch.events.some((e) => e.type === 'put' && e.kv.key === w.key))
        w.resolve();
    });
    await watch.ready;
    floor = new EtcdFloor(store, watch);
    return floor;
  }

  /** `count` put -> watch round trips (recorded unless `warmup`). */
  async sample(count: number, warmup = false): Promise<void> {
    for (let i = 0; i < count; i++) {
      const key = `floor/k${this.#n++}`;
      const seen = new Promise<void>((resolve) => {
        this.waiting = { key, resolve };
      });
      const t0 = performance.now();
      await this.store.put(key, new TextEncoder().encode('x'.repeat(600)));
      await seen;
      if (!warmup) this.rec.record(performance.now() - t0);
    }
  }

  async close(): Promise<void> {
    await this.watch.close();
    await this.store.close();
  }
}
