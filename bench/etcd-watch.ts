// put -> watch latency through @meridian/store, against the etcd3 client's own watch (the floor),
// on a single etcd member and on a 3-member cluster, measured in the same run.
//
//   pnpm bench etcd-watch [--puts 2000] [--warmup 200] [--topologies 1,3] [--value-bytes 256]
//
// Each put is issued only after the previous one was seen by the watcher, so the figure is the
// latency of one change, not throughput. Prints readable figures, then one JSON line.
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { EtcdStore, Keyspace } from '@meridian/store';
import { startEtcdCluster } from '@meridian/testkit';
import { Etcd3 } from 'etcd3';

interface Flags {
  puts: number;
  warmup: number;
  topologies: number[];
  valueBytes: number;
}

function parseFlags(args: string[]): Flags {
  const flags: Flags = { puts: 2000, warmup: 200, topologies: [1, 3], valueBytes: 256 };
  for (let i = 0; i < args.length; i++) {
    const [name, inline] = args[i]!.split('=', 2) as [string, string | undefined];
    const value = inline ?? args[++i];
    if (value === undefined) throw new Error(`flag ${name} needs a value`);
    const n = Number(value);
    switch (name) {
      case '--puts':
      case '--warmup':
      case '--value-bytes':
        if (!Number.isInteger(n) || n < 0)
          throw new Error(`flag ${name}: expected a whole number, got "${value}"`);
        if (name === '--puts') flags.puts = n;
        else if (name === '--warmup') flags.warmup = n;
        else flags.valueBytes = n;
        break;
      case '--topologies':
        flags.topologies = value.split(',').map((v) => {
          const size = Number(v);
          if (!Number.isInteger(size) || size < 1)
            throw new Error(`flag --topologies: bad cluster size "${v}"`);
          return size;
        });
        break;
      default:
        throw new Error(`unknown flag ${name} (known: --puts, --warmup, --topologies, --value-bytes)`);
    }
  }
  return flags;
}

interface Summary {
  count: number;
  p50: number;
  p99: number;
  max: number;
  mean: number;
}

/** Latency summary in milliseconds (3 decimals). */
function summarize(samples: number[]): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) =>
    sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? Number.NaN;
  const r = (x: number) => Math.round(x * 1000) / 1000;
  const mean = sorted.reduce((a, b) => a + b, 0) / Math.max(sorted.length, 1);
  return {
    count: sorted.length,
    p50: r(at(0.5)),
    p99: r(at(0.99)),
    max: r(sorted.at(-1) ?? Number.NaN),
    mean: r(mean),
  };
}

/** Runs `count` put->seen round trips; `seen(key)` resolves when the watcher delivered `key`. */
async function measure(
  count: number,
  put: (key: string) => Promise<unknown>,
  waiters: Map<string, () => void>,
): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    const key = `k${i % 100}`;
    const seen = new Promise<void>((resolve) => waiters.set(key, resolve));
    const t0 = performance.now();
    await put(key);
    await seen;
    samples.push(performance.now() - t0);
  }
  return samples;
}

/** A put->watch round trip runner over one client stack. */
interface Subject {
  run(count: number): Promise<number[]>;
  close(): Promise<void>;
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
    run: (count) => measure(count, (key) => writer.put(`w/${key}`, value), waiters),
    close: async () => {
      await watch.close();
      await writer.close();
      await reader.close();
    },
  };
}

async function rawClient(endpoints: string[], value: Uint8Array): Promise<Subject> {
  const prefix = `/bench-raw/${randomBytes(3).toString('hex')}/`;
  const writer = new Etcd3({ hosts: endpoints });
  const reader = new Etcd3({ hosts: endpoints });
  const waiters = new Map<string, () => void>();
  const watcher = await reader.watch().prefix(prefix).create();
  watcher.on('put', (kv) => waiters.get(kv.key.toString().slice(prefix.length))?.());
  const buf = Buffer.from(value);
  return {
    run: (count) =>
      measure(
        count,
        (key) =>
          writer
            .put(prefix + key)
            .value(buf)
            .exec(),
        waiters,
      ),
    close: async () => {
      await watcher.cancel();
      writer.close();
      reader.close();
    },
  };
}

/** Warms both up, then measures them in alternating rounds so load drift hits both alike. */
async function compare(endpoints: string[], flags: Flags, value: Uint8Array) {
  const store = await throughStore(endpoints, value);
  const raw = await rawClient(endpoints, value);
  try {
    await raw.run(flags.warmup);
    await store.run(flags.warmup);
    const samples = { store: [] as number[], raw: [] as number[] };
    const rounds = 4;
    for (let r = 0; r < rounds; r++) {
      const n = Math.floor(flags.puts / rounds) + (r < flags.puts % rounds ? 1 : 0);
      const order = r % 2 === 0 ? (['raw', 'store'] as const) : (['store', 'raw'] as const);
      for (const which of order) samples[which].push(...(await (which === 'raw' ? raw : store).run(n)));
    }
    return { store: summarize(samples.store), raw: summarize(samples.raw) };
  } finally {
    await store.close();
    await raw.close();
  }
}

/** Entry point for `pnpm bench etcd-watch`. */
export async function main(args: string[]): Promise<void> {
  const flags = parseFlags(args);
  const value = new Uint8Array(flags.valueBytes).fill(120);
  const results: Record<string, { store: Summary; raw: Summary; overheadP50Ms: number }> = {};
  console.log(
    `etcd put->watch latency: ${flags.puts} sequential puts (${flags.warmup} warm-up) of ${flags.valueBytes} B, ` +
      `store (@meridian/store EtcdStore) vs floor (etcd3 client watch), same run`,
  );
  for (const size of flags.topologies) {
    const cluster = await startEtcdCluster({ size, tmpfs: true });
    try {
      const label = size === 1 ? '1 member' : `${size} members`;
      const { store, raw } = await compare(cluster.endpoints, flags, value);
      const overheadP50Ms = Math.round((store.p50 - raw.p50) * 1000) / 1000;
      results[String(size)] = { store, raw, overheadP50Ms };
      console.log(
        `  ${label.padEnd(10)} store p50 ${store.p50.toFixed(3)} ms  p99 ${store.p99.toFixed(3)} ms  max ${store.max.toFixed(1)} ms | ` +
          `floor p50 ${raw.p50.toFixed(3)} ms  p99 ${raw.p99.toFixed(3)} ms  max ${raw.max.toFixed(1)} ms | ` +
          `store overhead at p50 ${overheadP50Ms.toFixed(3)} ms`,
      );
    } finally {
      await cluster.stop();
    }
  }
  console.log(
    JSON.stringify({
      bench: 'etcd-watch',
      unit: 'ms',
      puts: flags.puts,
      valueBytes: flags.valueBytes,
      results,
    }),
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main(process.argv.slice(2)).catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
