/**
 * Polling until a condition holds: the one wait helper of the test suites (they used to copy an
 * `until` of their own). No fixed sleeps: a test waits exactly as long as the condition takes.
 */

/** Thrown by {@link eventually} when the condition did not hold in time; names what was awaited. */
export class EventuallyTimeoutError extends Error {
  override readonly name = 'EventuallyTimeoutError';
  /** What was awaited, as given to `eventually`. */
  readonly what: string;
  /** How long it waited, in milliseconds. */
  readonly timeoutMs: number;

  constructor(what: string, timeoutMs: number, cause: unknown) {
    const last =
      cause === undefined ? '' : ` (last error: ${cause instanceof Error ? cause.message : String(cause)})`;
    super(`timed out after ${timeoutMs} ms waiting for ${what}${last}`, cause === undefined ? {} : { cause });
    this.what = what;
    this.timeoutMs = timeoutMs;
  }
}

/**
 * Calls `probe` every `intervalMs` (default 10 ms) until it returns something other than
 * `undefined` or `false`, and resolves with that value (`true` for a plain predicate). A probe that
 * throws is tried again; after `timeoutMs` (default 10 000 ms) the promise rejects with an
 * {@link EventuallyTimeoutError} naming `what` and carrying the probe's last error.
 *
 *   await eventually('the watch caught up', () => watch.lastRevision >= rev);
 *   const cert = await eventually('a rotated certificate', () => agent.certificate, 20_000);
 */
export async function eventually<T>(
  what: string,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 10_000,
  intervalMs = 10,
): Promise<Exclude<T, undefined | false>> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v as Exclude<T, undefined | false>;
      last = undefined;
    } catch (error) {
      last = error;
    }
    if (Date.now() > end) throw new EventuallyTimeoutError(what, timeoutMs, last);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
