/**
 * What dry-run AuthorizationPolicies (`istio.io/dry-run: "true"`) would have
 * denied, as metrics on the replica.
 *
 * Translation puts a dry-run policy's rules in the RBAC filter's `shadow_rules`, with Istio's
 * `shadow_rules_stat_prefix` (`istio_dry_run_allow_` for ALLOW policies, `istio_dry_run_deny_` for
 * DENY ones; translate's authz.ts). Envoy then
 * - counts the shadow verdicts in its own stats (`...rbac.istio_dry_run_allow_shadow_denied`, ...),
 *   on the proxy's stats endpoint, as in Istio;
 * - sets the verdict as dynamic metadata of the request (namespace `envoy.filters.http.rbac`, or
 *   `envoy.filters.network.rbac` on TCP chains): `<prefix>shadow_engine_result` (`allowed` or
 *   `denied`) and, when a policy matched, `<prefix>shadow_effective_policy_id` (Istio's
 *   `ns[<ns>]-policy[<name>]-rule[<i>]`);
 * - copies the request's dynamic metadata into every gRPC access-log entry
 *   (`AccessLogCommon.metadata`).
 *
 * The replica's access-log receiver (telemetry-ingest.ts) hands each entry's `common_properties` to
 * {@link dryRunVerdicts}; {@link AuthzDryRunMetrics} counts the `denied` ones per reporting workload
 * and policy and exposes `meridian_authz_dry_run_denied_total` on `/metrics`. The policy is named for
 * DENY policies (the one that matched); a dry-run ALLOW set denies because no policy matched, so its
 * `policy` label is empty.
 *
 * Limits: only sidecars whose access logs reach the replicas are counted (Telemetry provider
 * `meridian`); proxyless gRPC servers have neither shadow rules (gRFC A41 RBAC has no shadow or
 * audit mode in grpc-js) nor access logs, so their dry-run policies are not translated (translate
 * reports it) and nothing is counted for them. A reporter on the plaintext telemetry port is
 * unauthenticated: its counts are labelled with the workload its node address names, as the
 * `istio_*` series are.
 */

/** Decoded protobuf message, as protobufjs gives it. */
type Msg = Record<string, unknown> | null | undefined;

/** One dry-run verdict of an access-log entry. */
export interface DryRunVerdict {
  /** The dry-run policies' action: `ALLOW` (the shadow ALLOW set) or `DENY`. */
  readonly action: 'ALLOW' | 'DENY';
  readonly result: 'allowed' | 'denied';
  /** Istio's policy id (`ns[<ns>]-policy[<name>]-rule[<i>]`), '' when no policy matched. */
  readonly policyId: string;
}

const RBAC_NAMESPACES = ['envoy.filters.http.rbac', 'envoy.filters.network.rbac'];
const PREFIXES = [
  ['istio_dry_run_allow_', 'ALLOW'],
  ['istio_dry_run_deny_', 'DENY'],
] as const;

/** A google.protobuf.Value's string (protobufjs' own Value is camelCase; Envoy's copy snake_case). */
function stringOf(value: unknown): string {
  const v = value as { stringValue?: unknown; string_value?: unknown } | undefined;
  const s = v?.stringValue ?? v?.string_value;
  return typeof s === 'string' ? s : '';
}

/** The dry-run verdicts an access-log entry's `common_properties` carries (pure). */
export function dryRunVerdicts(common: Msg): DryRunVerdict[] {
  const metadata = (common?.metadata as Msg)?.filter_metadata as Record<string, Msg> | undefined;
  if (!metadata) return [];
  const out: DryRunVerdict[] = [];
  for (const ns of RBAC_NAMESPACES) {
    const fields = metadata[ns]?.fields as Record<string, unknown> | undefined;
    if (!fields) continue;
    for (const [prefix, action] of PREFIXES) {
      const result = stringOf(fields[`${prefix}shadow_engine_result`]);
      if (result !== 'allowed' && result !== 'denied') continue;
      out.push({ action, result, policyId: stringOf(fields[`${prefix}shadow_effective_policy_id`]) });
    }
  }
  return out;
}

/** Istio's policy id split: `ns[<ns>]-policy[<name>]-rule[<i>]`; undefined when not of that form. */
export function parsePolicyId(id: string): { namespace: string; name: string; rule: string } | undefined {
  const m = /^ns\[([^\]]*)\]-policy\[([^\]]*)\]-rule\[(\d+)\]$/.exec(id);
  return m ? { namespace: m[1]!, name: m[2]!, rule: m[3]! } : undefined;
}

/** Who reported a verdict: the workload whose sidecar evaluated the policy. */
export interface DryRunReporter {
  readonly namespace: string;
  readonly workload: string;
}

const labelValue = (v: string) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

/**
 * `meridian_authz_dry_run_denied_total{reporter_namespace, reporter_workload, action,
 * policy_namespace, policy, rule}`: requests and connections the dry-run policies would have
 * denied, per workload and policy. At most `maxSeries` series (then counted in `dropped`).
 */
export class AuthzDryRunMetrics {
  readonly #series = new Map<string, number>();
  /** Verdicts not counted because the series cap was reached. */
  dropped = 0;

  constructor(private readonly maxSeries = 5000) {}

  /** Counts the `denied` verdicts of one entry. */
  record(reporter: DryRunReporter, verdicts: readonly DryRunVerdict[]): void {
    for (const v of verdicts) {
      if (v.result !== 'denied') continue;
      const p = parsePolicyId(v.policyId);
      const labels = `{reporter_namespace="${labelValue(reporter.namespace)}",reporter_workload="${labelValue(
        reporter.workload,
      )}",action="${v.action}",policy_namespace="${labelValue(p?.namespace ?? '')}",policy="${labelValue(
        p?.name ?? v.policyId,
      )}",rule="${p?.rule ?? ''}"}`;
      const n = this.#series.get(labels);
      if (n === undefined && this.#series.size >= this.maxSeries) {
        this.dropped++;
        continue;
      }
      this.#series.set(labels, (n ?? 0) + 1);
    }
  }

  /** The counter in Prometheus' text format ('' before the first denial). */
  serialize(): string {
    if (this.#series.size === 0) return '';
    const name = 'meridian_authz_dry_run_denied_total';
    const lines = [
      `# HELP ${name} Requests and connections dry-run AuthorizationPolicies would have denied (sidecar access logs).\n`,
      `# TYPE ${name} counter\n`,
    ];
    for (const [labels, n] of [...this.#series].sort((a, b) => (a[0] < b[0] ? -1 : 1)))
      lines.push(`${name}${labels} ${n}\n`);
    return lines.join('');
  }
}
