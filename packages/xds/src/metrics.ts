import { TypeUrl } from '@meridian/envoy';
import { type Attributes, type Counter, metrics, type UpDownCounter } from '@opentelemetry/api';

/** istiod's short type label (`cds`, `eds`, `lds`, `rds`, `sds`) of a type URL. */
export function shortType(typeUrl: string): string {
  switch (typeUrl) {
    case TypeUrl.Cluster:
      return 'cds';
    case TypeUrl.ClusterLoadAssignment:
      return 'eds';
    case TypeUrl.Listener:
      return 'lds';
    case TypeUrl.RouteConfiguration:
      return 'rds';
    case TypeUrl.Secret:
      return 'sds';
    default:
      return 'unknown';
  }
}

/**
 * The server's instruments, through the global OpenTelemetry meter provider (the replica installs the
 * SDK and the Prometheus exporter). Names are istiod's where the meaning is the same
 * (pilot/pkg/xds/monitoring.go); `meridian_xds_*` where istiod has no equivalent.
 */
export class XdsMetrics {
  readonly #meter = metrics.getMeter('@meridian/xds');
  /** In-process totals of every counter, by `name{label=value,...}` (tests and debug output; the
   * OpenTelemetry SDK, when installed, exports the same values). */
  readonly tally = new Map<string, number>();

  #tallied<T extends Counter | UpDownCounter>(name: string, inner: T): T {
    const tally = this.tally;
    const wrapped = {
      add(value: number, attributes?: Attributes) {
        let labels = '';
        if (attributes) {
          const keys = Object.keys(attributes);
          if (keys.length > 1) keys.sort();
          labels = keys.map((k) => `${k}=${String(attributes[k])}`).join(',');
        }
        const key = labels ? `${name}{${labels}}` : name;
        tally.set(key, (tally.get(key) ?? 0) + value);
        inner.add(value, attributes);
      },
    };
    return wrapped as T;
  }

  #counter(name: string, options: { description: string; unit?: string }): Counter {
    return this.#tallied(name, this.#meter.createCounter(name, options));
  }

  #upDown(name: string, options: { description: string }): UpDownCounter {
    return this.#tallied(name, this.#meter.createUpDownCounter(name, options));
  }

  /** The tallied value of a counter (`name` or `name{label=value}`), 0 when never added to. */
  count(key: string): number {
    return this.tally.get(key) ?? 0;
  }
  /** pilot_xds_pushes{type}: responses sent, by type (`cds`, ...; `*_senderr` on write errors). */
  readonly pushes = this.#counter('pilot_xds_pushes', {
    description: 'Pilot build and send errors for lds, rds, cds and eds.',
  });
  /** pilot_xds_push_time{type}: seconds to build and write one push to one proxy. */
  readonly pushTime = this.#meter.createHistogram('pilot_xds_push_time', {
    description: 'Total time in seconds Pilot takes to push lds, rds, cds and eds.',
    unit: 's',
  });
  /** pilot_proxy_convergence_time: seconds from a change to the proxy's ACK of it. */
  readonly convergence = this.#meter.createHistogram('pilot_proxy_convergence_time', {
    description: 'Delay in seconds between config change and a proxy receiving all required configuration.',
    unit: 's',
  });
  /** pilot_total_xds_rejects{type}: NACKs received. */
  readonly rejects = this.#counter('pilot_total_xds_rejects', {
    description: 'Total number of XDS responses from pilot rejected by proxy.',
  });
  readonly #perTypeRejects = new Map(
    ['cds', 'eds', 'lds', 'rds'].map((t) => [
      t,
      this.#counter(`pilot_xds_${t}_reject`, { description: `Pilot rejected ${t} configs.` }),
    ]),
  );
  /** pilot_xds_expired_nonce{type}: requests with a stale nonce (ignored). */
  readonly expiredNonce = this.#counter('pilot_xds_expired_nonce', {
    description: 'Total number of XDS requests with an expired nonce.',
  });
  /** pilot_xds_write_timeout: streams closed because the proxy stopped reading. */
  readonly writeTimeout = this.#counter('pilot_xds_write_timeout', {
    description: 'Pilot XDS response write timeouts.',
  });
  /** pilot_xds: connected xDS streams. */
  readonly connected = this.#upDown('pilot_xds', {
    description: 'Number of endpoints connected to this pilot using XDS.',
  });
  /** pilot_push_triggers{type}: debounced change events, by reason. */
  readonly triggers = this.#counter('pilot_push_triggers', {
    description: 'Total number of times a push was triggered, labeled by reason for the push.',
  });
  /** meridian_xds_bad_requests{reason}: requests refused or ignored as malformed. */
  readonly badRequests = this.#counter('meridian_xds_bad_requests', {
    description: 'xDS requests refused or ignored, by reason (unknown_type, bad_node, garbage, too_large).',
  });
  /** meridian_xds_response_bytes{type}: bytes of responses written. */
  readonly responseBytes = this.#counter('meridian_xds_response_bytes', {
    description: 'Bytes of xDS responses written, by type.',
    unit: 'By',
  });

  /** Counts a NACK under both istiod names. */
  reject(typeUrl: string): void {
    const type = shortType(typeUrl);
    this.rejects.add(1, { type });
    this.#perTypeRejects.get(type)?.add(1);
  }

  bad(reason: string, extra?: Attributes): void {
    this.badRequests.add(1, { reason, ...extra });
  }
}
