// The agent's counters, with istio-agent's names where they mean the same
// (pkg/istio-agent/metrics: istiod_connection_failures, istiod_connection_terminations,
// xds_proxy_requests, xds_proxy_responses), through the global OpenTelemetry meter provider.
import { type Counter, type Histogram, metrics } from '@opentelemetry/api';

/** Counters of one agent. */
export class AgentMetrics {
  readonly #meter = metrics.getMeter('@meridian/agent');
  /** Upstream streams opened (first connection and every failover or move). */
  readonly connects: Counter = this.#meter.createCounter('meridian_agent_upstream_connects', {
    description: 'Upstream xDS streams opened to a replica.',
  });
  readonly failures: Counter = this.#meter.createCounter('istiod_connection_failures', {
    description: 'The total number of connection failures to the control plane.',
  });
  readonly terminations: Counter = this.#meter.createCounter('istiod_connection_terminations', {
    description: 'The total number of upstream xDS streams that ended (failed over).',
  });
  readonly requests: Counter = this.#meter.createCounter('xds_proxy_requests', {
    description: 'The total number of xDS requests relayed from the local client.',
  });
  readonly responses: Counter = this.#meter.createCounter('xds_proxy_responses', {
    description: 'The total number of xDS responses relayed to the local client.',
  });
  readonly failoverSeconds: Histogram = this.#meter.createHistogram('meridian_agent_failover_seconds', {
    description: 'From an upstream stream failing to the first response of the next replica.',
    unit: 's',
  });
  /** Reports the current upstream's rank (0 = nearest; -1 = none) and replica, read at scrape time. */
  observeUpstream(read: () => { rank: number; replica: string | undefined; streams: number }): void {
    this.#meter
      .createObservableGauge('meridian_agent_upstream_rank', {
        description: 'Rank of the replica the agent is on (0 = the nearest usable; -1 = none reachable).',
      })
      .addCallback((r) => {
        const u = read();
        r.observe(u.rank, u.replica ? { replica: u.replica } : {});
      });
    this.#meter
      .createObservableGauge('meridian_agent_local_streams', {
        description: 'Local xDS streams relayed now.',
      })
      .addCallback((r) => r.observe(read().streams));
  }

  readonly rebalanced: Counter = this.#meter.createCounter('meridian_agent_rebalanced_streams', {
    description: 'Upstream streams a replica shed to rebalance, resumed on the replica it named.',
  });
  readonly servedFromDisk: Counter = this.#meter.createCounter('meridian_agent_served_from_disk', {
    description: 'Times a local client was served last-known-good config from disk (no replica reachable).',
  });
}
