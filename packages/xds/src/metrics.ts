import { TypeUrl } from '@meridian/envoy';
import {
  type Attributes,
  type Counter,
  type Histogram,
  metrics,
  type UpDownCounter,
} from '@opentelemetry/api';

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
 * istiod's push trigger reasons (`TriggerReason` in istio/istio pilot/pkg/model/push_context.go), the
 * values of the `type` label of `pilot_push_triggers`.
 */
export const TRIGGER_REASONS = [
  'endpoint',
  'headlessendpoint',
  'config',
  'service',
  'proxy',
  'global',
  'ambient',
  'unknown',
  'debug',
  'secret',
  'networks',
  'proxyrequest',
  'depdendentresource',
  'namespace',
  'cluster',
  'tag',
] as const;
/** One of {@link TRIGGER_REASONS}. */
export type TriggerReason = (typeof TRIGGER_REASONS)[number];

const TRIGGERS = new Set<string>(TRIGGER_REASONS);

/**
 * istiod's trigger reason for one entry of a change event's `reason`: an istiod reason is kept; a
 * config kind maps as istiod's controllers report it (ServiceEntry: `service`; WorkloadEntry and
 * endpoint or registration changes: `endpoint`; any other kind, e.g. VirtualService: `config`); a
 * resync or a CA reload (everything rebuilt): `global`; a certificate rotation: `secret`; anything
 * else: `unknown`.
 */
export function triggerReason(reason: string): TriggerReason {
  if (TRIGGERS.has(reason)) return reason as TriggerReason;
  switch (reason) {
    case 'ServiceEntry':
    case 'services':
      return 'service';
    case 'WorkloadEntry':
    case 'endpoints':
    case 'registration':
    case 'registrations':
    case 'workloads':
      return 'endpoint';
    case 'resync':
      return 'global';
    case 'secrets':
    case 'certificate':
    case 'rotation':
      return 'secret';
    default:
      // Istio config kinds (VirtualService, DestinationRule, Sidecar, PeerAuthentication, ...).
      return /^[A-Z][A-Za-z]+$/.test(reason) ? 'config' : 'unknown';
  }
}

/** gRPC status code names as Go's `codes.Code.String()` spells them (the `err` label of NACKs). */
const GRPC_CODE_NAMES = [
  'OK',
  'Canceled',
  'Unknown',
  'InvalidArgument',
  'DeadlineExceeded',
  'NotFound',
  'AlreadyExists',
  'PermissionDenied',
  'ResourceExhausted',
  'FailedPrecondition',
  'Aborted',
  'OutOfRange',
  'Unimplemented',
  'Internal',
  'Unavailable',
  'DataLoss',
  'Unauthenticated',
];

/** The Go name of a gRPC status code (`Code(<n>)` when unknown, as Go prints it). */
export function grpcCodeName(code: number): string {
  return GRPC_CODE_NAMES[code] ?? `Code(${code})`;
}

/**
 * istiod's histogram buckets, by metric (pilot/pkg/xds/monitoring.go and pkg/xds/monitoring.go), so
 * `histogram_quantile` over ours and istiod's series agree.
 */
export const ISTIOD_BUCKETS = {
  pilot_debounce_time: [0.01, 0.1, 0.5, 1, 3, 5, 10, 20, 30],
  pilot_xds_push_time: [0.01, 0.1, 0.5, 1, 3, 5, 10, 20, 30],
  pilot_proxy_queue_time: [0.1, 0.5, 1, 3, 5, 10, 20, 30],
  pilot_proxy_convergence_time: [0.1, 0.5, 1, 3, 5, 10, 20, 30],
  pilot_xds_send_time: [0.01, 0.1, 1, 3, 5, 10, 20, 30],
  pilot_xds_config_size_bytes: [1, 10000, 1000000, 4000000, 10000000, 40000000],
} as const;

/**
 * The server's instruments, through the global OpenTelemetry meter provider (the replica installs the
 * SDK and an exporter that writes istiod's Prometheus names: no `_total`, no unit suffix). Names,
 * descriptions, labels and buckets are istiod's (istio/istio pilot/pkg/xds/monitoring.go,
 * pkg/xds/monitoring.go), recorded where istiod records them; `meridian_*` where istiod has no
 * equivalent.
 */
export class XdsMetrics {
  readonly #meter = metrics.getMeter('@meridian/xds');
  /** In-process totals of every counter and gauge, by `name{label=value,...}` (tests and debug
   * output; the OpenTelemetry SDK, when installed, exports the same values). */
  readonly tally = new Map<string, number>();
  /** Connected proxies by Istio version (`pilot_xds{version}`), for the gauge's callback. */
  readonly #clients = new Map<string, number>();

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

  #counter(name: string, description: string): Counter {
    return this.#tallied(name, this.#meter.createCounter(name, { description }));
  }

  /** istiod's `monitoring.NewGauge` that is only ever incremented (the per-type reject gauges). */
  #gauge(name: string, description: string): UpDownCounter {
    return this.#tallied(name, this.#meter.createUpDownCounter(name, { description }));
  }

  #histogram(name: keyof typeof ISTIOD_BUCKETS, description: string, unit?: string): Histogram {
    return this.#meter.createHistogram(name, {
      description,
      ...(unit ? { unit } : {}),
      advice: { explicitBucketBoundaries: [...ISTIOD_BUCKETS[name]] },
    });
  }

  /** The tallied value of a counter (`name` or `name{label=value}`), 0 when never added to. */
  count(key: string): number {
    return this.tally.get(key) ?? 0;
  }

  /** pilot_xds{version}: connected proxies, by their Istio version (node metadata ISTIO_VERSION). */
  readonly connected = this.#meter
    .createObservableGauge('pilot_xds', {
      description: 'Number of endpoints connected to this pilot using XDS.',
    })
    .addCallback((result) => {
      for (const [version, n] of this.#clients) result.observe(n, { version });
    });

  /** A proxy of Istio version `version` connected (`delta` 1) or went away (-1). */
  recordClient(version: string, delta: number): void {
    const n = (this.#clients.get(version) ?? 0) + delta;
    this.#clients.set(version, n);
    const key = `pilot_xds{version=${version}}`;
    this.tally.set(key, n);
  }

  /** pilot_xds_pushes{type}: responses sent, by type (`cds`, ...; `*_senderr` on write errors). */
  readonly pushes = this.#counter(
    'pilot_xds_pushes',
    'Pilot build and send errors for lds, rds, cds and eds.',
  );
  /** pilot_xds_push_time{type}: seconds to build and send one type's response to one proxy. */
  readonly pushTime = this.#histogram(
    'pilot_xds_push_time',
    'Total time in seconds Pilot takes to push lds, rds, cds and eds.',
  );
  /** pilot_xds_send_time: seconds from handing a response to the stream until HTTP/2 took it. */
  readonly sendTime = this.#histogram(
    'pilot_xds_send_time',
    'Total time in seconds Pilot takes to send generated configuration.',
  );
  /**
   * pilot_proxy_convergence_time: seconds from the first change of a push until every type it
   * affects was sent to the proxy (istiod's meaning: until sent, not until ACKed).
   */
  readonly convergence = this.#histogram(
    'pilot_proxy_convergence_time',
    'Delay in seconds between config change and a proxy receiving all required configuration.',
  );
  /** pilot_debounce_time: seconds from the first change of a burst until its push was queued. */
  readonly debounceTime = this.#histogram(
    'pilot_debounce_time',
    'Delay in seconds between the first config enters debouncing and the merged push request is pushed into the push queue (includes pushcontext_init_seconds).',
  );
  /** pilot_proxy_queue_time: seconds a proxy waited in the push queue. */
  readonly queueTime = this.#histogram(
    'pilot_proxy_queue_time',
    'Time in seconds, a proxy is in the push queue before being dequeued.',
  );
  /** pilot_xds_config_size_bytes{type}: bytes of the resources of one response (type: the type URL, as istiod). */
  readonly configSize = this.#histogram(
    'pilot_xds_config_size_bytes',
    'Distribution of configuration sizes pushed to clients',
    'By',
  );
  /**
   * meridian_xds_push_ack_time{type}: seconds from a change to the proxy's ACK of the response that
   * carried it (what istiod does not measure; pilot_proxy_convergence_time stops at send).
   */
  /** meridian_config_convergence_time: change -> the proxy has ACKed all of the config it produced. */
  readonly convergedTime = this.#meter.createHistogram('meridian_config_convergence_time', {
    description:
      'Delay in seconds between a config change and a proxy holding (having ACKed) every resource it produced.',
    advice: { explicitBucketBoundaries: [...ISTIOD_BUCKETS.pilot_proxy_convergence_time] },
  });
  /** meridian_config_acked_proxies{revision}: proxies synced to the current snapshot revision. */
  readonly ackedProxies = this.#meter
    .createObservableGauge('meridian_config_acked_proxies', {
      description: 'Connected proxies that have ACKed everything the current config revision gives them.',
    })
    .addCallback((result) => {
      const r = this.ackedSource?.();
      if (r) result.observe(r.acked, { revision: r.revision });
    });
  /** Set by the server: the current revision and how many proxies are synced to it. */
  ackedSource: (() => { revision: string; acked: number } | undefined) | undefined;
  readonly ackTime = this.#meter.createHistogram('meridian_xds_push_ack_time', {
    description: 'Delay in seconds between config change and the proxy ACKing the response carrying it.',
    advice: { explicitBucketBoundaries: [...ISTIOD_BUCKETS.pilot_proxy_convergence_time] },
  });
  /** pilot_total_xds_rejects{type}: NACKs received. */
  readonly rejects = this.#counter(
    'pilot_total_xds_rejects',
    'Total number of XDS responses from pilot rejected by proxy.',
  );
  readonly #perTypeRejects = new Map([
    ['cds', this.#gauge('pilot_xds_cds_reject', 'Pilot rejected CDS configs.')],
    ['eds', this.#gauge('pilot_xds_eds_reject', 'Pilot rejected EDS.')],
    ['lds', this.#gauge('pilot_xds_lds_reject', 'Pilot rejected LDS.')],
    ['rds', this.#gauge('pilot_xds_rds_reject', 'Pilot rejected RDS.')],
  ]);
  /** pilot_xds_expired_nonce{type}: requests with a stale nonce (ignored). */
  readonly expiredNonce = this.#counter(
    'pilot_xds_expired_nonce',
    'Total number of XDS requests with an expired nonce.',
  );
  /** pilot_xds_write_timeout: streams closed because the proxy stopped reading. */
  readonly writeTimeout = this.#counter('pilot_xds_write_timeout', 'Pilot XDS response write timeouts.');
  /** pilot_total_xds_internal_errors: stream work that failed on the server's side. */
  readonly internalErrors = this.#counter(
    'pilot_total_xds_internal_errors',
    'Total number of internal XDS errors in pilot.',
  );
  /** pilot_push_triggers{type}: pushes dequeued for a proxy, by istiod's reason ({@link triggerReason}). */
  readonly triggers = this.#counter(
    'pilot_push_triggers',
    'Total number of times a push was triggered, labeled by reason for the push.',
  );
  /** pilot_xds_recv_max: the largest request received so far, in bytes. */
  readonly recvMax = this.#meter
    .createObservableGauge('pilot_xds_recv_max', {
      description: 'The maximum size request we have received so far.',
    })
    .addCallback((result) => {
      if (this.#largestRequest > 0) result.observe(this.#largestRequest);
    });
  #largestRequest = 0;
  /** meridian_xds_bad_requests{reason}: requests refused or ignored as malformed. */
  readonly badRequests = this.#counter(
    'meridian_xds_bad_requests',
    'xDS requests refused or ignored, by reason (unknown_type, bad_node, garbage, too_large).',
  );
  /** meridian_xds_response_bytes{type}: bytes of responses written. */
  readonly responseBytes = this.#counter(
    'meridian_xds_response_bytes',
    'Bytes of xDS responses written, by type.',
  );

  constructor() {
    // Series that must exist from the start (the control-plane dashboard's "Push Errors" panel reads
    // them; istiod shows nothing until the first error).
    this.internalErrors.add(0);
    this.writeTimeout.add(0);
  }

  /** Records a request's size (pilot_xds_recv_max). */
  recordRequestSize(bytes: number): void {
    if (bytes > this.#largestRequest) this.#largestRequest = bytes;
  }

  /**
   * Counts a NACK as istiod does (pkg/xds/monitoring.go `IncrementXDSRejects`): the total by type,
   * and the per-type gauge by node id and the error's gRPC code name.
   */
  reject(typeUrl: string, node = '', code = 2): void {
    const type = shortType(typeUrl);
    this.rejects.add(1, { type });
    this.#perTypeRejects.get(type)?.add(1, { node, err: grpcCodeName(code) });
  }

  /** Counts the push triggers of one dequeued push, one per distinct istiod reason. */
  trigger(reasons: readonly string[]): void {
    for (const type of new Set(reasons.map(triggerReason))) this.triggers.add(1, { type });
  }

  bad(reason: string, extra?: Attributes): void {
    this.badRequests.add(1, { reason, ...extra });
  }
}
