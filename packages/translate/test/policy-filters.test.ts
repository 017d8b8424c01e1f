// RequestAuthentication -> jwt_authn and RateLimit -> local_ratelimit / ratelimit on the inbound HTTP
// chain: structure (Istio's requirement semantics, the metadata RBAC reads), order before/after RBAC,
// and every generated listener and cluster checked against Envoy's proto schemas.
import { parseConfigDocuments } from '@meridian/api';
import { checkResource, decodeResource, type EnvoyJson, encodeResource, TypeUrl } from '@meridian/envoy';
import { describe, expect, it } from 'vitest';
import {
  buildAuthzFilters,
  createConfigSnapshot,
  type PolicyInputs,
  type ProxyResources,
  selectAuthorizationPolicies,
  translateProxy,
} from '../src/index.js';
import { bookinfoRegistry, proxy } from './fixtures.js';

const JWKS_A = JSON.stringify({ keys: [{ kty: 'EC', crv: 'P-256', kid: 'a', x: 'xa', y: 'ya' }] });
const JWKS_INLINE = JSON.stringify({ keys: [{ kty: 'RSA', kid: 'b', n: 'nn', e: 'AQAB' }] });

function translate(yaml: string, inputs?: PolicyInputs, options: { grpc?: boolean } = {}): ProxyResources {
  const r = parseConfigDocuments(yaml, { source: 't.yaml' });
  if (!r.ok) throw new Error(r.error.message);
  const config = createConfigSnapshot(1, r.configs, inputs);
  return translateProxy(config, bookinfoRegistry(), proxy({ grpc: options.grpc ?? false }));
}

function inbound(out: ProxyResources): EnvoyJson {
  const l = out.listeners.find((x) => x.name === 'virtualInbound');
  if (!l) throw new Error('no virtualInbound');
  // Envoy's schema (unknown fields, enum names, protoc-gen-validate rules) accepts the listener.
  expect(checkResource(TypeUrl.Listener, l.resource)).toEqual([]);
  const bytes = encodeResource(TypeUrl.Listener, l.resource);
  expect(decodeResource(TypeUrl.Listener, bytes).name).toBe('virtualInbound');
  return l.resource;
}

/** The HCM of the inbound chain of port 9080. */
function hcm(listener: EnvoyJson): EnvoyJson {
  const chains = listener.filter_chains as EnvoyJson[];
  const chain = chains.find((c) => c.name === 'inbound|9080||') as EnvoyJson;
  return ((chain.filters as EnvoyJson[])[0] as EnvoyJson).typed_config as EnvoyJson;
}

const filterNames = (h: EnvoyJson) => (h.http_filters as EnvoyJson[]).map((f) => f.name);
const typed = (f: EnvoyJson | undefined) => (f?.typed_config ?? {}) as EnvoyJson;

const RA = (spec: string, name = 'jwt', ns = 'default') => `---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: ${name}, namespace: ${ns}}
spec:
${spec}
`;

describe('RequestAuthentication -> envoy.filters.http.jwt_authn', () => {
  it('one issuer: provider named by issuer, keys inlined, token optional but verified when present', () => {
    const out = translate(
      RA(`  selector: {matchLabels: {app: productpage}}
  jwtRules:
  - issuer: https://issuer.example
    jwksUri: https://issuer.example/jwks
    audiences: [shop]
    fromHeaders: [{name: x-jwt, prefix: "Bearer "}]
    fromParams: [access_token]
    outputPayloadToHeader: x-jwt-payload
    forwardOriginalToken: true
    outputClaimToHeaders: [{header: x-sub, claim: sub}]`),
      { jwks: new Map([['https://issuer.example/jwks', JWKS_A]]) },
    );
    const h = hcm(inbound(out));
    expect(filterNames(h)).toEqual(['envoy.filters.http.jwt_authn', 'envoy.filters.http.router']);
    const config = typed((h.http_filters as EnvoyJson[])[0]);
    expect(config).toEqual({
      '@type': 'type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication',
      providers: {
        'https://issuer.example': {
          issuer: 'https://issuer.example',
          audiences: ['shop'],
          forward: true,
          forward_payload_header: 'x-jwt-payload',
          payload_in_metadata: 'payload',
          normalize_payload_in_metadata: { space_delimited_claims: ['permission', 'scope'] },
          claim_to_headers: [{ header_name: 'x-sub', claim_name: 'sub' }],
          from_headers: [{ name: 'x-jwt', value_prefix: 'Bearer ' }],
          from_params: ['access_token'],
          local_jwks: { inline_string: JWKS_A },
        },
      },
      rules: [
        {
          match: { prefix: '/' },
          requires: {
            requires_any: {
              requirements: [{ provider_name: 'https://issuer.example' }, { allow_missing: {} }],
            },
          },
        },
      ],
      bypass_cors_preflight: true,
    });
    expect(out.warnings ?? []).toEqual([]);
  });

  it('several issuers: any provider, or each provider-or-missing; sorted by issuer; inline jwks kept', () => {
    const out = translate(
      RA(`  jwtRules:
  - {issuer: "z-issuer", jwks: '${JWKS_INLINE}'}
  - {issuer: "https://a.example", jwksUri: "https://a.example/k"}`) +
        RA(
          `  jwtRules: [{issuer: "https://root.example", jwksUri: "https://root.example/k"}]`,
          'mesh',
          'istio-system',
        ) +
        RA(
          `  selector: {matchLabels: {app: reviews}}
  jwtRules: [{issuer: "https://other.example", jwksUri: "https://other.example/k"}]`,
          'elsewhere',
        ),
      { jwks: new Map([['https://a.example/k', JWKS_A]]) },
    );
    const config = typed((hcm(inbound(out)).http_filters as EnvoyJson[])[0]);
    const providers = config.providers as Record<string, EnvoyJson>;
    expect(Object.keys(providers)).toEqual(['https://a.example', 'https://root.example', 'z-issuer']);
    expect((providers['z-issuer']!.local_jwks as EnvoyJson).inline_string).toBe(JWKS_INLINE);
    const names = ['https://a.example', 'https://root.example', 'z-issuer'];
    expect((config.rules as EnvoyJson[])[0]?.requires).toEqual({
      requires_any: {
        requirements: [
          ...names.map((n) => ({ provider_name: n })),
          {
            requires_all: {
              requirements: names.map((n) => ({
                requires_any: { requirements: [{ provider_name: n }, { allow_missing: {} }] },
              })),
            },
          },
        ],
      },
    });
    // The root-namespace source was not fetched: fail closed, and say so.
    expect(out.warnings).toEqual([
      'RequestAuthentication istio-system/mesh: the JWKS of issuer "https://root.example" (https://root.example/k) has not been fetched: its tokens are refused until it is',
    ]);
    const unfetched = (providers['https://root.example']!.local_jwks as EnvoyJson).inline_string as string;
    expect(JSON.parse(unfetched).keys[0].kid).toBe('meridian-jwks-unavailable');
  });

  it('jwt_authn runs before RBAC, whose requestPrincipals read the payload jwt_authn writes', () => {
    const yaml = `${RA(`  jwtRules: [{issuer: "https://issuer.example", jwksUri: "https://issuer.example/k"}]`)}---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: need-token, namespace: default}
spec:
  rules: [{from: [{source: {requestPrincipals: ["https://issuer.example/alice"]}}]}]
`;
    const out = translate(yaml, { jwks: new Map([['https://issuer.example/k', JWKS_A]]) });
    const h = hcm(inbound(out));
    expect(filterNames(h)).toEqual([
      'envoy.filters.http.jwt_authn',
      'envoy.filters.http.rbac',
      'envoy.filters.http.router',
    ]);
    const jwtConfig = typed((h.http_filters as EnvoyJson[])[0]);
    const key = ((jwtConfig.providers as Record<string, EnvoyJson>)['https://issuer.example'] as EnvoyJson)
      .payload_in_metadata;
    // What RBAC matches: filter metadata of the jwt_authn filter, under the key jwt_authn writes.
    const r = parseConfigDocuments(yaml);
    if (!r.ok) throw new Error(r.error.message);
    const aps = createConfigSnapshot(1, r.configs).authorizationPolicies;
    const rbac = buildAuthzFilters(
      selectAuthorizationPolicies(
        aps,
        { namespace: 'default', labels: { app: 'productpage' } },
        'istio-system',
      ),
      'http',
    );
    const text = JSON.stringify(rbac.filters);
    expect(text).toContain(`"filter":"envoy.filters.http.jwt_authn","path":[{"key":"${key}"},{"key":"iss"}]`);
  });

  it('targetRef policies and other namespaces select nothing; gRPC servers get a warning, no filter', () => {
    const yaml =
      RA(`  targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: gw}
  jwtRules: [{issuer: "https://a.example", jwksUri: "https://a.example/k"}]`) +
      RA(`  jwtRules: [{issuer: "https://b.example", jwksUri: "https://b.example/k"}]`, 'other', 'shop');
    expect(filterNames(hcm(inbound(translate(yaml))))).toEqual(['envoy.filters.http.router']);
    const grpc = translate(
      RA(`  jwtRules: [{issuer: "https://a.example", jwksUri: "https://a.example/k"}]`),
      undefined,
      {
        grpc: true,
      },
    );
    for (const l of grpc.listeners) expect(JSON.stringify(l.resource)).not.toContain('jwt_authn');
    expect(grpc.warnings).toEqual([
      'RequestAuthentication default/jwt (grpc): proxyless gRPC servers have no jwt_authn filter: tokens are not verified (MER0002)',
    ]);
  });
});

const RL = (spec: string, name = 'rl') => `---
apiVersion: policy.meridian.io/v1alpha1
kind: RateLimit
metadata: {name: ${name}, namespace: default}
spec:
${spec}
`;
const SERVICE = [
  { host: '10.0.0.10', port: 15010 },
  { host: '10.0.0.11', port: 15010 },
];

describe('RateLimit -> local_ratelimit and ratelimit', () => {
  it('a workload-wide local bucket with status and headers, after RBAC', () => {
    const out = translate(
      RL(`  selector: {matchLabels: {app: productpage}}
  local: {maxTokens: 20, tokensPerFill: 10, fillInterval: 2s, statusCode: 503, responseHeaders: {x-limited: "yes"}}`),
    );
    const h = hcm(inbound(out));
    expect(filterNames(h)).toEqual(['envoy.filters.http.local_ratelimit', 'envoy.filters.http.router']);
    expect(typed((h.http_filters as EnvoyJson[])[0])).toEqual({
      '@type': 'type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit',
      stat_prefix: 'http_local_rate_limiter',
      status: { code: 503 },
      token_bucket: { max_tokens: 20, tokens_per_fill: 10, fill_interval: '2s' },
      filter_enabled: {
        runtime_key: 'local_rate_limit_enabled',
        default_value: { numerator: 100, denominator: 'HUNDRED' },
      },
      filter_enforced: {
        runtime_key: 'local_rate_limit_enforced',
        default_value: { numerator: 100, denominator: 'HUNDRED' },
      },
      response_headers_to_add: [
        { header: { key: 'x-limited', value: 'yes' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' },
      ],
    });
    expect(out.clusters.map((c) => c.name)).not.toContain('meridian-ratelimit');
  });

  it('global limits by principal, header and path: descriptors on routes, the service cluster, checked', () => {
    const out = translate(
      RL(`  global:
    failureModeDeny: true
    timeout: 250ms
    limits:
    - {key: SOURCE_PRINCIPAL, requestsPerUnit: 100, unit: MINUTE}
    - {key: HEADER, header: x-user, requestsPerUnit: 5, unit: SECOND}`) +
        RL(
          `  paths: [{prefix: /api/}, {exact: /login}]
  local: {maxTokens: 5, fillInterval: 1s}
  global:
    limits: [{key: PATH, requestsPerUnit: 10, unit: HOUR}]`,
          'paths',
        ),
      { rateLimitService: SERVICE },
    );
    const l = inbound(out);
    const h = hcm(l);
    expect(filterNames(h)).toEqual([
      'envoy.filters.http.local_ratelimit',
      'envoy.filters.http.ratelimit',
      'envoy.filters.http.router',
    ]);
    // No workload-wide local limit: the filter has no bucket of its own (off except on its routes).
    expect(typed((h.http_filters as EnvoyJson[])[0]).token_bucket).toBeUndefined();
    expect(typed((h.http_filters as EnvoyJson[])[1])).toMatchObject({
      domain: 'meridian',
      failure_mode_deny: true,
      timeout: '0.250s',
      rate_limit_service: {
        grpc_service: { envoy_grpc: { cluster_name: 'meridian-ratelimit' } },
        transport_api_version: 'V3',
      },
      rate_limited_status: { code: 429 },
    });
    const routes = ((h.route_config as EnvoyJson).virtual_hosts as EnvoyJson[])[0]?.routes as EnvoyJson[];
    expect(routes.map((r) => [r.name, r.match])).toEqual([
      ['ratelimit[default/paths]-path[0]', { prefix: '/api/' }],
      ['ratelimit[default/paths]-path[1]', { path: '/login' }],
      ['default', { prefix: '/' }],
    ]);
    const wide = [
      {
        actions: [
          { generic_key: { descriptor_key: 'meridian_limit', descriptor_value: 'default/rl/0' } },
          {
            extension: {
              name: 'envoy.rate_limit_descriptors.expr',
              typed_config: {
                '@type': 'type.googleapis.com/envoy.extensions.rate_limit_descriptors.expr.v3.Descriptor',
                descriptor_key: 'source_principal',
                text: 'connection.uri_san_peer_certificate',
                skip_if_error: true,
              },
            },
          },
        ],
      },
      {
        actions: [
          { generic_key: { descriptor_key: 'meridian_limit', descriptor_value: 'default/rl/1' } },
          { request_headers: { header_name: 'x-user', descriptor_key: 'header' } },
        ],
      },
    ];
    expect((routes[2]!.route as EnvoyJson).rate_limits).toEqual(wide);
    expect((routes[0]!.route as EnvoyJson).rate_limits).toEqual([
      {
        actions: [
          { generic_key: { descriptor_key: 'meridian_limit', descriptor_value: 'default/paths/0' } },
          { request_headers: { header_name: ':path', descriptor_key: 'path' } },
        ],
      },
      ...wide,
    ]);
    expect(
      ((routes[1]!.typed_per_filter_config as EnvoyJson)['envoy.filters.http.local_ratelimit'] as EnvoyJson)
        .token_bucket,
    ).toEqual({ max_tokens: 5, tokens_per_fill: 5, fill_interval: '1s' });
    const cluster = out.clusters.find((c) => c.name === 'meridian-ratelimit');
    expect(cluster).toBeDefined();
    expect(checkResource(TypeUrl.Cluster, cluster?.resource)).toEqual([]);
    expect(JSON.stringify(cluster?.resource)).toContain('"address":"10.0.0.11","port_value":15010');
  });

  it('without a service address, global limits are left out and a warning says so', () => {
    const out = translate(RL(`  global: {limits: [{requestsPerUnit: 1, unit: SECOND}]}`));
    expect(filterNames(hcm(inbound(out)))).toEqual(['envoy.filters.http.router']);
    expect(out.warnings).toEqual([
      'RateLimit default/rl: no rate-limit service address is known: global limits are not enforced',
    ]);
  });

  it('the lowest of several workload-wide local rates wins, with a warning', () => {
    const out = translate(
      RL(`  local: {maxTokens: 100, fillInterval: 1s}`, 'a') +
        RL(`  local: {maxTokens: 100, fillInterval: 10s}`, 'b'),
    );
    const h = hcm(inbound(out));
    expect(typed((h.http_filters as EnvoyJson[])[0]).token_bucket).toEqual({
      max_tokens: 100,
      tokens_per_fill: 100,
      fill_interval: '10s',
    });
    expect(out.warnings).toEqual([
      'RateLimit: 2 workload-wide local limits select this workload; the lowest rate, default/b, is enforced',
    ]);
  });

  it('proxyless gRPC servers: not enforced, a warning names the RateLimit', () => {
    const out = translate(RL(`  local: {maxTokens: 1, fillInterval: 1s}`), undefined, { grpc: true });
    for (const l of out.listeners) expect(JSON.stringify(l.resource)).not.toContain('ratelimit');
    expect(out.warnings).toEqual([
      'RateLimit default/rl (grpc): proxyless gRPC servers have no rate-limit filter: not enforced',
    ]);
  });
});
