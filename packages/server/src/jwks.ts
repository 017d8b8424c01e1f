/**
 * The replica's JWKS resolver: fetches the key sets RequestAuthentications name,
 * so translation can inline them (`local_jwks`) and stay pure.
 *
 * Behaviour, after istiod's `pilot/pkg/model/jwks_resolver.go` (read for semantics), with one change:
 * - a source is fetched when a RequestAuthentication first names it, then refreshed every 20 min;
 * - each fetch has a timeout (the rule's `timeout`, else 5 s) and is retried with exponential
 *   backoff (3 attempts: 0.5 s, 1 s between them);
 * - a URL issuer without `jwksUri` is resolved through `<issuer>/.well-known/openid-configuration`;
 * - a failed refresh keeps the last good key set (proxies keep verifying with it) and is retried
 *   every minute until it succeeds. istiod's resolver never recovered from some failures (istio
 *   #37456): here a failure only ever delays the next success;
 * - a response is accepted only if it is a JSON key set with at least one key, at most 1 MiB;
 * - sources no RequestAuthentication names any more are dropped.
 *
 * Metrics: `meridian_jwks_fetch{result="success"|"failure"}` (a refresh that gave an unchanged key set
 * counts as success), `meridian_jwks_last_success_timestamp_seconds{issuer}` and
 * `meridian_jwks_stale{issuer}` (1 while the last attempt failed and an older key set is served).
 * `status()` is `/debug/jwks`.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { ConfigObject, RequestAuthenticationConfig } from '@meridian/api';
import { jwksError, parseDurationNanos } from '@meridian/api';
import { type JwksSource, jwksSources } from '@meridian/translate';
import { type Meter, metrics } from '@opentelemetry/api';
import type { Logger } from 'pino';

/** Settings of a {@link JwksResolver}; every field has istiod's default. */
export interface JwksResolverOptions {
  readonly log: Logger;
  /** Called after a source's key set changed (fetched for the first time, or rotated). */
  readonly onChange: () => void;
  /** Refresh period of a good source; default 20 min. */
  readonly refreshMs?: number;
  /** Retry period of a source whose last fetch failed; default 60 s. */
  readonly retryMs?: number;
  /** Attempts per fetch (with backoff between them); default 3. */
  readonly attempts?: number;
  /** First backoff between attempts, doubled each time; default 500 ms. */
  readonly backoffMs?: number;
  /** Default fetch timeout when the rule has none; default 5 s. */
  readonly timeoutMs?: number;
  /** Extra trusted CA certificates (PEM) for https sources, besides the system's. */
  readonly ca?: string;
  /** Meter for the metrics (default: the global `@meridian/server` meter). */
  readonly meter?: Meter;
}

/** What `/debug/jwks` shows about one source. */
export interface JwksSourceStatus {
  readonly issuer: string;
  /** The JWKS URI (the discovered one, for an issuer without `jwksUri`, once known). */
  readonly uri: string;
  /** ISO time of the last successful fetch. */
  readonly lastSuccess?: string;
  /** ISO time and message of the last failed attempt (kept until a later success). */
  readonly lastError?: { readonly at: string; readonly message: string };
  /** True while a key set is served after a failed refresh. */
  readonly stale: boolean;
  /** Number of keys in the served key set (0: none yet, the issuer's tokens are refused). */
  readonly keys: number;
  /** `kid`s of the served keys. */
  readonly kids: readonly string[];
}

interface SourceState {
  source: JwksSource;
  uri: string;
  jwks?: string;
  lastSuccess?: Date;
  lastError?: { at: Date; message: string };
  timer?: NodeJS.Timeout;
  inFlight?: Promise<void>;
}

const MAX_BYTES = 1 << 20;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

/** A fetch failure, with the reason shown in `/debug/jwks` (never a credential: sources carry none). */
export class JwksFetchError extends Error {
  override readonly name = 'JwksFetchError';
  constructor(
    readonly uri: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(`${uri}: ${message}`, options);
  }
}

/** GETs `uri` (http or https) with a timeout and a size cap; resolves with the body text. */
function get(uri: string, timeoutMs: number, ca: string | undefined): Promise<string> {
  return new Promise((resolve, reject) => {
    const url = new URL(uri);
    const fail = (message: string, cause?: unknown) =>
      reject(new JwksFetchError(uri, message, cause === undefined ? undefined : { cause }));
    const options = { method: 'GET', headers: { accept: 'application/json' }, timeout: timeoutMs };
    const req =
      url.protocol === 'https:'
        ? httpsRequest(url, { ...options, ...(ca ? { ca: [ca] } : {}) })
        : httpRequest(url, options);
    const deadline = setTimeout(() => req.destroy(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
    req.on('timeout', () => req.destroy(new Error(`timed out after ${timeoutMs} ms`)));
    req.on('error', (e) => {
      clearTimeout(deadline);
      fail(e.message, e);
    });
    req.on('response', (res) => {
      if (res.statusCode !== 200) {
        clearTimeout(deadline);
        res.resume();
        fail(`HTTP ${res.statusCode}`);
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_BYTES) req.destroy(new Error(`response larger than ${MAX_BYTES} bytes`));
        else chunks.push(c);
      });
      res.on('end', () => {
        clearTimeout(deadline);
        resolve(Buffer.concat(chunks).toString('utf8'));
      });
      res.on('error', (e) => {
        clearTimeout(deadline);
        fail(e.message, e);
      });
    });
    req.end();
  });
}

/** Fetches, discovers and refreshes the JWKS of the RequestAuthentications in the config. */
export class JwksResolver {
  readonly #o: JwksResolverOptions;
  readonly #sources = new Map<string, SourceState>();
  #served: ReadonlyMap<string, string> = new Map();
  #stopped = false;
  readonly #fetches;

  constructor(options: JwksResolverOptions) {
    this.#o = options;
    const meter = options.meter ?? metrics.getMeter('@meridian/server');
    this.#fetches = meter.createCounter('meridian_jwks_fetch', {
      description: 'JWKS fetches by result (success: a key set was read; failure: every attempt failed).',
    });
    meter
      .createObservableGauge('meridian_jwks_last_success_timestamp_seconds', {
        description: 'Unix time of the last successful JWKS fetch, per issuer.',
        unit: 's',
      })
      .addCallback((r) => {
        for (const s of this.#sources.values())
          if (s.lastSuccess) r.observe(s.lastSuccess.getTime() / 1000, { issuer: s.source.issuer });
      });
    meter
      .createObservableGauge('meridian_jwks_stale', {
        description: '1 while a JWKS is served after its last refresh failed, per issuer.',
      })
      .addCallback((r) => {
        for (const s of this.#sources.values()) r.observe(isStale(s) ? 1 : 0, { issuer: s.source.issuer });
      });
  }

  /**
   * The key sets for translation (`PolicyInputs.jwks`) given the current config: starts fetching
   * sources named for the first time, drops those no longer named. The map's identity changes only
   * when a key set changes.
   */
  resolve(objects: readonly ConfigObject[]): ReadonlyMap<string, string> {
    this.track(
      jwksSources(
        objects.filter((o): o is RequestAuthenticationConfig => o.kind === 'RequestAuthentication'),
      ),
    );
    return this.#served;
  }

  /** Sets the sources to keep fetched (see `resolve`). */
  track(sources: readonly JwksSource[]): void {
    if (this.#stopped) return;
    const wanted = new Map(sources.map((s) => [s.key, s]));
    let dropped = false;
    for (const [key, s] of this.#sources) {
      if (wanted.has(key)) continue;
      clearTimeout(s.timer);
      this.#sources.delete(key);
      dropped = dropped || s.jwks !== undefined;
    }
    if (dropped) this.#publish();
    for (const [key, source] of wanted) {
      if (this.#sources.has(key)) continue;
      const state: SourceState = { source, uri: source.uri ?? '' };
      this.#sources.set(key, state);
      void this.#refresh(state);
    }
  }

  /** The served key sets, by source key. */
  get jwks(): ReadonlyMap<string, string> {
    return this.#served;
  }

  /** One entry per source, sorted by issuer then URI (`/debug/jwks`). */
  status(): JwksSourceStatus[] {
    return [...this.#sources.values()]
      .map((s) => {
        const kids = keyIds(s.jwks);
        return {
          issuer: s.source.issuer,
          uri: s.uri || `(discovered from ${s.source.issuer})`,
          ...(s.lastSuccess ? { lastSuccess: s.lastSuccess.toISOString() } : {}),
          ...(s.lastError
            ? { lastError: { at: s.lastError.at.toISOString(), message: s.lastError.message } }
            : {}),
          stale: isStale(s),
          keys: kids.length,
          kids,
        };
      })
      .sort((a, b) => (a.issuer === b.issuer ? (a.uri < b.uri ? -1 : 1) : a.issuer < b.issuer ? -1 : 1));
  }

  /** Waits for the fetches under way (tests). */
  async settled(): Promise<void> {
    await Promise.all([...this.#sources.values()].map((s) => s.inFlight));
  }

  /** Fetches every source now (tests, and an operator's forced refresh). */
  async refreshAll(): Promise<void> {
    await Promise.all([...this.#sources.values()].map((s) => this.#refresh(s)));
  }

  /** Stops every timer. Safe to call twice. */
  stop(): void {
    this.#stopped = true;
    for (const s of this.#sources.values()) clearTimeout(s.timer);
  }

  #refresh(state: SourceState): Promise<void> {
    state.inFlight ??= this.#fetchWithRetries(state).finally(() => {
      state.inFlight = undefined;
    });
    return state.inFlight;
  }

  async #fetchWithRetries(state: SourceState): Promise<void> {
    const o = this.#o;
    const attempts = Math.max(1, o.attempts ?? 3);
    const timeoutMs = timeoutOf(state.source, o.timeoutMs ?? 5000);
    let last: unknown;
    for (let i = 0; i < attempts && !this.#stopped; i++) {
      if (i > 0) await sleep((o.backoffMs ?? 500) * 2 ** (i - 1));
      try {
        const uri = state.source.uri ?? (await discover(state.source.issuer, timeoutMs, o.ca));
        const text = (await get(uri, timeoutMs, o.ca)).trim();
        const invalid = jwksError(text);
        if (invalid !== undefined) throw new JwksFetchError(uri, invalid);
        state.uri = uri;
        this.#succeeded(state, text);
        return;
      } catch (error) {
        last = error;
      }
    }
    if (this.#stopped) return;
    this.#failed(state, last);
  }

  #succeeded(state: SourceState, text: string): void {
    if (this.#sources.get(state.source.key) !== state) return;
    const changed = state.jwks !== text;
    state.jwks = text;
    state.lastSuccess = new Date();
    state.lastError = undefined;
    this.#fetches.add(1, { result: 'success' });
    this.#schedule(state, this.#o.refreshMs ?? 20 * 60_000);
    if (changed) {
      this.#o.log.info(
        { issuer: state.source.issuer, uri: state.uri, kids: keyIds(text) },
        'JWKS fetched; pushing it to proxies',
      );
      this.#publish();
    }
  }

  #failed(state: SourceState, error: unknown): void {
    if (this.#sources.get(state.source.key) !== state) return;
    const message = error instanceof Error ? error.message : String(error);
    state.lastError = { at: new Date(), message };
    this.#fetches.add(1, { result: 'failure' });
    this.#o.log.warn(
      {
        issuer: state.source.issuer,
        uri: state.uri || undefined,
        err: message,
        servingLastGood: state.jwks !== undefined,
      },
      state.jwks !== undefined
        ? 'JWKS refresh failed; serving the last good key set'
        : 'JWKS fetch failed; tokens of this issuer are refused until it succeeds',
    );
    this.#schedule(state, this.#o.retryMs ?? 60_000);
  }

  #schedule(state: SourceState, ms: number): void {
    clearTimeout(state.timer);
    if (this.#stopped) return;
    state.timer = setTimeout(() => void this.#refresh(state), ms);
    state.timer.unref();
  }

  #publish(): void {
    const next = new Map<string, string>();
    for (const [key, s] of [...this.#sources].sort((a, b) => (a[0] < b[0] ? -1 : 1)))
      if (s.jwks !== undefined) next.set(key, s.jwks);
    this.#served = next;
    this.#o.onChange();
  }
}

function isStale(s: SourceState): boolean {
  return s.jwks !== undefined && s.lastError !== undefined;
}

function keyIds(jwks: string | undefined): string[] {
  if (jwks === undefined) return [];
  try {
    const keys = (JSON.parse(jwks) as { keys?: Array<{ kid?: unknown }> }).keys ?? [];
    return keys.map((k, i) => (typeof k.kid === 'string' ? k.kid : `#${i}`));
  } catch {
    return [];
  }
}

function timeoutOf(source: JwksSource, fallback: number): number {
  const ns = source.timeout !== undefined ? parseDurationNanos(source.timeout) : undefined;
  return ns !== undefined && ns > 0 ? Math.max(1, Math.round(ns / 1e6)) : fallback;
}

/** The `jwks_uri` of an issuer's OpenID configuration. */
async function discover(issuer: string, timeoutMs: number, ca: string | undefined): Promise<string> {
  const url = `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
  let doc: unknown;
  try {
    doc = JSON.parse(await get(url, timeoutMs, ca));
  } catch (error) {
    if (error instanceof JwksFetchError) throw error;
    throw new JwksFetchError(url, 'not a JSON OpenID configuration', { cause: error });
  }
  const uri = (doc as { jwks_uri?: unknown } | null)?.jwks_uri;
  if (typeof uri !== 'string' || !/^https?:\/\//.test(uri))
    throw new JwksFetchError(url, 'the OpenID configuration has no http(s) "jwks_uri"');
  return uri;
}
