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
import { type Attributes, context, type Span, type Tracer, trace } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';

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
