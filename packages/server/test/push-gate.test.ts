// PushGate: a debounced build waits while pushes are queued or in flight, runs once when they are
// done (further calls join it), and never waits past its deadline.
import { describe, expect, it } from 'vitest';
import { type PushesInFlight, PushGate } from '../src/push-gate.js';

/** Pushes in flight that the test finishes by hand. */
function pushes(initial: number): PushesInFlight & { finish(): void } {
  let queued = initial;
  let waiters: (() => void)[] = [];
  return {
    get queuedPushes() {
      return queued;
    },
    idle: () => (queued === 0 ? Promise.resolve() : new Promise<void>((r) => waiters.push(r))),
    finish() {
      queued = 0;
      const w = waiters;
      waiters = [];
      for (const r of w) r();
    },
  };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('PushGate', () => {
  it('builds at once when nothing is being pushed', () => {
    const gate = new PushGate(pushes(0));
    let built = 0;
    gate.run(performance.now() + 1000, () => built++);
    expect(built).toBe(1);
    expect(gate.waiting).toBe(false);
  });

  it('holds the build until the pushes are done, and calls meanwhile join it', async () => {
    const p = pushes(5);
    const gate = new PushGate(p);
    let built = 0;
    gate.run(performance.now() + 60_000, () => built++);
    gate.run(performance.now() + 60_000, () => built++);
    await tick();
    expect(built).toBe(0);
    expect(gate.waiting).toBe(true);
    p.finish();
    await tick();
    expect(built).toBe(1);
    expect(gate.waiting).toBe(false);
    // The next change, with nothing in flight, builds at once.
    gate.run(performance.now() + 60_000, () => built++);
    expect(built).toBe(2);
  });

  it('builds at its deadline when the pushes are still going', async () => {
    const p = pushes(5);
    const gate = new PushGate(p);
    let built = 0;
    gate.run(performance.now() + 30, () => built++);
    expect(built).toBe(0);
    await new Promise((r) => setTimeout(r, 80));
    expect(built).toBe(1);
    // The pushes finishing later does not build again.
    p.finish();
    await tick();
    expect(built).toBe(1);
  });
});
