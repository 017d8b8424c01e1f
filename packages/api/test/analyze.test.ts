import {
  AnalysisCode,
  analyzeConfigs,
  type ConfigObject,
  formatAnalysisMessage,
  parseConfigDocuments,
  resolveHost,
} from '@meridian/api';
import { describe, expect, it } from 'vitest';

function load(yaml: string): ConfigObject[] {
  const r = parseConfigDocuments(yaml);
  if (!r.ok) throw new Error(r.error.message);
  return r.configs;
}

const reviewsVs = (name: string, subsets: string[], extra = ''): string => `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ${name}}
spec:
  hosts: [reviews]${extra}
  http:
  - route:
${subsets.map((s, i) => `    - destination: {host: reviews, subset: ${s}}\n      weight: ${i === 0 ? 100 - 10 * (subsets.length - 1) : 10}`).join('\n')}
`;

const reviewsDr = `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews.default.svc.cluster.local
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`;

describe('analyzeConfigs', () => {
  it('resolves short names in the config namespace', () => {
    expect(resolveHost('reviews', 'prod')).toBe('reviews.prod.svc.cluster.local');
    expect(resolveHost('reviews.prod', 'default')).toBe('reviews.prod');
    expect(resolveHost('*.example.com', 'default')).toBe('*.example.com');
    expect(resolveHost('reviews', 'prod', 'corp.local')).toBe('reviews.prod.svc.corp.local');
  });

  it('warns about a route to a subset no DestinationRule defines (short and long host names match)', () => {
    const configs = load(`${reviewsVs('reviews', ['v1', 'v3'])}---${reviewsDr}`);
    const msgs = analyzeConfigs(configs);
    expect(msgs.map(formatAnalysisMessage)).toEqual([
      'Warning [IST0101] VirtualService default/reviews: spec.http[0].route[1].destination.subset: Referenced host+subset in destinationrule not found: "reviews+v3"',
    ]);
    expect(msgs[0]?.code).toBe(AnalysisCode.ReferencedResourceNotFound);
    expect(msgs[0]?.level).toBe('warning');
  });

  it('is silent when every subset is defined and no host list is given', () => {
    expect(analyzeConfigs(load(`${reviewsVs('reviews', ['v1', 'v2'])}---${reviewsDr}`))).toEqual([]);
  });

  it('with known hosts, warns about unknown VirtualService, destination and DestinationRule hosts', () => {
    const configs = load(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ghost}
spec:
  hosts: [ghost]
  http:
  - route:
    - destination: {host: api.example.com}
    mirror: {host: shadow}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api}
spec:
  hosts: [api.example.com]
  ports: [{number: 443, name: https, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: nope}
spec: {host: nope.other.svc.cluster.local}
`);
    const msgs = analyzeConfigs(configs, { knownHosts: ['reviews.default.svc.cluster.local'] });
    expect(msgs.map(formatAnalysisMessage)).toEqual([
      'Warning [IST0101] DestinationRule default/nope: spec.host: Referenced host not found: "nope.other.svc.cluster.local"',
      'Warning [IST0101] VirtualService default/ghost: spec.hosts[0]: Referenced host not found: "ghost"',
      'Warning [IST0101] VirtualService default/ghost: spec.http[0].mirror.host: Referenced host not found: "shadow"',
    ]);
  });

  it('warns about two mesh VirtualServices for the same host, on each of them', () => {
    const configs = load(`${reviewsVs('a', ['v1'])}---${reviewsVs('b', ['v2'])}---${reviewsDr}`);
    expect(analyzeConfigs(configs).map(formatAnalysisMessage)).toEqual([
      'Warning [IST0109] VirtualService default/a: spec.hosts[0]: The VirtualServices default/a,default/b associated with mesh gateway define the same host "reviews.default.svc.cluster.local" which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource.',
      'Warning [IST0109] VirtualService default/b: spec.hosts[0]: The VirtualServices default/a,default/b associated with mesh gateway define the same host "reviews.default.svc.cluster.local" which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource.',
    ]);
  });

  it('does not report gateway-bound VirtualServices or ones that are not visible to each other', () => {
    const configs = load(
      `${reviewsVs('a', ['v1'])}---${reviewsVs('b', ['v1'], '\n  gateways: [istio-system/ingress]')}---${reviewsDr}`,
    );
    expect(analyzeConfigs(configs)).toEqual([]);
    const privateOnes = load(
      `${reviewsVs('a', ['v1'], '\n  exportTo: ["."]')}---${reviewsVs('b', ['v1'], '\n  exportTo: ["other"]')}---${reviewsDr}`,
    );
    expect(analyzeConfigs(privateOnes)).toEqual([]);
  });

  it('returns the same order whatever the input order', () => {
    const configs = load(`${reviewsVs('a', ['v1', 'v9'])}---${reviewsVs('b', ['v8'])}---${reviewsDr}`);
    const forward = analyzeConfigs(configs);
    expect(forward).toHaveLength(4);
    expect(analyzeConfigs([...configs].reverse())).toEqual(forward);
  });
});

describe('analyzeConfigs: known hosts with wildcards', () => {
  it('a wildcard ServiceEntry host makes matching destinations known', () => {
    const configs = load(`
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext}
spec:
  hosts: ["*.example.com"]
  ports: [{number: 443, name: https, protocol: TLS}]
  resolution: NONE
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ext}
spec:
  hosts: [api.example.com]
  tls:
  - match: [{sniHosts: [api.example.com]}]
    route: [{destination: {host: api.example.com}}]
  - match: [{sniHosts: [api.example.com], port: 8443}]
    route: [{destination: {host: other.example.org}}]
`);
    expect(analyzeConfigs(configs, { knownHosts: [] }).map(formatAnalysisMessage)).toEqual([
      'Warning [IST0101] VirtualService default/ext: spec.tls[1].route[0].destination.host: Referenced host not found: "other.example.org"',
    ]);
  });
});
