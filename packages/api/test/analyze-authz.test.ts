// MER0001: AuthorizationPolicy fields a proxyless gRPC server cannot enforce exactly (gRFC A41) are
// flagged by analyze, naming the field.

import {
  AnalysisCode,
  analyzeConfigs,
  type ConfigObject,
  formatAnalysisMessage,
  parseConfigDocuments,
} from '@meridian/api';
import { describe, expect, it } from 'vitest';

function load(yaml: string): ConfigObject[] {
  const r = parseConfigDocuments(yaml, { source: 't.yaml' });
  if (!r.ok) throw new Error(r.error.message);
  return r.configs;
}

describe('analyze: AuthorizationPolicy limits of proxyless gRPC (MER0001)', () => {
  it('flags requestPrincipals, request.auth.* / connection.sni conditions, AUDIT and dry-run', () => {
    const objects = load(`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: jwt, namespace: shop}
spec:
  rules:
  - from:
    - source: {requestPrincipals: ["*"]}
    when:
    - {key: connection.sni, values: [a.b]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit, namespace: shop, annotations: {istio.io/dry-run: "true"}}
spec:
  action: AUDIT
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: fine, namespace: shop}
spec:
  rules:
  - from:
    - source: {principals: [cluster.local/ns/shop/sa/a]}
`);
    const messages = analyzeConfigs(objects);
    expect(messages.every((m) => m.code === AnalysisCode.GrpcUnenforceableAuthorization)).toBe(true);
    expect(messages.map(formatAnalysisMessage)).toEqual([
      'Warning [MER0001] AuthorizationPolicy shop/audit: metadata.annotations: dry-run cannot be enforced exactly by proxyless gRPC servers (no shadow rules): ignored there',
      'Warning [MER0001] AuthorizationPolicy shop/audit: spec.action: AUDIT cannot be enforced exactly by proxyless gRPC servers (no LOG action): ignored there',
      'Warning [MER0001] AuthorizationPolicy shop/jwt: spec.rules[0].from[0].source.requestPrincipals: requestPrincipals cannot be enforced exactly by proxyless gRPC servers (JWT metadata never matches): the rule allows nothing on them',
      'Warning [MER0001] AuthorizationPolicy shop/jwt: spec.rules[0].when[0].key: connection.sni cannot be enforced exactly by proxyless gRPC servers (the SNI is empty): the rule allows nothing on them',
    ]);
  });
});
