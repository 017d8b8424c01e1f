// Test helpers shared by the store suites.
import type { Store, Watch, WatchBatch, WatchEvent, WatchOptions } from '@meridian/store';

export const te = new TextEncoder();
export const td = new TextDecoder();
export const bytes = (s: string): Uint8Array => te.encode(s);
export const text = (b: Uint8Array): string => td.decode(b);

/** Polls `predicate` every 10 ms until it holds or `timeoutMs` passes (then throws `what`). */
export async function eventually(what: string, predicate: () => boolean, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A compact, comparable form of an event: `put key=value@rev` or `delete key@rev`. */
export function describeEvent(e: WatchEvent): string {
  return e.type === 'put'
    ? `put ${e.kv.key}=${text(e.kv.value)}@${e.kv.modRevision}`
    : `delete ${e.key}@${e.modRevision}`;
}

/** Records every batch of a watch. */
export class Recorder {
  readonly batches: WatchBatch[] = [];
  readonly errors: unknown[] = [];
  watch!: Watch;

  static start(store: Store, prefix: string, options: WatchOptions = {}): Recorder {
    const r = new Recorder();
    r.watch = store.watchPrefix(prefix, (b) => void r.batches.push(b), {
      ...options,
      onError: (e) => r.errors.push(e),
    });
    return r;
  }

  get events(): WatchEvent[] {
    return this.batches.flatMap((b) => (b.kind === 'events' ? b.events : []));
  }

  get lines(): string[] {
    return this.events.map(describeEvent);
  }

  until(what: string, predicate: (r: Recorder) => boolean, timeoutMs?: number): Promise<void> {
    return eventually(what, () => predicate(this), timeoutMs);
  }
}
