/**
 * AuthorizationPolicy -> RBAC, after Istio's `pilot/pkg/security/authz/{builder,model,matcher}`
 * (Envoy sidecars) and `pilot/pkg/networking/grpcgen/lds.go` (proxyless gRPC, gRFC A41).
 *
 * Semantics (Istio's):
 * - a workload's policies are those of the root namespace (mesh-wide) and of its own namespace whose
 *   `selector` matches its labels (no selector: every workload); policies with `targetRef(s)` apply to
 *   gateways and waypoints only, never to sidecars or proxyless servers;
 * - filters in order: CUSTOM, AUDIT (`LOG`), DENY, ALLOW. No ALLOW policy: everything not denied is
 *   allowed. An ALLOW policy that matches nothing (no rules, or every rule skipped) denies everything;
 * - `istio.io/dry-run: "true"`: the policy's rules go to `shadow_rules` (stats only, nothing enforced);
 * - RBAC policy names: `ns[<ns>]-policy[<name>]-rule[<i>]`;
 * - a field a target cannot evaluate (HTTP fields on a TCP chain; on proxyless gRPC: JWT metadata,
 *   `experimental.envoy.filters.*` and `connection.sni`, which A41 evaluates as never-matching / empty)
 *   skips the whole rule in ALLOW policies (it then allows nothing) and is dropped from the rule in
 *   DENY/AUDIT policies (the rule then denies more): never wider than the policy. Every such case is
 *   reported as an {@link AuthzFinding}.
 * - CUSTOM needs an ext_authz provider; Meridian has no mesh-config extension providers yet, so (as
 *   Istio does for a missing provider) the rules of a CUSTOM policy are enforced as DENY rules and a
 *   finding says so.
 *
 * This module selects the policies and builds the filters; one rule's RBAC policy (its matchers) is
 * authz-rule.ts's.
 */
import type { AuthorizationPolicyConfig } from '@meridian/api';
import type { EnvoyJson, JsonValue, ProxyInfo } from '@meridian/envoy';
import {
  type AuthzTarget,
  type RbacAction,
  type RuleContext,
  rulePolicy,
  Unsupported,
} from './authz-rule.js';
import { any, labelsMatch } from './util.js';

export type { AuthzTarget } from './authz-rule.js';

/** Something a policy asks that the target cannot enforce exactly (and what was done instead). */
export interface AuthzFinding {
  /** `<namespace>/<name>` of the AuthorizationPolicy. */
  readonly policy: string;
  /** Index of the rule, when the finding is about one rule. */
  readonly rule?: number;
  readonly target: AuthzTarget;
  readonly message: string;
}

/** Formats a finding as one line: `AuthorizationPolicy ns/name rules[0] (grpc): message`. */
export function formatAuthzFinding(f: AuthzFinding): string {
  const rule = f.rule === undefined ? '' : ` rules[${f.rule}]`;
  return `AuthorizationPolicy ${f.policy}${rule} (${f.target}): ${f.message}`;
}

/** The policies that apply to one workload, by action, each sorted by (namespace, name). */
export interface WorkloadPolicies {
  readonly custom: readonly AuthorizationPolicyConfig[];
  readonly audit: readonly AuthorizationPolicyConfig[];
  readonly deny: readonly AuthorizationPolicyConfig[];
  readonly allow: readonly AuthorizationPolicyConfig[];
}

/** The generated filters and what could not be enforced exactly. */
export interface AuthzFilters {
  /** `envoy.filters.http.rbac` (http, grpc) or `envoy.filters.network.rbac` (tcp) filters, in order. */
  readonly filters: readonly EnvoyJson[];
  readonly findings: readonly AuthzFinding[];
}

export const HTTP_RBAC_FILTER = 'envoy.filters.http.rbac';
export const NETWORK_RBAC_FILTER = 'envoy.filters.network.rbac';
/** Istio's grpcgen names the DENY filter apart (two filters of one name in one HCM). */
export const GRPC_RBAC_DENY_FILTER = 'envoy.filters.http.rbac.DENY';
export const DRY_RUN_ANNOTATION = 'istio.io/dry-run';
const HTTP_RBAC = 'envoy.extensions.filters.http.rbac.v3.RBAC';
const NETWORK_RBAC = 'envoy.extensions.filters.network.rbac.v3.RBAC';

const EMPTY: WorkloadPolicies = Object.freeze({ custom: [], audit: [], deny: [], allow: [] });

/**
 * The AuthorizationPolicies that apply to `proxy` (Istio's `PolicyMatcherForProxy` for sidecars):
 * root-namespace policies mesh-wide, the proxy's namespace's policies, each when its selector
 * matches the proxy's labels. Policies with `targetRef(s)` are left out (gateways/waypoints only).
 */
export function selectAuthorizationPolicies(
  policies: readonly AuthorizationPolicyConfig[],
  proxy: Pick<ProxyInfo, 'namespace' | 'labels'>,
  rootNamespace: string,
): WorkloadPolicies {
  if (policies.length === 0) return EMPTY;
  const out = { custom: [], audit: [], deny: [], allow: [] } as {
    [K in keyof WorkloadPolicies]: AuthorizationPolicyConfig[];
  };
  for (const p of policies) {
    const ns = p.metadata.namespace;
    if (ns !== rootNamespace && ns !== proxy.namespace) continue;
    if (p.spec.targetRef !== undefined || (p.spec.targetRefs ?? []).length > 0) continue;
    const sel = p.spec.selector?.matchLabels;
    if (sel && Object.keys(sel).length > 0 && !labelsMatch(sel, proxy.labels)) continue;
    switch (p.spec.action ?? 'ALLOW') {
      case 'CUSTOM':
        out.custom.push(p);
        break;
      case 'AUDIT':
        out.audit.push(p);
        break;
      case 'DENY':
        out.deny.push(p);
        break;
      default:
        out.allow.push(p);
    }
  }
  return out;
}

/** True when the workload has no policy at all (then no RBAC filter is generated). */
export function hasPolicies(p: WorkloadPolicies): boolean {
  return p.custom.length + p.audit.length + p.deny.length + p.allow.length > 0;
}

/** Istio's RBAC policy name `ns[<ns>]-policy[<name>]-rule[<i>]`. */
export function rbacPolicyName(namespace: string, name: string, rule: number): string {
  return `ns[${namespace}]-policy[${name}]-rule[${rule}]`;
}

/** True when the policy has `istio.io/dry-run: "true"` (Go's ParseBool truthy spellings). */
export function isDryRun(p: AuthorizationPolicyConfig): boolean {
  const v = p.metadata.annotations?.[DRY_RUN_ANNOTATION];
  return v !== undefined && ['1', 't', 'T', 'true', 'TRUE', 'True'].includes(v);
}

/** Istio's `rbacPolicyMatchNever`. */
const MATCH_NEVER: EnvoyJson = Object.freeze({
  permissions: [{ not_rule: { any: true } }],
  principals: [{ not_id: { any: true } }],
}) as EnvoyJson;

interface BuiltRules {
  readonly rules: EnvoyJson | undefined;
  readonly shadow: EnvoyJson | undefined;
}

function buildRules(
  policies: readonly AuthorizationPolicyConfig[],
  action: RbacAction,
  target: AuthzTarget,
  findings: AuthzFinding[],
): BuiltRules {
  const enforce: Record<string, JsonValue> = {};
  const shadow: Record<string, JsonValue> = {};
  let hasEnforce = false;
  let hasShadow = false;
  for (const p of policies) {
    const { namespace, name } = p.metadata;
    const id = `${namespace}/${name}`;
    const dry = isDryRun(p);
    if (dry) hasShadow = true;
    else hasEnforce = true;
    const into = dry ? shadow : enforce;
    const ctx: RuleContext = { target, policyNamespace: namespace };
    const rules = p.spec.rules ?? [];
    rules.forEach((rule, i) => {
      const ruleName = rbacPolicyName(namespace, name, i);
      const dropped = new Set<string>();
      try {
        into[ruleName] = rulePolicy(rule, ctx, action, (e) => dropped.add(e.message));
        for (const m of dropped) {
          findings.push({
            policy: id,
            rule: i,
            target,
            message: `${m}: left out of this ${action} rule, which then matches more requests`,
          });
        }
      } catch (e) {
        if (!(e instanceof Unsupported)) throw e;
        findings.push({
          policy: id,
          rule: i,
          target,
          message:
            action === 'ALLOW'
              ? `${e.message}: ALLOW rule skipped, it allows nothing here`
              : `${e.message}: invalid rule skipped`,
        });
        // gRPC rejects an RBAC filter without policies: keep the rule's name, matching nothing.
        if (target === 'grpc') into[ruleName] = MATCH_NEVER;
      }
    });
    if (rules.length === 0) into[rbacPolicyName(namespace, name, 0)] = MATCH_NEVER;
  }
  return {
    rules: hasEnforce ? { action, policies: enforce } : undefined,
    shadow: hasShadow ? { action, policies: shadow } : undefined,
  };
}

function shadowPrefix(action: RbacAction): string {
  if (action === 'ALLOW') return 'istio_dry_run_allow_';
  if (action === 'DENY') return 'istio_dry_run_deny_';
  return '';
}

function envoyFilter(built: BuiltRules, action: RbacAction, target: 'http' | 'tcp'): EnvoyJson | undefined {
  if (!built.rules && !built.shadow) return undefined;
  const fields: EnvoyJson = {};
  if (built.rules) fields.rules = built.rules;
  if (target === 'tcp') fields.stat_prefix = 'tcp.';
  if (built.shadow) {
    fields.shadow_rules = built.shadow;
    const prefix = shadowPrefix(action);
    if (prefix) fields.shadow_rules_stat_prefix = prefix;
  }
  return target === 'http'
    ? { name: HTTP_RBAC_FILTER, typed_config: any(HTTP_RBAC, fields) }
    : { name: NETWORK_RBAC_FILTER, typed_config: any(NETWORK_RBAC, fields) };
}

/**
 * The RBAC filters for a workload's policies on one target: Envoy `http` (HCM http_filters, before
 * the router), Envoy `tcp` (network filters, before tcp_proxy) or proxyless `grpc` (server listener
 * HCM http_filters; gRPC supports only enforced ALLOW and DENY: AUDIT and dry-run policies are left
 * out with a finding).
 */
export function buildAuthzFilters(policies: WorkloadPolicies, target: AuthzTarget): AuthzFilters {
  const findings: AuthzFinding[] = [];
  if (!hasPolicies(policies)) return { filters: [], findings };
  for (const p of policies.custom) {
    findings.push({
      policy: `${p.metadata.namespace}/${p.metadata.name}`,
      target,
      message: `CUSTOM provider "${p.spec.provider?.name ?? ''}" is not configured (no ext_authz extension providers): the requests its rules match are denied`,
    });
  }
  const denyLike = [...policies.custom, ...policies.deny];
  if (target === 'grpc') {
    for (const p of [...policies.audit, ...[...denyLike, ...policies.allow].filter(isDryRun)]) {
      findings.push({
        policy: `${p.metadata.namespace}/${p.metadata.name}`,
        target,
        message:
          (p.spec.action ?? 'ALLOW') === 'AUDIT'
            ? 'AUDIT is not supported by proxyless gRPC (no LOG action): ignored'
            : 'dry-run is not supported by proxyless gRPC (no shadow rules): ignored, nothing enforced',
      });
    }
    const filters: EnvoyJson[] = [];
    const deny = buildRules(
      denyLike.filter((p) => !isDryRun(p)),
      'DENY',
      target,
      findings,
    );
    if (deny.rules)
      filters.push({ name: GRPC_RBAC_DENY_FILTER, typed_config: any(HTTP_RBAC, { rules: deny.rules }) });
    const allow = buildRules(
      policies.allow.filter((p) => !isDryRun(p)),
      'ALLOW',
      target,
      findings,
    );
    if (allow.rules)
      filters.push({ name: HTTP_RBAC_FILTER, typed_config: any(HTTP_RBAC, { rules: allow.rules }) });
    return { filters, findings };
  }
  const filters: EnvoyJson[] = [];
  const steps: [readonly AuthorizationPolicyConfig[], RbacAction][] = [
    [policies.audit, 'LOG'],
    [denyLike, 'DENY'],
    [policies.allow, 'ALLOW'],
  ];
  for (const [list, action] of steps) {
    if (list.length === 0) continue;
    const f = envoyFilter(buildRules(list, action, target, findings), action, target);
    if (f) filters.push(f);
  }
  return { filters, findings };
}

/**
 * What proxyless gRPC servers cannot enforce exactly in `policy` (gRFC A41 limits), as findings:
 * for `analyze` and the apply response.
 */
export function grpcAuthzFindings(policy: AuthorizationPolicyConfig): readonly AuthzFinding[] {
  const action = policy.spec.action ?? 'ALLOW';
  const selected: WorkloadPolicies = {
    custom: action === 'CUSTOM' ? [policy] : [],
    audit: action === 'AUDIT' ? [policy] : [],
    deny: action === 'DENY' ? [policy] : [],
    allow: action === 'ALLOW' ? [policy] : [],
  };
  return buildAuthzFilters(selected, 'grpc').findings;
}
