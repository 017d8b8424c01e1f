import { readdirSync, readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ISTIO_CA_METRICS } from '@meridian/ca';
import { type Attributes, metrics, type Observable } from '@opentelemetry/api';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  DataPointType,
  MeterProvider,
  type MetricData,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics';

/**
 * Prometheus text exposition (format 0.0.4) of collected metrics, written as istiod's exporter writes
 * them (istio/istio pkg/monitoring/monitoring.go: `WithoutCounterSuffixes`, `WithoutUnits`,
 * `WithoutScopeInfo`): a counter keeps its name (`pilot_xds_pushes`, not `pilot_xds_pushes_total`;
 * a name that already ends in `_total` keeps it), no unit suffix, no `otel_scope_*` labels. The
 * OpenTelemetry JS exporter appends `_total` to every counter and has no option to stop it, so the
 * replica serializes the collection itself. Metrics of one name from several meters are merged
 * under one HELP/TYPE. `target_info` (the resource: mesh, cluster, replica) is kept, as OpenTelemetry
 * specifies; istiod has no such series and nothing queries it.
 */
export function serializeIstiodPrometheus(collected: ResourceMetrics, targetInfo = true): string {
  const byName = new Map<string, { help: string; type: string; lines: string[] }>();
  for (const scope of collected.scopeMetrics) {
    for (const metric of scope.metrics) {
      const name = metricName(metric.descriptor.name);
      const type = prometheusType(metric);
      let entry = byName.get(name);
      if (!entry) {
        entry = { help: metric.descriptor.description || name, type, lines: [] };
        byName.set(name, entry);
      }
      entry.lines.push(...samples(name, metric));
    }
  }
  let out = '';
  if (targetInfo) {
    const attributes = collected.resource.attributes;
    out += '# HELP target_info Target metadata\n# TYPE target_info gauge\n';
    out += `target_info${labels(attributes)} 1\n`;
  }
  for (const [name, e] of [...byName].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    out += `# HELP ${name} ${escapeHelp(e.help)}\n# TYPE ${name} ${e.type}\n`;
    for (const line of e.lines) out += line;
  }
  return out;
}

/** Prometheus metric and label names: `[a-zA-Z_:][a-zA-Z0-9_:]*` (other characters become `_`). */
function metricName(name: string): string {
  const n = name.replace(/[^a-zA-Z0-9_:]/g, '_');
  return /^[0-9]/.test(n) ? `_${n}` : n;
}

function labelName(name: string): string {
  const n = name.replace(/[^a-zA-Z0-9_]/g, '_');
  return /^[0-9]/.test(n) ? `_${n}` : n;
}

function escapeHelp(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function escapeValue(v: unknown): string {
  const s = typeof v === 'string' ? v : v === undefined ? '' : JSON.stringify(v);
  return s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function labels(attributes: Attributes, extra?: [string, string]): string {
  const parts = Object.entries(attributes).map(([k, v]) => `${labelName(k)}="${escapeValue(v)}"`);
  if (extra) parts.push(`${extra[0]}="${escapeValue(extra[1])}"`);
  return parts.length > 0 ? `{${parts.join(',')}}` : '';
}

function number(v: number): string {
  if (v === Number.POSITIVE_INFINITY) return '+Inf';
  if (v === Number.NEGATIVE_INFINITY) return '-Inf';
  return String(v);
}

function prometheusType(metric: MetricData): string {
  switch (metric.dataPointType) {
    case DataPointType.SUM:
      return metric.isMonotonic ? 'counter' : 'gauge';
    case DataPointType.GAUGE:
      return 'gauge';
    case DataPointType.HISTOGRAM:
      return 'histogram';
    default:
      return 'untyped';
  }
}

function samples(name: string, metric: MetricData): string[] {
  const out: string[] = [];
  switch (metric.dataPointType) {
    case DataPointType.SUM:
    case DataPointType.GAUGE:
      for (const p of metric.dataPoints) out.push(`${name}${labels(p.attributes)} ${number(p.value)}\n`);
      break;
    case DataPointType.HISTOGRAM:
      for (const p of metric.dataPoints) {
        const h = p.value;
        let cumulative = 0;
        h.buckets.counts.forEach((count, i) => {
          cumulative += count;
          const le = h.buckets.boundaries[i] ?? Number.POSITIVE_INFINITY;
          out.push(`${name}_bucket${labels(p.attributes, ['le', number(le)])} ${cumulative}\n`);
        });
        if (h.buckets.boundaries.length >= h.buckets.counts.length)
          out.push(`${name}_bucket${labels(p.attributes, ['le', '+Inf'])} ${h.count}\n`);
        out.push(`${name}_sum${labels(p.attributes)} ${number(h.sum ?? 0)}\n`);
        out.push(`${name}_count${labels(p.attributes)} ${h.count}\n`);
      }
      break;
    default:
      break;
  }
  return out;
}

/** What the replica's istiod-named gauges read (see {@link Telemetry.observeReplica}). */
export interface ReplicaObservation {
  /** meridiand's version: `istio_build{component="pilot",tag}`. */
  readonly version: string;
  /** The snapshot served now: `pilot_services` (registry services), `pilot_virt_services`. */
  snapshot():
    | { config: { virtualServices: readonly unknown[] }; registry: { services: readonly unknown[] } }
    | undefined;
  /** The CA's counters and expiry gauges under istiod's names, undefined while no CA is loaded. */
  ca(): Record<string, number> | undefined;
}

/** Reads a Linux /proc value; undefined elsewhere. */
function procStatus(field: string): number | undefined {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

function openFds(): number | undefined {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return undefined;
  }
}

/**
 * OpenTelemetry metrics for the replica: one MeterProvider installed as the global one (so the xds
 * package's instruments report through it; install it before creating the XdsServer) and a
 * Prometheus endpoint on the admin and monitoring ports' `/metrics` (no server of its own), written
 * with istiod's names ({@link serializeIstiodPrometheus}).
 */
export class Telemetry {
  /** The reader the provider collects through (its own HTTP server is never started). */
  readonly exporter = new PrometheusExporter({ preventServerStart: true });
  readonly provider: MeterProvider;

  constructor(attributes: Record<string, string>) {
    this.provider = new MeterProvider({
      resource: resourceFromAttributes({ 'service.name': 'meridiand', ...attributes }),
      readers: [this.exporter],
    });
    metrics.setGlobalMeterProvider(this.provider);
    this.#processMetrics();
  }

  /** The Prometheus client libraries' standard process series, which istiod's dashboards read. */
  #processMetrics(): void {
    const meter = this.provider.getMeter('@meridian/server');
    const started = Math.floor((Date.now() - process.uptime() * 1000) / 1000);
    const cpu = meter.createObservableCounter('process_cpu_seconds_total', {
      description: 'Total user and system CPU time spent in seconds.',
    });
    const resident = meter.createObservableGauge('process_resident_memory_bytes', {
      description: 'Resident memory size in bytes.',
    });
    const virtual = meter.createObservableGauge('process_virtual_memory_bytes', {
      description: 'Virtual memory size in bytes.',
    });
    const fds = meter.createObservableGauge('process_open_fds', {
      description: 'Number of open file descriptors.',
    });
    const start = meter.createObservableGauge('process_start_time_seconds', {
      description: 'Start time of the process since unix epoch in seconds.',
    });
    meter.addBatchObservableCallback(
      (r) => {
        const u = process.cpuUsage();
        r.observe(cpu, (u.user + u.system) / 1e6);
        r.observe(resident, process.memoryUsage.rss());
        const vm = procStatus('VmSize');
        if (vm !== undefined) r.observe(virtual, vm);
        const n = openFds();
        if (n !== undefined) r.observe(fds, n);
        r.observe(start, started);
      },
      [cpu, resident, virtual, fds, start],
    );
  }

  /**
   * Registers the gauges istiod reports from its push context and CA, read at each scrape:
   * `pilot_services`, `pilot_virt_services`, `istio_build{component="pilot",tag}` and the
   * `citadel_server_*` metrics of security/pkg/server/ca/monitoring.go (once the CA is loaded).
   */
  observeReplica(source: ReplicaObservation): void {
    const meter = this.provider.getMeter('@meridian/server');
    const services = meter.createObservableGauge('pilot_services', {
      description: 'Total services known to pilot.',
    });
    const virtualServices = meter.createObservableGauge('pilot_virt_services', {
      description: 'Total virtual services known to pilot.',
    });
    const build = meter.createObservableGauge('istio_build', {
      description: 'Istio component build info',
    });
    const ca = new Map<string, Observable>(
      ISTIO_CA_METRICS.map((m) => [
        m.name,
        m.type === 'counter'
          ? meter.createObservableCounter(m.name, { description: m.help })
          : meter.createObservableGauge(m.name, { description: m.help }),
      ]),
    );
    meter.addBatchObservableCallback(
      (r) => {
        r.observe(build, 1, { component: 'pilot', tag: source.version });
        const snapshot = source.snapshot();
        if (snapshot) {
          r.observe(services, snapshot.registry.services.length);
          r.observe(virtualServices, snapshot.config.virtualServices.length);
        }
        const values = source.ca();
        if (values)
          for (const [name, value] of Object.entries(values)) {
            const instrument = ca.get(name);
            if (instrument) r.observe(instrument, value);
          }
      },
      [services, virtualServices, build, ...ca.values()],
    );
  }

  readonly #expositions: (() => string)[] = [];

  /** Adds series written by their owner (Istio's standard metrics, istio-metrics.ts) to `/metrics`. */
  addExposition(write: () => string): void {
    this.#expositions.push(write);
  }

  /** The `/metrics` handler (Prometheus text format, istiod's names). */
  handle(_req: IncomingMessage, res: ServerResponse): void {
    this.exporter.collect().then(
      ({ resourceMetrics }) => {
        // A failed observable callback is reported by the SDK (diag) and leaves its series out.
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
        res.end(serializeIstiodPrometheus(resourceMetrics) + this.#expositions.map((w) => w()).join(''));
      },
      (error: unknown) => {
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
        res.end(`# metrics collection failed: ${(error as Error).message}\n`);
      },
    );
  }

  async shutdown(): Promise<void> {
    await this.provider.shutdown().catch(() => undefined);
    metrics.disable();
  }
}
