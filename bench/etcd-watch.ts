// put -> watch latency through @meridian/store (EtcdStore: a put, then the event delivered by a prefix
// watch of a second client), against the floor: the etcd3 client's own put and watch without the store
// layer, measured in the same run on the same cluster; on a single member and on a 3-member cluster.
//
//   pnpm bench etcd-watch [--puts 2000] [--warmup 200] [--rounds 4] [--topologies 1,3] [--value-bytes 256]
//
// Each put is issued only after the previous one was seen by the watcher, so the figure is the latency
// of one change, not throughput. Store and floor alternate in --rounds rounds so both share the load of
// a busy machine. Prints readable figures, then one JSON line.
import { randomBytes } from 'node:crypto';
import { EtcdStore, Keyspace } from '@meridian/store';
import { startEtcdCluster } from '@meridian/testkit';
import { Etcd3 } from 'etcd3';
import {
  emitResult,
  FlagError,
  LatencyRecorder,
  type LatencySummary,
  log,
  nowMs,
  parseFlags,
  printLatency,
  round3,
  roundSummary,
  usage,
} from './lib/index.js';

const FLAGS = {
  puts: { type: 'integer', default: 2000, help: 'measured puts per client stack and topology' },
  warmup: { type: 'integer', default: 200, help: 'unmeasured puts first' },
  rounds: { type: 'integer', default: 4, help: 'alternating store/floor rounds the puts are split into' },
  topologies: { type: 'string', default: '1,3', help: 'etcd cluster sizes, comma-separated' },
  valueBytes: { type: 'integer', default: 256, help: 'value size' },
} as const;
const ABOUT = {
  bench: 'etcd-watch',
  description: 'etcd put->watch latency through @meridian/store vs the etcd3 client alone (p50/p99)',
};

/** One client stack: `put(key)` and a watcher that calls `waiters.get(key)` when it sees the put. */
interface Subject {
  put(key: string): Promise<unknown>;
  readonly waiters: Map<string, () => void>;
  close(): Promise<void>;
}

/** `count` sequential put->seen round trips, recorded into `into`. */
async function measure(subject: Subject, count: number, into?: LatencyRecorder): Promise<void> {
  for (let i = 0; i < count; i++) {
    const key = `k${i % 100}`;
    const seen = new Promise<void>((resolve) => subject.waiters.set(key, resolve));
    const t0 = nowMs();
    await subject.put(key);
    await seen;
    into?.record(nowMs() - t0);
  }
}

async function throughStore(endpoints: string[], value: Uint8Array): Promise<Subject> {
  const keyspace = Keyspace.of(`bench${randomBytes(3).toString('hex')}`, 'c1');
  const writer = await EtcdStore.connect({ endpoints, keyspace });
  const reader = await EtcdStore.connect({ endpoints, keyspace });
  const waiters = new Map<string, () => void>();
  const watch = reader.watchPrefix('w/', (batch) => {
    if (batch.kind !== 'events') return;
    for (const e of batch.events) if (e.type === 'put') waiters.get(e.kv.key.slice(2))?.();
  });
  await watch.ready;
  return {
    put: (key) => writer.put(`w/${key}`, value),
    waiters,
    close: async () => {
      await watch.close();
      await writer.close();
      await reader.close();
    },
  };
}

async function floor(endpoints: string[], value: Uint8Array): Promise<Subject> {
  const prefix = `/bench-raw/${randomBytes(3).toString('hex')}/`;
  const writer = new Etcd3({ hosts: endpoints });
  const reader = new Etcd3({ hosts: endpoints });
  const waiters = new Map<string, () => void>();
  const watcher = await reader.watch().prefix(prefix).create();
  watcher.on('put', (kv) => waiters.get(kv.key.toString().slice(prefix.length))?.());
  const buf = Buffer.from(value);
  return {
    put: (key) =>
      writer
        .put(prefix + key)
        .value(buf)
        .exec(),
    waiters,
    close: async () => {
      await watcher.cancel();
      writer.close();
      reader.close();
    },
  };
}

/** Warms both stacks up, then measures them in alternating rounds. */
async function compare(
  endpoints: string[],
  flags: { puts: number; warmup: number; rounds: number },
  value: Uint8Array,
): Promise<{ store: LatencySummary; floor: LatencySummary }> {
  const subjects = { store: await throughStore(endpoints, value), floor: await floor(endpoints, value) };
  const recorders = { store: new LatencyRecorder(), floor: new LatencyRecorder() };
  try {
    await measure(subjects.floor, flags.warmup);
    await measure(subjects.store, flags.warmup);
    for (let r = 0; r < flags.rounds; r++) {
      const n = Math.floor(flags.puts / flags.rounds) + (r < flags.puts % flags.rounds ? 1 : 0);
      const order = r % 2 === 0 ? (['floor', 'store'] as const) : (['store', 'floor'] as const);
      for (const which of order) await measure(subjects[which], n, recorders[which]);
    }
    return { store: recorders.store.summary(), floor: recorders.floor.summary() };
  } finally {
    await subjects.store.close();
    await subjects.floor.close();
  }
}

/** Entry point for `pnpm bench etcd-watch`. */
export async function main(args: string[]): Promise<void> {
  const flags = parseFlags(args, FLAGS, ABOUT);
  const sizes = flags.topologies.split(',').map((v) => Number(v));
  if (sizes.some((n) => !Number.isInteger(n) || n < 1)) {
    throw new FlagError(
      `--topologies takes cluster sizes like 1,3, got ${JSON.stringify(flags.topologies)}`,
      usage(ABOUT.bench, ABOUT.description, FLAGS),
      'topologies',
    );
  }
  if (flags.rounds < 1) {
    throw new FlagError(
      '--rounds must be at least 1',
      usage(ABOUT.bench, ABOUT.description, FLAGS),
      'rounds',
    );
  }
  const value = new Uint8Array(flags.valueBytes).fill(120);
  log(
    `etcd put->watch: ${flags.puts} sequential puts of ${flags.valueBytes} B per stack (${flags.warmup} warm-up), ` +
      `store (@meridian/store EtcdStore) vs floor (etcd3 client put + watch), ${flags.rounds} alternating rounds`,
  );
  const results: Record<string, { store: LatencySummary; floor: LatencySummary; overheadP50Ms: number }> = {};
  for (const size of sizes) {
    const cluster = await startEtcdCluster({ size, tmpfs: true });
    try {
      const label = size === 1 ? '1 member ' : `${size} members`;
      const { store, floor: raw } = await compare(cluster.endpoints, flags, value);
      printLatency(`${label}  store`, store);
      printLatency(`${label}  floor`, raw);
      const overheadP50Ms = round3(store.p50 - raw.p50);
      log(`${label}  store overhead at p50: ${overheadP50Ms} ms`);
      results[`members${size}`] = { store: roundSummary(store), floor: roundSummary(raw), overheadP50Ms };
    } finally {
      await cluster.stop();
    }
  }
  emitResult({ unit: 'ms', puts: flags.puts, valueBytes: flags.valueBytes, results });
}
