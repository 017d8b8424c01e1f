import { type KindName, parseConfigDocuments } from '@meridian/api';
import { describe, expect, it } from 'vitest';
import { drWithPolicy, errorsOf, specErrors, vsWithRoute } from './helpers.js';

interface Case {
  name: string;
  spec: unknown;
  errors: string[];
}

function run(kind: KindName, cases: Case[]): void {
  for (const c of cases) {
    it(c.name, () => {
      expect(specErrors(kind, c.spec)).toEqual(c.errors);
    });
  }
}

const VS = 'VirtualService default/t: ';
const DR = 'DestinationRule default/t: ';
const SE = 'ServiceEntry default/t: ';
const WE = 'WorkloadEntry default/t: ';
const SC = 'Sidecar default/t: ';
const AP = 'AuthorizationPolicy default/t: ';
const RE2 = 'Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)';
const to = [{ destination: { host: 'r' } }];

describe('VirtualService: more rules', () => {
  run('VirtualService', [
    {
      name: 'rewrite with redirect',
      spec: { hosts: ['r'], http: [{ redirect: { uri: '/x' }, rewrite: { uri: '/y' } }] },
      errors: [`${VS}spec.http[0]: HTTP route rule cannot contain both rewrite and redirect`],
    },
    {
      name: 'mirror with mirrors',
      spec: vsWithRoute({ mirror: { host: 'a' }, mirrors: [{ destination: { host: 'b' } }] }),
      errors: [`${VS}spec.http[0]: HTTP route cannot contain both mirror and mirrors`],
    },
    {
      name: 'mirrors percentage range',
      spec: vsWithRoute({ mirrors: [{ destination: { host: 'b' }, percentage: { value: -1 } }] }),
      errors: [
        `${VS}spec.http[0].mirrors[0].percentage.value: mirror percentage must have a min value of 0 (it has -1)`,
      ],
    },
    {
      name: 'mirrors percentage max',
      spec: vsWithRoute({ mirrors: [{ destination: { host: 'b' }, percentage: { value: 101 } }] }),
      errors: [
        `${VS}spec.http[0].mirrors[0].percentage.value: mirror percentage must have a max value of 100 (it has 101)`,
      ],
    },
    {
      name: 'mirrorPercentage min',
      spec: vsWithRoute({ mirror: { host: 'a' }, mirrorPercentage: { value: -5 } }),
      errors: [
        `${VS}spec.http[0].mirrorPercentage.value: mirror_percentage must have a min value of 0 (it has -5)`,
      ],
    },
    {
      name: 'HTTP/2 abort not supported',
      spec: vsWithRoute({ fault: { abort: { http2Error: 'PROTOCOL_ERROR' } } }),
      errors: [`${VS}spec.http[0].fault.abort.http2Error: HTTP/2 abort fault injection not supported yet`],
    },
    {
      name: 'abort needs an error type',
      spec: vsWithRoute({ fault: { abort: { percentage: { value: 5 } } } }),
      errors: [`${VS}spec.http[0].fault.abort: abort must set one of httpStatus, grpcStatus`],
    },
    {
      name: 'exponentialDelay not supported',
      spec: vsWithRoute({ fault: { delay: { exponentialDelay: '1s' } } }),
      errors: [`${VS}spec.http[0].fault.delay.exponentialDelay: exponentialDelay not supported yet`],
    },
    {
      name: 'uriRegexRewrite needs match and rewrite',
      spec: vsWithRoute({ rewrite: { uriRegexRewrite: { match: '^/a' } } }),
      errors: [
        `${VS}spec.http[0].rewrite.uriRegexRewrite: UriRegexRewrite requires both Rewrite and Match fields to be specified`,
      ],
    },
    {
      name: 'redirect scheme',
      spec: { hosts: ['r'], http: [{ redirect: { scheme: 'ftp' } }] },
      errors: [`${VS}spec.http[0].redirect.scheme: invalid redirect scheme, must be "http" or "https"`],
    },
    {
      name: 'direct response body size',
      spec: {
        hosts: ['r'],
        http: [{ directResponse: { status: 200, body: { string: 'x'.repeat(1024 * 1024 + 1) } } }],
      },
      errors: [
        `${VS}spec.http[0].directResponse.body: large direct_responses may impact control plane performance, must be less than 1MB`,
      ],
    },
    {
      name: 'empty header match name',
      spec: vsWithRoute({ match: [{ headers: { '': { exact: 'a' } } }] }),
      errors: [`${VS}spec.http[0].match[0].headers[""]: header name cannot be empty`],
    },
    {
      name: 'empty query param name',
      spec: vsWithRoute({ match: [{ queryParams: { '': { exact: 'a' } } }] }),
      errors: [`${VS}spec.http[0].match[0].queryParams[""]: query param name cannot be empty`],
    },
    {
      name: 'empty regex',
      spec: vsWithRoute({ match: [{ uri: { regex: '' } }] }),
      errors: [`${VS}spec.http[0].match[0].uri.regex: "uri": regex string match should not be empty`],
    },
    {
      name: 'regex too large',
      spec: vsWithRoute({ match: [{ uri: { regex: 'a'.repeat(1025) } }] }),
      errors: [`${VS}spec.http[0].match[0].uri.regex: "uri": regex is too large, max length allowed is 1024`],
    },
    {
      name: 'gateway namespace invalid',
      spec: { hosts: ['r'], gateways: ['Bad/gw'], http: [{ route: to }] },
      errors: [`${VS}spec.gateways[0]: invalid value for namespace: "Bad"`],
    },
    {
      name: 'host too long',
      spec: { hosts: [`${'a.'.repeat(128)}com`], http: [{ route: to }] },
      errors: [`${VS}spec.hosts[0]: domain name "${'a.'.repeat(128)}com" too long (max 255)`],
    },
    {
      name: 'delegate VirtualService cannot delegate again',
      spec: { http: [{ delegate: { name: 'other' } }] },
      errors: [`${VS}spec.http[0].delegate: delegate HTTP route cannot contain delegate`],
    },
    {
      name: 'delegate name and namespace syntax',
      spec: { hosts: ['r'], http: [{ delegate: { name: 'Bad', namespace: 'Also_Bad' } }] },
      errors: [
        `${VS}spec.http[0].delegate.name: delegate name "Bad" is invalid`,
        `${VS}spec.http[0].delegate.namespace: delegate namespace "Also_Bad" is invalid`,
      ],
    },
    {
      name: 'delegate VirtualService has no tcp or tls routes',
      spec: {
        tcp: [{ route: to }],
        tls: [{ match: [{ sniHosts: ['a.example.com'] }], route: to }],
      },
      errors: [
        `${VS}spec.tcp: delegate virtual service must have no tcp route specified`,
        `${VS}spec.tls: delegate virtual service must have no tls route specified`,
        `${VS}spec.tls[0].match[0].sniHosts[0]: SNI host "a.example.com" is not a compatible subset of any of the virtual service hosts: []`,
      ],
    },
    {
      name: 'TLS route is required',
      spec: { hosts: ['a.example.com'], tls: [{ match: [{ sniHosts: ['a.example.com'] }] }] },
      errors: [`${VS}spec.tls[0].route: TLS route is required`],
    },
    {
      name: 'exportTo duplicate entry',
      spec: { hosts: ['r'], exportTo: ['ns1', 'ns1'], http: [{ route: to }] },
      errors: [`${VS}spec.exportTo[1]: duplicate entries in exportTo for entry ns1`],
    },
    {
      name: 'CORS allowOrigins regex',
      spec: vsWithRoute({ corsPolicy: { allowOrigins: [{ regex: '(' }] } }),
      errors: [
        `${VS}spec.http[0].corsPolicy.allowOrigins[0].regex: "corsPolicy.allowOrigins": Invalid regular expression: /(/: Unterminated group; ${RE2}`,
      ],
    },
  ]);
});

describe('DestinationRule: more rules', () => {
  run('DestinationRule', [
    {
      name: 'http settings non-negative',
      spec: drWithPolicy({
        connectionPool: {
          http: {
            http1MaxPendingRequests: -1,
            maxRequestsPerConnection: -1,
            maxRetries: -1,
            maxConcurrentStreams: -1,
          },
        },
      }),
      errors: [
        `${DR}spec.trafficPolicy.connectionPool.http.http1MaxPendingRequests: http1 max pending requests must be non-negative`,
        `${DR}spec.trafficPolicy.connectionPool.http.maxConcurrentStreams: max concurrent streams must be non-negative`,
        `${DR}spec.trafficPolicy.connectionPool.http.maxRequestsPerConnection: max requests per connection must be non-negative`,
        `${DR}spec.trafficPolicy.connectionPool.http.maxRetries: max retries must be non-negative`,
      ],
    },
    {
      name: 'maglev table size set and bounded',
      spec: drWithPolicy({
        loadBalancer: { consistentHash: { useSourceIp: true, maglev: {} } },
        portLevelSettings: [
          {
            port: { number: 80 },
            loadBalancer: { consistentHash: { useSourceIp: true, maglev: { tableSize: 5000011 } } },
          },
        ],
      }),
      errors: [
        `${DR}spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize: tableSize must be set for maglev`,
        `${DR}spec.trafficPolicy.portLevelSettings[0].loadBalancer.consistentHash.maglev.tableSize: tableSize must be less than 5000011 for maglev`,
      ],
    },
    {
      name: 'empty hash header and query parameter names',
      spec: drWithPolicy({
        loadBalancer: { consistentHash: { httpHeaderName: '' } },
        portLevelSettings: [
          { port: { number: 80 }, loadBalancer: { consistentHash: { httpQueryParameterName: '' } } },
        ],
      }),
      errors: [
        `${DR}spec.trafficPolicy.loadBalancer.consistentHash.httpHeaderName: header name cannot be empty`,
        `${DR}spec.trafficPolicy.portLevelSettings[0].loadBalancer.consistentHash.httpQueryParameterName: query parameter name cannot be empty`,
      ],
    },
    {
      name: 'warmup rules',
      spec: drWithPolicy({
        loadBalancer: { warmupDurationSecs: '10s', warmup: { minimumPercent: 120, aggression: 0.5 } },
      }),
      errors: [
        `${DR}spec.trafficPolicy.loadBalancer: only one of warmupDurationSecs or warmup may be set`,
        `${DR}spec.trafficPolicy.loadBalancer.warmup.aggression: aggression should be greater than or equal to 1`,
        `${DR}spec.trafficPolicy.loadBalancer.warmup.duration: duration is required`,
        `${DR}spec.trafficPolicy.loadBalancer.warmup.minimumPercent: minimumPercent value should be in range 0..100`,
      ],
    },
    {
      name: 'distribute entries: empty to, empty from, overlap, empty segment',
      spec: drWithPolicy({
        loadBalancer: {
          localityLbSetting: {
            distribute: [
              { from: 'us-west/zone1', to: {} },
              { from: 'us-west/zone1', to: { 'us-west//x': 100 } },
              { to: { 'us-east/*': 100 } },
            ],
          },
        },
      }),
      errors: [
        `${DR}spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to: distribute must have at least one destination locality`,
        `${DR}spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[1].from: locality us-west/zone1 overlaps with a previous distribute entry`,
        `${DR}spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[1].to[us-west//x]: locality us-west//x has an empty segment`,
        `${DR}spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[2].from: empty locality`,
      ],
    },
    {
      name: 'duplicate port-level policy',
      spec: drWithPolicy({
        portLevelSettings: [
          { port: { number: 80 }, loadBalancer: { simple: 'RANDOM' } },
          { port: { number: 80 }, loadBalancer: { simple: 'RANDOM' } },
        ],
      }),
      errors: [
        `${DR}spec.trafficPolicy.portLevelSettings[1].port.number: duplicate port traffic policy for port 80`,
      ],
    },
    {
      name: 'tunnel with proxyProtocol',
      spec: drWithPolicy({
        tunnel: { targetHost: 'proxy.example.com', targetPort: 3128 },
        proxyProtocol: { version: 'V2' },
      }),
      errors: [`${DR}spec.trafficPolicy: tunnel and proxyProtocol must not be set together`],
    },
    {
      name: 'tunnel target host',
      spec: drWithPolicy({ tunnel: { targetHost: 'not a host', targetPort: 3128 } }),
      errors: [
        `${DR}spec.trafficPolicy.tunnel.targetHost: tunnel target host must be valid FQDN or IP address: not a host`,
      ],
    },
    {
      name: 'selector with an empty key',
      spec: { host: 'r', workloadSelector: { matchLabels: { '': 'x' } } },
      errors: [`${DR}spec.workloadSelector.matchLabels[""]: empty key is not supported in selector: "=x"`],
    },
  ]);
});

describe('ServiceEntry, WorkloadEntry: more rules', () => {
  run('ServiceEntry', [
    {
      name: 'unix endpoint needs exactly one service port',
      spec: {
        hosts: ['uds.internal'],
        ports: [
          { number: 80, name: 'http', protocol: 'HTTP' },
          { number: 81, name: 'http2', protocol: 'HTTP' },
        ],
        resolution: 'STATIC',
        endpoints: [{ address: 'unix:///var/run/a.sock' }],
      },
      errors: [`${SE}spec.endpoints[0].address: exactly 1 service port required for unix endpoints`],
    },
  ]);
  run('WorkloadEntry', [
    {
      name: 'empty unix address',
      spec: { address: 'unix://' },
      errors: [`${WE}spec.address: unix address must not be empty`],
    },
    {
      name: 'relative unix address',
      spec: { address: 'unix://var/run/a.sock' },
      errors: [`${WE}spec.address: var/run/a.sock is not an absolute path to a file`],
    },
  ]);
});

describe('Sidecar: more rules', () => {
  const https = { number: 8443, protocol: 'HTTPS', name: 'https' };
  run('Sidecar', [
    {
      name: 'ingress TLS unsupported fields and modes',
      spec: {
        ingress: [
          {
            port: https,
            tls: {
              mode: 'ISTIO_MUTUAL',
              httpsRedirect: true,
              credentialName: 'c',
              subjectAltNames: ['a'],
              tlsCertificates: [{ serverCertificate: '/c' }],
            },
          },
        ],
      },
      errors: [
        `${SC}spec.ingress[0].tls.credentialName: sidecar: credentialName is not currently supported`,
        `${SC}spec.ingress[0].tls.httpsRedirect: sidecar: httpsRedirect is not supported`,
        `${SC}spec.ingress[0].tls.mode: cannot set mode to ISTIO_MUTUAL in sidecar ingress tls`,
        `${SC}spec.ingress[0].tls.subjectAltNames: sidecar: subjectAltNames is not supported in ingress tls`,
        `${SC}spec.ingress[0].tls.tlsCertificates: sidecar: tls_certificates is not currently supported`,
      ],
    },
    {
      name: 'ingress SIMPLE and MUTUAL TLS need their files',
      spec: {
        ingress: [
          { port: https, tls: { mode: 'SIMPLE' } },
          {
            port: { ...https, number: 9443 },
            tls: { mode: 'MUTUAL', serverCertificate: '/c', privateKey: '/k' },
          },
        ],
      },
      errors: [
        `${SC}spec.ingress[0].tls: SIMPLE TLS requires a private key`,
        `${SC}spec.ingress[0].tls: SIMPLE TLS requires a server certificate`,
        `${SC}spec.ingress[1].tls: MUTUAL TLS requires a client CA bundle`,
      ],
    },
    {
      name: 'defaultEndpoint port must be a number',
      spec: {
        ingress: [
          { port: { number: 9080, protocol: 'HTTP', name: 'http' }, defaultEndpoint: '127.0.0.1:http' },
        ],
      },
      errors: [`${SC}spec.ingress[0].defaultEndpoint: sidecar: defaultEndpoint port (http) is not a number`],
    },
    {
      name: 'targetPort has no effect',
      spec: { ingress: [{ port: { number: 9080, protocol: 'HTTP', name: 'http', targetPort: 8080 } }] },
      errors: [`${SC}spec.ingress[0].port.targetPort: targetPort has no impact on Sidecars`],
    },
    {
      name: 'only one catch-all egress listener',
      spec: { egress: [{ hosts: ['./*'] }, { hosts: ['*/*'] }] },
      errors: [
        `${SC}spec.egress[0]: sidecar: the egress listener with empty port should be the last listener in the list`,
      ],
    },
    {
      name: 'two catch-all egress listeners after a port listener',
      spec: {
        egress: [
          { hosts: ['./*'] },
          { port: { number: 80, protocol: 'HTTP', name: 'h' }, hosts: ['./*'] },
          { hosts: ['*/*'] },
        ],
      },
      errors: [
        `${SC}spec.egress[0]: sidecar: the egress listener with empty port should be the last listener in the list`,
      ],
    },
    {
      name: 'unix listener capture mode',
      spec: {
        egress: [
          {
            port: { number: 0, protocol: 'HTTP', name: 'uds' },
            bind: 'unix:///var/run/a.sock',
            captureMode: 'IPTABLES',
            hosts: ['./*'],
          },
        ],
      },
      errors: [
        `${SC}spec.egress[0].captureMode: sidecar: captureMode must be DEFAULT/NONE for unix domain socket listeners`,
      ],
    },
    {
      name: 'egressProxy needs a port',
      spec: { outboundTrafficPolicy: { mode: 'ALLOW_ANY', egressProxy: { host: 'proxy.example.com' } } },
      errors: [
        `${SC}spec.outboundTrafficPolicy.egressProxy.port: sidecar: egress_proxy port must be non-nil`,
      ],
    },
    {
      name: 'egress host parts non-empty',
      spec: { egress: [{ hosts: ['/reviews'] }] },
      errors: [`${SC}spec.egress[0].hosts[0]: config namespace and dnsName in host entry cannot be empty`],
    },
  ]);
});

describe('AuthorizationPolicy: more rules', () => {
  run('AuthorizationPolicy', [
    {
      name: 'CUSTOM without rules',
      spec: { action: 'CUSTOM', provider: { name: 'authz' } },
      errors: [
        `${AP}spec.rules: CUSTOM action without \`rules\` is meaningless as it will never be triggered, add an empty rule \`{}\` if you want it be triggered for every request`,
      ],
    },
    {
      name: 'targetRef name required, no namespace',
      spec: { targetRef: { kind: 'Service', namespace: 'other' }, rules: [{}] },
      errors: [
        `${AP}spec.targetRef.name: targetRef name must be set`,
        `${AP}spec.targetRef.namespace: targetRef namespace must not be set; cross namespace referencing is not supported`,
      ],
    },
  ]);
});

describe('object envelope', () => {
  it('requires apiVersion, kind and metadata; a missing spec is an empty one', () => {
    expect(errorsOf({})).toEqual([
      '? default/?: apiVersion: apiVersion is required',
      '? default/?: kind: kind is required',
      '? default/?: metadata: metadata is required',
    ]);
    expect(
      errorsOf({ apiVersion: 'networking.istio.io/v1', kind: 'Sidecar', metadata: { name: 's' } }),
    ).toEqual(['Sidecar default/s: spec: sidecar: empty configuration provided']);
    // The Istio "allow-nothing" idiom: an AuthorizationPolicy with an empty (or no) spec.
    for (const spec of [{}, null, undefined]) {
      expect(
        errorsOf({
          apiVersion: 'security.istio.io/v1',
          kind: 'AuthorizationPolicy',
          metadata: { name: 'allow-nothing' },
          spec,
        }),
      ).toEqual([]);
    }
  });

  it('checks JSON types of scalars, maps and annotations', () => {
    expect(
      errorsOf({
        apiVersion: 'networking.istio.io/v1',
        kind: 'WorkloadEntry',
        metadata: { name: 'w', annotations: { 'bad key!': 'x' }, generation: -1 },
        spec: { address: 1, labels: [], weight: 'heavy', network: true },
      }),
    ).toEqual([
      'WorkloadEntry default/w: metadata.annotations["bad key!"]: invalid annotation key: "bad key!"',
      'WorkloadEntry default/w: metadata.generation: expected non-negative integer',
      'WorkloadEntry default/w: spec.address: expected string, got number',
      'WorkloadEntry default/w: spec.labels: expected map, got list',
      'WorkloadEntry default/w: spec.network: expected string, got boolean',
      'WorkloadEntry default/w: spec.weight: expected integer, got string',
    ]);
    expect(
      errorsOf({
        apiVersion: 'networking.istio.io/v1',
        kind: 'VirtualService',
        metadata: { name: 'v' },
        spec: {
          hosts: ['r'],
          http: [{ route: to, match: [{ ignoreUriCase: 'yes' }], mirrorPercentage: { value: 'x' } }],
        },
      }),
    ).toEqual([
      'VirtualService default/v: spec.http[0].match[0].ignoreUriCase: expected boolean, got string',
      'VirtualService default/v: spec.http[0].mirrorPercentage.value: expected number, got string',
    ]);
  });

  it('parseConfigDocuments rejects a non-string input without throwing', () => {
    const r = parseConfigDocuments(42 as unknown as string);
    if (r.ok) throw new Error('expected failure');
    expect(r.error.message).toBe('document 0: input must be a string (at document 0)');
  });
});

describe('remaining rules', () => {
  run('VirtualService', [
    {
      name: 'request header names cannot be empty',
      spec: vsWithRoute({ headers: { request: { add: { '': 'x' } } } }),
      errors: [`${VS}spec.http[0].headers.request.add[""]: invalid header name: empty string`],
    },
    {
      name: 'gateway namespace/name parts non-empty',
      spec: { hosts: ['r'], gateways: ['ns/'], http: [{ route: to }] },
      errors: [`${VS}spec.gateways[0]: config namespace and gateway name cannot be empty`],
    },
    {
      name: 'CORS allowOrigins entry must match something',
      spec: vsWithRoute({ corsPolicy: { allowOrigins: [{ exact: '' }] } }),
      errors: [
        `${VS}spec.http[0].corsPolicy.allowOrigins[0]: '' is not a valid match type for CORS allow origins`,
      ],
    },
  ]);
  run('DestinationRule', [
    {
      name: 'failover needs from and to; no wildcards',
      spec: drWithPolicy({
        loadBalancer: { localityLbSetting: { failover: [{ from: 'us-west' }, { from: 'us-*', to: 'eu' }] } },
        outlierDetection: { consecutive5xxErrors: 3 },
      }),
      errors: [
        `${DR}spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0]: locality lb failover must specify both from and to regions`,
        `${DR}spec.trafficPolicy.loadBalancer.localityLbSetting.failover[1]: locality lb failover region should not contain '*' wildcard`,
      ],
    },
  ]);
  run('AuthorizationPolicy', [
    {
      name: '`to` must not be empty',
      spec: { rules: [{ to: [] }] },
      errors: [`${AP}spec.rules[0].to: \`to\` must not be empty`],
    },
  ]);
  it('warns about a second rule without matches and a rule whose matches all repeat', async () => {
    const { validateConfig } = await import('@meridian/api');
    const r = validateConfig({
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'v' },
      spec: {
        hosts: ['r'],
        tcp: [
          { match: [{ port: 1 }], route: to },
          { match: [{ port: 1 }], route: to },
          { route: to },
          { route: to },
        ],
      },
    });
    if (!r.ok) throw new Error(r.error.message);
    expect(r.warnings.map((w) => `${w.path}: ${w.message}`)).toEqual([
      'spec.tcp[1]: virtualService rule #1 not used (all matches used by prior rules)',
      'spec.tcp[1].match[0]: virtualService rule #1 match #0 is not used (duplicate/overlapping match in rule #0)',
      'spec.tcp[3]: virtualService rule #3 not used (only the last rule can have no matches)',
    ]);
  });
});
