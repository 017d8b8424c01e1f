// `pnpm bench trace-convergence`: the cost of following one push trace to the last ACK (issue 17,
// "quadratic recount when traces are exported"). N identified streams each ACK the new revision once.
// Before: every ACK recounted every stream (xds' convergence(): one pass over the streams), N x N.
// After: TraceConvergence (packages/server/src/tracing.ts) counts ACKs incrementally and recounts only
// at send, when the count may be complete, and at most once a second. The recount here walks N plain
// objects exactly as XdsServer.convergence() walks its connections; spans go to a tracer that records
// nothing, so what is measured is the counting, not the export. In-process, no network.
import { performance } from 'node:perf_hooks';
import { type ConvergenceCount, PushTrace, TraceConvergence } from '../packages/server/src/tracing.js';
import { emitResult, log, median, parseFlags, printTable, round3 } from './lib/index.js';

interface Conn {
  ctx: object | undefined;
  syncedVersion: string | undefined;
}

function streams(n: number): Conn[] {
  return Array.from({ length: n }, () => ({ ctx: {}, syncedVersion: 'v1' }));
}

/** XdsServer.convergence(): identified streams and how many hold `version`. */
function recountOf(conns: readonly Conn[], version: string): () => ConvergenceCount {
  return () => {
    let proxies = 0;
    let synced = 0;
    for (const c of conns) {
      if (!c.ctx) continue;
      proxies++;
      if (c.syncedVersion === version) synced++;
    }
    return { version, proxies, synced };
  };
}

/** A tracer whose spans record nothing (as OpenTelemetry's no-op tracer), typed as PushTrace wants. */
const noopSpan = {
  setAttributes() {
    return noopSpan;
  },
  end() {},
};
const tracer = { startSpan: () => noopSpan } as unknown as ConstructorParameters<typeof PushTrace>[0];

/** Before: one full recount per ACK (the replica's onProxySynced handler). Returns ms and recounts. */
function before(n: number): { ms: number; recounts: number } {
  const conns = streams(n);
  const recount = recountOf(conns, 'v2');
  const t = new PushTrace(tracer, Date.now(), Date.now());
  let recounts = 0;
  const start = performance.now();
  t.sent(Date.now(), {});
  for (const c of conns) {
    c.syncedVersion = 'v2';
    if (!t.ended) {
      recounts++;
      const r = recount();
      t.converged(r.synced, r.proxies, false);
    }
  }
  return { ms: performance.now() - start, recounts };
}

/** After: TraceConvergence. */
function after(n: number): { ms: number; recounts: number } {
  const conns = streams(n);
  const t = new PushTrace(tracer, Date.now(), Date.now());
  const f = new TraceConvergence(t, 'v2', recountOf(conns, 'v2'));
  const start = performance.now();
  f.sent(Date.now());
  for (const c of conns) {
    c.syncedVersion = 'v2';
    f.synced(c, 'v2');
  }
  const ms = performance.now() - start;
  if (!f.ended) throw new Error('the trace did not end at the last ACK');
  return { ms, recounts: f.recounts };
}

export async function main(args: string[]): Promise<void> {
  const f = parseFlags(
    args,
    {
      proxies: {
        type: 'integer',
        default: 10_000,
        help: 'streams ACKing the revision (also run at 1/10 and 1/4)',
      },
      rounds: { type: 'integer', default: 5, help: 'rounds per size; medians reported' },
    },
    { bench: 'trace-convergence', description: 'per-ACK recount vs incremental count of a push trace' },
  );
  const sizes = [Math.max(1, Math.round(f.proxies / 10)), Math.max(1, Math.round(f.proxies / 4)), f.proxies];
  const rows: Record<string, unknown>[] = [];
  for (const n of sizes) {
    const b: number[] = [];
    const a: number[] = [];
    let rb = 0;
    let ra = 0;
    for (let r = 0; r < f.rounds; r++) {
      const x = before(n);
      const y = after(n);
      b.push(x.ms);
      a.push(y.ms);
      rb = x.recounts;
      ra = y.recounts;
    }
    rows.push({
      proxies: n,
      before_ms: round3(median(b)),
      after_ms: round3(median(a)),
      speedup: round3(median(b) / Math.max(median(a), 1e-6)),
      recounts_before: rb,
      recounts_after: ra,
    });
  }
  log('one push trace followed to the last of N ACKs (median of rounds):');
  printTable(
    rows.map((r) => ({
      proxies: String(r.proxies),
      before: r.before_ms as number,
      after: r.after_ms as number,
      speedup: `${r.speedup}x`,
      'recounts before': String(r.recounts_before),
      'recounts after': String(r.recounts_after),
    })),
  );
  emitResult({ rows });
}
