// The `mesh` benchmark's verdict (bench/mesh.ts): the edit phases' rows and floors, the targets
// table, the JSON result line, and the summary of warnings and errors in a replica's log.
import type { ReplicaProcess } from '../../packages/server/test/harness.js';
import type { ChurnFloor, ChurnResult } from './mesh-churn.js';
import { mb, num, p50, p99 } from './mesh-driver.js';
import type { EditPhase, RoundResult } from './mesh-phases.js';
import { emitResult, formatMs, log, printTable } from './report.js';

/** What a run measured, as the targets and the result line need it. */
export interface MeshOutcome {
  proxies: number;
  rounds: number;
  replicaNodeOptions: string;
  syncStatus: 'ok' | 'timed out';
  firstSyncMs: number;
  synced: number;
  syncFloor: { ms: number; bytes: number } | undefined;
  /** Each replica's CPU seconds before connecting and after the first sync. */
  cpu0: number[];
  cpu1: number[];
  /** Each replica's RSS growth over the first sync per proxy (bytes). */
  rssPerProxy: number[];
  phases: { vs: EditPhase; dr: EditPhase; meshWide: EditPhase };
  churn: ChurnResult;
  churnFloor: ChurnFloor | undefined;
  alive: boolean[];
  ends: { ended: number };
  /** The 1-minute load average by phase. */
  loads: Record<string, number>;
  notes: readonly string[];
}

/** An edit phase's floor: etcd put -> watch plus the bare server's fan-out. */
export const floorOf = (ph: EditPhase) => ({
  p50: p50(ph.etcd) + p50(ph.fanout),
  p99: p99(ph.etcd) + p99(ph.fanout),
});

/** An edit phase's row of the edits table. */
export const phaseRow = (name: string, ph: EditPhase) => {
  const f = floorOf(ph);
  const pushed = ph.rounds.map((r) => r.pushed);
  const bytes = ph.rounds.map((r) => r.bytes);
  return {
    phase: name,
    status: ph.status,
    rounds: String(ph.rounds.length),
    'last ACK p50': p50(ph.last),
    'last ACK p99': p99(ph.last),
    'each p99': p99(ph.each),
    'floor p50': f.p50,
    'floor p99': f.p99,
    'p99/floor': Number.isFinite(p99(ph.last) / f.p99) ? (p99(ph.last) / f.p99).toFixed(2) : 'n/a',
    pushed: pushed.length ? `${Math.min(...pushed)}-${Math.max(...pushed)}` : 'n/a',
    'sent/round': bytes.length ? mb(bytes.reduce((a, b) => a + b, 0) / bytes.length) : 'n/a',
    'replica cpu s/round': ph.rounds.length
      ? ph.cpu.map((c) => (c / ph.rounds.length).toFixed(1)).join(' ')
      : 'n/a',
  };
};

/** The figures the targets are judged on. */
function targetFigures(o: MeshOutcome) {
  const { phases, churn } = o;
  return {
    vsRatio: p99(phases.vs.last) / floorOf(phases.vs).p99,
    drRatio: p99(phases.dr.last) / floorOf(phases.dr).p99,
    meshWideP99: p99(phases.meshWide.last),
    maxCores: churn.status === 'ok' ? Math.max(...churn.cores) : Number.NaN,
    // The median over replicas: r0 served the mesh's apply, so its "before" already holds that heap.
    maxRssPerProxyKb: [...o.rssPerProxy].sort((a, b) => a - b)[1]! / 1024,
  };
}

/** Prints the targets table, the load averages and the run's notes. */
export function printTargets(o: MeshOutcome): void {
  const { phases, churn, syncStatus, firstSyncMs } = o;
  const { vsRatio, drRatio, meshWideP99, maxCores, maxRssPerProxyKb } = targetFigures(o);
  const met = (ok: boolean) => (ok ? 'met' : 'NOT met');
  log();
  log('targets (issue 12)');
  printTable([
    {
      target: 'VS edit p99 <= 2 x floor p99',
      measured: Number.isFinite(vsRatio) ? `${vsRatio.toFixed(2)} x` : phases.vs.status,
      result: met(vsRatio <= 2),
    },
    {
      target: 'DR edit p99 <= 2 x floor p99',
      measured: Number.isFinite(drRatio) ? `${drRatio.toFixed(2)} x` : phases.dr.status,
      result: met(drRatio <= 2),
    },
    {
      target: `mesh-wide p99 < 2 s${o.proxies === 5000 ? '' : ' (target is at 5,000)'}`,
      measured: Number.isFinite(meshWideP99) ? formatMs(meshWideP99) : phases.meshWide.status,
      result: met(meshWideP99 < 2000),
    },
    {
      target: 'churn p99 < 250 ms',
      measured: churn.status === 'ok' ? formatMs(churn.p99) : churn.status,
      result: met(churn.status === 'ok' && churn.p99 < 250),
    },
    {
      target: 'each replica < 0.5 core in churn',
      measured: churn.status === 'ok' ? `${maxCores.toFixed(2)} cores max` : churn.status,
      result: met(maxCores < 0.5),
    },
    {
      target: 'RSS < 100 KB per proxy',
      measured: `${maxRssPerProxyKb.toFixed(0)} KB (median replica)`,
      result: met(maxRssPerProxyKb < 100),
    },
    {
      target: 'first sync',
      measured: syncStatus === 'ok' ? formatMs(firstSyncMs) : 'timed out',
      result: syncStatus === 'ok' ? '-' : 'NOT met',
    },
  ]);
  log(
    `1-minute load average (2 cores, shared with other work): ${Object.entries(o.loads)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
  );
  for (const n of o.notes) log(`note: ${n}`);
}

/** Prints the result line. */
export function emitMeshResult(o: MeshOutcome): void {
  const { phases, churn, churnFloor, syncStatus, firstSyncMs, syncFloor, cpu0, cpu1, rssPerProxy } = o;
  const { vsRatio, drRatio, meshWideP99, maxRssPerProxyKb } = targetFigures(o);
  const vsF = floorOf(phases.vs);
  const drF = floorOf(phases.dr);
  const mwF = floorOf(phases.meshWide);
  const sum = (ph: EditPhase, f: (r: RoundResult) => number) =>
    ph.rounds.length ? Math.round(ph.rounds.reduce((a, r) => a + f(r), 0) / ph.rounds.length) : null;
  emitResult({
    proxies: o.proxies,
    replicas: 3,
    rounds: o.rounds,
    replica_node_options: o.replicaNodeOptions,
    first_sync_status: syncStatus,
    first_sync_s: num(firstSyncMs / 1000),
    synced: o.synced,
    first_sync_floor_ms: syncFloor ? num(syncFloor.ms) : null,
    first_sync_cpu_s: cpu1.map((c, i) => num(c - cpu0[i]!)),
    rss_per_proxy_kb: num(maxRssPerProxyKb),
    rss_per_proxy_kb_by_replica: rssPerProxy.map((r) => num(r / 1024)),
    vs_edit_status: phases.vs.status,
    vs_edit_p50_ms: num(p50(phases.vs.last)),
    vs_edit_p99_ms: num(p99(phases.vs.last)),
    vs_edit_floor_p99_ms: num(vsF.p99),
    vs_edit_p99_over_floor: num(vsRatio),
    vs_edit_pushed: sum(phases.vs, (r) => r.pushed),
    vs_edit_bytes: sum(phases.vs, (r) => r.bytes),
    vs_edit_replica_cpu_s_per_round: phases.vs.cpu.map((c) => num(c / Math.max(1, phases.vs.rounds.length))),
    dr_edit_status: phases.dr.status,
    dr_edit_p50_ms: num(p50(phases.dr.last)),
    dr_edit_p99_ms: num(p99(phases.dr.last)),
    dr_edit_floor_p99_ms: num(drF.p99),
    dr_edit_p99_over_floor: num(drRatio),
    dr_edit_pushed: sum(phases.dr, (r) => r.pushed),
    dr_edit_bytes: sum(phases.dr, (r) => r.bytes),
    dr_edit_replica_cpu_s_per_round: phases.dr.cpu.map((c) => num(c / Math.max(1, phases.dr.rounds.length))),
    mesh_wide_status: phases.meshWide.status,
    mesh_wide_p50_ms: num(p50(phases.meshWide.last)),
    mesh_wide_p99_ms: num(meshWideP99),
    mesh_wide_floor_p99_ms: num(mwF.p99),
    mesh_wide_pushed: sum(phases.meshWide, (r) => r.pushed),
    churn_status: churn.status,
    churn_changes_per_s: churn.status === 'ok' ? num(churn.changes / churn.seconds) : null,
    churn_p50_ms: churn.status === 'ok' ? num(churn.p50) : null,
    churn_p99_ms: churn.status === 'ok' ? num(churn.p99) : null,
    churn_missing: churn.status === 'ok' ? churn.missing : null,
    churn_failed_applies: churn.failed,
    churn_replica_cores: churn.status === 'ok' ? churn.cores.map(num) : null,
    churn_floor_p99_ms: churnFloor ? num(p99(churnFloor.etcd) + p99(churnFloor.fanout)) : null,
    replicas_alive: o.alive.filter(Boolean).length,
    sidecars_whose_stream_ended: o.ends.ended,
    load_avg: o.loads,
  });
}

/** Counts of warnings and errors in a replica's log (it runs with --log-level warn) and a few
 * distinct messages. */
export function replicaLogSummary(r: ReplicaProcess): string {
  let warn = 0;
  let error = 0;
  const msgs = new Map<string, number>();
  for (const line of r.output) {
    let level = 0;
    let msg = line;
    try {
      const j = JSON.parse(line) as {
        level?: number | string;
        msg?: string;
        err?: { message?: string };
      } & Record<string, unknown>;
      level = typeof j.level === 'number' ? j.level : j.level === 'error' ? 50 : j.level === 'warn' ? 40 : 30;
      const {
        level: _l,
        time: _t,
        pid: _p,
        hostname: _h,
        msg: _m,
        err: _e,
        mesh: _me,
        cluster: _c,
        replica: _r,
        ...rest
      } = j;
      msg = `${j.msg ?? ''}${j.err?.message ? `: ${j.err.message}` : ''} ${JSON.stringify(rest).slice(0, 160)}`;
    } catch {
      level = /error|exception|heap/i.test(line) ? 50 : 40;
    }
    if (level >= 50) error++;
    else if (level >= 40) warn++;
    else continue;
    const key = msg.slice(0, 260);
    msgs.set(key, (msgs.get(key) ?? 0) + 1);
  }
  const top = [...msgs.entries()].sort((a, b) => b[1] - a[1]).slice(0, 5);
  return `${error} error and ${warn} warning lines (of the last ${r.output.length} kept)${top.length ? `:\n${top.map(([m, c]) => `      ${c} x ${m}`).join('\n')}` : ''}`;
}
