// xDS fan-out: N simulated proxies on one Meridian ADS server; how long until every proxy has ACKed a
// change, against the floor of a bare grpc-js server writing the same bytes once to as many streams.
//
//   pnpm bench xds-fanout --proxies 1000|5000|10000 [--delta] [--runs 5] [--debounce 0ms]
//
// The server runs in a child process (one core for the server, one for the simulated proxies), so
// neither side's CPU shows up in the other's figures. Each proxy watches CDS by wildcard and the
// ClusterLoadAssignment of one service; 5% of proxies watch service 0. Phases, medians of --runs:
// - convergence: every cluster changes (about 10 KB of CDS per proxy); time from the change to each
//   proxy's ACK (p50/p99 over proxies);
// - floor: as many proxies on a bare grpc-js server that writes the same response bytes once to each
//   stream; time to each proxy's receipt (p99). Floor and convergence runs alternate; ratio = the
//   median over runs of convergence p99 / floor p99 of the same run;
// - eds_5pct: service 0's endpoints change; p99 over the 5% of proxies that watch it (the others must
//   receive nothing);
// - stuck: one proxy (own connection) stops reading; convergence p99 of the others, against their p99
//   in the convergence runs before (stuck_effect_pct);
// - delta reconnect (--delta): every proxy reconnects with initial_resource_versions; resource bytes
//   received after the reconnect (target 0);
// - rss_per_proxy_kb: the server process' RSS growth from 0 to N connected proxies, per proxy.
// Debounce is 0 by default (the push starts at once): the quiet period is a policy delay that adds to
// every figure alike; pass --debounce 100ms to include istiod's default.
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Server, ServerCredentials, type ServerDuplexStream } from '@grpc/grpc-js';
import { TypeUrl } from '@meridian/envoy';
import {
  clusterFor,
  clusterName,
  LoadGenerator,
  loadAssignmentFor,
  percentile,
  type SimulatedProxy,
  type TestService,
} from '@meridian/testkit';
import {
  adsServiceDefinition,
  type ChangeEvent,
  ResourceCache,
  StaticSnapshot,
  sotwResponse,
  XdsServer,
  xdsLogger,
} from '@meridian/xds';
import { emitResult, log, median, parseFlags, round3 } from './lib/index.js';

const SERVICES = 20;
/** Cluster padding so one CDS response is about 10 KB. */
const PADDING = 420;

function services(generation: number, eds: number): TestService[] {
  return Array.from({ length: SERVICES }, (_, i) => ({
    host: `svc-${i}.bench.svc.cluster.local`,
    port: 80,
    endpoints: Array.from({ length: 3 }, (_, e) => ({
      address: `10.${i}.${(i === 0 ? eds : 0) % 250}.${e + 1}`,
      port: 8080,
    })),
    padding: PADDING + (generation % 2),
  }));
}

// ---------------------------------------------------------------------------------------------
// Server side (child process).

type Command =
  | { cmd: 'start'; concurrency: number; debounceMs: number }
  | { cmd: 'change-all' }
  | { cmd: 'change-eds' }
  | { cmd: 'floor-write' }
  | { cmd: 'rss' }
  | { cmd: 'stop' };

async function serverRole(): Promise<void> {
  const cache = new ResourceCache();
  let generation = 0;
  let eds = 0;
  let xds: XdsServer | undefined;
  let floor: Server | undefined;
  const floorStreams = new Set<ServerDuplexStream<Buffer, Buffer>>();
  let snapshot: StaticSnapshot | undefined;
  const build = () => {
    const svcs = services(generation, eds);
    const clusters = cache.internAll(TypeUrl.Cluster, svcs.map(clusterFor));
    const prev = snapshot?.byType.get(TypeUrl.ClusterLoadAssignment);
    let clas = cache.internAll(TypeUrl.ClusterLoadAssignment, svcs.map(loadAssignmentFor));
    if (prev && [...clas].every(([n, r]) => prev.get(n) === r)) clas = prev;
    snapshot = new StaticSnapshot(
      `g${generation}-e${eds}`,
      new Map([
        [TypeUrl.Cluster, clusters],
        [TypeUrl.ClusterLoadAssignment, clas],
      ]),
    );
    return snapshot;
  };
  const send = (m: unknown) => process.send?.(m);
  await new Promise<void>((resolve) => {
    process.on('message', async (m: Command) => {
      switch (m.cmd) {
        case 'start': {
          const rss0 = process.memoryUsage().rss;
          xds = new XdsServer({
            logger: xdsLogger({ level: 'warn', write: (l) => process.stderr.write(l) }),
            debounce: { quietMs: m.debounceMs, maxDelayMs: Math.max(1000, m.debounceMs) },
            pushConcurrency: m.concurrency,
            stuckTimeoutMs: 60_000,
          });
          xds.update(build());
          const port = await xds.listen();
          // The floor: a bare grpc-js server with the same service definition and channel options.
          floor = new Server(xds.grpcServerOptions());
          floor.addService(adsServiceDefinition, {
            StreamAggregatedResources: (call: ServerDuplexStream<Buffer, Buffer>) => {
              floorStreams.add(call);
              call.on('data', () => {});
              call.on('error', () => floorStreams.delete(call));
              call.on('close', () => floorStreams.delete(call));
            },
            DeltaAggregatedResources: (call: ServerDuplexStream<Buffer, Buffer>) => call.end(),
          });
          const floorPort = await new Promise<number>((res, rej) =>
            floor!.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) =>
              e ? rej(e) : res(p),
            ),
          );
          send({ port, floorPort, rss: rss0 });
          break;
        }
        case 'change-all': {
          generation++;
          const change: ChangeEvent = {
            full: false,
            types: new Set([TypeUrl.Cluster]),
            reason: ['bench-all'],
            at: performance.now(),
          };
          xds!.update(build(), change);
          await xds!.idle();
          send({ ok: true, serverMs: performance.now() - change.at });
          break;
        }
        case 'change-eds': {
          eds++;
          const change: ChangeEvent = {
            full: false,
            types: new Set([TypeUrl.ClusterLoadAssignment]),
            names: new Map([[TypeUrl.ClusterLoadAssignment, new Set([clusterName(services(0, 0)[0]!)])]]),
            reason: ['bench-eds'],
            at: performance.now(),
          };
          xds!.update(build(), change);
          await xds!.idle();
          send({ ok: true, serverMs: performance.now() - change.at });
          break;
        }
        case 'floor-write': {
          // The same bytes the ADS server sends for CDS (fresh nonce per stream, as it does).
          const clusters = [...snapshot!.byType.get(TypeUrl.Cluster)!.values()];
          let n = 0;
          for (const call of floorStreams)
            call.write(sotwResponse(snapshot!.version, clusters, TypeUrl.Cluster, `f${n++}`));
          send({ ok: true, streams: n });
          break;
        }
        case 'rss':
          send({
            rss: process.memoryUsage().rss,
            connections: xds?.connectionCount ?? 0,
            floorStreams: floorStreams.size,
            queued: xds?.queuedPushes ?? 0,
            blocked: xds?.syncStatus().filter((st) => st.bufferedBytes > 0).length ?? 0,
            // Whether the proxy that stopped reading (p1) has writes the server cannot complete.
            stuckBlocked: xds?.syncStatus().some((st) => st.proxyId.includes('~p1.') && st.bufferedBytes > 0)
              ? 1
              : 0,
          });
          break;
        case 'stop':
          xds?.close();
          floor?.forceShutdown();
          send({ ok: true });
          resolve();
          break;
      }
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Client side (the benchmark process).

class ServerProcess {
  readonly #child: ChildProcess;
  #waiting: ((m: Record<string, number>) => void)[] = [];
  constructor() {
    const runTs = fileURLToPath(new URL('./run.ts', import.meta.url));
    this.#child = fork(runTs, ['xds-fanout', '--role', 'server'], {
      execArgv: [
        '--conditions=@meridian/source',
        '--import',
        'tsx',
        ...(process.env.XDS_FANOUT_PROF ? ['--cpu-prof', '--cpu-prof-dir=/tmp/xprof'] : []),
      ],
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    });
    this.#child.on('message', (m) => this.#waiting.shift()?.(m as Record<string, number>));
  }
  ask(command: Command): Promise<Record<string, number>> {
    return new Promise((resolve) => {
      this.#waiting.push(resolve);
      this.#child.send(command);
    });
  }
  kill(): void {
    this.#child.kill();
  }
}

/** Server-side time from a change to the last push written to HTTP/2, per change (diagnostics). */
const serverMs: number[] = [];

async function converge(
  gen: LoadGenerator,
  server: ServerProcess,
  command: Command,
  type: string,
  who: readonly SimulatedProxy[],
  timeoutMs = 120_000,
): Promise<number[]> {
  gen.mark();
  const reply = await server.ask(command);
  if (reply.serverMs !== undefined) serverMs.push(reply.serverMs);
  // Everyone counted in O(1); a subset (the 5% watchers) is checked once the count allows it.
  const everyone = who.length === gen.proxies.length;
  const ok = await gen.waitFor(
    () =>
      everyone
        ? gen.markedCount(type) >= who.length
        : gen.markedCount(type) >= who.length && gen.latencies(type, who).length === who.length,
    timeoutMs,
    2,
  );
  if (!ok) {
    const st = await server.ask({ cmd: 'rss' });
    throw new Error(
      `only ${gen.latencies(type, who).length} of ${who.length} proxies converged (server: ${JSON.stringify(st)})`,
    );
  }
  return gen.latencies(type, who);
}

export async function main(args: string[]): Promise<void> {
  const flags = parseFlags(
    args,
    {
      proxies: { type: 'integer', default: 1000, help: 'simulated proxies' },
      delta: { type: 'boolean', default: false, help: 'Delta xDS instead of State-of-the-World' },
      runs: { type: 'integer', default: 5, help: 'repetitions of each phase; medians are reported' },
      debounce: { type: 'duration', default: 0, help: 'debounce quiet period of the server' },
      concurrency: { type: 'integer', default: 100, help: 'pushes in flight (PILOT_PUSH_THROTTLE)' },
      role: {
        type: 'string',
        default: 'client',
        help: 'internal: client or server',
        choices: ['client', 'server'],
      },
    },
    { bench: 'xds-fanout', description: 'change -> ACK convergence of N proxies vs a bare grpc-js floor' },
  );
  if (flags.role === 'server') {
    await serverRole();
    // The child's stdout is discarded; this only keeps run.ts from noting a missing result line.
    emitResult({ role: 'server' });
    return;
  }

  const n = flags.proxies;
  const variant = flags.delta ? 'delta' : 'sotw';
  const server = new ServerProcess();
  let gen: LoadGenerator | undefined;
  let floorGen: LoadGenerator | undefined;
  try {
    const {
      port,
      floorPort,
      rss: rss0,
    } = await server.ask({
      cmd: 'start',
      concurrency: flags.concurrency,
      debounceMs: flags.debounce,
    });
    const subscriptions = (i: number) => [
      { typeUrl: TypeUrl.Cluster },
      {
        typeUrl: TypeUrl.ClusterLoadAssignment,
        names: [clusterName(services(0, 0)[i % 20 === 0 ? 0 : 1 + (i % (SERVICES - 1))]!)],
      },
    ];
    const nodeId = (i: number) =>
      `sidecar~10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}~p${i}.bench~bench.svc.cluster.local`;
    const stuckIndex = 1;
    gen = new LoadGenerator({
      address: `127.0.0.1:${port}`,
      proxies: n,
      isolated: new Set([stuckIndex]),
      // HTTP/2's default window for the proxy that will stop reading, so it blocks after a few pushes.
      isolatedFlowControlWindow: 65_535,
      proxy: (i) => ({ nodeId: nodeId(i), variant, subscriptions: subscriptions(i) }),
    });
    const t0 = performance.now();
    gen.connect();
    const synced = await gen.waitFor(
      () => gen!.proxies.every((p) => (p.state.get(TypeUrl.ClusterLoadAssignment)?.acks ?? 0) > 0),
      300_000,
      20,
    );
    if (!synced) throw new Error('initial sync did not complete');
    log(`${n} ${variant} proxies connected and synced in ${(performance.now() - t0).toFixed(0)} ms`);
    await new Promise((r) => setTimeout(r, 500));
    const { rss: rssN } = await server.ask({ cmd: 'rss' });
    const rssPerProxyKb = (rssN! - rss0!) / 1024 / n;
    const cdsBytes = gen.proxies[0]!.state.get(TypeUrl.Cluster)!.resourceBytes;
    log(
      `CDS resource bytes per proxy: ${cdsBytes}; server RSS ${(rss0! / 2 ** 20).toFixed(0)} -> ${(rssN! / 2 ** 20).toFixed(0)} MiB`,
    );

    const all = gen.proxies;
    const others = all.filter((_, i) => i !== stuckIndex);
    const watchers = all.filter((_, i) => i % 20 === 0);
    const runs = flags.runs;
    // Floor: the same number of streams on the bare server, connected now so floor and convergence
    // runs can alternate (the machine's noise then hits both alike).
    floorGen = new LoadGenerator({
      address: `127.0.0.1:${floorPort}`,
      proxies: n,
      proxy: (i) => ({ nodeId: nodeId(i), variant: 'sotw', subscriptions: [{ typeUrl: TypeUrl.Cluster }] }),
    });
    floorGen.connect();
    const floorReady = async () => (await server.ask({ cmd: 'rss' })).floorStreams === n;
    for (let i = 0; i < 600 && !(await floorReady()); i++) await new Promise((r) => setTimeout(r, 100));
    // Two unmeasured rounds first: JIT and buffers warm, as in the later phases.
    for (let w = 0; w < 2; w++) {
      await converge(floorGen, server, { cmd: 'floor-write' }, TypeUrl.Cluster, floorGen.proxies);
      await converge(gen, server, { cmd: 'change-all' }, TypeUrl.Cluster, all);
    }
    const conv: { p50: number; p99: number; others99: number }[] = [];
    const floor: number[] = [];
    const ratios: number[] = [];
    for (let r = 0; r < runs; r++) {
      const fl = await converge(floorGen, server, { cmd: 'floor-write' }, TypeUrl.Cluster, floorGen.proxies);
      floor.push(percentile(fl, 99));
      const lat = await converge(gen, server, { cmd: 'change-all' }, TypeUrl.Cluster, all);
      const others99 = percentile(gen.latencies(TypeUrl.Cluster, others), 99);
      conv.push({ p50: percentile(lat, 50), p99: percentile(lat, 99), others99 });
      ratios.push(conv[r]!.p99 / floor[r]!);
      log(
        `run ${r + 1}: floor p50 ${percentile(fl, 50).toFixed(1)} p99 ${floor[r]!.toFixed(1)} ms; convergence p50 ${conv[r]!.p50.toFixed(1)} p99 ${conv[r]!.p99.toFixed(1)} ms (server: pushes written after ${serverMs.at(-1)?.toFixed(1)} ms); ratio ${ratios[r]!.toFixed(2)}`,
      );
    }
    floorGen.close();
    floorGen = undefined;
    const eds: number[] = [];
    let edsLeak = 0;
    for (let r = 0; r < runs; r++) {
      const lat = await converge(gen, server, { cmd: 'change-eds' }, TypeUrl.ClusterLoadAssignment, watchers);
      await new Promise((res) => setTimeout(res, 50));
      edsLeak += gen.latencies(TypeUrl.ClusterLoadAssignment).length - watchers.length;
      eds.push(percentile(lat, 99));
      log(
        `5% endpoint change run ${r + 1}: p99 ${eds[r]!.toFixed(1)} ms over ${watchers.length} watchers (server: pushes written after ${serverMs.at(-1)?.toFixed(1)} ms)`,
      );
    }

    // One proxy stops reading; the others' convergence.
    all[stuckIndex]!.stopReading();
    // Push until its stream is really blocked at the server (flow control), then measure.
    let primed = 0;
    while (primed < 60 && !(await server.ask({ cmd: 'rss' })).stuckBlocked) {
      await converge(gen, server, { cmd: 'change-all' }, TypeUrl.Cluster, others);
      primed++;
    }
    log(`the stopped proxy is blocked at the server after ${primed} pushes`);
    const stuck: number[] = [];
    for (let r = 0; r < runs; r++) {
      const lat = await converge(gen, server, { cmd: 'change-all' }, TypeUrl.Cluster, others);
      stuck.push(percentile(lat, 99));
      log(`with one stuck proxy run ${r + 1}: p99 ${stuck[r]!.toFixed(1)} ms`);
    }

    let deltaReconnectBytes: number | null = null;
    if (flags.delta) {
      const live = others;
      const before = live.reduce((s, p) => s + p.totalResourceBytes, 0);
      const responsesBefore = live.reduce(
        (s, p) => s + [...p.state.values()].reduce((a, t) => a + t.responses, 0),
        0,
      );
      const t1 = performance.now();
      for (const p of live) gen.reconnect(p, true);
      const ok = await gen.waitFor(
        () =>
          live.reduce((s, p) => s + [...p.state.values()].reduce((a, t) => a + t.responses, 0), 0) >=
          responsesBefore + 2 * live.length,
        120_000,
        10,
      );
      deltaReconnectBytes = live.reduce((s, p) => s + p.totalResourceBytes, 0) - before;
      log(
        `delta reconnect of ${live.length} proxies with current versions: ${ok ? 'answered' : 'NOT all answered'} in ${(performance.now() - t1).toFixed(0)} ms, resource bytes received: ${deltaReconnectBytes}`,
      );
    }

    const p50 = median(conv.map((c) => c.p50));
    const p99 = median(conv.map((c) => c.p99));
    const others99 = median(conv.map((c) => c.others99));
    const floorMs = median(floor);
    const stuckP99 = median(stuck);
    emitResult({
      proxies: n,
      variant,
      runs,
      cds_bytes_per_proxy: cdsBytes,
      convergence_p50_ms: round3(p50),
      convergence_p99_ms: round3(p99),
      floor_ms: round3(floorMs),
      ratio: round3(median(ratios)),
      eds_5pct_p99_ms: round3(median(eds)),
      eds_5pct_leaked_pushes: edsLeak,
      stuck_others_p99_ms: round3(stuckP99),
      stuck_effect_pct: round3(((stuckP99 - others99) / others99) * 100),
      delta_reconnect_resource_bytes: deltaReconnectBytes,
      rss_per_proxy_kb: round3(rssPerProxyKb),
      debounce_ms: flags.debounce,
      concurrency: flags.concurrency,
    });
  } finally {
    floorGen?.close();
    gen?.close();
    await Promise.race([server.ask({ cmd: 'stop' }), new Promise((r) => setTimeout(r, 3000))]);
    server.kill();
  }
}
