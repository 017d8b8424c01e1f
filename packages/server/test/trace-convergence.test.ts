// The push trace's convergence counted incrementally (issue 17: no recount of every proxy per ACK
// when traces are exported): N ACKs cost a bounded number of full recounts, the trace ends at the
// last ACK with the right counts, a proxy that leaves is noticed by the periodic recount, and a
// newer push context ends the trace.
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type ConvergenceCount, PushTrace, TraceConvergence } from '../src/tracing.js';

function setup(n: number) {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const conns = Array.from({ length: n }, (_, i) => ({ id: i, synced: '' }));
  let version = 'v2';
  let passes = 0;
  const recount = (): ConvergenceCount => {
    passes++;
    return { version, proxies: conns.length, synced: conns.filter((c) => c.synced === version).length };
  };
  const trace = new PushTrace(provider.getTracer('t'), Date.now(), Date.now());
  trace.built(Date.now(), {});
  const follower = new TraceConvergence(trace, 'v2', recount, { intervalMs: 1000, boundMs: 60_000 });
  const ack = (i: number) => {
    conns[i]!.synced = version;
    follower.synced(conns[i]!, version);
  };
  const root = () => exporter.getFinishedSpans().find((s) => s.name === 'meridian.push');
  return {
    conns,
    follower,
    ack,
    root,
    passes: () => passes,
    setVersion: (v: string) => {
      version = v;
    },
  };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('TraceConvergence', () => {
  it('2,000 ACKs: two full recounts (at send and at the last ACK), the trace ends with every proxy synced', () => {
    vi.useFakeTimers();
    const t = setup(2000);
    t.ack(0); // before the pushes are all written: counted, no recount
    expect(t.passes()).toBe(0);
    t.follower.sent(Date.now());
    expect(t.passes()).toBe(1);
    for (let i = 1; i < 2000; i++) t.ack(i);
    t.ack(5); // a repeated sync of one stream is counted once
    expect(t.passes()).toBe(2);
    expect(t.follower.ended).toBe(true);
    expect(t.root()?.attributes).toMatchObject({ 'meridian.proxies': 2000, 'meridian.synced': 2000 });
  });

  it('a proxy that leaves unsynced is noticed by the periodic recount; a newer context ends the trace', () => {
    vi.useFakeTimers();
    const t = setup(10);
    t.follower.sent(Date.now());
    for (let i = 0; i < 9; i++) t.ack(i);
    expect(t.follower.ended).toBe(false);
    t.conns.pop(); // the last, unsynced, proxy disconnects
    vi.advanceTimersByTime(1000);
    expect(t.follower.ended).toBe(true);
    expect(t.root()?.attributes).toMatchObject({ 'meridian.proxies': 9, 'meridian.synced': 9 });

    const u = setup(3);
    u.follower.sent(Date.now());
    u.ack(0);
    u.setVersion('v3');
    u.follower.supersede();
    expect(u.follower.ended).toBe(true);
    expect(u.root()?.attributes).toMatchObject({ 'meridian.proxies': 3, 'meridian.synced': 0 });
  });
});
