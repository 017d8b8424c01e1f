import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type ConfigObject, configKey, parseConfigDocuments, ValidationError } from '@meridian/api';
import { describe, expect, it } from 'vitest';

const testdata = (name: string): string =>
  readFileSync(fileURLToPath(new URL(`./testdata/${name}`, import.meta.url)), 'utf8');

function configsOf(text: string): ConfigObject[] {
  const r = parseConfigDocuments(text);
  if (!r.ok) throw new Error(r.error.message);
  return r.configs;
}

describe('real-world Istio examples', () => {
  it('bookinfo: reviews 90/10, ratings fault injection, retries, consistent hash, locality failover', () => {
    const configs = configsOf(testdata('bookinfo.yaml'));
    expect(configs.map(configKey)).toEqual([
      'DestinationRule/default/reviews',
      'VirtualService/default/reviews',
      'VirtualService/default/ratings',
      'DestinationRule/default/ratings',
      'VirtualService/bookinfo/productpage',
      'DestinationRule/bookinfo/productpage',
    ]);
    // Every accepted version is normalised to v1.
    expect(new Set(configs.map((c) => c.apiVersion))).toEqual(new Set(['networking.istio.io/v1']));
    const reviews = configs[1];
    if (reviews?.kind !== 'VirtualService') throw new Error('expected VirtualService');
    expect(reviews.spec.http?.[0]?.route?.map((r) => [r.destination?.subset, r.weight])).toEqual([
      ['v1', 90],
      ['v2', 10],
    ]);
    const ratings = configs[2];
    if (ratings?.kind !== 'VirtualService') throw new Error('expected VirtualService');
    expect(ratings.spec.http?.[0]?.fault).toEqual({
      delay: { fixedDelay: '7s', percentage: { value: 100 } },
    });
    expect(ratings.spec.http?.[0]?.match?.[0]?.headers).toEqual({ 'end-user': { exact: 'jason' } });
  });

  it('ServiceEntry (DNS, STATIC with endpoints), WorkloadEntry, Sidecar egress hosts, PeerAuthentication, AuthorizationPolicy', () => {
    const configs = configsOf(testdata('egress.yaml'));
    expect(configs.map(configKey)).toEqual([
      'ServiceEntry/default/external-svc-https',
      'ServiceEntry/default/external-svc-mongocluster',
      'ServiceEntry/default/external-svc-dns',
      'WorkloadEntry/bookinfo/details-svc',
      'Sidecar/prod-us1/default',
      'Sidecar/prod-us1/ratings',
      'PeerAuthentication/foo/finance',
      'AuthorizationPolicy/foo/httpbin',
      'AuthorizationPolicy/foo/deny-all',
    ]);
    const pa = configs[6];
    if (pa?.kind !== 'PeerAuthentication') throw new Error('expected PeerAuthentication');
    expect(pa.apiVersion).toBe('security.istio.io/v1');
    expect(pa.spec.portLevelMtls).toEqual({ '8080': { mode: 'DISABLE' } });
    const sidecar = configs[4];
    if (sidecar?.kind !== 'Sidecar') throw new Error('expected Sidecar');
    expect(sidecar.spec.egress?.[0]?.hosts).toEqual(['prod-us1/*', 'prod-apis/*', 'istio-system/*']);
    // `rules: [{}]` keeps its empty rule: it means "match every request".
    const deny = configs[8];
    if (deny?.kind !== 'AuthorizationPolicy') throw new Error('expected AuthorizationPolicy');
    expect(deny.spec.rules).toEqual([{}]);
  });
});

describe('parseConfigDocuments', () => {
  it('reports the document index and line of the bad field', () => {
    const text = [
      'apiVersion: networking.istio.io/v1', // 1
      'kind: DestinationRule', // 2
      'metadata: {name: ok}', // 3
      'spec: {host: reviews}', // 4
      '---', // 5
      'apiVersion: networking.istio.io/v1', // 6
      'kind: VirtualService', // 7
      'metadata:', // 8
      '  name: reviews', // 9
      'spec:', // 10
      '  hosts: [reviews]', // 11
      '  http:', // 12
      '  - route:', // 13
      '    - destination: {host: reviews, subset: v1}', // 14
      '      weight: 80', // 15
      '    - destination: {host: reviews, subset: v2}', // 16
      '      weight: 10', // 17
      '    retires: 3', // 18
    ].join('\n');
    const r = parseConfigDocuments(text, { source: 'reviews.yaml' });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.error).toBeInstanceOf(ValidationError);
    expect(r.error.key).toBe('VirtualService/default/reviews');
    expect(r.error.field).toBe('spec.http[0].retires');
    expect(r.error.errors).toEqual([
      {
        object: 'VirtualService/default/reviews',
        path: 'spec.http[0].retires',
        message: 'unknown field "retires" in HTTPRoute',
        line: 18,
        document: 1,
        source: 'reviews.yaml',
      },
      {
        object: 'VirtualService/default/reviews',
        path: 'spec.http[0].route[1].weight',
        message: 'weights must sum to 100, got 90',
        line: 17,
        document: 1,
        source: 'reviews.yaml',
      },
    ]);
    expect(r.error.message).toBe(
      [
        'VirtualService default/reviews: spec.http[0].retires: unknown field "retires" in HTTPRoute (at reviews.yaml:18, document 1)',
        'VirtualService default/reviews: spec.http[0].route[1].weight: weights must sum to 100, got 90 (at reviews.yaml:17, document 1)',
      ].join('\n'),
    );
    // The valid document is reported valid, but the input as a whole is rejected.
    expect(r.documents.map((d) => d.result.ok)).toEqual([true, false]);
    expect(r.documents.map((d) => d.line)).toEqual([1, 6]);
  });

  it('uses the nearest present parent line when the field itself is missing', () => {
    const text =
      'apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec:\n  hosts: [x]\n';
    const r = parseConfigDocuments(text);
    if (r.ok) throw new Error('expected failure');
    expect(r.error.message).toBe(
      'VirtualService default/x: spec: http, tcp or tls must be provided in virtual service (at line 4, document 0)',
    );
  });

  it('reports YAML syntax errors with their line, per document', () => {
    const r = parseConfigDocuments('42\n---\nkind: [unterminated\n');
    if (r.ok) throw new Error('expected failure');
    expect(r.error.errors[0]).toEqual({
      object: 'document 0',
      path: '',
      message: 'expected a config object, got number',
      line: 1,
      document: 0,
    });
    const first = r.error.errors.find((e) => e.document === 1);
    expect(first?.object).toBe('document 1');
    expect(first?.document).toBe(1);
    expect(first?.message.startsWith('invalid YAML: ')).toBe(true);
    expect(first?.line).toBe(4);
  });

  it('rejects duplicate keys in a YAML mapping', () => {
    const r = parseConfigDocuments(
      'apiVersion: networking.istio.io/v1\nkind: DestinationRule\nkind: VirtualService\n',
    );
    if (r.ok) throw new Error('expected failure');
    expect(
      r.error.errors.map((e) => [
        e.object,
        e.line,
        e.message.startsWith('invalid YAML: Map keys must be unique'),
      ]),
    ).toEqual([['document 0', 3, true]]);
  });

  it('rejects a duplicate object in one input', () => {
    const doc =
      'apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec: {host: r}\n';
    const r = parseConfigDocuments(`${doc}---\n${doc}`);
    if (r.ok) throw new Error('expected failure');
    expect(r.error.lines()).toEqual([
      'DestinationRule default/r: metadata.name: duplicate object, also defined in document 0',
    ]);
  });

  it('reads strict JSON, a single object or a list', () => {
    const one = {
      apiVersion: 'networking.istio.io/v1beta1',
      kind: 'WorkloadEntry',
      metadata: { name: 'vm1', namespace: 'ns1', labels: { app: 'vm' } },
      spec: { address: '10.0.0.1', ports: { http: 8080 } },
    };
    const r = parseConfigDocuments(JSON.stringify(one), { format: 'json' });
    if (!r.ok) throw new Error(r.error.message);
    expect(r.configs).toEqual([
      {
        apiVersion: 'networking.istio.io/v1',
        kind: 'WorkloadEntry',
        metadata: { labels: { app: 'vm' }, name: 'vm1', namespace: 'ns1' },
        spec: { address: '10.0.0.1', ports: { http: 8080 } },
      },
    ]);
    const list = parseConfigDocuments(JSON.stringify([one, { ...one, metadata: { name: 'vm2' } }], null, 2), {
      format: 'json',
    });
    if (!list.ok) throw new Error(list.error.message);
    expect(list.configs.map(configKey)).toEqual(['WorkloadEntry/ns1/vm1', 'WorkloadEntry/default/vm2']);
    const bad = parseConfigDocuments(
      JSON.stringify([one, { ...one, spec: { address: '10.0.0.1', ports: { http: 0 } } }], null, 2),
      { format: 'json' },
    );
    if (bad.ok) throw new Error('expected failure');
    expect(bad.error.message).toBe(
      'WorkloadEntry ns1/vm1: spec.ports[http]: port number 0 must be in the range 1..65535 (at line 32, document 1)',
    );
  });

  it('rejects invalid JSON without throwing', () => {
    const r = parseConfigDocuments('{"kind": ', { format: 'json' });
    if (r.ok) throw new Error('expected failure');
    expect(r.error.errors[0]?.message.startsWith('invalid JSON: ')).toBe(true);
  });

  it('rejects unknown kinds and versions with the supported ones', () => {
    const r = parseConfigDocuments(
      [
        'apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec: {}',
        'apiVersion: security.istio.io/v1alpha3\nkind: PeerAuthentication\nmetadata: {name: p}\nspec: {}',
      ].join('\n---\n'),
    );
    if (r.ok) throw new Error('expected failure');
    expect(r.error.lines()).toEqual([
      'Gateway default/g: kind: unsupported kind "Gateway", expected one of VirtualService, DestinationRule, ServiceEntry, WorkloadEntry, Sidecar, PeerAuthentication, AuthorizationPolicy, RequestAuthentication, RateLimit, Telemetry',
      'PeerAuthentication default/p: apiVersion: unsupported apiVersion "security.istio.io/v1alpha3" for PeerAuthentication, expected one of security.istio.io/v1, security.istio.io/v1beta1',
    ]);
  });

  it('validates metadata and drops server-populated fields', () => {
    const bad = parseConfigDocuments(
      'apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: Bad_Name, namespace: "NS", labels: {"a b": c}, color: red}\nspec: {host: r}\n',
    );
    if (bad.ok) throw new Error('expected failure');
    expect(bad.error.lines()).toEqual([
      'DestinationRule NS/Bad_Name: metadata.color: unknown field "color" in ObjectMeta',
      'DestinationRule NS/Bad_Name: metadata.labels["a b"]: invalid label key: "a b"',
      `DestinationRule NS/Bad_Name: metadata.name: invalid name "Bad_Name": must be a DNS-1123 subdomain (lower-case alphanumerics, '-', '.')`,
      'DestinationRule NS/Bad_Name: metadata.namespace: invalid namespace "NS": must be a DNS-1123 label',
    ]);
    const ok = parseConfigDocuments(
      'apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: r\n  resourceVersion: "42"\n  generation: 3\n  managedFields: [{manager: kubectl}]\nspec: {host: r}\nstatus: {observedGeneration: 3}\n',
    );
    if (!ok.ok) throw new Error(ok.error.message);
    expect(ok.configs[0]?.metadata).toEqual({
      generation: 3,
      name: 'r',
      namespace: 'default',
      resourceVersion: '42',
    });
  });

  it('returns no configs for an empty input', () => {
    expect(parseConfigDocuments('')).toEqual({ ok: true, configs: [], warnings: [], documents: [] });
    expect(parseConfigDocuments('---\n# nothing\n---\n')).toEqual({
      ok: true,
      configs: [],
      warnings: [],
      documents: [],
    });
  });
});
