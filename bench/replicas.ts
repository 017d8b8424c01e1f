// Issue 5's benchmark: 3 meridiand replicas on a 3-member etcd, N simulated Delta proxies spread
// over them. Per round, one config write (a VirtualService change) through a replica's admin API;
// measured: from the write returning to the LAST proxy's ACK of the changed route. Compared with its
// floor, measured in the same run: etcd put->watch latency (a put through @meridian/store to the
// watch event, on the same etcd) plus the xDS fan-out floor (3 bare XdsServer processes serving
// precomputed snapshots to the same number of proxies, same debounce: no etcd, watch or
// translation). The three are measured in interleaved rounds, so machine load hits them alike.
//
//   pnpm bench replicas [--proxies 1000] [--rounds 20] [--warmup 3] [--debounce 20ms] [--puts 200]
//
// Prints readable figures, then one JSON line (target: p99 <= 1.5 x floor p99).
import { eventually, freePorts, LoadGenerator, startEtcdCluster } from '@meridian/testkit';
import {
  benchConfig,
  type ReplicaProcess,
  sidecar,
  type spawnTs,
  startReplicas,
} from '../packages/server/test/harness.js';
import { EtcdFloor } from './lib/etcd-floor.js';
import { startFloorServers } from './lib/fanout-floor.js';
import {
  emitResult,
  formatMs,
  LatencyRecorder,
  log,
  parseFlags,
  printLatency,
  roundSummary,
} from './lib/index.js';

const RDS = 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration';

const FLAGS = {
  proxies: { type: 'integer', default: 1000, help: 'simulated proxies, spread over the 3 replicas' },
  rounds: { type: 'integer', default: 30, help: 'measured config writes' },
  warmup: { type: 'integer', default: 3, help: 'unmeasured writes first' },
  debounce: { type: 'duration', default: 20, help: 'push debounce of the replicas and of the floor servers' },
  puts: { type: 'integer', default: 200, help: 'etcd put->watch samples for the floor' },
} as const;

/** Splits proxies over 3 load generators (one per server address). */
function generators(addresses: readonly string[], proxies: number): LoadGenerator[] {
  return addresses.map(
    (address, s) =>
      new LoadGenerator({
        address,
        proxies: Math.floor(proxies / 3) + (s < proxies % 3 ? 1 : 0),
        proxy: (i) => sidecar(s * 100_000 + i, 'delta').options,
        streamsPerConnection: 50,
      }),
  );
}

const all = (gens: readonly LoadGenerator[]) => gens.flatMap((g) => g.proxies);

async function connectAll(gens: LoadGenerator[], what: string): Promise<void> {
  for (const g of gens) g.connect();
  const msStart = performance.now();
  await eventually(
    what,
    () => all(gens).every((p) => (p.state.get(RDS)?.resources.size ?? 0) > 0),
    180_000,
    50,
  );
  const ms = performance.now() - msStart;
  log(`${what}: ${all(gens).length} proxies synced in ${formatMs(ms)}`);
}

/**
 * One round: mark, change, wait for every proxy's RDS response; returns the time from `returned()`
 * (ms, performance.now()) to the last proxy's response (its ACK is written in the same tick), and
 * every proxy's own time.
 */
async function round(
  gens: LoadGenerator[],
  change: () => Promise<number>,
): Promise<{ last: number; each: number[] }> {
  const marks = gens.map((g) => g.mark());
  const markAt = Math.min(...marks);
  const returned = await change();
  await eventually(
    'every proxy got the change',
    () => all(gens).every((p) => p.sinceMark.has(RDS)),
    60_000,
    2,
  );
  const each = all(gens).map((p) => Math.max(0, markAt + p.sinceMark.get(RDS)! - returned));
  return { last: Math.max(...each), each };
}

export async function main(args: string[]): Promise<void> {
  const flags = parseFlags(args, FLAGS, {
    bench: 'replicas',
    description: 'config write -> last proxy ACK over 3 replicas, vs etcd put->watch + xDS fan-out floor',
  });
  const etcd = await startEtcdCluster({ size: 3 });
  let replicas: ReplicaProcess[] = [];
  let gens: LoadGenerator[] = [];
  let floorGens: LoadGenerator[] = [];
  let etcdFloor: EtcdFloor | undefined;
  const floorServers: ReturnType<typeof spawnTs>[] = [];
  try {
    const total = flags.warmup + flags.rounds;
    const ports = await freePorts(6);
    replicas = await startReplicas(
      [0, 1, 2].map((i) => ({
        id: `r${i}`,
        etcd: etcd.endpoints,
        xdsPort: ports[2 * i]!,
        adminPort: ports[2 * i + 1]!,
        extraArgs: ['--debounce-ms', String(flags.debounce), '--log-level', 'warn'],
      })),
    );
    const first = await replicas[0]!.apply(benchConfig(0));
    if (first.status !== 200) throw new Error(`initial apply failed: ${JSON.stringify(first.body)}`);
    const floorAddresses = await startFloorServers(floorServers, total, flags.debounce);
    etcdFloor = await EtcdFloor.open(etcd);
    gens = generators(
      replicas.map((r) => r.xds),
      flags.proxies,
    );
    floorGens = generators(floorAddresses, flags.proxies);
    await connectAll(gens, 'replicas');
    await connectAll(floorGens, 'fan-out floor servers');
    await etcdFloor.sample(20, true);

    // Rounds interleave the three measurements, so each sees the same machine (this one is shared).
    const e2e = new LatencyRecorder();
    const perProxy = new LatencyRecorder();
    const fanout = new LatencyRecorder();
    const putsPerRound = Math.max(1, Math.ceil(flags.puts / flags.rounds));
    for (let i = 1; i <= total; i++) {
      const measured = i > flags.warmup;
      const r = await round(gens, async () => {
        const res = await replicas[i % 3]!.apply(benchConfig(i));
        if (res.status !== 200) throw new Error(`apply failed: ${JSON.stringify(res.body)}`);
        return performance.now();
      });
      const f = await round(floorGens, async () => {
        const at = performance.now();
        for (const c of floorServers) c.stdin?.write(`bump ${i}\n`);
        return at;
      });
      await etcdFloor.sample(putsPerRound, !measured);
      if (measured) {
        e2e.record(r.last);
        for (const x of r.each) perProxy.record(x);
        fanout.record(f.last);
      }
    }
    const etcdLat = etcdFloor.rec.summary();

    const e = roundSummary(e2e.summary());
    const each = roundSummary(perProxy.summary());
    const et = roundSummary(etcdLat);
    const fo = roundSummary(fanout.summary());
    const floor = { p50: et.p50 + fo.p50, p99: et.p99 + fo.p99 };
    log();
    log(
      `${flags.proxies} Delta proxies over 3 replicas, ${flags.rounds} writes, debounce ${flags.debounce} ms`,
    );
    printLatency('write returned -> last proxy ACK  ', e);
    printLatency('write returned -> each proxy ACK  ', each);
    printLatency('floor: etcd put -> watch          ', et);
    printLatency('floor: xDS fan-out -> last ACK    ', fo);
    log(`floor (sum): p50 ${formatMs(floor.p50)}  p99 ${formatMs(floor.p99)}`);
    const ratio = Math.round((e.p99 / floor.p99) * 100) / 100;
    log(`p99 / floor p99 = ${ratio} (target <= 1.5)`);
    emitResult({
      proxies: flags.proxies,
      replicas: 3,
      rounds: flags.rounds,
      debounce_ms: flags.debounce,
      write_to_last_ack: { p50: e.p50, p99: e.p99, max: e.max },
      write_to_each_ack: { p50: each.p50, p99: each.p99 },
      floor: {
        p50: Math.round(floor.p50 * 1000) / 1000,
        p99: Math.round(floor.p99 * 1000) / 1000,
        etcd_put_watch: { p50: et.p50, p99: et.p99 },
        xds_fanout_last_ack: { p50: fo.p50, p99: fo.p99 },
      },
      p99_over_floor: ratio,
      target_met: ratio <= 1.5,
    });
  } finally {
    for (const g of [...gens, ...floorGens]) g.close();
    await etcdFloor?.close().catch(() => undefined);
    for (const c of floorServers) c.kill('SIGKILL');
    await Promise.all(replicas.map((r) => r.kill('SIGKILL')));
    await etcd.stop();
  }
}
