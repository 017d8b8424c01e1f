import type { LatencySummary } from './latency.js';

let benchName: string | undefined;
let emitted = false;

/** Set by bench/run.ts: the name stamped on the result line. */
export function setBenchName(name: string): void {
  benchName = name;
  emitted = false;
}

/** True once `emitResult` has printed the result line. */
export function resultEmitted(): boolean {
  return emitted;
}

/** `1.23 ms`, `456 µs`, `2.35 s`: a latency in ms made readable. */
export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return String(ms);
  if (ms < 1) return `${(ms * 1_000).toFixed(0)} µs`;
  if (ms < 1_000) return `${ms.toFixed(ms < 10 ? 2 : 1)} ms`;
  return `${(ms / 1_000).toFixed(2)} s`;
}

/** Rounds to 3 decimals so the JSON line stays short and stable. */
export const round3 = (x: number): number => Math.round(x * 1_000) / 1_000;

/** Prints a readable line, to stdout (benchmarks print figures there; the JSON line comes last). */
export function log(line = ''): void {
  process.stdout.write(`${line}\n`);
}

/** Prints a table: one row per object, columns from the first row's keys. */
export function printTable(rows: readonly Record<string, string | number>[]): void {
  if (rows.length === 0) return;
  const cols = Object.keys(rows[0]!);
  const cell = (v: string | number | undefined) => (typeof v === 'number' ? formatMs(v) : (v ?? ''));
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padStart(widths[i]!)).join('  ');
  log(line(cols));
  for (const r of rows) log(line(cols.map((c) => cell(r[c]))));
}

/** One readable line of latency figures, e.g. `put->watch  n=1000  p50 1.20 ms  p90 ...`. */
export function printLatency(label: string, s: LatencySummary): void {
  log(
    `${label}  n=${s.count}  p50 ${formatMs(s.p50)}  p90 ${formatMs(s.p90)}  p99 ${formatMs(s.p99)}  max ${formatMs(s.max)}`,
  );
}

/** LatencySummary with every figure rounded for the result line. */
export function roundSummary(s: LatencySummary): LatencySummary {
  return {
    count: s.count,
    min: round3(s.min),
    mean: round3(s.mean),
    p50: round3(s.p50),
    p90: round3(s.p90),
    p99: round3(s.p99),
    p999: round3(s.p999),
    max: round3(s.max),
  };
}

/**
 * Prints the benchmark's result as the final single JSON line: `{"bench":"<name>", ...obj}`.
 * Call it once, last; times are in ms unless a field name says otherwise.
 */
export function emitResult(obj: Record<string, unknown>): void {
  if (emitted)
    throw new Error(`emitResult: the result line of ${benchName ?? 'this benchmark'} was already printed`);
  emitted = true;
  process.stdout.write(`${JSON.stringify(benchName === undefined ? obj : { bench: benchName, ...obj })}\n`);
}
