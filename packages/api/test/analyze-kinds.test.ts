// ANALYZED_KINDS lets the admin API analyze one apply against only part of the config: that is right
// only while analyzeConfigs reads no other kind. Over a corpus with a message from every rule and
// objects of many other kinds, leaving the other kinds out changes nothing.
import { readFileSync } from 'node:fs';
import { ANALYZED_KINDS, analyzeConfigs, type ConfigObject, parseConfigDocuments } from '@meridian/api';
import { describe, expect, it } from 'vitest';

function load(yaml: string): ConfigObject[] {
  const r = parseConfigDocuments(yaml, { source: 'corpus.yaml' });
  if (!r.ok) throw new Error(r.error.message);
  return r.configs;
}

const testdata = (name: string) => readFileSync(new URL(`testdata/${name}`, import.meta.url), 'utf8');

const extra = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-a, namespace: default}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews, subset: v9}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-b, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  http: [{route: [{destination: {host: ghost.default.svc.cluster.local}}]}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ghost, namespace: default}
spec: {host: ghost.default.svc.cluster.local}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-1, namespace: default}
spec: {address: 10.0.0.9, labels: {app: reviews, version: v9}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec: {egress: [{hosts: ["./*"]}]}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: jwt, namespace: default}
spec:
  rules:
  - from: [{source: {requestPrincipals: ["*"]}}]
    when: [{key: connection.sni, values: [a.b]}]
`;

describe('ANALYZED_KINDS', () => {
  const corpus = [...load(testdata('bookinfo.yaml')), ...load(testdata('egress.yaml')), ...load(extra)];

  it('the corpus has messages, and objects of kinds the analysis does not read', () => {
    expect(analyzeConfigs(corpus).length).toBeGreaterThanOrEqual(3);
    expect(corpus.some((o) => !ANALYZED_KINDS.has(o.kind))).toBe(true);
  });

  it('every message is about an object of an analyzed kind', () => {
    const kindOf = new Map(
      corpus.map((o) => [`${o.kind}/${o.metadata.namespace}/${o.metadata.name}`, o.kind]),
    );
    for (const m of analyzeConfigs(corpus))
      expect(ANALYZED_KINDS.has(kindOf.get(m.object ?? '') ?? '')).toBe(true);
  });

  it('leaving out the other kinds changes no message, with or without known hosts', () => {
    const analyzed = corpus.filter((o) => ANALYZED_KINDS.has(o.kind));
    expect(analyzeConfigs(analyzed)).toEqual(analyzeConfigs(corpus));
    const knownHosts = ['reviews.default.svc.cluster.local'];
    expect(analyzeConfigs(analyzed, { knownHosts })).toEqual(analyzeConfigs(corpus, { knownHosts }));
  });
});
