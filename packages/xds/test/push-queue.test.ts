// PushQueue's slices: pushes whose synchronous part is long are started a slice at a time, so work
// queued on the event loop meanwhile (an admin request, an etcd answer, an ACK) runs between slices
// instead of after the whole fan-out; every push still runs once, under the concurrency cap.
import { describe, expect, it } from 'vitest';
import { type ChangeEvent, PushQueue } from '../src/index.js';

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
