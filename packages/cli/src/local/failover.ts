// `meridian demo failover`: a narrated run on the local mesh. Kills one cluster's echo backends, draws
// the requests per second its demo client gets answered by each cluster, second by second, while the
// traffic moves to the other cluster, restores the backends, watches it come back, and prints the
// measured switch-over time (from the kill until every call is answered by another cluster: the later
// of the first answer from another cluster and the last failed call) and the time back.
import { resolve } from 'node:path';
import { type CliContext, UsageError } from '../context.js';
import type { CallRecord, TrafficFile } from './demo-app.js';
import { type MeshPlan, requirePlan, StatePaths } from './plan.js';
import { ensureStarted, readJson, runningPid, waitHealthy } from './procs.js';
import { echoSpec } from './up.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const BAR = 24;

/** Options of `meridian demo failover`. */
export interface FailoverOptions {
  readonly stateDir: string;
  /** The cluster whose backends are killed (default: the first). */
  readonly cluster?: string;
  /** Bound on waiting for the switch and for the return (default 60 s each). */
  readonly timeoutMs?: number;
}

/** What the run measured (ms from the kill / from the restore). */
export interface FailoverResult {
  readonly firstOtherMs: number | undefined;
  readonly lastFailedMs: number | undefined;
  readonly failedCalls: number;
  readonly switchOverMs: number | undefined;
  readonly backMs: number | undefined;
}

/** Calls of [from, to) grouped: answered per cluster, and failed. */
function bucket(recent: readonly CallRecord[], from: number, to: number) {
  const by: Record<string, number> = {};
  let failed = 0;
  for (const [at, c] of recent) {
    if (at < from || at >= to) continue;
    if (c === '') failed++;
    else by[c] = (by[c] ?? 0) + 1;
  }
  return { by, failed };
}

function bar(n: number, rps: number): string {
  const w = Math.min(BAR, Math.round((n / Math.max(1, rps)) * BAR));
  return `${'█'.repeat(w)}${'·'.repeat(BAR - w)}`;
}

/** One line of the chart: the second's answers per cluster and its failures. */
function chartLine(label: string, plan: MeshPlan, b: ReturnType<typeof bucket>): string {
  const cols = plan.clusters.map(
    (c) => `${c.name} ${bar(b.by[c.name] ?? 0, plan.demo.rps)} ${String(b.by[c.name] ?? 0).padStart(3)}/s`,
  );
  return `  ${label.padStart(6)}  ${cols.join('   ')}   failed ${String(b.failed).padStart(3)}/s`;
}

/** Runs the narrated failover; resolves with the measurements. */
export async function demoFailover(ctx: CliContext, o: FailoverOptions): Promise<FailoverResult> {
  const paths = new StatePaths(resolve(o.stateDir));
  const plan = await requirePlan(paths);
  if (!plan.demo.enabled)
    throw new UsageError(`the mesh in ${paths.dir} runs without the demo (demo.enabled: false)`);
  if (plan.clusters.length < 2) throw new UsageError('failover needs two clusters; this mesh has one');
  const victim = plan.clusters.find((c) => c.name === (o.cluster ?? plan.clusters[0]!.name));
  if (!victim)
    throw new UsageError(
      `--cluster ${o.cluster}: not a cluster of this mesh (${plan.clusters.map((c) => c.name).join(', ')})`,
    );
  const timeout = o.timeoutMs ?? 60_000;
  const traffic = paths.traffic(victim.name);
  const read = async () => {
    const t = await readJson<TrafficFile>(traffic).catch(() => undefined);
    if (!t || Date.now() - t.updatedAt > 5000)
      throw new UsageError(
        `the demo client of ${victim.name} is not running (${traffic} is not being written): run meridian up`,
      );
    return t;
  };
  const echo = echoSpec(paths, victim);
  const pid = runningPid(echo.pidFile, echo.marker);
  if (pid === undefined)
    throw new UsageError(`the echo backends of ${victim.name} are not running: run meridian up`);

  const others = plan.clusters.filter((c) => c !== victim).map((c) => c.name);
  ctx.out(
    `The demo client in ${victim.name} calls echo.demo at ${plan.demo.rps} requests/s through its meridian-agent`,
  );
  ctx.out(`(proxyless gRPC, xDS from Meridian). Meridian prefers endpoints in the client's own cluster and`);
  ctx.out(`fails over to ${others.join(', ')} (imported over NATS federation) when they are gone.`);
  ctx.out('');
  ctx.out('Requests per second answered, by the cluster that answered:');
  // Each line shows the second that just ended (the client writes its file every half second).
  // Seconds counted from `base` (the kill, the restore); each line is drawn once its second ended.
  const second = async (label: string, from: number) => {
    await sleep(from + 1000 + 600 - Date.now());
    const t = await read();
    ctx.out(chartLine(label, plan, bucket(t.recent, from, from + 1000)));
  };
  const baseline = Date.now() - 3000;
  for (let i = 0; i < 3; i++) await second(`-${3 - i}s`, baseline + i * 1000);

  ctx.out('');
  ctx.out(`Killing the echo backends of ${victim.name} (v1 and v2, pid ${pid}, SIGKILL)...`);
  const killedAt = Date.now();
  process.kill(pid, 'SIGKILL');
  let switched: number | undefined;
  for (let s = 1; Date.now() - killedAt < timeout; s++) {
    await second(`+${s}s`, killedAt + (s - 1) * 1000);
    const t = await read();
    // Steady: the last 3 s after the kill without a failure and answered by other clusters only.
    const from = Math.max(killedAt, Date.now() - 3600);
    const window = t.recent.filter(([at]) => at >= from);
    if (
      Date.now() - killedAt > 3000 &&
      window.length > 0 &&
      window.every(([, c]) => c !== '' && c !== victim.name)
    ) {
      switched = Date.now();
      break;
    }
  }
  const t = await read();
  const after = t.recent.filter(([at]) => at >= killedAt);
  const firstOther = after.find(([, c]) => c !== '' && c !== victim.name)?.[0];
  const failedCalls = after.filter(([, c]) => c === '');
  const lastFailed = failedCalls.at(-1)?.[0];
  const ms = (at: number | undefined) => (at === undefined ? undefined : at - killedAt);
  const switchOverMs =
    switched === undefined || firstOther === undefined
      ? undefined
      : Math.max(firstOther, lastFailed ?? 0) - killedAt;

  ctx.out('');
  ctx.out(`Restoring the echo backends of ${victim.name}...`);
  await ensureStarted(echo);
  await waitHealthy(echo, 30_000);
  const restoredAt = Date.now();
  let backAt: number | undefined;
  for (let s = 1; Date.now() - restoredAt < timeout; s++) {
    await second(`+${s}s`, restoredAt + (s - 1) * 1000);
    const r = await read();
    const back = r.recent.find(([at, c]) => at >= restoredAt && c === victim.name);
    const window = r.recent.filter(([at]) => at >= Date.now() - 2600);
    if (back && window.length > 0 && window.every(([, c]) => c === victim.name)) {
      backAt = back[0];
      break;
    }
  }

  const f = (v: number | undefined) => (v === undefined ? 'not seen' : `${(v / 1000).toFixed(2)} s`);
  const result: FailoverResult = {
    firstOtherMs: ms(firstOther),
    lastFailedMs: ms(lastFailed),
    failedCalls: failedCalls.length,
    switchOverMs,
    backMs: backAt === undefined ? undefined : backAt - restoredAt,
  };
  ctx.out('');
  ctx.out("Measured (from the client's own record of every call):");
  ctx.out(`  first call answered by ${others.join('/')} after the kill:  ${f(result.firstOtherMs)}`);
  ctx.out(
    `  failed calls during the switch:                 ${result.failedCalls}${lastFailed ? ` (last at ${f(result.lastFailedMs)})` : ''}`,
  );
  ctx.out(
    `  switch-over time (kill -> every call answered by ${others.join('/')}): ${f(result.switchOverMs)}`,
  );
  ctx.out(`  back to ${victim.name} after the restore:               ${f(result.backMs)}`);
  if (switchOverMs === undefined)
    throw new Error(
      `traffic of ${victim.name} did not settle on ${others.join('/')} within ${timeout / 1000} s`,
    );
  if (result.backMs === undefined)
    throw new Error(`traffic did not come back to ${victim.name} within ${timeout / 1000} s`);
  return result;
}
