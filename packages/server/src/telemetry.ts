import type { IncomingMessage, ServerResponse } from 'node:http';
import { metrics } from '@opentelemetry/api';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider } from '@opentelemetry/sdk-metrics';

/**
 * OpenTelemetry metrics for the replica: one MeterProvider installed as the global one (so the xds
 * package's instruments report through it; install it before creating the XdsServer) and a
 * Prometheus exporter served on the admin port's `/metrics` (no server of its own).
 */
export class Telemetry {
  readonly exporter = new PrometheusExporter({ preventServerStart: true });
  readonly provider: MeterProvider;

  constructor(attributes: Record<string, string>) {
    this.provider = new MeterProvider({
      resource: resourceFromAttributes({ 'service.name': 'meridiand', ...attributes }),
      readers: [this.exporter],
    });
    metrics.setGlobalMeterProvider(this.provider);
  }

  /** The `/metrics` handler (Prometheus text format). */
  handle(req: IncomingMessage, res: ServerResponse): void {
    this.exporter.getMetricsRequestHandler(req, res);
  }

  async shutdown(): Promise<void> {
    await this.provider.shutdown().catch(() => undefined);
    metrics.disable();
  }
}
