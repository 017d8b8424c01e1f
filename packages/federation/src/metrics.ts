/**
 * OpenTelemetry instruments (meter `@meridian/federation`). The replica's MeterProvider exports them
 * (Prometheus names as istiod writes them: dots become underscores, counters keep their name, no `_total`).
 */
import { type Meter, metrics } from '@opentelemetry/api';

/** Instruments shared by every importer and exporter of one process. */
export interface FederationInstruments {
  readonly imported: ReturnType<Meter['createCounter']>;
  readonly rejected: ReturnType<Meter['createCounter']>;
  readonly exported: ReturnType<Meter['createCounter']>;
  readonly resyncs: ReturnType<Meter['createCounter']>;
  readonly clustersStale: ReturnType<Meter['createObservableGauge']>;
  readonly heartbeatAge: ReturnType<Meter['createObservableGauge']>;
}

const cache = new WeakMap<Meter, FederationInstruments>();

/** The instruments on `meter` (default: the global meter provider's `@meridian/federation` meter). */
export function federationInstruments(
  meter: Meter = metrics.getMeter('@meridian/federation'),
): FederationInstruments {
  const hit = cache.get(meter);
  if (hit) return hit;
  const made: FederationInstruments = {
    imported: meter.createCounter('meridian_federation_messages_imported', {
      description:
        'Federation messages accepted by an importer (service records and heartbeats), by origin cluster',
    }),
    rejected: meter.createCounter('meridian_federation_messages_rejected', {
      description:
        'Federation messages refused by an importer, by origin cluster and reason (malformed, unsupported_version, origin_mismatch, wrong_mesh, fenced)',
    }),
    exported: meter.createCounter('meridian_federation_records_exported', {
      description: 'Service records written to JetStream and published by this exporter',
    }),
    resyncs: meter.createCounter('meridian_federation_resyncs', {
      description: 'Full re-reads of a cluster state from JetStream, by origin cluster and trigger',
    }),
    clustersStale: meter.createObservableGauge('meridian_federation_clusters_stale', {
      description:
        'Remote clusters silent for longer than the grace period (their endpoints are marked unhealthy)',
    }),
    heartbeatAge: meter.createObservableGauge('meridian_federation_heartbeat_age_seconds', {
      description: 'Seconds since the last message from each remote cluster',
      unit: 's',
    }),
  };
  cache.set(meter, made);
  return made;
}
