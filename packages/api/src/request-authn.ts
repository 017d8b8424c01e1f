/**
 * RequestAuthentication (`security.istio.io` v1/v1beta1): its spec type, schema and semantic checks.
 *
 * Semantics follow Istio's API: each `jwtRules` entry names one issuer whose tokens are verified
 * with its JWKS (fetched from `jwksUri` by the replica, or given inline in `jwks`). A request
 * carrying an invalid token is refused; a request without a token is let through (require one with
 * an AuthorizationPolicy on `requestPrincipals`). Meridian refuses a rule that sets both `jwks` and
 * `jwksUri` (Istio silently prefers one), so what is verified is never ambiguous. With neither, the
 * issuer must be an http(s) URL: the replica reads `jwks_uri` from its OpenID configuration.
 */
import type { FieldPath, Reporter } from './path.js';
import { validateDuration } from './rules.js';
import type { FieldSchema, MessageSchema } from './schema.js';
import type { PolicyTargetReference, WorkloadSelector } from './types.js';

/** `security.v1.JWTHeader`: a header a token is read from, with the prefix to strip (e.g. `Bearer `). */
export interface JWTHeader {
  name?: string;
  prefix?: string;
}

/** `security.v1.ClaimToHeader`: copy a claim of a verified token into a request header. */
export interface ClaimToHeader {
  header?: string;
  claim?: string;
}

/** `security.v1.JWTRule`: how tokens of one issuer are found and verified. */
export interface JWTRule {
  issuer?: string;
  audiences?: string[];
  jwksUri?: string;
  jwks?: string;
  fromHeaders?: JWTHeader[];
  fromParams?: string[];
  fromCookies?: string[];
  outputPayloadToHeader?: string;
  forwardOriginalToken?: boolean;
  outputClaimToHeaders?: ClaimToHeader[];
  timeout?: string;
  spaceDelimitedClaims?: string[];
}

/** `security.v1.RequestAuthentication` spec. */
export interface RequestAuthentication {
  selector?: WorkloadSelector;
  targetRef?: PolicyTargetReference;
  targetRefs?: PolicyTargetReference[];
  jwtRules?: JWTRule[];
}

const str: FieldSchema = { t: 'string' };
const bool: FieldSchema = { t: 'bool' };
const strList: FieldSchema = { t: 'list', of: str };
const strMap: FieldSchema = { t: 'map', of: str };

function message<M>(name: string, fields: { readonly [K in keyof Required<M>]: FieldSchema }): MessageSchema {
  return { name, fields: fields as Record<string, FieldSchema>, oneofs: [] };
}
const msg = (of: () => MessageSchema): FieldSchema => ({ t: 'message', of });
const listOf = (of: () => MessageSchema): FieldSchema => ({ t: 'list', of: { t: 'message', of } });

const TargetRefSchema = message<PolicyTargetReference>('PolicyTargetReference', {
  group: str,
  kind: str,
  name: str,
  namespace: str,
});
const JWTRuleSchema = message<JWTRule>('JWTRule', {
  issuer: str,
  audiences: strList,
  jwksUri: str,
  jwks: str,
  fromHeaders: listOf(() => message<JWTHeader>('JWTHeader', { name: str, prefix: str })),
  fromParams: strList,
  fromCookies: strList,
  outputPayloadToHeader: str,
  forwardOriginalToken: bool,
  outputClaimToHeaders: listOf(() => message<ClaimToHeader>('ClaimToHeader', { header: str, claim: str })),
  timeout: { t: 'duration' },
  spaceDelimitedClaims: strList,
});

/** Schema of the RequestAuthentication spec. */
export const RequestAuthenticationSchema = message<RequestAuthentication>('RequestAuthentication', {
  selector: msg(() => message<WorkloadSelector>('WorkloadSelector', { matchLabels: strMap })),
  targetRef: msg(() => TargetRefSchema),
  targetRefs: listOf(() => TargetRefSchema),
  jwtRules: listOf(() => JWTRuleSchema),
});

/** An HTTP header name (RFC 7230 token, lower-cased as HTTP/2 sends it). */
const HEADER_NAME = /^[a-z0-9!#$%&'*+\-.^_`|~]+$/;

/** Why `uri` is not a usable JWKS URI (an absolute `http`/`https` URL with a host), or undefined. */
export function jwksUriError(uri: string): string | undefined {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return `jwksUri "${uri}" is not a URL`;
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    return `jwksUri "${uri}" must use http or https, not ${url.protocol.slice(0, -1)}`;
  if (url.hostname === '') return `jwksUri "${uri}" has no host`;
  if (url.username !== '' || url.password !== '') return 'jwksUri must not carry credentials';
  return undefined;
}

/** Why `text` is not a JSON Web Key Set (`{"keys": [ {"kty": ...}, ... ]}` with at least one key). */
export function jwksError(text: string): string | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return 'jwks is not valid JSON';
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    return 'jwks must be a JSON object with "keys"';
  const keys = (parsed as { keys?: unknown }).keys;
  if (!Array.isArray(keys) || keys.length === 0) return 'jwks must have a non-empty "keys" list';
  for (const [i, k] of keys.entries()) {
    if (typeof k !== 'object' || k === null || typeof (k as { kty?: unknown }).kty !== 'string')
      return `jwks keys[${i}] has no "kty"`;
  }
  return undefined;
}

/**
 * Validates a RequestAuthentication spec. `checkSelector` is the shared workload-selector check
 * (semantics/common.ts). Errors name the field: `spec.jwtRules[0].issuer`, `spec.jwtRules[1].jwksUri`...
 */
export function checkRequestAuthentication(
  ra: RequestAuthentication,
  p: FieldPath,
  r: Reporter,
  checkSelector: (labels: Record<string, string> | undefined, p: FieldPath, r: Reporter) => void,
): void {
  const refs = [ra.targetRef !== undefined, (ra.targetRefs ?? []).length > 0];
  if (ra.selector !== undefined && refs.some(Boolean))
    r.add(p, 'only one of targetRefs or workloadSelector can be set');
  if (ra.targetRef !== undefined && (ra.targetRefs ?? []).length > 0)
    r.add(p.field('targetRef'), 'only one of targetRef or targetRefs can be set');
  if (ra.selector !== undefined)
    checkSelector(ra.selector.matchLabels, p.field('selector').field('matchLabels'), r);
  const targets: Array<[PolicyTargetReference, FieldPath]> = [];
  if (ra.targetRef !== undefined) targets.push([ra.targetRef, p.field('targetRef')]);
  (ra.targetRefs ?? []).forEach((t, i) => {
    targets.push([t, p.field('targetRefs').index(i)]);
  });
  for (const [ref, rp] of targets) {
    if (!ref.name) r.add(rp.field('name'), 'targetRef name must be set');
    if (!ref.kind) r.add(rp.field('kind'), 'targetRef kind must be set');
    if (ref.namespace)
      r.add(
        rp.field('namespace'),
        'targetRef namespace must not be set; cross namespace referencing is not supported',
      );
  }
  const issuers = new Map<string, number>();
  (ra.jwtRules ?? []).forEach((rule, i) => {
    const jp = p.field('jwtRules').index(i);
    const issuer = rule.issuer ?? '';
    if (issuer === '') r.add(jp.field('issuer'), 'issuer must be set');
    else {
      const first = issuers.get(issuer);
      if (first !== undefined)
        r.warn(jp.field('issuer'), `issuer "${issuer}" is also verified by jwtRules[${first}]`);
      else issuers.set(issuer, i);
    }
    if (rule.jwksUri !== undefined && rule.jwks !== undefined)
      r.add(jp, 'only one of jwksUri or jwks can be set');
    if (rule.jwksUri !== undefined) {
      const e = jwksUriError(rule.jwksUri);
      if (e !== undefined) r.add(jp.field('jwksUri'), e);
    }
    if (rule.jwks !== undefined) {
      const e = jwksError(rule.jwks);
      if (e !== undefined) r.add(jp.field('jwks'), e);
    }
    // Neither: the replica discovers the JWKS URI from the issuer's OpenID configuration (as istiod).
    if (
      rule.jwksUri === undefined &&
      rule.jwks === undefined &&
      issuer !== '' &&
      jwksUriError(issuer) !== undefined
    )
      r.add(
        jp,
        'one of jwksUri or jwks must be set when issuer is not an http(s) URL (keys are discovered from a URL issuer)',
      );
    (rule.audiences ?? []).forEach((a, j) => {
      if (a === '') r.add(jp.field('audiences').index(j), 'audience must not be empty');
    });
    (rule.fromHeaders ?? []).forEach((h, j) => {
      const hp = jp.field('fromHeaders').index(j);
      const name = h.name ?? '';
      if (name === '') r.add(hp.field('name'), 'location header name must be set');
      else if (!HEADER_NAME.test(name.toLowerCase()) || name.startsWith(':'))
        r.add(hp.field('name'), `"${name}" is not a valid HTTP header name`);
    });
    (rule.fromParams ?? []).forEach((q, j) => {
      if (q === '') r.add(jp.field('fromParams').index(j), 'location query must be set');
    });
    (rule.fromCookies ?? []).forEach((c, j) => {
      if (c === '') r.add(jp.field('fromCookies').index(j), 'cookie name must be set');
    });
    if (
      rule.outputPayloadToHeader !== undefined &&
      !HEADER_NAME.test(rule.outputPayloadToHeader.toLowerCase())
    )
      r.add(
        jp.field('outputPayloadToHeader'),
        `"${rule.outputPayloadToHeader}" is not a valid HTTP header name`,
      );
    (rule.outputClaimToHeaders ?? []).forEach((c, j) => {
      const cp = jp.field('outputClaimToHeaders').index(j);
      if (!c.header) r.add(cp.field('header'), 'header must be set');
      else if (!HEADER_NAME.test(c.header.toLowerCase()))
        r.add(cp.field('header'), `"${c.header}" is not a valid HTTP header name`);
      if (!c.claim) r.add(cp.field('claim'), 'claim must be set');
    });
    if (rule.timeout !== undefined) {
      const e = validateDuration(rule.timeout);
      if (e !== undefined) r.add(jp.field('timeout'), e);
    }
  });
}

/** Where a RequestAuthentication is not enforced, for `analyze` (codes MER0002 and MER0003). */
export interface RequestAuthnLimit {
  /** `MER0002` (proxyless gRPC servers have no jwt_authn) or `MER0003` (targetRef unsupported). */
  readonly code: 'MER0002' | 'MER0003';
  readonly path: FieldPath;
  readonly message: string;
}

/**
 * What a RequestAuthentication asks that Meridian does not enforce:
 * - MER0002: proxyless gRPC servers (grpc-js-xds) have no jwt_authn filter, so on a gRPC server the
 *   selected workloads' tokens are not verified (and `requestPrincipals` / `request.auth.*` rules of
 *   AuthorizationPolicy never match there: ALLOW rules on them allow nothing);
 * - MER0003: `targetRef(s)` (gateways and waypoints) is not supported: the policy applies to no proxy.
 */
export function requestAuthnLimits(ra: RequestAuthentication, spec: FieldPath): RequestAuthnLimit[] {
  const out: RequestAuthnLimit[] = [];
  if (ra.targetRef !== undefined || (ra.targetRefs ?? []).length > 0) {
    out.push({
      code: 'MER0003',
      path: spec.field(ra.targetRef !== undefined ? 'targetRef' : 'targetRefs'),
      message:
        'targetRef is not supported by Meridian (no gateways or waypoints): this policy applies to no proxy',
    });
    return out;
  }
  if ((ra.jwtRules ?? []).length > 0)
    out.push({
      code: 'MER0002',
      path: spec.field('jwtRules'),
      message:
        'proxyless gRPC servers have no jwt_authn filter: tokens are not verified on the gRPC servers this policy selects (their requestPrincipals and request.auth.* rules match nothing)',
    });
  return out;
}
