/**
 * RateLimit (`policy.meridian.io/v1alpha1`), Meridian's own kind: rate limits on the inbound HTTP
 * traffic of the workloads it selects, optionally only on some request paths.
 *
 * - `local`: a token bucket in each proxy (Envoy `envoy.filters.http.local_ratelimit`): every
 *   replica of a workload gets the full bucket. Cheap, no network call, not shared.
 * - `global`: limits counted across the whole cluster by Meridian's replicas, which serve Envoy's
 *   `envoy.service.ratelimit.v3.RateLimitService` (`envoy.filters.http.ratelimit`). A limit is per
 *   fixed window (`unit`), per descriptor: the whole limit (`key: NONE`), or one counter per source
 *   principal, per value of a request header, or per path.
 *
 * ```yaml
 * apiVersion: policy.meridian.io/v1alpha1
 * kind: RateLimit
 * metadata: { name: reviews, namespace: default }
 * spec:
 *   selector: { matchLabels: { app: reviews } }
 *   paths: [{ prefix: /api/ }]
 *   local: { maxTokens: 100, fillInterval: 1s, statusCode: 429, responseHeaders: { x-limited: local } }
 *   global:
 *     limits:
 *     - { key: SOURCE_PRINCIPAL, requestsPerUnit: 600, unit: MINUTE }
 * ```
 */
import { parseDurationNanos } from './duration.js';
import type { FieldPath, Reporter } from './path.js';
import { validateDuration, validateRegex } from './rules.js';
import type { FieldSchema, MessageSchema } from './schema.js';
import type { StringMatch, WorkloadSelector } from './types.js';

/** A token bucket per proxy. */
export interface LocalRateLimit {
  /** Bucket size: the burst allowed. Required, at least 1. */
  maxTokens?: number;
  /** Tokens added each `fillInterval`; default `maxTokens`. */
  tokensPerFill?: number;
  /** How often tokens are added; required, at least 50ms (Envoy's minimum). */
  fillInterval?: string;
  /** Status of a limited request; default 429. */
  statusCode?: number;
  /** Headers added to a limited response. */
  responseHeaders?: Record<string, string>;
}

/** What a global limit counts separately. */
export type RateLimitKey = 'NONE' | 'SOURCE_PRINCIPAL' | 'HEADER' | 'PATH';
/** The fixed window of a global limit. */
export type RateLimitUnit = 'UNSPECIFIED' | 'SECOND' | 'MINUTE' | 'HOUR' | 'DAY';

/** One global limit: `requestsPerUnit` requests per `unit` window, per value of `key`. */
export interface GlobalLimit {
  key?: RateLimitKey;
  /** The request header whose value is counted apart (`key: HEADER` only). */
  header?: string;
  requestsPerUnit?: number;
  unit?: RateLimitUnit;
}

/** Limits shared by every replica of the cluster. */
export interface GlobalRateLimit {
  limits?: GlobalLimit[];
  /** Refuse requests when no replica answers in time (default: let them through, as Envoy). */
  failureModeDeny?: boolean;
  /** How long the proxy waits for a decision; default 100ms. */
  timeout?: string;
  /** Status of a limited request; default 429. */
  statusCode?: number;
}

/** `policy.meridian.io/v1alpha1` RateLimit spec. */
export interface RateLimit {
  selector?: WorkloadSelector;
  /** Request paths the limits apply to (any of them); none: every request. */
  paths?: StringMatch[];
  local?: LocalRateLimit;
  global?: GlobalRateLimit;
}

const str: FieldSchema = { t: 'string' };
const bool: FieldSchema = { t: 'bool' };
const uint32: FieldSchema = { t: 'int', min: 0, max: 4294967295 };
const strMap: FieldSchema = { t: 'map', of: str };

function message<M>(
  name: string,
  fields: { readonly [K in keyof Required<M>]: FieldSchema },
  oneofs: readonly (readonly (keyof M & string)[])[] = [],
): MessageSchema {
  return { name, fields: fields as Record<string, FieldSchema>, oneofs };
}
const msg = (of: () => MessageSchema): FieldSchema => ({ t: 'message', of });
const listOf = (of: () => MessageSchema): FieldSchema => ({ t: 'list', of: { t: 'message', of } });

const PathMatchSchema = message<StringMatch>('StringMatch', { exact: str, prefix: str, regex: str }, [
  ['exact', 'prefix', 'regex'],
]);

/** Schema of the RateLimit spec. */
export const RateLimitSchema = message<RateLimit>('RateLimit', {
  selector: msg(() => message<WorkloadSelector>('WorkloadSelector', { matchLabels: strMap })),
  paths: listOf(() => PathMatchSchema),
  local: msg(() =>
    message<LocalRateLimit>('LocalRateLimit', {
      maxTokens: uint32,
      tokensPerFill: uint32,
      fillInterval: { t: 'duration' },
      statusCode: uint32,
      responseHeaders: strMap,
    }),
  ),
  global: msg(() =>
    message<GlobalRateLimit>('GlobalRateLimit', {
      limits: listOf(() =>
        message<GlobalLimit>('GlobalLimit', {
          key: { t: 'enum', values: ['NONE', 'SOURCE_PRINCIPAL', 'HEADER', 'PATH'] },
          header: str,
          requestsPerUnit: uint32,
          unit: { t: 'enum', values: ['UNSPECIFIED', 'SECOND', 'MINUTE', 'HOUR', 'DAY'] },
        }),
      ),
      failureModeDeny: bool,
      timeout: { t: 'duration' },
      statusCode: uint32,
    }),
  ),
});

/** The 4xx and 5xx codes of Envoy's `envoy.type.v3.StatusCode` (the only ones its filters accept). */
export const RATE_LIMIT_STATUS_CODES: ReadonlySet<number> = new Set([
  400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 421, 422, 423,
  424, 426, 428, 429, 431, 500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511,
]);

/** Length of a global limit's window in milliseconds. */
export function rateLimitWindowMs(unit: RateLimitUnit | undefined): number {
  switch (unit) {
    case 'SECOND':
      return 1000;
    case 'HOUR':
      return 3_600_000;
    case 'DAY':
      return 86_400_000;
    default:
      return 60_000;
  }
}

const HEADER_NAME = /^[a-z0-9!#$%&'*+\-.^_`|~]+$/;

function checkStatus(code: number | undefined, p: FieldPath, r: Reporter): void {
  if (code !== undefined && !RATE_LIMIT_STATUS_CODES.has(code))
    r.add(p, `status code ${code} is not a 4xx or 5xx code Envoy knows (e.g. 429, 503)`);
}

/**
 * Validates a RateLimit spec; `checkSelector` is the shared workload-selector check (semantics/common.ts).
 * Errors name the field: `spec.local.fillInterval`, `spec.global.limits[1].header`...
 */
export function checkRateLimit(
  rl: RateLimit,
  p: FieldPath,
  r: Reporter,
  checkSelector: (labels: Record<string, string> | undefined, p: FieldPath, r: Reporter) => void,
): void {
  if (rl.selector !== undefined)
    checkSelector(rl.selector.matchLabels, p.field('selector').field('matchLabels'), r);
  if (rl.local === undefined && rl.global === undefined)
    r.add(p, 'at least one of local or global must be set');
  (rl.paths ?? []).forEach((m, i) => {
    const mp = p.field('paths').index(i);
    if (m.exact === undefined && m.prefix === undefined && m.regex === undefined)
      r.add(mp, 'one of exact, prefix or regex must be set');
    for (const k of ['exact', 'prefix'] as const) {
      const v = m[k];
      if (v !== undefined && !v.startsWith('/')) r.add(mp.field(k), `path "${v}" must start with "/"`);
    }
    if (m.regex !== undefined) {
      const e = validateRegex(m.regex, 'regex');
      if (e !== undefined) r.add(mp.field('regex'), e);
    }
  });
  const local = rl.local;
  if (local !== undefined) {
    const lp = p.field('local');
    if (!local.maxTokens) r.add(lp.field('maxTokens'), 'maxTokens must be at least 1');
    if (local.tokensPerFill !== undefined && local.tokensPerFill < 1)
      r.add(lp.field('tokensPerFill'), 'tokensPerFill must be at least 1');
    if (local.fillInterval === undefined) r.add(lp.field('fillInterval'), 'fillInterval must be set');
    else {
      const e = validateDuration(local.fillInterval);
      const ns = parseDurationNanos(local.fillInterval) ?? 0;
      if (e !== undefined) r.add(lp.field('fillInterval'), e);
      else if (ns < 50e6) r.add(lp.field('fillInterval'), 'fillInterval must be at least 50ms');
    }
    checkStatus(local.statusCode, lp.field('statusCode'), r);
    for (const h of Object.keys(local.responseHeaders ?? {})) {
      if (!HEADER_NAME.test(h) || h.startsWith(':'))
        r.add(lp.field('responseHeaders').key(h), `"${h}" is not a valid lower-case HTTP header name`);
    }
  }
  const global = rl.global;
  if (global !== undefined) {
    const gp = p.field('global');
    if ((global.limits ?? []).length === 0) r.add(gp.field('limits'), 'at least one limit must be set');
    (global.limits ?? []).forEach((l, i) => {
      const ip = gp.field('limits').index(i);
      if (!l.requestsPerUnit) r.add(ip.field('requestsPerUnit'), 'requestsPerUnit must be at least 1');
      if (l.unit === undefined || l.unit === 'UNSPECIFIED')
        r.add(ip.field('unit'), 'unit must be one of SECOND, MINUTE, HOUR, DAY');
      const key = l.key ?? 'NONE';
      if (key === 'HEADER') {
        if (!l.header) r.add(ip.field('header'), 'header must be set when key is HEADER');
        else if (!HEADER_NAME.test(l.header) || l.header.startsWith(':'))
          r.add(ip.field('header'), `"${l.header}" is not a valid lower-case HTTP header name`);
      } else if (l.header !== undefined)
        r.add(ip.field('header'), `header is only used with key HEADER, not ${key}`);
    });
    if (global.timeout !== undefined) {
      const e = validateDuration(global.timeout);
      if (e !== undefined) r.add(gp.field('timeout'), e);
    }
    checkStatus(global.statusCode, gp.field('statusCode'), r);
  }
}
