// Shared helpers for benchmarks under bench/: flags, latency recording, repeated runs, output.
export type { FlagSpec, FlagValues } from './flags.js';
export { FlagError, HelpRequested, parseDuration, parseFlags, usage } from './flags.js';
export type { LatencySummary } from './latency.js';
export { LatencyRecorder, nowMs } from './latency.js';
export {
  emitResult,
  formatMs,
  log,
  printLatency,
  printTable,
  resultEmitted,
  round3,
  roundSummary,
  setBenchName,
} from './report.js';
export { median, medianOf, repeat } from './stats.js';
