// The benchmark harness helpers (bench/lib) that every `pnpm bench <name>` uses.
import { describe, expect, it } from 'vitest';
import {
  FlagError,
  HelpRequested,
  LatencyRecorder,
  median,
  medianOf,
  parseDuration,
  parseFlags,
} from '../../../bench/lib/index.js';

const spec = {
  puts: { type: 'integer', default: 100, help: 'puts' },
  rate: { type: 'number', default: 1.5, help: 'rate' },
  warmupTime: { type: 'duration', default: 1_000, help: 'warm-up' },
  mode: { type: 'string', default: 'a', help: 'mode', choices: ['a', 'b'] },
  tmpfs: { type: 'boolean', default: true, help: 'tmpfs' },
} as const;
const about = { bench: 'x', description: 'test bench' };

describe('bench/lib parseFlags', () => {
  it('applies defaults and parses every flag type, --k v and --k=v, --no-flag', () => {
    expect(parseFlags([], spec, about)).toEqual({
      puts: 100,
      rate: 1.5,
      warmupTime: 1000,
      mode: 'a',
      tmpfs: true,
    });
    expect(
      parseFlags(
        ['--puts', '7', '--rate=0.25', '--warmup-time', '2s', '--mode=b', '--no-tmpfs'],
        spec,
        about,
      ),
    ).toEqual({ puts: 7, rate: 0.25, warmupTime: 2000, mode: 'b', tmpfs: false });
    expect(parseFlags(['--tmpfs=false'], spec, about).tmpfs).toBe(false);
  });

  it('rejects bad values and unknown flags with a FlagError naming the flag', () => {
    const err = (args: string[]) => {
      try {
        parseFlags(args, spec, about);
      } catch (e) {
        return e as FlagError;
      }
      throw new Error('no error');
    };
    expect(err(['--puts', '1.5'])).toBeInstanceOf(FlagError);
    expect(err(['--puts', '1.5']).message).toBe('--puts takes an integer, got "1.5"');
    expect(err(['--mode', 'c']).message).toBe('--mode must be one of a, b, got "c"');
    expect(err(['--warmup-time', 'soon']).message).toBe(
      '--warmup-time takes a duration like 500ms, 10s or 2m, got "soon"',
    );
    expect(err(['--nope']).message).toBe(
      'unknown flag --nope (known: --puts, --rate, --warmup-time, --mode, --tmpfs)',
    );
    expect(err(['--puts']).message).toBe('--puts needs a value');
    expect(err(['--help'])).toBeInstanceOf(HelpRequested);
    expect((err(['--help']) as unknown as HelpRequested).usage).toContain('--warmup-time <duration>');
  });

  it('parses durations', () => {
    expect(parseDuration('250')).toBe(250);
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration('1.5s')).toBe(1500);
    expect(parseDuration('2m')).toBe(120_000);
    expect(parseDuration('x')).toBeUndefined();
  });
});

describe('bench/lib LatencyRecorder and medians', () => {
  it('reports percentiles in ms at microsecond resolution', () => {
    const r = new LatencyRecorder();
    for (let i = 1; i <= 1000; i++) r.record(i / 100); // 0.01 .. 10 ms
    const s = r.summary();
    expect(s.count).toBe(1000);
    expect(s.p50).toBeCloseTo(5, 1);
    expect(s.p90).toBeCloseTo(9, 1);
    expect(s.p99).toBeCloseTo(9.9, 1);
    expect(s.max).toBeCloseTo(10, 1);
    expect(s.min).toBeCloseTo(0.01, 3);
    expect(s.mean).toBeCloseTo(5.005, 2);
    expect(() => r.record(-1)).toThrow(
      new RangeError('LatencyRecorder.record: latency must be a finite ms value >= 0, got -1'),
    );
  });

  it('takes the median of repeated runs, field by field', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(
      medianOf([
        { p50: 1, p99: 9 },
        { p50: 3, p99: 7 },
        { p50: 2, p99: 100 },
      ]),
    ).toEqual({ p50: 2, p99: 9 });
  });
});
