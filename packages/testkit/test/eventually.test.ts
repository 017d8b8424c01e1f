// The one polling helper of the suites: what it resolves with, what it retries, what it says on timeout.
import { describe, expect, it } from 'vitest';
import { EventuallyTimeoutError, eventually } from '../src/index.js';

describe('eventually', () => {
  it('resolves with the first value that is neither undefined nor false', async () => {
    let calls = 0;
    const probe = () => {
      calls++;
      return calls < 3 ? undefined : calls === 3 ? false : `value after ${calls} calls`;
    };
    await expect(eventually('the fourth call', probe, 10_000, 1)).resolves.toBe('value after 4 calls');
  });

  it('resolves with true for a plain predicate, and awaits an async probe', async () => {
    let n = 0;
    await expect(eventually('n reaches 2', async () => ++n >= 2, 10_000, 1)).resolves.toBe(true);
    expect(n).toBe(2);
  });

  it('tries a probe that throws again', async () => {
    let calls = 0;
    const probe = () => {
      if (++calls < 3) throw new Error('not yet');
      return calls;
    };
    await expect(eventually('a probe that stops throwing', probe, 10_000, 1)).resolves.toBe(3);
  });

  it('on timeout, rejects naming what was awaited and the last error', async () => {
    const never = eventually(
      'the moon to turn blue',
      () => {
        throw new Error('still white');
      },
      20,
      1,
    );
    await expect(never).rejects.toThrow(EventuallyTimeoutError);
    await expect(never).rejects.toThrow(
      'timed out after 20 ms waiting for the moon to turn blue (last error: still white)',
    );
    const error = await never.catch((e: unknown) => e);
    expect(error).toMatchObject({
      name: 'EventuallyTimeoutError',
      what: 'the moon to turn blue',
      timeoutMs: 20,
    });
    expect((error as Error).cause).toEqual(new Error('still white'));
  });

  it('on timeout of a condition that never held, says only what was awaited', async () => {
    await expect(eventually('nothing', () => false, 20, 1)).rejects.toThrow(
      /^timed out after 20 ms waiting for nothing$/,
    );
  });
});
