// One scenario run: steady state checked, the fault (the scenario's own code), invariants recorded,
// recovery measured, the mesh restored; the verdict and figures printed and written as JSON to
// chaos/results/<name>.json (git-ignored), from which chaos/report.ts draws chaos/report.html.
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Mesh } from './mesh.js';
import { sleep } from './mesh.js';
import { type SecondBucket, TrafficRecorder } from './traffic.js';
import { ConfigWriter } from './writer.js';

export const RESULTS_DIR = fileURLToPath(new URL('../results/', import.meta.url));

export interface Invariant {
  readonly name: string;
  readonly value: number;
  readonly expected: number;
  readonly ok: boolean;
}

export interface ScenarioResult {
  readonly name: string;
  readonly title: string;
  readonly verdict: 'PASS' | 'FAIL';
  readonly startedAt: string;
  readonly durationMs: number;
  /** Seconds from the run's start. */
  readonly marks: { label: string; t: number }[];
  readonly faultWindows: { from: number; to: number; label: string }[];
  readonly recoveredAt?: number;
  readonly figures: Record<string, number | string | null>;
  readonly invariants: Invariant[];
  readonly timeline: Record<string, SecondBucket[]>;
  readonly notes: string[];
  readonly error?: string;
}

/** What a scenario's code works with. */
export class Harness {
  readonly t0 = Date.now();
  readonly traffic: TrafficRecorder;
  writer: ConfigWriter | undefined;
  readonly figures: Record<string, number | string | null> = {};
  readonly invariants: Invariant[] = [];
  readonly notes: string[] = [];
  readonly marks: { label: string; t: number }[] = [];
  readonly faultWindows: { from: number; to: number; label: string }[] = [];
  recoveredAt: number | undefined;
  /** More timelines for the report beside the demo clients': name -> calls (end time, ok). */
  readonly series = new Map<string, () => readonly { at: number; ok: boolean }[]>();
  /** Cleanups the scenario registers (iptables rules, signals to undo); run even on failure. */
  readonly cleanups: (() => Promise<void> | void)[] = [];

  constructor(readonly mesh: Mesh) {
    this.traffic = new TrafficRecorder(mesh);
  }

  /** Seconds since the run started. */
  rel(at = Date.now()): number {
    return Math.round((at - this.t0) / 100) / 10;
  }

  mark(label: string, at = Date.now()): number {
    this.marks.push({ label, t: this.rel(at) });
    return at;
  }

  fault(label: string, from: number, to: number): void {
    this.faultWindows.push({ label, from: this.rel(from), to: this.rel(to) });
  }

  figure(name: string, value: number | string | null | undefined): void {
    this.figures[name] = value ?? null;
  }

  /** Milliseconds as seconds with two decimals, or null. */
  secs(ms: number | undefined): number | null {
    return ms === undefined ? null : Math.round(ms / 10) / 100;
  }

  invariant(name: string, value: number, expected = 0): void {
    this.invariants.push({ name, value, expected, ok: value === expected });
  }

  /** Starts the config writer against `cluster`'s replicas. */
  startWriter(cluster: string): ConfigWriter {
    this.writer = new ConfigWriter(this.mesh, this.mesh.cluster(cluster));
    this.writer.start();
    return this.writer;
  }

  /**
   * Ends an outage that began at `at` under `writer`'s config writes: marks the restart, records the
   * fault window `label`, the writes accepted and refused while down and the time `meridian up` takes
   * to restore the mesh; 5 s later, both clusters' RPC figures with a 10 s failover window.
   */
  async restoreAfterOutage(label: string, at: number, writer: ConfigWriter): Promise<void> {
    const restoreAt = this.mark('restart (meridian up)');
    this.fault(label, at, restoreAt);
    this.figure('writesAcceptedWhileDown', writer.count('apply', 'ack', at, restoreAt));
    this.figure('writesRefusedWhileDown', writer.count('apply', 'refused', at, restoreAt));
    this.figure('restoreS', this.secs(await this.mesh.restore()));
    await sleep(5000);
    this.rpcFigures(['east', 'west'], at, 10_000);
  }

  /**
   * Steady state: over the last `ms`, every demo client was answered by its own cluster with no failed
   * call (the clients' own records). Throws naming the client that is not steady.
   */
  async steady(ms = 5000): Promise<void> {
    const deadline = Date.now() + 60_000;
    for (;;) {
      await sleep(ms);
      await this.traffic.read();
      const now = Date.now();
      const bad: string[] = [];
      for (const c of this.mesh.plan.clusters) {
        const calls = this.traffic.between(c.name, now - ms, now);
        const own = calls.filter(([, by]) => by === c.name).length;
        if (own === 0 || own !== calls.length)
          bad.push(`${c.name}: ${own} of ${calls.length} calls answered by ${c.name}`);
      }
      if (bad.length === 0) {
        this.mark('steady');
        return;
      }
      if (Date.now() > deadline) throw new Error(`steady state not reached: ${bad.join('; ')}`);
    }
  }

  /**
   * RPC figures of `clusters`' clients around a fault that started at `faultAt`, with a failover
   * window of `windowMs`: failed calls inside it (a figure), failed after it (an invariant, 0), and the
   * time to recover (the last failed call after the fault, 0 when none failed).
   */
  rpcFigures(clusters: readonly string[], faultAt: number, windowMs: number, until = Date.now()): void {
    let during = 0;
    let after = 0;
    let last: number | undefined;
    for (const c of clusters) {
      during += this.traffic.failed(c, faultAt, faultAt + windowMs);
      after += this.traffic.failed(c, faultAt + windowMs, until);
      const l = this.traffic.lastFailure(c, faultAt, until);
      if (l !== undefined && (last === undefined || l > last)) last = l;
    }
    this.figure('failedRpcsDuringWindow', during);
    this.figure('failoverWindowS', windowMs / 1000);
    this.figure('timeToRecoverS', last === undefined ? 0 : this.secs(last - faultAt));
    this.invariant('rpcsFailedAfterFailoverWindow', after);
    if (last !== undefined) this.recoveredAt = this.rel(last);
    else this.recoveredAt = this.rel(faultAt);
  }
}

export interface Scenario {
  readonly name: string;
  readonly title: string;
  /** The fault, the observations and the restore. */
  run(h: Harness): Promise<void>;
}

/** Runs one scenario on `mesh`; never throws (a failure is a FAIL result). */
export async function runScenario(mesh: Mesh, s: Scenario): Promise<ScenarioResult> {
  const h = new Harness(mesh);
  h.traffic.start();
  let error: string | undefined;
  try {
    await h.steady();
    await s.run(h);
  } catch (e) {
    error = (e as Error).stack ?? String(e);
  }
  for (const c of h.cleanups.reverse()) {
    try {
      await c();
    } catch (e) {
      h.notes.push(`cleanup failed: ${(e as Error).message}`);
    }
  }
  if (h.writer) {
    await h.writer.stop();
    try {
      const f = h.writer.verify();
      h.figure('writesAccepted', f.writesAccepted);
      h.figure('writesRefused', f.writesRefused);
      h.figure('writesUnknown', f.writesUnknown);
      h.figure('deletesAccepted', f.deletesAccepted);
      h.invariant('ackedWritesLost', f.ackedWritesLost);
      h.invariant('deletedObjectsResurrected', f.deletedResurrected);
      if (f.lostNames.length) h.notes.push(`lost: ${f.lostNames.join(', ')}`);
      if (f.resurrectedNames.length) h.notes.push(`resurrected: ${f.resurrectedNames.join(', ')}`);
    } catch (e) {
      error ??= `writer check against etcd failed: ${(e as Error).message}`;
    }
  }
  await h.traffic.stop();
  const end = Date.now();
  const timeline: Record<string, SecondBucket[]> = {};
  for (const c of mesh.plan.clusters) timeline[c.name] = h.traffic.timeline(c.name, h.t0, end);
  for (const [name, calls] of h.series) {
    const buckets: SecondBucket[] = [];
    const all = calls();
    for (let s = h.t0; s < end; s += 1000) {
      const inSecond = all.filter((c) => c.at >= s && c.at < s + 1000);
      const ok = inSecond.filter((c) => c.ok).length;
      buckets.push({
        t: Math.round((s - h.t0) / 1000),
        ok,
        failed: inSecond.length - ok,
        by: { [name]: ok },
      });
    }
    timeline[name] = buckets;
  }
  const verdict = error === undefined && h.invariants.every((i) => i.ok) ? 'PASS' : 'FAIL';
  const result: ScenarioResult = {
    name: s.name,
    title: s.title,
    verdict,
    startedAt: new Date(h.t0).toISOString(),
    durationMs: end - h.t0,
    marks: h.marks,
    faultWindows: h.faultWindows,
    ...(h.recoveredAt !== undefined ? { recoveredAt: h.recoveredAt } : {}),
    figures: h.figures,
    invariants: h.invariants,
    timeline,
    notes: h.notes,
    ...(error !== undefined ? { error } : {}),
  };
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(`${RESULTS_DIR}${s.name}.json`, `${JSON.stringify(result, null, 2)}\n`);
  return result;
}

/** The verdict and figures as lines of text. */
export function describe(r: ScenarioResult): string[] {
  const lines = [`${r.verdict}  ${r.name}: ${r.title} (${(r.durationMs / 1000).toFixed(0)} s)`];
  for (const i of r.invariants)
    lines.push(`    ${i.ok ? 'ok  ' : 'FAIL'} ${i.name} = ${i.value} (expected ${i.expected})`);
  for (const [k, v] of Object.entries(r.figures)) lines.push(`         ${k} = ${v ?? 'n/a'}`);
  for (const n of r.notes) lines.push(`    note: ${n}`);
  if (r.error) lines.push(`    error: ${r.error.split('\n').slice(0, 3).join('\n           ')}`);
  return lines;
}
