// PushQueue's slices: pushes whose synchronous part is long are started a slice at a time, so work
// queued on the event loop meanwhile (an admin request, an etcd answer, an ACK) runs between slices
// instead of after the whole fan-out; every push still runs once, under the concurrency cap.
import { describe, expect, it } from 'vitest';
import { type ChangeEvent, Debouncer, PushQueue, type Timer } from '../src/index.js';

const change: ChangeEvent = { full: true, reason: ['test'], at: 0 };

/** Holds the CPU for `ms` (a push's synchronous translate-and-encode). */
function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // spin
  }
}

describe('PushQueue slices', () => {
  it('lets other work run between slices of a long fan-out, and still pushes every connection', async () => {
    const events: string[] = [];
    const conns = Array.from({ length: 40 }, (_, i) => ({
      name: `c${i}`,
      push: async () => {
        events.push(`c${i}`);
        busy(2);
      },
    }));
    const queue = new PushQueue<(typeof conns)[number]>(100, () => {}, undefined, 10);
    setImmediate(() => events.push('other work'));
    for (const c of conns) queue.enqueue(c, change);
    await queue.idle();
    const other = events.indexOf('other work');
    // 40 pushes of 2 ms do not fit one 10 ms slice: the other work ran after the first slice...
    expect(other).toBeGreaterThan(0);
    expect(other).toBeLessThan(events.length - 1);
    // ...and every connection was pushed exactly once.
    const pushed = events.filter((e) => e !== 'other work');
    expect(pushed).toHaveLength(40);
    expect(new Set(pushed).size).toBe(40);
  });

  it('starts pushes that fit in one slice at once', () => {
    const started: string[] = [];
    const conns = ['a', 'b', 'c'].map((name) => ({
      name,
      push: async () => {
        started.push(name);
      },
    }));
    const queue = new PushQueue<(typeof conns)[number]>(100, () => {}, undefined, 10);
    for (const c of conns) queue.enqueue(c, change);
    expect(started).toEqual(['a', 'b', 'c']);
  });
});

/** A manual clock for the debouncer. */
function manualTimer(): { timer: Timer; advance: (ms: number) => void } {
  let now = 0;
  let nextId = 0;
  const timers: { at: number; fn: () => void; id: number }[] = [];
  const timer: Timer = {
    now: () => now,
    setTimeout: (fn, ms) => {
      timers.push({ at: now + ms, fn, id: nextId });
      return nextId++;
    },
    clearTimeout: (h) => {
      const i = timers.findIndex((t) => t.id === h);
      if (i >= 0) timers.splice(i, 1);
    },
  };
  const advance = (ms: number) => {
    for (let step = 0; step < ms; step++) {
      now += 1;
      for (const t of timers.filter((x) => x.at <= now)) {
        timers.splice(timers.indexOf(t), 1);
        t.fn();
      }
    }
  };
  return { timer, advance };
}

describe('Debouncer bounds per change', () => {
  const ev = (r: string): ChangeEvent => ({ full: true, reason: [r], at: 0 });

  it('fires a steady stream of changes bounded at 100 ms every 100 ms, not at the 1 s maximum', () => {
    const { timer, advance } = manualTimer();
    const fired: number[] = [];
    const d = new Debouncer({ quietMs: 100, maxDelayMs: 1000, timer }, (_c, merged) => fired.push(merged));
    // A change every 20 ms for one second never leaves 100 ms of quiet.
    for (let i = 0; i < 50; i++) {
      d.enqueue(ev(`e${i}`), 100);
      advance(20);
    }
    expect(fired.length).toBeGreaterThanOrEqual(9);
    expect(fired.every((n) => n <= 6)).toBe(true);
  });

  it('a bounded change shortens the wait of a burst that began without a bound', () => {
    const { timer, advance } = manualTimer();
    const fired: (readonly string[])[] = [];
    const d = new Debouncer({ quietMs: 100, maxDelayMs: 1000, timer }, (c) => fired.push(c.reason));
    for (let i = 0; i < 10; i++) {
      d.enqueue(ev(`config${i}`));
      advance(50);
    }
    expect(fired).toEqual([]);
    d.enqueue(ev('endpoint'), 100);
    advance(60);
    expect(fired).toEqual([]);
    advance(40);
    expect(fired).toHaveLength(1);
    expect(fired[0]).toContain('endpoint');
    expect(fired[0]).toContain('config0');
  });
});
