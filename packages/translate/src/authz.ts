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
 */
import type { AuthorizationPolicyConfig, Condition, Operation, Rule, Source } from '@meridian/api';
import type { EnvoyJson, JsonValue, ProxyInfo } from '@meridian/envoy';
import { any, labelsMatch } from './util.js';

/** Where RBAC is enforced: an Envoy HTTP chain, an Envoy TCP chain, or a proxyless gRPC server. */
export type AuthzTarget = 'http' | 'tcp' | 'grpc';

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
const URI_TEMPLATE = 'envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig';
const JWT_FILTER = 'envoy.filters.http.jwt_authn';
const JWT_PAYLOAD = 'payload';

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

type RbacAction = 'ALLOW' | 'DENY' | 'LOG';

/** A matcher this target cannot evaluate exactly. */
class Unsupported extends Error {
  override readonly name = 'Unsupported';
}

// ------------------------------------------------------------------ string and header matchers

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function regex(r: string): EnvoyJson {
  return { safe_regex: { regex: r } };
}

/** Istio's `StringMatcherWithPrefix`: `*` any non-empty, `*x` suffix, `x*` prefix, else exact. */
function stringMatcher(v: string, prefix = ''): EnvoyJson {
  if (v === '*') return regex('.+');
  if (v.startsWith('*')) {
    if (prefix === '') return { suffix: v.slice(1) };
    return regex(`${prefix}.*${escapeRegex(v.slice(1))}`);
  }
  if (v.endsWith('*')) return { prefix: prefix + v.slice(0, -1) };
  return { exact: prefix + v };
}

/** Istio's `HeaderMatcher` / `HostMatcher` (hosts ignore case). */
function headerMatcher(name: string, v: string, ignoreCase = false): EnvoyJson {
  if (v === '*') return { name, present_match: true };
  const ic: EnvoyJson = ignoreCase ? { ignore_case: true } : {};
  if (v.startsWith('*')) return { name, string_match: { suffix: v.slice(1), ...ic } };
  if (v.endsWith('*')) return { name, string_match: { prefix: v.slice(0, -1), ...ic } };
  return { name, string_match: { exact: v, ...ic } };
}

function cidr(value: string): EnvoyJson {
  const [address, len] = value.split('/') as [string, string | undefined];
  const prefix = len !== undefined ? Number(len) : address.includes(':') ? 128 : 32;
  return { address_prefix: address, prefix_len: prefix };
}

/** Istio's path templates `{*}` (one segment) and `{**}` (any rest of the path). */
function hasPathTemplate(path: string): boolean {
  return path.includes('{*}') || path.includes('{**}');
}

/** A path template as a regular expression (for gRPC, which has no uri_template matcher). */
function pathTemplateRegex(path: string): string {
  return path
    .split(/(\{\*\*\}|\{\*\})/)
    .map((part) => (part === '{**}' ? '.*' : part === '{*}' ? '[^/]+' : escapeRegex(part)))
    .join('');
}

function jwtMetadata(claims: readonly string[], value: EnvoyJson): EnvoyJson {
  return { filter: JWT_FILTER, path: [JWT_PAYLOAD, ...claims].map((key) => ({ key })), value };
}

/** Istio's `MetadataListValueMatcher` (extended JWT form): a claim equal to, or a list holding, a value. */
function jwtListMetadata(claims: readonly string[], values: readonly string[]): EnvoyJson {
  const matchers = values.map((v) => ({ string_match: stringMatcher(v) }));
  const value: EnvoyJson =
    matchers.length === 1 ? (matchers[0] as EnvoyJson) : { or_match: { value_matchers: matchers } };
  return jwtMetadata(claims, { or_match: { value_matchers: [{ list_match: { one_of: value } }, value] } });
}

function bracketed(s: string): string[] {
  const names = [...s.matchAll(/\[([^[\]]*)\]/g)].map((m) => m[1] as string);
  if (names.length === 0 || names.map((n) => `[${n}]`).join('') !== s)
    throw new Unsupported(`expecting format [<NAME>], but found ${s}`);
  return names;
}

// ------------------------------------------------------------------ rule model

type Principal = EnvoyJson;

/** One AND-ed conjunct of a permission or principal: `key` with values (OR) and notValues (NOT OR). */
interface Conjunct {
  readonly key: string;
  readonly values: readonly string[];
  readonly notValues: readonly string[];
  /** One matcher per value (throws Unsupported), or, when `all`, one matcher for all values. */
  readonly one?: (value: string) => EnvoyJson;
  readonly all?: (values: readonly string[]) => EnvoyJson;
}

interface Ctx {
  readonly target: AuthzTarget;
  readonly policyNamespace: string;
}

function httpOnly(key: string, target: AuthzTarget): void {
  if (target === 'tcp') throw new Unsupported(`"${key}" is HTTP only`);
}

function grpcUnsupported(key: string, target: AuthzTarget, why: string): void {
  if (target === 'grpc') throw new Unsupported(`"${key}" cannot be enforced by proxyless gRPC (${why})`);
}

const GRPC_METADATA = 'gRFC A41: a metadata matcher never matches';

function authenticated(m: EnvoyJson): Principal {
  return { authenticated: { principal_name: m } };
}

function requestPrincipal(value: string): Principal {
  const anyValue = regex('.+');
  const idx = value.lastIndexOf('/');
  const found = idx >= 0;
  const iss = found ? value.slice(0, idx) : value;
  const sub = found ? value.slice(idx + 1) : '';
  let mi: EnvoyJson;
  let ms: EnvoyJson;
  if (value === '*') {
    mi = anyValue;
    ms = anyValue;
  } else if (value.startsWith('*')) {
    if (found) {
      mi = iss === '*' ? anyValue : { suffix: iss.slice(1) };
      ms = { exact: sub };
    } else {
      mi = anyValue;
      ms = { suffix: value.slice(1) };
    }
  } else if (value.endsWith('*')) {
    if (found) {
      mi = { exact: iss };
      ms = sub === '*' ? anyValue : { prefix: sub.slice(0, -1) };
    } else {
      mi = { prefix: value.slice(0, -1) };
      ms = anyValue;
    }
  } else {
    mi = { exact: iss };
    ms = { exact: sub };
  }
  return {
    and_ids: {
      ids: [
        { metadata: jwtMetadata(['iss'], { string_match: mi }) },
        { metadata: jwtMetadata(['sub'], { string_match: ms }) },
      ],
    },
  };
}

function namespaceRegex(value: string): string {
  return `.*/ns/${value.split('*').map(escapeRegex).join('.*')}/.*`;
}

function serviceAccountRegex(defaultNamespace: string, value: string): string {
  const slash = value.indexOf('/');
  const ns = slash >= 0 ? value.slice(0, slash) : defaultNamespace;
  const sa = slash >= 0 ? value.slice(slash + 1) : value;
  return `spiffe://.+/ns/${escapeRegex(ns)}/(.+/|)sa/${escapeRegex(sa)}(/.+)?`;
}

function trustDomainMatcher(value: string): EnvoyJson {
  if (value === '*') return { prefix: 'spiffe://' };
  if (!value.includes('*')) return { prefix: `spiffe://${value}/` };
  const [a, b] = [value.slice(0, value.indexOf('*')), value.slice(value.indexOf('*') + 1)];
  return regex(`spiffe://${escapeRegex(a)}[^/]*${escapeRegex(b)}/.*`);
}

/** Source/when principal conjuncts, keyed by Istio's attribute names. */
function principalConjunct(key: string, values: readonly string[], notValues: readonly string[], ctx: Ctx) {
  const c = (one: Conjunct['one']): Conjunct => ({ key, values, notValues, one });
  const all = (fn: Conjunct['all']): Conjunct => ({ key, values, notValues, all: fn });
  switch (key) {
    case 'source.ip':
      return c((v) => ({ direct_remote_ip: cidr(v) }));
    case 'remote.ip':
      return c((v) => ({ remote_ip: cidr(v) }));
    case 'source.namespace':
      return c((v) => authenticated(regex(namespaceRegex(v))));
    case 'source.trustDomain':
      return c((v) => authenticated(trustDomainMatcher(v)));
    case 'source.serviceAccount':
      return c((v) => authenticated(regex(serviceAccountRegex(ctx.policyNamespace, v))));
    case 'source.principal':
      return c((v) => authenticated(stringMatcher(v, 'spiffe://')));
    case 'request.auth.principal':
      return all((vs) => {
        httpOnly(key, ctx.target);
        grpcUnsupported(key, ctx.target, GRPC_METADATA);
        const ids = vs.map(requestPrincipal);
        return ids.length === 1 ? (ids[0] as EnvoyJson) : { or_ids: { ids } };
      });
    case 'request.auth.audiences':
    case 'request.auth.presenter':
      return all((vs) => {
        httpOnly(key, ctx.target);
        grpcUnsupported(key, ctx.target, GRPC_METADATA);
        return { metadata: jwtListMetadata([key === 'request.auth.audiences' ? 'aud' : 'azp'], vs) };
      });
    default:
      if (key.startsWith('request.headers')) {
        return c((v) => {
          httpOnly(key, ctx.target);
          const [name] = bracketed(key.slice('request.headers'.length));
          return { header: headerMatcher(name as string, v) };
        });
      }
      if (key.startsWith('request.auth.claims')) {
        return all((vs) => {
          httpOnly(key, ctx.target);
          grpcUnsupported(key, ctx.target, GRPC_METADATA);
          return { metadata: jwtListMetadata(bracketed(key.slice('request.auth.claims'.length)), vs) };
        });
      }
      return undefined;
  }
}

/** Operation/when permission conjuncts. */
function permissionConjunct(key: string, values: readonly string[], notValues: readonly string[], ctx: Ctx) {
  const c = (one: Conjunct['one']): Conjunct => ({ key, values, notValues, one });
  switch (key) {
    case 'destination.ip':
      return c((v) => ({ destination_ip: cidr(v) }));
    case 'destination.port':
      return c((v) => {
        const port = Number(v);
        if (!/^\d+$/.test(v) || port > 65535) throw new Unsupported(`invalid port ${v}`);
        return { destination_port: port };
      });
    case 'connection.sni':
      return c((v) => {
        grpcUnsupported(key, ctx.target, 'gRFC A41: requested_server_name is always empty');
        return { requested_server_name: stringMatcher(v) };
      });
    case ':authority':
      return c((v) => {
        httpOnly(key, ctx.target);
        return { header: headerMatcher(':authority', v, true) };
      });
    case ':method':
      return c((v) => {
        httpOnly(key, ctx.target);
        return { header: headerMatcher(':method', v) };
      });
    case 'path-matcher':
      return c((v): EnvoyJson => {
        httpOnly(key, ctx.target);
        if (!hasPathTemplate(v)) return { url_path: { path: stringMatcher(v) } };
        if (ctx.target === 'grpc') return { url_path: { path: regex(pathTemplateRegex(v)) } };
        const template = v.replaceAll('{**}', '**').replaceAll('{*}', '*');
        return {
          uri_template: {
            name: 'uri-template',
            typed_config: any(URI_TEMPLATE, { path_template: template }),
          },
        };
      });
    default:
      if (key.startsWith('experimental.envoy.filters.')) {
        return c((v): EnvoyJson => {
          grpcUnsupported(key, ctx.target, GRPC_METADATA);
          const parts = key.slice('experimental.'.length).replace(/\]$/, '').split('[');
          if (parts.length !== 2) throw new Unsupported(`invalid key: ${key}`);
          const [filter, field] = parts as [string, string];
          if (v.startsWith('[') && v.endsWith(']')) {
            const one_of = { string_match: stringMatcher(v.slice(1, -1)) };
            return { metadata: { filter, path: [{ key: field }], value: { list_match: { one_of } } } };
          }
          return { metadata: { filter, path: [{ key: field }], value: { string_match: stringMatcher(v) } } };
        });
      }
      return undefined;
  }
}

/** Reports a dropped value for DENY/AUDIT, rethrows for ALLOW (the whole rule is skipped). */
type OnUnsupported = (e: Unsupported) => void;

function conjunctMatchers(
  c: Conjunct,
  kind: 'permission' | 'principal',
  onUnsupported: OnUnsupported,
): EnvoyJson[] {
  const orKey = kind === 'permission' ? 'or_rules' : 'or_ids';
  const setKey = kind === 'permission' ? 'rules' : 'ids';
  const notKey = kind === 'permission' ? 'not_rule' : 'not_id';
  const attempt = (fn: () => EnvoyJson): EnvoyJson | undefined => {
    try {
      return fn();
    } catch (e) {
      if (!(e instanceof Unsupported)) throw e;
      onUnsupported(e);
      return undefined;
    }
  };
  const build = (values: readonly string[]): EnvoyJson | undefined => {
    if (values.length === 0) return undefined;
    if (c.all) return attempt(() => (c.all as NonNullable<Conjunct['all']>)(values));
    const or = values
      .map((v) => attempt(() => (c.one as NonNullable<Conjunct['one']>)(v)))
      .filter((m) => m !== undefined);
    return or.length > 0 ? { [orKey]: { [setKey]: or } } : undefined;
  };
  const out: EnvoyJson[] = [];
  const pos = build(c.values);
  if (pos) out.push(pos);
  const neg = build(c.notValues);
  if (neg) out.push({ [notKey]: neg });
  return out;
}

function list(v: readonly string[] | undefined): readonly string[] {
  return v ?? [];
}

/** The conjuncts of a rule, Istio's order: `from`/`to` fields first, then `when` conditions. */
function ruleModel(rule: Rule, ctx: Ctx): { permissions: Conjunct[][]; principals: Conjunct[][] } {
  const basePermission: Conjunct[] = [];
  const basePrincipal: Conjunct[] = [];
  for (const w of rule.when ?? ([] as Condition[])) {
    const key = w.key ?? '';
    const values = list(w.values);
    const notValues = list(w.notValues);
    if (values.length === 0 && notValues.length === 0) continue;
    const p = permissionConjunct(key, values, notValues, ctx);
    if (p) {
      basePermission.push(p);
      continue;
    }
    const q = principalConjunct(key, values, notValues, ctx);
    if (!q) throw new Unsupported(`unknown attribute ${key}`);
    basePrincipal.push(q);
  }
  const principals: Conjunct[][] = [];
  for (const from of rule.from ?? []) {
    const s: Source = from.source ?? {};
    const front: Conjunct[] = [];
    const add = (key: string, values: string[] | undefined, notValues: string[] | undefined) => {
      if (list(values).length === 0 && list(notValues).length === 0) return;
      front.push(principalConjunct(key, list(values), list(notValues), ctx) as Conjunct);
    };
    add('source.principal', s.principals, s.notPrincipals);
    add('request.auth.principal', s.requestPrincipals, s.notRequestPrincipals);
    add('source.serviceAccount', s.serviceAccounts, s.notServiceAccounts);
    add('source.trustDomain', s.trustDomains, s.notTrustDomains);
    add('source.namespace', s.namespaces, s.notNamespaces);
    add('remote.ip', s.remoteIpBlocks, s.notRemoteIpBlocks);
    add('source.ip', s.ipBlocks, s.notIpBlocks);
    principals.push([...front, ...basePrincipal]);
  }
  if ((rule.from ?? []).length === 0) principals.push(basePrincipal);
  const permissions: Conjunct[][] = [];
  for (const to of rule.to ?? []) {
    const o: Operation = to.operation ?? {};
    const front: Conjunct[] = [];
    const add = (key: string, values: string[] | undefined, notValues: string[] | undefined) => {
      if (list(values).length === 0 && list(notValues).length === 0) return;
      front.push(permissionConjunct(key, list(values), list(notValues), ctx) as Conjunct);
    };
    add(':authority', o.hosts, o.notHosts);
    add(':method', o.methods, o.notMethods);
    add('path-matcher', o.paths, o.notPaths);
    add('destination.port', o.ports, o.notPorts);
    permissions.push([...front, ...basePermission]);
  }
  if ((rule.to ?? []).length === 0) permissions.push(basePermission);
  return { permissions, principals };
}

/** One rule as an RBAC Policy; throws Unsupported when an ALLOW rule cannot be enforced exactly. */
function rulePolicy(rule: Rule, ctx: Ctx, action: RbacAction, dropped: (e: Unsupported) => void): EnvoyJson {
  const onUnsupported: OnUnsupported = (e) => {
    if (action === 'ALLOW') throw e;
    dropped(e);
  };
  const model = ruleModel(rule, ctx);
  const permissions = model.permissions.map((conjuncts) => {
    const and = conjuncts.flatMap((c) => conjunctMatchers(c, 'permission', onUnsupported));
    return { and_rules: { rules: and.length > 0 ? and : [{ any: true }] } };
  });
  const principals = model.principals.map((conjuncts) => {
    const and = conjuncts.flatMap((c) => conjunctMatchers(c, 'principal', onUnsupported));
    return { and_ids: { ids: and.length > 0 ? and : [{ any: true }] } };
  });
  return { permissions, principals };
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
    const ctx: Ctx = { target, policyNamespace: namespace };
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
