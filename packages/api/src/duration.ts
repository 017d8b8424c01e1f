/**
 * Durations as Istio accepts them in YAML/JSON: Go `time.ParseDuration` syntax, which is what
 * Istio's JSON decoding and CRD CEL rules (`duration(self)`) use: `"1.5s"`, `"100ms"`, `"5m"`,
 * `"1h30m"`, `"0"`. The protobuf-JSON form (`"0.100s"`) is a special case of it.
 */

const UNIT_NANOS: Readonly<Record<string, number>> = {
  ns: 1,
  us: 1e3,
  µs: 1e3,
  μs: 1e3,
  ms: 1e6,
  s: 1e9,
  m: 60e9,
  h: 3600e9,
};

/** Parses a duration into nanoseconds; returns undefined when the string is not a valid duration. */
export function parseDurationNanos(text: string): number | undefined {
  let s = text;
  let sign = 1;
  if (s.startsWith('-') || s.startsWith('+')) {
    if (s[0] === '-') sign = -1;
    s = s.slice(1);
  }
  if (s === '0') return 0;
  if (s === '') return undefined;
  let total = 0;
  const re = /^(\d*)(?:\.(\d*))?(ns|us|µs|μs|ms|s|m|h)/;
  while (s.length > 0) {
    const m = re.exec(s);
    if (m === null) return undefined;
    const whole = m[1] ?? '';
    const frac = m[2] ?? '';
    if (whole === '' && frac === '') return undefined;
    const unit = UNIT_NANOS[m[3] ?? ''] ?? 0;
    total += Number(whole || '0') * unit;
    if (frac !== '') total += Math.round(Number(`0.${frac}`) * unit);
    s = s.slice(m[0].length);
  }
  if (!Number.isFinite(total)) return undefined;
  return sign * total;
}

/** A duration split the way protobuf's `google.protobuf.Duration` (and Envoy) carry it. */
export interface ProtoDuration {
  seconds: number;
  nanos: number;
}

/**
 * Converts a duration string (see `parseDurationNanos`) to `{ seconds, nanos }` with both parts of
 * the same sign, as `google.protobuf.Duration` requires; undefined when the string is invalid.
 */
export function durationToProto(text: string): ProtoDuration | undefined {
  const ns = parseDurationNanos(text);
  if (ns === undefined) return undefined;
  const seconds = Math.trunc(ns / 1e9);
  const nanos = Math.round(ns - seconds * 1e9);
  return { seconds, nanos: nanos === 0 ? 0 : nanos };
}
