// RequestAuthentication (security.istio.io) and RateLimit (policy.meridian.io/v1alpha1): accepted
// forms, and each invalid field named in the error.

import { analyzeConfigs, parseConfigDocuments, validateConfig } from '@meridian/api';
import { describe, expect, it } from 'vitest';
import { errorsOf, obj, specErrors } from './helpers.js';

const JWKS = JSON.stringify({ keys: [{ kty: 'EC', crv: 'P-256', x: 'AA', y: 'BB', kid: 'k1' }] });

describe('RequestAuthentication', () => {
  it('is accepted in v1 and v1beta1 and normalised to v1', () => {
    for (const version of ['v1', 'v1beta1']) {
      const r = validateConfig({
        apiVersion: `security.istio.io/${version}`,
        kind: 'RequestAuthentication',
        metadata: { name: 'jwt', namespace: 'shop' },
        spec: {
          selector: { matchLabels: { app: 'reviews' } },
          jwtRules: [
            {
              issuer: 'https://issuer.example',
              jwksUri: 'https://issuer.example/jwks.json',
              audiences: ['shop'],
              fromHeaders: [{ name: 'x-jwt', prefix: 'Bearer ' }],
              fromParams: ['token'],
              outputPayloadToHeader: 'x-jwt-payload',
              forwardOriginalToken: true,
              timeout: '2s',
            },
            { issuer: 'other', jwks: JWKS },
          ],
        },
      });
      expect(r.ok).toBe(true);
      if (r.ok) expect(r.config.apiVersion).toBe('security.istio.io/v1');
    }
  });

  it('accepts a URL issuer without keys (discovered from its OpenID configuration)', () => {
    expect(
      specErrors('RequestAuthentication', { jwtRules: [{ issuer: 'https://accounts.example' }] }),
    ).toEqual([]);
  });

  it('names every invalid field', () => {
    expect(
      specErrors('RequestAuthentication', {
        jwtRules: [
          { jwksUri: 'https://a.example/k' },
          { issuer: 'a', jwksUri: 'ftp://a.example/k' },
          { issuer: 'b', jwksUri: 'https://b.example/k', jwks: JWKS },
          { issuer: 'c', jwks: '{"keys": []}' },
          { issuer: 'd', jwks: 'not json', fromHeaders: [{ prefix: 'Bearer ' }, { name: 'bad header' }] },
          { issuer: 'e', fromParams: [''], outputClaimToHeaders: [{ header: 'x-sub' }] },
        ],
      }),
    ).toEqual([
      'RequestAuthentication default/t: spec.jwtRules[0].issuer: issuer must be set',
      'RequestAuthentication default/t: spec.jwtRules[1].jwksUri: jwksUri "ftp://a.example/k" must use http or https, not ftp',
      'RequestAuthentication default/t: spec.jwtRules[2]: only one of jwksUri or jwks can be set',
      'RequestAuthentication default/t: spec.jwtRules[3].jwks: jwks must have a non-empty "keys" list',
      'RequestAuthentication default/t: spec.jwtRules[4].fromHeaders[0].name: location header name must be set',
      'RequestAuthentication default/t: spec.jwtRules[4].fromHeaders[1].name: "bad header" is not a valid HTTP header name',
      'RequestAuthentication default/t: spec.jwtRules[4].jwks: jwks is not valid JSON',
      'RequestAuthentication default/t: spec.jwtRules[5]: one of jwksUri or jwks must be set when issuer is not an http(s) URL (keys are discovered from a URL issuer)',
      'RequestAuthentication default/t: spec.jwtRules[5].fromParams[0]: location query must be set',
      'RequestAuthentication default/t: spec.jwtRules[5].outputClaimToHeaders[0].claim: claim must be set',
    ]);
  });

  it('refuses unknown fields, and a selector with targetRef', () => {
    expect(
      specErrors('RequestAuthentication', {
        jwtRules: [{ issuer: 'https://x.example', jwksURI: 'https://x.example/k' }],
      }),
    ).toEqual([
      'RequestAuthentication default/t: spec.jwtRules[0].jwksURI: unknown field "jwksURI" in JWTRule',
    ]);
    expect(
      specErrors('RequestAuthentication', {
        selector: { matchLabels: { app: 'a' } },
        targetRef: { kind: 'Service', name: 'a' },
        jwtRules: [{ issuer: 'https://x.example' }],
      }),
    ).toEqual([
      'RequestAuthentication default/t: spec: only one of targetRefs or workloadSelector can be set',
    ]);
  });
});

describe('RateLimit (policy.meridian.io/v1alpha1)', () => {
  it('parses a local and global limit from YAML', () => {
    const r = parseConfigDocuments(`apiVersion: policy.meridian.io/v1alpha1
kind: RateLimit
metadata: {name: reviews, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  paths: [{prefix: /api/}]
  local: {maxTokens: 10, fillInterval: 1s, statusCode: 503, responseHeaders: {x-limited: local}}
  global:
    limits:
    - {key: SOURCE_PRINCIPAL, requestsPerUnit: 100, unit: MINUTE}
    - {key: HEADER, header: x-user, requestsPerUnit: 5, unit: SECOND}
`);
    expect(r.ok).toBe(true);
    if (r.ok) {
      expect(r.configs[0]?.kind).toBe('RateLimit');
      expect(r.configs[0]?.apiVersion).toBe('policy.meridian.io/v1alpha1');
    }
  });

  it('refuses other versions and groups', () => {
    expect(
      errorsOf({
        ...obj('RateLimit', { local: { maxTokens: 1, fillInterval: '1s' } }),
        apiVersion: 'policy.meridian.io/v1',
      }),
    ).toEqual([
      'RateLimit default/t: apiVersion: unsupported apiVersion "policy.meridian.io/v1" for RateLimit, expected one of policy.meridian.io/v1alpha1',
    ]);
  });

  it('refuses an unknown unit by name', () => {
    expect(
      specErrors('RateLimit', { global: { limits: [{ key: 'PATH', requestsPerUnit: 1, unit: 'WEEK' }] } }),
    ).toEqual([
      'RateLimit default/t: spec.global.limits[0].unit: invalid value "WEEK", expected one of UNSPECIFIED, SECOND, MINUTE, HOUR, DAY',
    ]);
  });

  it('names semantic errors field by field', () => {
    expect(
      specErrors('RateLimit', {
        paths: [{ prefix: 'api' }, {}, { regex: '(?=x)' }],
        local: { maxTokens: 0, fillInterval: '10ms', statusCode: 200, responseHeaders: { 'X Bad': 'v' } },
        global: {
          limits: [
            { key: 'HEADER', requestsPerUnit: 10, unit: 'MINUTE' },
            { key: 'PATH', header: 'x-user', unit: 'HOUR' },
            { requestsPerUnit: 1 },
          ],
          timeout: '0.5ms',
          statusCode: 299,
        },
      }),
    ).toEqual([
      'RateLimit default/t: spec.global.limits[0].header: header must be set when key is HEADER',
      'RateLimit default/t: spec.global.limits[1].header: header is only used with key HEADER, not PATH',
      'RateLimit default/t: spec.global.limits[1].requestsPerUnit: requestsPerUnit must be at least 1',
      'RateLimit default/t: spec.global.limits[2].unit: unit must be one of SECOND, MINUTE, HOUR, DAY',
      'RateLimit default/t: spec.global.statusCode: status code 299 is not a 4xx or 5xx code Envoy knows (e.g. 429, 503)',
      'RateLimit default/t: spec.global.timeout: duration must be greater than 1ms',
      'RateLimit default/t: spec.local.fillInterval: fillInterval must be at least 50ms',
      'RateLimit default/t: spec.local.maxTokens: maxTokens must be at least 1',
      'RateLimit default/t: spec.local.responseHeaders["X Bad"]: "X Bad" is not a valid lower-case HTTP header name',
      'RateLimit default/t: spec.local.statusCode: status code 200 is not a 4xx or 5xx code Envoy knows (e.g. 429, 503)',
      'RateLimit default/t: spec.paths[0].prefix: path "api" must start with "/"',
      'RateLimit default/t: spec.paths[1]: one of exact, prefix or regex must be set',
      'RateLimit default/t: spec.paths[2].regex: "regex": lookaround is not supported; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)',
    ]);
  });

  it('needs local or global', () => {
    expect(specErrors('RateLimit', { selector: { matchLabels: { app: 'a' } } })).toEqual([
      'RateLimit default/t: spec: at least one of local or global must be set',
    ]);
  });
});

describe('analyze: RequestAuthentication limits', () => {
  it('flags gRPC servers (MER0002) and targetRef (MER0003), naming the field', () => {
    const r = parseConfigDocuments(`apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: shop}
spec:
  jwtRules: [{issuer: "https://issuer.example"}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: gw, namespace: shop}
spec:
  targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: ingress}
  jwtRules: [{issuer: "https://issuer.example"}]
`);
    if (!r.ok) throw new Error(r.error.message);
    expect(analyzeConfigs(r.configs).map((m) => `${m.code} ${m.object} ${m.path}`)).toEqual([
      'MER0003 RequestAuthentication/shop/gw spec.targetRef',
      'MER0002 RequestAuthentication/shop/jwt spec.jwtRules',
    ]);
  });
});
