/** VirtualService validation: structure, hosts, HTTP routes, and TCP and TLS routes. */
import { describe } from 'vitest';
import { vsWithRoute } from './helpers.js';
import { run } from './validation-cases.js';

const VS = 'VirtualService default/t: ';

describe('VirtualService: structure', () => {
  run('VirtualService', [
    {
      name: 'unknown field is rejected with its path',
      spec: vsWithRoute({ retry: { attempts: 3 } }),
      errors: [`${VS}spec.http[0].retry: unknown field "retry" in HTTPRoute`],
    },
    {
      name: 'wrong JSON type',
      spec: { hosts: 'reviews', http: [{ route: [{ destination: { host: 'reviews' } }] }] },
      errors: [`${VS}spec.hosts: expected list, got string`],
    },
    {
      name: 'integer out of range',
      spec: {
        hosts: ['reviews'],
        http: [{ match: [{ port: -1 }], route: [{ destination: { host: 'reviews' } }] }],
      },
      errors: [`${VS}spec.http[0].match[0].port: integer -1 out of range 0..4294967295`],
    },
    {
      name: 'non-integer weight',
      spec: vsWithRoute({ route: [{ destination: { host: 'reviews' }, weight: 50.5 }] }),
      errors: [`${VS}spec.http[0].route[0].weight: expected integer, got 50.5`],
    },
    {
      name: 'enum value not known',
      spec: vsWithRoute({ corsPolicy: { allowOrigins: [{ exact: 'a' }], unmatchedPreflights: 'DROP' } }),
      errors: [
        `${VS}spec.http[0].corsPolicy.unmatchedPreflights: invalid value "DROP", expected one of UNSPECIFIED, FORWARD, IGNORE`,
      ],
    },
    {
      name: 'a structural error is reported without the semantic errors it causes on its branch',
      spec: { hosts: ['reviews'], http: [{ route: ['reviews'] }] },
      errors: [`${VS}spec.http[0].route[0]: expected object, got string`],
    },
    {
      name: 'independent semantic errors are still reported next to a structural one',
      spec: vsWithRoute({ timeout: 5, retries: { attempts: -1 } }),
      errors: [
        `${VS}spec.http[0].retries.attempts: attempts cannot be negative`,
        `${VS}spec.http[0].timeout: expected duration string (e.g. "1.5s"), got number`,
      ],
    },
    {
      name: 'null list element',
      spec: { hosts: ['reviews', null], http: [{ route: [{ destination: { host: 'reviews' } }] }] },
      errors: [`${VS}spec.hosts[1]: may not be null`],
    },
  ]);
});

describe('VirtualService: hosts', () => {
  run('VirtualService', [
    {
      name: 'host label invalid',
      spec: { hosts: ['Reviews_1'], http: [{ route: [{ destination: { host: 'reviews' } }] }] },
      errors: [`${VS}spec.hosts[0]: domain name "Reviews_1" invalid (label "Reviews_1" invalid)`],
    },
    {
      name: 'wildcard only in the first label',
      spec: { hosts: ['foo.*.com'], http: [{ route: [{ destination: { host: 'reviews' } }] }] },
      errors: [`${VS}spec.hosts[0]: domain name "foo.*.com" invalid (label "*" invalid)`],
    },
    {
      name: 'all-numeric top-level domain',
      spec: { hosts: ['foo.123'], http: [{ route: [{ destination: { host: 'reviews' } }] }] },
      errors: [
        `${VS}spec.hosts[0]: domain name "foo.123" invalid (top level domain "123" cannot be all-numeric)`,
      ],
    },
    {
      name: 'empty host',
      spec: { hosts: [''], http: [{ route: [{ destination: { host: 'reviews' } }] }] },
      errors: [`${VS}spec.hosts[0]: empty domain name not allowed`],
    },
    {
      name: '* is not allowed for mesh',
      spec: { hosts: ['*'], http: [{ route: [{ destination: { host: 'reviews' } }] }] },
      errors: [
        `${VS}spec.hosts[0]: wildcard host * is not allowed for virtual services bound to the mesh gateway`,
      ],
    },
    {
      name: 'duplicate hosts, including wildcard overlap',
      spec: {
        hosts: ['a.example.com', '*.example.com'],
        http: [{ route: [{ destination: { host: 'reviews' } }] }],
      },
      errors: [`${VS}spec.hosts[1]: duplicate hosts in virtual service: a.example.com & *.example.com`],
    },
    {
      name: 'no routes at all',
      spec: { hosts: ['reviews'] },
      errors: [`${VS}spec: http, tcp or tls must be provided in virtual service`],
    },
    {
      name: 'gateway name invalid',
      spec: {
        hosts: ['reviews'],
        gateways: ['istio-system/Bad_GW'],
        http: [{ route: [{ destination: { host: 'reviews' } }] }],
      },
      errors: [`${VS}spec.gateways[0]: invalid value for gateway name: "Bad_GW"`],
    },
    {
      name: 'delegate VirtualService (no hosts) cannot have gateways',
      spec: { gateways: ['gw'], http: [{ route: [{ destination: { host: 'reviews' } }] }] },
      errors: [`${VS}spec.gateways: delegate virtual service must have no gateways specified`],
    },
    {
      name: 'exportTo duplicate',
      spec: {
        hosts: ['reviews'],
        exportTo: ['default', '.'],
        http: [{ route: [{ destination: { host: 'reviews' } }] }],
      },
      errors: [`${VS}spec.exportTo[1]: duplicate entries in exportTo: . and current namespace default`],
    },
    {
      name: 'exportTo * with others',
      spec: {
        hosts: ['reviews'],
        exportTo: ['*', 'foo'],
        http: [{ route: [{ destination: { host: 'reviews' } }] }],
      },
      errors: [
        `${VS}spec.exportTo: cannot have both public (*) and non-public exportTo values for a resource`,
      ],
    },
  ]);
});

describe('VirtualService: HTTP routes', () => {
  run('VirtualService', [
    {
      name: 'weights must sum to 100',
      spec: vsWithRoute({
        route: [
          { destination: { host: 'reviews', subset: 'v1' }, weight: 80 },
          { destination: { host: 'reviews', subset: 'v2' }, weight: 10 },
        ],
      }),
      errors: [`${VS}spec.http[0].route[1].weight: weights must sum to 100, got 90`],
    },
    {
      name: 'a missing weight counts as 0 when there are several destinations',
      spec: vsWithRoute({
        route: [
          { destination: { host: 'reviews', subset: 'v1' } },
          { destination: { host: 'reviews', subset: 'v2' } },
        ],
      }),
      errors: [`${VS}spec.http[0].route[1].weight: weights must sum to 100, got 0`],
    },
    {
      name: 'weight out of 0..100',
      spec: vsWithRoute({ route: [{ destination: { host: 'reviews' }, weight: 101 }] }),
      errors: [`${VS}spec.http[0].route[0].weight: weight 101 must be in range 0..100`],
    },
    {
      name: 'destination is required',
      spec: vsWithRoute({ route: [{ weight: 100 }] }),
      errors: [`${VS}spec.http[0].route[0].destination: destination is required`],
    },
    {
      name: 'destination host * is invalid',
      spec: vsWithRoute({ route: [{ destination: { host: '*' } }] }),
      errors: [`${VS}spec.http[0].route[0].destination.host: invalid destination host *`],
    },
    {
      name: 'subset name must be a DNS-1123 label',
      spec: vsWithRoute({ route: [{ destination: { host: 'reviews', subset: 'V_1' } }] }),
      errors: [`${VS}spec.http[0].route[0].destination.subset: subset name is invalid: V_1`],
    },
    {
      name: 'destination port range',
      spec: vsWithRoute({ route: [{ destination: { host: 'reviews', port: { number: 70000 } } }] }),
      errors: [
        `${VS}spec.http[0].route[0].destination.port.number: port number 70000 must be in the range 1..65535`,
      ],
    },
    {
      name: 'route and redirect are mutually exclusive',
      spec: vsWithRoute({ redirect: { uri: '/v2' } }),
      errors: [
        `${VS}spec.http[0]: HTTP route must have exactly one of route, redirect, directResponse, delegate; got route, redirect`,
      ],
    },
    {
      name: 'route and directResponse are mutually exclusive',
      spec: vsWithRoute({ directResponse: { status: 503 } }),
      errors: [
        `${VS}spec.http[0]: HTTP route must have exactly one of route, redirect, directResponse, delegate; got route, directResponse`,
      ],
    },
    {
      name: 'one of route, redirect, directResponse, delegate is required',
      spec: { hosts: ['reviews'], http: [{ timeout: '1s' }] },
      errors: [`${VS}spec.http[0]: HTTP route, redirect, directResponse or delegate is required`],
    },
    {
      name: 'redirect with fault',
      spec: {
        hosts: ['reviews'],
        http: [{ redirect: { uri: '/x' }, fault: { abort: { httpStatus: 500, percentage: { value: 1 } } } }],
      },
      errors: [`${VS}spec.http[0]: HTTP route cannot contain both fault and redirect`],
    },
    {
      name: 'redirect must say where',
      spec: { hosts: ['reviews'], http: [{ redirect: { redirectCode: 301 } }] },
      errors: [`${VS}spec.http[0].redirect: redirect must specify URI, authority, scheme, or port`],
    },
    {
      name: 'redirect code must be 3xx',
      spec: { hosts: ['reviews'], http: [{ redirect: { uri: '/x', redirectCode: 200 } }] },
      errors: [`${VS}spec.http[0].redirect.redirectCode: 200 is not a valid redirect code, must be 3xx`],
    },
    {
      name: 'redirect port and derivePort are a oneof',
      spec: { hosts: ['reviews'], http: [{ redirect: { port: 8080, derivePort: 'FROM_REQUEST_PORT' } }] },
      errors: [
        `${VS}spec.http[0].redirect: only one of port, derivePort may be set, got port and derivePort`,
      ],
    },
    {
      name: 'direct response status range',
      spec: { hosts: ['reviews'], http: [{ directResponse: { status: 99 } }] },
      errors: [`${VS}spec.http[0].directResponse.status: HTTP status 99 is not in range 200-599`],
    },
    {
      name: 'StringMatch: exactly one of exact, prefix, regex',
      spec: vsWithRoute({ match: [{ uri: { exact: '/a', prefix: '/b' } }] }),
      errors: [
        `${VS}spec.http[0].match[0].uri: only one of exact, prefix, regex may be set, got exact and prefix`,
      ],
    },
    {
      name: 'StringMatch: empty prefix',
      spec: vsWithRoute({ match: [{ uri: { prefix: '' } }] }),
      errors: [`${VS}spec.http[0].match[0].uri: "uri": prefix string match should not be empty`],
    },
    {
      name: 'StringMatch: bad regex',
      spec: vsWithRoute({ match: [{ headers: { 'x-user': { regex: '(' } } }] }),
      errors: [
        `${VS}spec.http[0].match[0].headers[x-user].regex: "headers": Invalid regular expression: /(/: Unterminated group; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)`,
      ],
    },
    {
      name: 'regex: lookaround is not RE2',
      spec: vsWithRoute({ match: [{ uri: { regex: '^/(?!admin)' } }] }),
      errors: [
        `${VS}spec.http[0].match[0].uri.regex: "uri": lookaround is not supported; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)`,
      ],
    },
    {
      name: 'regex: backreferences are not RE2',
      spec: vsWithRoute({ match: [{ uri: { regex: '^/(a)\\1' } }] }),
      errors: [
        `${VS}spec.http[0].match[0].uri.regex: "uri": backreferences are not supported; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)`,
      ],
    },
    {
      name: 'regex: RE2 syntax is accepted (inline flags, named groups, classes)',
      spec: vsWithRoute({
        match: [
          { uri: { regex: '(?i)^/api/(?P<id>[0-9]+)$' } },
          { uri: { regex: '^/[[:alpha:]]+\\pL*\\z' } },
          { headers: { 'x-v': { regex: '(?s:a.b)' } } },
        ],
      }),
      errors: [],
    },
    {
      name: 'match sourceLabels must be label syntax',
      spec: vsWithRoute({ match: [{ sourceLabels: { 'app!': 'x' } }] }),
      errors: [`${VS}spec.http[0].match[0].sourceLabels[app!]: invalid label key: "app!"`],
    },
    {
      name: 'match label value syntax',
      spec: vsWithRoute({ match: [{ sourceLabels: { app: '-bad' } }] }),
      errors: [`${VS}spec.http[0].match[0].sourceLabels[app]: invalid label value: "-bad"`],
    },
    {
      name: 'match sourceNamespace must be a DNS label',
      spec: vsWithRoute({ match: [{ sourceNamespace: 'Prod' }] }),
      errors: [`${VS}spec.http[0].match[0].sourceNamespace: sourceNamespace match Prod is invalid`],
    },
    {
      name: 'timeout duration syntax',
      spec: vsWithRoute({ timeout: '10' }),
      errors: [`${VS}spec.http[0].timeout: invalid duration "10"`],
    },
    {
      name: 'timeout below 1ms',
      spec: vsWithRoute({ timeout: '500us' }),
      errors: [`${VS}spec.http[0].timeout: duration must be greater than 1ms`],
    },
    {
      name: 'timeout precision',
      spec: vsWithRoute({ timeout: '1.0005s' }),
      errors: [`${VS}spec.http[0].timeout: only durations to ms precision are supported`],
    },
    {
      name: 'duration must be a string',
      spec: vsWithRoute({ timeout: 10 }),
      errors: [`${VS}spec.http[0].timeout: expected duration string (e.g. "1.5s"), got number`],
    },
    {
      name: 'retries: negative attempts',
      spec: vsWithRoute({ retries: { attempts: -1 } }),
      errors: [`${VS}spec.http[0].retries.attempts: attempts cannot be negative`],
    },
    {
      name: 'retries: policy with zero attempts',
      spec: vsWithRoute({ retries: { attempts: 0, perTryTimeout: '2s' } }),
      errors: [
        `${VS}spec.http[0].retries: http retry policy configured when attempts are set to 0 (disabled)`,
      ],
    },
    {
      name: 'retries: unknown retryOn policy',
      spec: vsWithRoute({ retries: { attempts: 3, retryOn: '5xx,bogus,503' } }),
      errors: [`${VS}spec.http[0].retries.retryOn: "bogus" is not a valid retryOn policy`],
    },
    {
      name: 'fault: needs abort or delay',
      spec: vsWithRoute({ fault: {} }),
      errors: [`${VS}spec.http[0].fault: HTTP fault injection must have an abort and/or a delay`],
    },
    {
      name: 'fault: delay requires fixedDelay',
      spec: vsWithRoute({ fault: { delay: { percentage: { value: 10 } } } }),
      errors: [`${VS}spec.http[0].fault.delay: delay must set fixedDelay`],
    },
    {
      name: 'fault: fixedDelay and exponentialDelay are a oneof',
      spec: vsWithRoute({ fault: { delay: { fixedDelay: '1s', exponentialDelay: '1s' } } }),
      errors: [
        `${VS}spec.http[0].fault.delay: only one of fixedDelay, exponentialDelay may be set, got fixedDelay and exponentialDelay`,
      ],
    },
    {
      name: 'fault: percentage range',
      spec: vsWithRoute({ fault: { delay: { fixedDelay: '1s', percentage: { value: 150 } } } }),
      errors: [
        `${VS}spec.http[0].fault.delay.percentage.value: percentage 150 is neither 0.0, nor in range [0.0001, 100.0]`,
      ],
    },
    {
      name: 'fault: deprecated integer percent range',
      spec: vsWithRoute({ fault: { delay: { fixedDelay: '1s', percent: 101 } } }),
      errors: [`${VS}spec.http[0].fault.delay.percent: percentage 101 is not in range 0..100`],
    },
    {
      name: 'fault: abort http status range',
      spec: vsWithRoute({ fault: { abort: { httpStatus: 700 } } }),
      errors: [`${VS}spec.http[0].fault.abort.httpStatus: HTTP status 700 is not in range 200-599`],
    },
    {
      name: 'fault: abort grpc status name',
      spec: vsWithRoute({ fault: { abort: { grpcStatus: 'NOPE' } } }),
      errors: [`${VS}spec.http[0].fault.abort.grpcStatus: gRPC status "NOPE" is not supported`],
    },
    {
      name: 'fault: abort error type is a oneof',
      spec: vsWithRoute({ fault: { abort: { httpStatus: 503, grpcStatus: 'UNAVAILABLE' } } }),
      errors: [
        `${VS}spec.http[0].fault.abort: only one of httpStatus, grpcStatus, http2Error may be set, got httpStatus and grpcStatus`,
      ],
    },
    {
      name: 'mirrorPercentage range',
      spec: vsWithRoute({ mirror: { host: 'shadow' }, mirrorPercentage: { value: 120 } }),
      errors: [
        `${VS}spec.http[0].mirrorPercentage.value: mirror_percentage must have a max value of 100 (it has 120)`,
      ],
    },
    {
      name: 'mirrors need a destination',
      spec: vsWithRoute({ mirrors: [{ percentage: { value: 5 } }] }),
      errors: [`${VS}spec.http[0].mirrors[0].destination: destination is required for mirrors`],
    },
    {
      name: 'rewrite: uri and uriRegexRewrite exclusive',
      spec: vsWithRoute({ rewrite: { uri: '/a', uriRegexRewrite: { match: '^/b', rewrite: '/c' } } }),
      errors: [`${VS}spec.http[0].rewrite: rewrite may only contain one of URI or UriRegexRewrite`],
    },
    {
      name: 'rewrite: must do something',
      spec: vsWithRoute({ rewrite: {} }),
      errors: [
        `${VS}spec.http[0].rewrite: rewrite must specify at least one of URI, UriRegexRewrite, or authority`,
      ],
    },
    {
      name: 'authority rewritten twice',
      spec: vsWithRoute({ rewrite: { authority: 'a' }, headers: { request: { set: { host: 'b' } } } }),
      errors: [`${VS}spec.http[0]: authority header cannot be set multiple times`],
    },
    {
      name: 'response headers cannot set pseudo headers',
      spec: vsWithRoute({ headers: { response: { set: { ':status': '200' } } } }),
      errors: [`${VS}spec.http[0].headers.response.set[:status]: invalid header name: ":status"`],
    },
    {
      name: 'CORS methods',
      spec: vsWithRoute({ corsPolicy: { allowMethods: ['GET', 'FETCH'] } }),
      errors: [`${VS}spec.http[0].corsPolicy.allowMethods[1]: "FETCH" is not a supported HTTP method`],
    },
    {
      name: 'CORS maxAge precision',
      spec: vsWithRoute({ corsPolicy: { maxAge: '1500ms' } }),
      errors: [`${VS}spec.http[0].corsPolicy.maxAge: max_age duration is accurate only to seconds precision`],
    },
    {
      name: 'delegate needs a name',
      spec: { hosts: ['reviews'], http: [{ delegate: { namespace: 'x' } }] },
      errors: [`${VS}spec.http[0].delegate.name: delegate name is required`],
    },
  ]);
});

describe('VirtualService: TCP and TLS routes', () => {
  run('VirtualService', [
    {
      name: 'TCP route is required',
      spec: { hosts: ['db'], tcp: [{ match: [{ port: 3306 }] }] },
      errors: [`${VS}spec.tcp[0].route: TCP route is required`],
    },
    {
      name: 'TCP destinationSubnets must be CIDR',
      spec: {
        hosts: ['db'],
        tcp: [{ match: [{ destinationSubnets: ['10.0.0.0/33'] }], route: [{ destination: { host: 'db' } }] }],
      },
      errors: [`${VS}spec.tcp[0].match[0].destinationSubnets[0]: 10.0.0.0/33 is not a valid CIDR block`],
    },
    {
      name: 'TCP weights sum to 100',
      spec: {
        hosts: ['db'],
        tcp: [
          {
            route: [
              { destination: { host: 'db', subset: 'a' }, weight: 50 },
              { destination: { host: 'db', subset: 'b' }, weight: 40 },
            ],
          },
        ],
      },
      errors: [`${VS}spec.tcp[0].route[1].weight: weights must sum to 100, got 90`],
    },
    {
      name: 'TLS match needs SNI hosts',
      spec: {
        hosts: ['a.example.com'],
        tls: [{ match: [{ port: 443 }], route: [{ destination: { host: 'a.example.com' } }] }],
      },
      errors: [`${VS}spec.tls[0].match[0].sniHosts: TLS match must have at least one SNI host`],
    },
    {
      name: 'TLS SNI host must be within the VirtualService hosts',
      spec: {
        hosts: ['a.example.com'],
        tls: [
          { match: [{ sniHosts: ['b.example.com'] }], route: [{ destination: { host: 'a.example.com' } }] },
        ],
      },
      errors: [
        `${VS}spec.tls[0].match[0].sniHosts[0]: SNI host "b.example.com" is not a compatible subset of any of the virtual service hosts: [a.example.com]`,
      ],
    },
    {
      name: 'TLS route needs a match',
      spec: { hosts: ['a.example.com'], tls: [{ route: [{ destination: { host: 'a.example.com' } }] }] },
      errors: [`${VS}spec.tls[0].match: TLS route must have at least one match condition`],
    },
  ]);
});
