/**
 * Traces of the push pipeline: one trace per push context (config revision), exported over OTLP/HTTP
 * when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, nothing
 * otherwise. The root span `meridian.push` starts when the first change of the debounced burst was
 * seen and ends when every connected proxy holds the revision (or a newer context supersedes it, or
 * after a bound); its children are the pipeline's steps:
 *
 *   meridian.push (revision, version, configs, services)
 *   ├── meridian.debounce   first change seen -> debounce fired (changes merged)
 *   ├── meridian.build      the push context built (config + registry snapshots)
 *   ├── meridian.send       xds.update -> every queued push written (proxies pushed)
 *   └── meridian.converge   sent -> every proxy ACKed all of it (synced / proxies)
 */
import { readFileSync } from 'node:fs';
import type { MeshTracing, TracingProviderDefinition } from '@meridian/translate';
import { type Attributes, context, type Span, type Tracer, trace } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { parse as parseYaml } from 'yaml';
import { ServerConfigError } from './errors.js';

/** The tracer of one replica, and how to flush and stop it. */
export interface PushTracing {
  readonly tracer: Tracer;
  /** Whether spans go anywhere (an OTLP endpoint is configured). */
  readonly exporting: boolean;
  shutdown(): Promise<void>;
}

/** An OTLP exporter when the standard environment variables name an endpoint; a no-op tracer otherwise. */
export function startPushTracing(
  ids: { replicaId: string; clusterId: string; meshId: string },
  env: NodeJS.ProcessEnv = process.env,
): PushTracing {
  const endpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? env.OTEL_EXPORTER_OTLP_ENDPOINT;
  if (!endpoint) return { tracer: trace.getTracer('meridiand'), exporting: false, shutdown: async () => {} };
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({
      'service.name': env.OTEL_SERVICE_NAME ?? 'meridiand',
      'service.instance.id': ids.replicaId,
      'meridian.cluster': ids.clusterId,
      'meridian.mesh': ids.meshId,
    }),
    // The exporter reads the endpoint, headers and timeout from the standard variables itself.
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter(), { scheduledDelayMillis: 1000 })],
  });
  return {
    tracer: provider.getTracer('meridiand'),
    exporting: true,
    shutdown: () => provider.shutdown(),
  };
}

/** The spans of one push context, ended as the pipeline moves on. */
export class PushTrace {
  readonly #root: Span;
  readonly #tracer: Tracer;
  #converge: Span | undefined;
  #ended = false;

  /** `firstChangeAt`: wall-clock ms when the first change of the burst was seen. */
  constructor(tracer: Tracer, firstChangeAt: number, firedAt: number) {
    this.#tracer = tracer;
    this.#root = tracer.startSpan('meridian.push', { startTime: firstChangeAt });
    this.#child('meridian.debounce', firstChangeAt).end(firedAt);
  }

  #child(name: string, startTime: number, attributes?: Attributes): Span {
    const ctx = trace.setSpan(context.active(), this.#root);
    return this.#tracer.startSpan(name, { startTime, ...(attributes ? { attributes } : {}) }, ctx);
  }

  /** The context was built (or nothing translation reads changed: `attributes.built` false). */
  built(startedAt: number, attributes: Attributes): void {
    this.#root.setAttributes(attributes);
    this.#child('meridian.build', startedAt, attributes).end();
  }

  /** Every queued push was written: `sendSpan` from the update to now. */
  sent(startedAt: number, attributes: Attributes): void {
    this.#child('meridian.send', startedAt, attributes).end();
    this.#converge = this.#child('meridian.converge', Date.now());
  }

  /** Proxies holding the revision, out of the connected ones; ends the trace when all do or `final`. */
  converged(synced: number, proxies: number, final: boolean): void {
    if (this.#ended) return;
    const attributes = { 'meridian.proxies': proxies, 'meridian.synced': synced };
    if (!final && synced < proxies) return;
    this.#converge?.setAttributes(attributes).end();
    this.#root.setAttributes(attributes).end();
    this.#ended = true;
  }

  get ended(): boolean {
    return this.#ended;
  }
}

/**
 * The sidecars' tracing providers from `--mesh-config`: an Istio MeshConfig (YAML or JSON; or the
 * `istio` ConfigMap whose `data.mesh` holds it), of which `extensionProviders` (OpenTelemetry and
 * Zipkin entries), `defaultProviders.tracing` and `defaultConfig.tracing.sampling` are read, as
 * istiod reads them for Telemetry's `tracing` (translate's tracing.ts). Undefined without a file;
 * a file that does not read or parse, or a provider field of the wrong type, is a ServerConfigError
 * naming the field.
 */
export function readMeshTracing(file: string): MeshTracing | undefined {
  if (!file) return undefined;
  const fail = (reason: string): never => {
    throw new ServerConfigError('--mesh-config', `${file}: ${reason}`);
  };
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(file, 'utf8'));
  } catch (error) {
    return fail((error as Error).message);
  }
  const obj = (v: unknown, at: string): Record<string, unknown> => {
    if (v === undefined || v === null) return {};
    if (typeof v !== 'object' || Array.isArray(v)) return fail(`${at}: expected an object`);
    return v as Record<string, unknown>;
  };
  let mesh = obj(doc, 'the document');
  if (mesh.kind === 'ConfigMap') {
    const text = obj(mesh.data, 'data').mesh;
    if (typeof text !== 'string') return fail('data.mesh: expected the MeshConfig as a string');
    try {
      mesh = obj(parseYaml(text), 'data.mesh');
    } catch (error) {
      return fail(`data.mesh: ${(error as Error).message}`);
    }
  }
  const str = (v: unknown, at: string, optional = false): string | undefined => {
    if (v === undefined && optional) return undefined;
    if (typeof v !== 'string' || v === '') return fail(`${at}: expected a non-empty string`);
    return v;
  };
  const int = (v: unknown, at: string, max: number, optional = false): number | undefined => {
    if (v === undefined && optional) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max)
      return fail(`${at}: expected an integer in [1, ${max}]`);
    return v;
  };
  const providers: TracingProviderDefinition[] = [];
  const list = mesh.extensionProviders ?? [];
  if (!Array.isArray(list)) return fail('extensionProviders: expected a list');
  list.forEach((raw, i) => {
    const at = `extensionProviders[${i}]`;
    const p = obj(raw, at);
    const name = str(p.name, `${at}.name`)!;
    const common = (o: Record<string, unknown>, kat: string) => ({
      service: str(o.service, `${kat}.service`)!,
      port: int(o.port, `${kat}.port`, 65535)!,
      ...(o.maxTagLength !== undefined
        ? { maxTagLength: int(o.maxTagLength, `${kat}.maxTagLength`, 2 ** 31)! }
        : {}),
    });
    if (p.opentelemetry !== undefined) {
      const kat = `${at}.opentelemetry`;
      const o = obj(p.opentelemetry, kat);
      const http = o.http === undefined ? undefined : obj(o.http, `${kat}.http`);
      const grpc = o.grpc === undefined ? undefined : obj(o.grpc, `${kat}.grpc`);
      const path = http ? str(http.path, `${kat}.http.path`, true) : undefined;
      const httpTimeout = http ? str(http.timeout, `${kat}.http.timeout`, true) : undefined;
      const grpcTimeout = grpc ? str(grpc.timeout, `${kat}.grpc.timeout`, true) : undefined;
      providers.push({
        name,
        opentelemetry: {
          ...common(o, kat),
          ...(http
            ? { http: { ...(path ? { path } : {}), ...(httpTimeout ? { timeout: httpTimeout } : {}) } }
            : {}),
          ...(grpcTimeout ? { grpc: { timeout: grpcTimeout } } : {}),
        },
      });
    } else if (p.zipkin !== undefined) {
      const kat = `${at}.zipkin`;
      const z = obj(p.zipkin, kat);
      const path = str(z.path, `${kat}.path`, true);
      if (z.enable64bitTraceId !== undefined && typeof z.enable64bitTraceId !== 'boolean')
        fail(`${kat}.enable64bitTraceId: expected true or false`);
      providers.push({
        name,
        zipkin: {
          ...common(z, kat),
          ...(path ? { path } : {}),
          ...(z.enable64bitTraceId === true ? { enable64bitTraceId: true } : {}),
        },
      });
    }
    // Other provider kinds (access loggers, ext_authz, ...) are not tracing providers: not read.
  });
  const defaults = obj(mesh.defaultProviders, 'defaultProviders').tracing ?? [];
  if (!Array.isArray(defaults) || !defaults.every((d) => typeof d === 'string'))
    return fail('defaultProviders.tracing: expected a list of provider names');
  const sampling = obj(obj(mesh.defaultConfig, 'defaultConfig').tracing, 'defaultConfig.tracing').sampling;
  if (sampling !== undefined && (typeof sampling !== 'number' || !(sampling >= 0 && sampling <= 100)))
    return fail(`defaultConfig.tracing.sampling: expected a percentage in [0, 100], got ${String(sampling)}`);
  return {
    extensionProviders: providers,
    ...(defaults.length > 0 ? { defaultProviders: { tracing: defaults as string[] } } : {}),
    // Istio: 0 means unset (PILOT_TRACE_SAMPLING, 1%).
    ...(typeof sampling === 'number' && sampling > 0 ? { defaultSampling: sampling } : {}),
  };
}

/** Identified proxies and how many hold `version` (xds' `convergence()`: one pass over the streams). */
export interface ConvergenceCount {
  readonly version: string | undefined;
  readonly proxies: number;
  readonly synced: number;
}

/**
 * Follows one push context's trace to the last ACK without recounting every proxy on every ACK
 * (a recount per ACK walks every stream: N ACKs x N streams per push).
 * Synced proxies are counted incrementally, once per stream, from xds' `onProxySynced`; the full
 * count (`recount`, one pass over the streams) runs only when the incremental count says every
 * proxy may hold the revision, and at most once per `intervalMs` otherwise (so proxies that left
 * or joined are noticed), plus once when the pushes are written. The trace ends when a recount
 * finds every proxy synced, when a newer context supersedes it ({@link supersede}), or after
 * `boundMs`.
 */
export class TraceConvergence {
  readonly #trace: PushTrace;
  readonly #version: string | undefined;
  readonly #recount: () => ConvergenceCount;
  readonly #synced = new WeakSet<object>();
  #count = 0;
  /** Proxies at the last recount. */
  #proxies = Number.POSITIVE_INFINITY;
  #timer: NodeJS.Timeout | undefined;
  #sent = false;
  readonly #bound: NodeJS.Timeout;
  readonly #intervalMs: number;
  /** Full recounts made (for the benchmark and tests). */
  recounts = 0;

  constructor(
    trace: PushTrace,
    version: string | undefined,
    recount: () => ConvergenceCount,
    options: { intervalMs?: number; boundMs?: number } = {},
  ) {
    this.#trace = trace;
    this.#version = version;
    this.#recount = recount;
    this.#intervalMs = options.intervalMs ?? 1000;
    this.#bound = setTimeout(() => this.#check(true), options.boundMs ?? 60_000);
    this.#bound.unref();
  }

  get ended(): boolean {
    return this.#trace.ended;
  }

  /** Every queued push was written (`sendStart`: wall-clock ms of the update). */
  sent(sendStart: number): void {
    if (this.ended) return;
    this.#sent = true;
    const c = this.#count0();
    this.#trace.sent(sendStart, { 'meridian.proxies': c.proxies });
    this.#settle(c, false);
  }

  /** A proxy ACKed everything `version` gives it (xds' onProxySynced). O(1) unless it may be the last. */
  synced(conn: object, version: string): void {
    if (this.ended || version !== this.#version || this.#synced.has(conn)) return;
    this.#synced.add(conn);
    this.#count++;
    if (!this.#sent) return; // counted; sent() recounts
    if (this.#count >= this.#proxies) this.#check(false);
    else this.#later();
  }

  /** A newer push context replaced this one: the trace ends with the counts it has. */
  supersede(): void {
    this.#check(true);
  }

  #count0(): ConvergenceCount {
    this.recounts++;
    const c = this.#recount();
    this.#proxies = c.proxies;
    // The exact count now (proxies that left no longer inflate it; those synced before this
    // follower existed are in it); later syncs add to it.
    if (c.version === this.#version) this.#count = c.synced;
    return c;
  }

  #check(final: boolean): void {
    if (this.ended) return;
    const c = this.#count0();
    this.#settle(c, final || c.version !== this.#version);
  }

  #settle(c: ConvergenceCount, final: boolean): void {
    this.#trace.converged(c.synced, c.proxies, final);
    if (this.ended) {
      clearTimeout(this.#timer);
      clearTimeout(this.#bound);
    } else this.#later();
  }

  /** One recount within `intervalMs`, for proxies that left (the incremental count cannot see them). */
  #later(): void {
    if (this.#timer || this.ended) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#check(false);
    }, this.#intervalMs);
    this.#timer.unref();
  }
}
