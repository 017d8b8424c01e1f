// The `mesh` benchmark's endpoint churn (bench/mesh.ts): WorkloadEntry weight edits at a fixed rate
// through the replicas' admin APIs, each edit's write returned -> every sidecar's EDS ACK showing
// it, the replicas' cores over the churn, and the churn's floor (etcd put -> watch plus the bare
// server's EDS fan-out).
import type { ReplicaProcess } from '../../packages/server/test/harness.js';
import type { EtcdFloor } from './etcd-floor.js';
import { LatencyRecorder } from './latency.js';
import { EDS, epochNow } from './mesh-client.js';
import { type All, applyOne, sleep } from './mesh-driver.js';
import { type MeshObjects, workloadEntry } from './mesh-objects.js';
import { floorFanout } from './mesh-phases.js';
import { cpuSeconds, type IpcChild } from './proc.js';
import { formatMs, log } from './report.js';

/** The churn phase's figures. */
export interface ChurnResult {
  status: 'ok' | 'skipped' | 'error' | 'timed out';
  detail?: string;
  changes: number;
  seconds: number;
  apply: LatencyRecorder;
  delivered: number;
  missing: number;
  p50: number;
  p99: number;
  max: number;
  cores: number[];
  bytes: number;
  failed: number;
  /** Where the time went, from the replicas' own histograms over the churn (bucket bounds). */
  server: ServerLatencies | undefined;
}

/** Upper bucket bounds of the replicas' latency histograms over the churn, all replicas together. */
export interface ServerLatencies {
  /** pilot_debounce_time: first change of a burst -> its push context built. */
  debounce: { p50: number; p99: number; count: number };
  /** pilot_proxy_queue_time: a proxy's push queued -> dequeued. */
  queue: { p50: number; p99: number; count: number };
  /** pilot_proxy_convergence_time: change -> the push written to the proxy's stream. */
  sent: { p50: number; p99: number; count: number };
  /** meridian_xds_push_ack_time for EDS: change -> the proxy's ACK. */
  ack: { p50: number; p99: number; count: number };
}

type Histogram = Map<number, number>;

/** Sums a histogram's cumulative buckets over every label set (optionally only lines with `filter`). */
function histogram(text: string, name: string, filter?: string): Histogram {
  const out: Histogram = new Map();
  const re = new RegExp(`^${name}_bucket\\{([^}]*)\\} ([0-9.e+]+)$`, 'gm');
  for (const m of text.matchAll(re)) {
    if (filter && !m[1]!.includes(filter)) continue;
    const le = /le="([^"]+)"/.exec(m[1]!)?.[1];
    if (!le) continue;
    const bound = le === '+Inf' ? Number.POSITIVE_INFINITY : Number(le);
    out.set(bound, (out.get(bound) ?? 0) + Number(m[2]));
  }
  return out;
}

/** The bucket bound (s) under which `q` of the observations in `after - before` fall. */
function quantileBound(before: Histogram, after: Histogram, q: number): { bound: number; count: number } {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const total = (after.get(Number.POSITIVE_INFINITY) ?? 0) - (before.get(Number.POSITIVE_INFINITY) ?? 0);
  for (const b of bounds) {
    const n = (after.get(b) ?? 0) - (before.get(b) ?? 0);
    if (total > 0 && n >= q * total) return { bound: b, count: total };
  }
  return { bound: Number.NaN, count: total };
}

async function metricsText(replicas: readonly ReplicaProcess[]): Promise<string> {
  const bodies = await Promise.all(replicas.map((r) => r.text('/metrics').then((x) => x.body)));
  return bodies.join('\n');
}

function serverLatencies(before: string, after: string): ServerLatencies {
  const one = (name: string, filter?: string) => {
    const b = histogram(before, name, filter);
    const a = histogram(after, name, filter);
    const p50 = quantileBound(b, a, 0.5);
    return { p50: p50.bound, p99: quantileBound(b, a, 0.99).bound, count: p50.count };
  };
  return {
    debounce: one('pilot_debounce_time'),
    queue: one('pilot_proxy_queue_time'),
    sent: one('pilot_proxy_convergence_time'),
    ack: one('meridian_xds_push_ack_time', 'type="eds"'),
  };
}

/** One line: each stage's p50/p99 bucket bound. */
export function describeServerLatencies(s: ServerLatencies): string {
  const f = (x: { p50: number; p99: number; count: number }) =>
    x.count > 0 ? `p50 <= ${x.p50} s, p99 <= ${x.p99} s (${x.count})` : 'none';
  return `debounce ${f(s.debounce)}; push queued ${f(s.queue)}; change -> sent ${f(s.sent)}; change -> EDS ACK ${f(s.ack)}`;
}

/** Edits WorkloadEntry weights at `rate` per second for `seconds` (at most `concurrency` applies in
 * flight), then waits for the last pushes to land; skipped when `skip`. */
export async function churnPhase(o: {
  skip: boolean;
  workers: readonly IpcChild[];
  all: All;
  replicas: readonly ReplicaProcess[];
  pids: (number | undefined)[];
  mesh: MeshObjects;
  seconds: number;
  rate: number;
  concurrency: number;
  settle: number;
  timeout: number;
}): Promise<ChurnResult> {
  const result: ChurnResult = {
    status: 'skipped',
    changes: 0,
    seconds: 0,
    apply: new LatencyRecorder(),
    delivered: 0,
    missing: 0,
    p50: Number.NaN,
    p99: Number.NaN,
    max: Number.NaN,
    cores: [],
    bytes: 0,
    failed: 0,
    server: undefined,
  };
  if (o.skip) return result;
  const metricsBefore = await metricsText(o.replicas).catch(() => undefined);
  await o.all({ cmd: 'churn-track', on: true });
  await o.all({ cmd: 'mark' });
  const changes: [string, number, number][] = [];
  const { workloads, hosts } = o.mesh;
  const perService = Math.max(1, Math.floor(workloads.length / hosts.length));
  let seq = 1;
  let inFlight = 0;
  let skipped = 0;
  let failed = 0;
  let firstFailure: string | undefined;
  const cpu0 = o.pids.map(cpuSeconds);
  const start = performance.now();
  const interval = 1000 / o.rate;
  const total = Math.round(o.seconds * o.rate);
  const pending: Promise<void>[] = [];
  log(`churn: ${total} WorkloadEntry weight edits at ${o.rate}/s ...`);
  for (let k = 0; k < total; k++) {
    const due = start + k * interval;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    if (inFlight >= o.concurrency) {
      skipped++;
      continue;
    }
    const s = ++seq;
    const service = (s * 37) % hosts.length;
    const w = workloads[service * perService + (s % perService)]!;
    inFlight++;
    const t = performance.now();
    pending.push(
      applyOne(o.replicas[s % 3]!, workloadEntry(w, s)).then(
        () => {
          inFlight--;
          result.apply.record(performance.now() - t);
          changes.push([hosts[service]!, s, epochNow()]);
        },
        (error: unknown) => {
          inFlight--;
          failed++;
          firstFailure ??= (error as Error).message;
        },
      ),
    );
  }
  await Promise.all(pending);
  const elapsed = (performance.now() - start) / 1000;
  const cpu1 = o.pids.map(cpuSeconds);
  result.cores = cpu1.map((c, i) => (c - cpu0[i]!) / elapsed);
  result.seconds = elapsed;
  result.changes = changes.length;
  result.failed = failed;
  const details: string[] = [];
  if (failed) details.push(`${failed} applies failed, e.g. ${firstFailure}`);
  if (skipped)
    details.push(
      `${skipped} edits skipped: ${o.concurrency} applies already in flight (--churn-concurrency)`,
    );
  if (details.length) result.detail = details.join('; ');
  if (changes.length === 0) {
    result.status = 'error';
    await o.all({ cmd: 'churn-track', on: false });
    return result;
  }
  // Let the last pushes land: until every sidecar saw every edit, or nothing new arrived for 3 x
  // `settle` (an edit some sidecars never get is then reported as never seen), bounded by the timeout.
  const settleStart = performance.now();
  let lastSeen = 0;
  let quietSince = performance.now();
  for (;;) {
    await sleep(1000);
    const pr = await o.all<{ changed: number; last: number }>({ cmd: 'progress', types: [EDS] });
    const last = Math.max(...pr.map((p) => p.last));
    if (last !== lastSeen) {
      lastSeen = last;
      quietSince = performance.now();
    }
    const miss = await o.all<{ missing: number }>({ cmd: 'churn-report', changes }, 120_000);
    if (miss.every((m) => m.missing === 0)) break;
    if (performance.now() - quietSince > 3 * o.settle) break;
    if (performance.now() - settleStart > o.timeout) {
      result.status = 'timed out';
      result.detail = `EDS still arriving ${formatMs(o.timeout)} after the last edit`;
      break;
    }
  }
  const reports = await o.all<{ buckets: Record<string, number>; delivered: number; missing: number }>(
    { cmd: 'churn-report', changes },
    300_000,
  );
  const since = await o.all<{ bytes: number }>({ cmd: 'since', types: [EDS] });
  result.bytes = since.reduce((a, s) => a + s.bytes, 0);
  await o.all({ cmd: 'churn-track', on: false });
  const rec = new LatencyRecorder();
  for (const r of reports) {
    result.delivered += r.delivered;
    result.missing += r.missing;
    for (const [ms, count] of Object.entries(r.buckets))
      for (let i = 0; i < count; i++) rec.record(Number(ms));
  }
  const metricsAfter = await metricsText(o.replicas).catch(() => undefined);
  if (metricsBefore && metricsAfter) result.server = serverLatencies(metricsBefore, metricsAfter);
  if (result.status === 'skipped') result.status = 'ok';
  if (rec.count) {
    result.p50 = rec.percentile(50);
    result.p99 = rec.percentile(99);
    result.max = rec.summary().max;
  } else if (result.status === 'ok') {
    result.status = 'timed out';
    result.detail = 'no sidecar saw any edit';
  }
  return result;
}

/** The churn's floor: etcd put -> watch and the bare server's EDS fan-out. */
export interface ChurnFloor {
  fanout: LatencyRecorder;
  etcd: LatencyRecorder;
}

/** Three EDS fan-outs of the floor server and `puts` etcd put -> watch samples. */
export async function measureChurnFloor(o: {
  workers: readonly IpcChild[];
  floorServer: IpcChild;
  etcdFloor: EtcdFloor;
  proxies: number;
  roundTimeout: number;
  puts: number;
}): Promise<ChurnFloor> {
  const fanout = new LatencyRecorder();
  for (let i = 0; i < 3; i++) {
    const fl = await floorFanout(o.workers, o.floorServer, [EDS], false, o.proxies, o.roundTimeout);
    if (fl && fl.ms >= 0) fanout.record(fl.ms);
  }
  o.etcdFloor.rec.reset();
  await o.etcdFloor.sample(o.puts);
  const etcdRec = new LatencyRecorder();
  etcdRec.add(o.etcdFloor.rec);
  return { fanout, etcd: etcdRec };
}
