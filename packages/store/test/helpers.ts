// Test helpers shared by the store suites.
import type { Store, Watch, WatchBatch, WatchEvent, WatchOptions } from '@meridian/store';
import { eventually } from '@meridian/testkit';

export const te = new TextEncoder();
export const td = new TextDecoder();
export const bytes = (s: string): Uint8Array => te.encode(s);
export const text = (b: Uint8Array): string => td.decode(b);

/** The suites' polling helper (one for every package, from @meridian/testkit). */
export { eventually };

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

  async until(what: string, predicate: (r: Recorder) => boolean, timeoutMs?: number): Promise<void> {
    await eventually(what, () => predicate(this), timeoutMs);
  }
}
