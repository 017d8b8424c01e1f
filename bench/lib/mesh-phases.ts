// The `mesh` benchmark's edit phases (bench/mesh.ts): one measured change (mark, change, wait for
// every sidecar's new version or the settle time), the rounds of an edit phase with their floor
// (etcd put -> watch plus the bare server's fan-out of the same bytes) and replica CPU, and which
// sidecars a round did not push.
import type { EtcdFloor } from './etcd-floor.js';
import { LatencyRecorder } from './latency.js';
import { epochNow } from './mesh-client.js';
import { type All, mb, type SidecarSpec, sleep, streamEnds, TimedOut } from './mesh-driver.js';
import { cpuSeconds, type IpcChild } from './proc.js';
import { formatMs, log } from './report.js';

/** Result of one measured change. */
export interface RoundResult {
  status: 'ok' | 'timed out';
  /** write returned -> last pushed sidecar's ACK of the measured types (ms). */
  last: number;
  /** The same for each pushed sidecar. */
  each: number[];
  pushed: number;
  bytes: number;
  /** Sidecars that got any response since the change. */
  responded: number;
  /** Indices of the sidecars that got no new version of the measured types. */
  notPushed: number[];
}

/** An edit phase's figures over its rounds. */
export interface EditPhase {
  status: 'ok' | 'timed out' | 'skipped' | 'error';
  detail?: string;
  rounds: RoundResult[];
  last: LatencyRecorder;
  each: LatencyRecorder;
  fanout: LatencyRecorder;
  etcd: LatencyRecorder;
  /** CPU seconds each replica used over the measured rounds (change to last ACK). */
  cpu: number[];
}

export const newPhase = (): EditPhase => ({
  status: 'skipped',
  rounds: [],
  last: new LatencyRecorder(),
  each: new LatencyRecorder(),
  fanout: new LatencyRecorder(),
  etcd: new LatencyRecorder(),
  cpu: [0, 0, 0],
});

/** What every edit phase of one run shares: its processes, floors and flags. */
export interface EditContext {
  workers: readonly IpcChild[];
  all: All;
  floorServer: IpcChild;
  etcdFloor: EtcdFloor;
  /** The replicas' pids, for their CPU seconds. */
  pids: (number | undefined)[];
  specs: readonly SidecarSpec[];
  /** The first sync completed (the edit phases are skipped otherwise). */
  synced: boolean;
  proxies: number;
  rounds: number;
  settle: number;
  roundTimeout: number;
  puts: number;
}

/** Runs `warmup` uncounted rounds and then `ctx.rounds` measured ones of `change` into `phase`;
 * stops at the first round that fails or times out. */
export async function runEditPhase(
  ctx: EditContext,
  phase: EditPhase,
  label: string,
  types: string[],
  floorTypes: string[],
  change: (round: number) => Promise<void>,
  warmup: number,
): Promise<void> {
  if (!ctx.synced) {
    phase.detail = 'first sync did not complete';
    return;
  }
  phase.status = 'ok';
  for (let r = 1 - warmup; r <= ctx.rounds; r++) {
    let res: RoundResult;
    const cpuBefore = ctx.pids.map(cpuSeconds);
    try {
      res = await measureRound(ctx.all, types, () => change(r), ctx.proxies, ctx.settle, ctx.roundTimeout);
    } catch (error) {
      phase.status = 'error';
      phase.detail = (error as Error).message;
      log(`${label}: round ${r}: ${phase.detail}`);
      return;
    }
    if (res.status === 'timed out') {
      phase.status = 'timed out';
      phase.detail = `round ${r}: ${res.pushed}/${ctx.proxies} pushed within ${formatMs(ctx.roundTimeout)}`;
      log(`${label}: ${phase.detail}`);
      return;
    }
    const fl = await floorFanout(
      ctx.workers,
      ctx.floorServer,
      floorTypes,
      true,
      ctx.proxies,
      ctx.roundTimeout,
    );
    ctx.etcdFloor.rec.reset();
    await ctx.etcdFloor.sample(ctx.puts);
    if (res.notPushed.length > 0) log(`${label} round ${r}: ${notPushedBreakdown(res, ctx.specs)}`);
    if (r < 1) continue;
    const cpuAfter = ctx.pids.map(cpuSeconds);
    phase.cpu = phase.cpu.map((c, i) => c + cpuAfter[i]! - cpuBefore[i]!);
    phase.rounds.push(res);
    phase.last.record(res.last);
    for (const x of res.each) phase.each.record(Math.max(0, x));
    if (fl && fl.ms >= 0) phase.fanout.record(fl.ms);
    phase.etcd.add(ctx.etcdFloor.rec);
    const ends = await streamEnds(ctx.all);
    log(
      `${ends.ended ? `  (streams ended so far: ${ends.ended} sidecars, ${ends.reconnects} reconnects; e.g. ${ends.firstEnded})\n` : ''}` +
        `${label} round ${r}: last ACK ${formatMs(res.last)}, pushed ${res.pushed}/${ctx.proxies}, ${mb(res.bytes)} sent; floor: fan-out ${fl ? formatMs(fl.ms) : 'n/a'}, etcd p50 ${formatMs(ctx.etcdFloor.rec.percentile(50))}`,
    );
  }
}

/** One measured change: mark, change, wait until every sidecar got a new version of `types` (or
 * nothing new for `settleMs`, or the timeout); the latencies from the change's return. */
async function measureRound(
  all: All,
  types: string[],
  change: () => Promise<void>,
  n: number,
  settleMs: number,
  timeoutMs: number,
): Promise<RoundResult> {
  await all({ cmd: 'mark' });
  await change();
  const returned = epochNow();
  const start = performance.now();
  let status: RoundResult['status'] = 'ok';
  let seen = 0;
  let seenAt = start;
  for (;;) {
    await sleep(50);
    const pr = await all<{ changed: number; last: number }>({ cmd: 'progress', types });
    const changed = pr.reduce((a, p) => a + p.changed, 0);
    const now = performance.now();
    if (changed !== seen) {
      seen = changed;
      seenAt = now;
    }
    if (changed >= n) break;
    if (changed > 0 && now - seenAt > settleMs) break;
    if (now - start > timeoutMs) {
      status = 'timed out';
      break;
    }
  }
  const since = await all<{
    lasts: number[];
    bytes: number;
    responses: number;
    anyResponse: number;
    notPushed: number[];
  }>({
    cmd: 'since',
    types,
  });
  const each = since.flatMap((s) => s.lasts.map((l) => l - returned));
  return {
    status,
    last: each.length ? Math.max(...each) : Number.NaN,
    each,
    pushed: each.length,
    bytes: since.reduce((a, s) => a + s.bytes, 0),
    responded: since.reduce((a, s) => a + s.anyResponse, 0),
    notPushed: since.flatMap((s) => s.notPushed),
  };
}

/** Waits until the floor server has `n` streams open. */
export async function waitFloorStreams(server: IpcChild, n: number): Promise<void> {
  const start = performance.now();
  for (;;) {
    // A write of nothing reports the number of open streams.
    const r = await server.request<{ streams: number }>({ cmd: 'write', buffers: [] });
    if (r.streams >= n) return;
    if (performance.now() - start > 60_000) throw new TimedOut(`floor server has ${r.streams}/${n} streams`);
    await sleep(200);
  }
}

/** The fan-out floor: the response bytes a sidecar of client 0 last received of `types` (when
 * `changedOnly`: one of its first 16 that got a new version since the mark, those types only),
 * written by the bare server to every floor stream; ms from the first write to the last stream's
 * receipt of all of them. */
export async function floorFanout(
  workers: readonly IpcChild[],
  server: IpcChild,
  types: string[],
  changedOnly: boolean,
  n: number,
  timeoutMs: number,
): Promise<{ ms: number; bytes: number } | undefined> {
  const { buffers } = await workers[0]!.request<{ buffers: string[] }>({
    cmd: 'capture',
    types,
    changedOnly,
  });
  if (buffers.length === 0) return undefined;
  await Promise.all(workers.map((w) => w.request({ cmd: 'floor-mark', expect: buffers.length })));
  const wrote = await server.request<{ at: number; bytes: number; streams: number }>(
    { cmd: 'write', buffers },
    timeoutMs,
  );
  if (wrote.streams < n)
    log(`  floor: only ${wrote.streams}/${n} floor streams open (the others were closed)`);
  if (wrote.streams === 0) return undefined;
  const start = performance.now();
  let done = 0;
  for (;;) {
    await sleep(20);
    const st = await Promise.all(
      workers.map((w) => w.request<{ done: number; last: number }>({ cmd: 'floor-status', detail: false })),
    );
    done = st.reduce((a, s) => a + s.done, 0);
    if (done >= wrote.streams)
      return { ms: Math.max(...st.map((s) => s.last)) - wrote.at, bytes: wrote.bytes };
    if (performance.now() - start > timeoutMs) {
      log(
        `  floor: timed out: ${done}/${wrote.streams} streams received the ${buffers.length} responses in ${formatMs(timeoutMs)}`,
      );
      return undefined;
    }
  }
}

/** Which sidecars got no new version: by replica, namespace and zone (for diagnosis). */
function notPushedBreakdown(res: RoundResult, specs: readonly SidecarSpec[]): string {
  const count = (key: (s: SidecarSpec) => string) => {
    const m = new Map<string, number>();
    for (const i of res.notPushed) {
      const k = key(specs[i]!);
      m.set(k, (m.get(k) ?? 0) + 1);
    }
    return [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 8)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
  };
  return (
    `${res.notPushed.length} sidecars got no new version (${res.responded} got some response): ` +
    `by replica ${count((s) => `r${s.replicaIndex}`)}; by namespace ${count((s) => String(s.node.metadata.NAMESPACE))}; ` +
    `by zone ${count((s) => s.node.locality.zone ?? '')}; e.g. ${specs[res.notPushed[0]!]!.node.id}`
  );
}
