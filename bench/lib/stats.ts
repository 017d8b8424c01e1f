/** Median of `values` (mean of the two middle values for an even count); NaN when empty. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Field-by-field median of runs that report the same numeric fields (e.g. LatencySummary per run). */
export function medianOf<T extends Record<string, number>>(runs: readonly T[]): T {
  if (runs.length === 0) throw new RangeError('medianOf: no runs');
  const out: Record<string, number> = {};
  for (const key of Object.keys(runs[0]!)) out[key] = median(runs.map((r) => r[key]!));
  return out as T;
}

/**
 * Runs `fn` `times` times in sequence (run index passed in) and returns every result; benchmarks report
 * the median of these runs so one noisy run does not decide the figure.
 */
export async function repeat<T>(times: number, fn: (run: number) => Promise<T>): Promise<T[]> {
  if (!Number.isInteger(times) || times < 1)
    throw new RangeError(`repeat: times must be an integer >= 1, got ${times}`);
  const out: T[] = [];
  for (let i = 0; i < times; i++) out.push(await fn(i));
  return out;
}
