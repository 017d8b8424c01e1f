/**
 * RequestAuthentication -> `envoy.filters.http.jwt_authn`, with the semantics of Istio's
 * `pilot/pkg/security/authn` (read for behaviour; written for Meridian):
 *
 * - the policies of a workload are those of the root namespace and of its own namespace whose
 *   selector matches its labels (no selector: all); `targetRef(s)` policies apply to no sidecar;
 * - every `jwtRules` entry of those policies becomes one provider, sorted by issuer; providers are
 *   named by their issuer (`<issuer>#2`, ... for an issuer listed again);
 * - a request carrying a token must present a valid one from some provider; a request with no
 *   token is let through (`allow_missing`), so AuthorizationPolicy decides what needs a token. With
 *   several providers the requirement is "any provider, or (each provider or missing)", so that
 *   providers reading the same header do not fail one another;
 * - the verified payload goes to the filter metadata `envoy.filters.http.jwt_authn` under `payload`
 *   (what authz.ts matches for `requestPrincipals` and `request.auth.*`), `scope` and `permission`
 *   claims split on spaces;
 * - keys are always inlined (`local_jwks`): the replica fetched them (see `PolicyInputs.jwks`). A
 *   source not fetched yet gets a key set no token verifies against: its tokens are refused (fail
 *   closed, as istiod), and a warning says so.
 */
import type { JWTRule, RequestAuthenticationConfig } from '@meridian/api';
import type { EnvoyJson, ProxyInfo } from '@meridian/envoy';
import { any, compareStrings, labelsMatch } from './util.js';

/** The jwt_authn filter name (also the filter-metadata namespace authz.ts reads). */
export const JWT_AUTHN_FILTER = 'envoy.filters.http.jwt_authn';
/** The key of the verified payload in the filter metadata (`payload_in_metadata`). */
export const JWT_PAYLOAD_METADATA_KEY = 'payload';
const JWT_AUTHN = 'envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication';

/**
 * A key set no token verifies against: the public half of a P-256 key whose private half was
 * discarded when it was made. Used for a source whose keys have not been fetched.
 */
export const UNVERIFIABLE_JWKS = JSON.stringify({
  keys: [
    {
      kty: 'EC',
      crv: 'P-256',
      kid: 'meridian-jwks-unavailable',
      x: '7FagD1foyZ0w1A4m5EXVzaImGunk-ml2nJ8ICr3dm90',
      y: 'MYDomAvZV40hH3h0QKHqrHOCUMYQIBhcWkSUbQKwu10',
    },
  ],
});

/** Claims Envoy splits on spaces in the metadata payload (OAuth scopes), as Istio. */
const SPACE_DELIMITED = ['permission', 'scope'];

/** One JWKS the replica must fetch: from `uri`, or discovered from the issuer when `uri` is absent. */
export interface JwksSource {
  /** The key in `PolicyInputs.jwks`. */
  readonly key: string;
  readonly issuer: string;
  /** The rule's `jwksUri`; absent: `<issuer>/.well-known/openid-configuration` names it. */
  readonly uri?: string;
  /** The rule's `timeout` (Envoy's default 5 s when absent). */
  readonly timeout?: string;
}

/** The `PolicyInputs.jwks` key of a rule that needs a fetch (undefined for inline `jwks`). */
export function jwksSourceKey(rule: JWTRule): string | undefined {
  if (rule.jwks !== undefined) return undefined;
  if (rule.jwksUri !== undefined) return rule.jwksUri;
  return rule.issuer ? `issuer:${rule.issuer}` : undefined;
}

/** Every JWKS the given RequestAuthentications need fetched, de-duplicated, sorted by key. */
export function jwksSources(policies: readonly RequestAuthenticationConfig[]): JwksSource[] {
  const out = new Map<string, JwksSource>();
  for (const p of policies)
    for (const rule of p.spec.jwtRules ?? []) {
      const key = jwksSourceKey(rule);
      if (key === undefined || out.has(key)) continue;
      out.set(key, {
        key,
        issuer: rule.issuer ?? '',
        ...(rule.jwksUri !== undefined ? { uri: rule.jwksUri } : {}),
        ...(rule.timeout !== undefined ? { timeout: rule.timeout } : {}),
      });
    }
  return [...out.values()].sort((a, b) => compareStrings(a.key, b.key));
}

/**
 * The RequestAuthentications that apply to `proxy` (Istio's workload policy matcher): root
 * namespace and own namespace, selector matching its labels; `targetRef(s)` policies left out.
 */
export function selectRequestAuthentications(
  policies: readonly RequestAuthenticationConfig[],
  proxy: Pick<ProxyInfo, 'namespace' | 'labels'>,
  rootNamespace: string,
): RequestAuthenticationConfig[] {
  return policies.filter((p) => {
    const ns = p.metadata.namespace;
    if (ns !== rootNamespace && ns !== proxy.namespace) return false;
    if (p.spec.targetRef !== undefined || (p.spec.targetRefs ?? []).length > 0) return false;
    const sel = p.spec.selector?.matchLabels;
    return !sel || Object.keys(sel).length === 0 || labelsMatch(sel, proxy.labels);
  });
}

/** The jwt_authn filter and what could not be done as asked. */
export interface JwtFilter {
  /** The filter; undefined when no rule applies. */
  readonly filter: EnvoyJson | undefined;
  readonly warnings: readonly string[];
}

function provider(rule: JWTRule, jwks: string): EnvoyJson {
  const claims = [...new Set([...(rule.spaceDelimitedClaims ?? []), ...SPACE_DELIMITED])].sort(
    compareStrings,
  );
  return {
    issuer: rule.issuer ?? '',
    ...(rule.audiences?.length ? { audiences: [...rule.audiences] } : {}),
    ...(rule.forwardOriginalToken ? { forward: true } : {}),
    ...(rule.outputPayloadToHeader ? { forward_payload_header: rule.outputPayloadToHeader } : {}),
    payload_in_metadata: JWT_PAYLOAD_METADATA_KEY,
    normalize_payload_in_metadata: { space_delimited_claims: claims },
    ...(rule.outputClaimToHeaders?.length
      ? {
          claim_to_headers: rule.outputClaimToHeaders.map((c) => ({
            header_name: c.header ?? '',
            claim_name: c.claim ?? '',
          })),
        }
      : {}),
    ...(rule.fromHeaders?.length
      ? {
          from_headers: rule.fromHeaders.map((h) => ({
            name: h.name ?? '',
            ...(h.prefix ? { value_prefix: h.prefix } : {}),
          })),
        }
      : {}),
    ...(rule.fromParams?.length ? { from_params: [...rule.fromParams] } : {}),
    ...(rule.fromCookies?.length ? { from_cookies: [...rule.fromCookies] } : {}),
    local_jwks: { inline_string: jwks },
  };
}

/**
 * The `envoy.filters.http.jwt_authn` filter for the RequestAuthentications that apply to one
 * workload (`selectRequestAuthentications`), with the JWKS the replica resolved.
 */
export function buildJwtFilter(
  policies: readonly RequestAuthenticationConfig[],
  jwks: ReadonlyMap<string, string> | undefined,
): JwtFilter {
  const rules: Array<{ rule: JWTRule; policy: string }> = [];
  for (const p of policies)
    for (const rule of p.spec.jwtRules ?? [])
      rules.push({ rule, policy: `${p.metadata.namespace}/${p.metadata.name}` });
  if (rules.length === 0) return { filter: undefined, warnings: [] };
  // Stable order: issuer, then policy (already sorted by namespace/name), then position.
  const ordered = rules
    .map((r, i) => ({ ...r, i }))
    .sort((a, b) => compareStrings(a.rule.issuer ?? '', b.rule.issuer ?? '') || a.i - b.i);
  const providers: Record<string, EnvoyJson> = {};
  const names: string[] = [];
  const seen = new Map<string, number>();
  const warnings: string[] = [];
  for (const { rule, policy } of ordered) {
    const issuer = rule.issuer ?? '';
    const n = (seen.get(issuer) ?? 0) + 1;
    seen.set(issuer, n);
    const name = n === 1 ? issuer : `${issuer}#${n}`;
    const key = jwksSourceKey(rule);
    let keys = rule.jwks;
    if (keys === undefined && key !== undefined) keys = jwks?.get(key);
    if (keys === undefined) {
      keys = UNVERIFIABLE_JWKS;
      warnings.push(
        `RequestAuthentication ${policy}: the JWKS of issuer "${issuer}" (${rule.jwksUri ?? 'discovered from the issuer'}) has not been fetched: its tokens are refused until it is`,
      );
    }
    providers[name] = provider(rule, keys);
    names.push(name);
  }
  const byName = (name: string): EnvoyJson => ({ provider_name: name });
  const orMissing = (name: string): EnvoyJson => ({
    requires_any: { requirements: [byName(name), { allow_missing: {} }] },
  });
  const requires: EnvoyJson =
    names.length === 1
      ? orMissing(names[0] as string)
      : {
          requires_any: {
            requirements: [...names.map(byName), { requires_all: { requirements: names.map(orMissing) } }],
          },
        };
  return {
    filter: {
      name: JWT_AUTHN_FILTER,
      typed_config: any(JWT_AUTHN, {
        providers,
        rules: [{ match: { prefix: '/' }, requires }],
        bypass_cors_preflight: true,
      }),
    },
    warnings,
  };
}

/** The warning for a proxyless gRPC server selected by RequestAuthentications (no jwt_authn there). */
export function grpcJwtWarnings(policies: readonly RequestAuthenticationConfig[]): string[] {
  return policies
    .filter((p) => (p.spec.jwtRules ?? []).length > 0)
    .map(
      (p) =>
        `RequestAuthentication ${p.metadata.namespace}/${p.metadata.name} (grpc): proxyless gRPC servers have no jwt_authn filter: tokens are not verified (MER0002)`,
    );
}
