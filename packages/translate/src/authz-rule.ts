/**
 * One AuthorizationPolicy rule as an Envoy RBAC policy, after Istio's
 * `pilot/pkg/security/authz/{model,matcher}`: the rule's `from`/`to`/`when` fields become AND-ed
 * conjuncts of permissions and principals, each value a string, header, CIDR, path-template or JWT
 * metadata matcher. A field the target cannot evaluate throws {@link Unsupported}; for ALLOW rules
 * the whole rule is then skipped, for DENY/AUDIT rules the field is dropped (authz.ts decides and
 * reports it).
 */
import type { Condition, Operation, Rule, Source } from '@meridian/api';
import type { EnvoyJson } from '@meridian/envoy';
import { any } from './util.js';

/** Where RBAC is enforced: an Envoy HTTP chain, an Envoy TCP chain, or a proxyless gRPC server. */
export type AuthzTarget = 'http' | 'tcp' | 'grpc';

const URI_TEMPLATE = 'envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig';
const JWT_FILTER = 'envoy.filters.http.jwt_authn';
const JWT_PAYLOAD = 'payload';

/** The RBAC action a rule is built for (`LOG` is AUDIT). */
export type RbacAction = 'ALLOW' | 'DENY' | 'LOG';

/** A matcher this target cannot evaluate exactly. */
export class Unsupported extends Error {
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

/** What a rule is built for: the target, and the namespace of its policy (for service accounts). */
export interface RuleContext {
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
function principalConjunct(
  key: string,
  values: readonly string[],
  notValues: readonly string[],
  ctx: RuleContext,
) {
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
function permissionConjunct(
  key: string,
  values: readonly string[],
  notValues: readonly string[],
  ctx: RuleContext,
) {
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
function ruleModel(rule: Rule, ctx: RuleContext): { permissions: Conjunct[][]; principals: Conjunct[][] } {
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
export function rulePolicy(
  rule: Rule,
  ctx: RuleContext,
  action: RbacAction,
  dropped: (e: Unsupported) => void,
): EnvoyJson {
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
