// Meridian agrees with Istio on what is a valid config (issue 15, item 6): for the kinds Meridian
// serves (AuthorizationPolicy, DestinationRule, PeerAuthentication, ServiceEntry, WorkloadEntry), each
// case below is a small document that Istio accepts or refuses, and `parseConfigDocuments` must do
// the same. The cases follow Istio's validation rules (its webhook validation in pkg/config/validation
// and the OpenAPI schemas of its CRDs), one rule per case where possible; the documents, names, hosts
// and values are written for Meridian, not taken from Istio's test data. For a refusal, `refused` is a
// fragment of Meridian's error that names the offending field.
import { parseConfigDocuments } from '@meridian/api';
import { describe, expect, it } from 'vitest';

interface Case {
  readonly name: string;
  readonly yaml: string;
  /** Absent: Istio accepts the document. Present: Istio refuses it; a fragment of Meridian's error. */
  readonly refused?: string;
}

type Kind =
  | 'AuthorizationPolicy'
  | 'DestinationRule'
  | 'PeerAuthentication'
  | 'ServiceEntry'
  | 'WorkloadEntry';

const API: Record<Kind, string> = {
  AuthorizationPolicy: 'security.istio.io/v1',
  DestinationRule: 'networking.istio.io/v1',
  PeerAuthentication: 'security.istio.io/v1',
  ServiceEntry: 'networking.istio.io/v1',
  WorkloadEntry: 'networking.istio.io/v1',
};

/** A document of `kind` named `name` in namespace `shop`; `body` holds its top-level `spec` (or not). */
const doc = (kind: Kind, name: string, body: string) =>
  `apiVersion: ${API[kind]}\nkind: ${kind}\nmetadata: {name: ${name}, namespace: shop}\n${body}`;

const CASES: Record<Kind, readonly Case[]> = {
  AuthorizationPolicy: [
    {
      name: 'source identities: exact, prefix*, *suffix and * in every field and its negation',
      yaml: `spec:
  selector: {matchLabels: {app: checkout}}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: [cluster.local/ns/shop/sa/cart, "cluster.local/ns/shop/*", "*/sa/cart", "*"]
        notPrincipals: [cluster.local/ns/ops/sa/debug, "ops-*", "*-debug", "*"]
        requestPrincipals: [https://idp.shop.test/alice, "https://idp.shop.test/*", "*/bob", "*"]
        notRequestPrincipals: [https://idp.evil.test/mallory, "evil-*", "*-mallory", "*"]
        namespaces: [shop, "shop-*", "*-staging", "*"]
        notNamespaces: [sandbox, "sandbox-*", "*-scratch", "*"]
        ipBlocks: [198.51.100.7, 203.0.113.0/24]
        notIpBlocks: [198.51.100.8, 192.0.2.0/28]
        remoteIpBlocks: [100.64.1.1, 100.64.0.0/10]
        notRemoteIpBlocks: [100.64.9.9, 172.16.0.0/12]
`,
    },
    {
      name: 'source trustDomains and notTrustDomains: exact, prefix*, *suffix and *; serviceAccounts with and without namespace next to principals and namespaces in sibling sources',
      yaml: `spec:
  rules:
  - from:
    - source: {trustDomains: [shop.test, "shop-*", "*-partner.test", "*"], notTrustDomains: [evil.test, "evil-*", "*-legacy", "*"]}
    - source: {serviceAccounts: [cart, payments/ledger]}
    - source: {principals: [cluster.local/ns/payments/sa/ledger]}
    - source: {namespaces: [payments]}
`,
    },
    {
      name: 'operation: methods, hosts, ports and paths (wildcards, {*} and {**} templates) and their negations',
      yaml: `spec:
  rules:
  - to:
    - operation:
        methods: [GET, "PU*", "*CH", "*"]
        notMethods: [DELETE, "TRA*", "*NECT", "*"]
        hosts: [store.shop.test, "*.shop.test", "store.*", "*"]
        notHosts: [admin.shop.test, "*.internal.test", "admin.*", "*"]
        ports: ["8080", "8443"]
        notPorts: ["15000", "15090"]
        paths: [/cart, "/cart/*", "*/items", "*", "/orders/{*}/lines", "/{**}/receipt"]
        notPaths: [/admin, "/admin/*", "*/debug", "*", "/users/{*}/secrets", "/{**}/internal"]
`,
    },
    {
      name: 'when: every condition key Istio knows, with values and notValues',
      yaml: `spec:
  rules:
  - when:
    - {key: "request.headers[x-shop-tier]", values: [gold, "gold-*", "*-plus", "*"], notValues: [banned, "trial-*", "*-expired", "*"]}
    - {key: source.ip, values: [198.51.100.7, 203.0.113.0/24], notValues: [198.51.100.8, 192.0.2.0/28]}
    - {key: remote.ip, values: [100.64.1.1, 100.64.0.0/10], notValues: [100.64.9.9, 172.16.0.0/12]}
    - {key: source.namespace, values: [shop, "shop-*", "*-staging", "*"], notValues: [sandbox, "sb-*", "*-tmp", "*"]}
    - {key: source.principal, values: [cluster.local/ns/shop/sa/cart, "cluster.local/*", "*/sa/cart", "*"], notValues: [x, "x-*", "*-x", "*"]}
    - {key: request.auth.principal, values: [https://idp.shop.test/alice, "https://idp.shop.test/*", "*/bob", "*"], notValues: [m, "m-*", "*-m", "*"]}
    - {key: request.auth.audiences, values: [shop-web, "shop-*", "*-app", "*"], notValues: [legacy, "old-*", "*-v0", "*"]}
    - {key: request.auth.presenter, values: [web-client, "web-*", "*-client", "*"], notValues: [cli, "cli-*", "*-cli", "*"]}
    - {key: "request.auth.claims[groups]", values: [buyers, "buy-*", "*-ers", "*"], notValues: [bots, "bot-*", "*-bots", "*"]}
    - {key: "request.auth.claims[org][team]", values: [checkout, "check-*", "*-out", "*"], notValues: [ops, "ops-*", "*-ops", "*"]}
    - {key: destination.ip, values: [10.8.0.5, 10.8.0.0/16], notValues: [10.9.0.5, 10.9.0.0/16]}
    - {key: destination.port, values: ["8080", "8443"], notValues: ["15000", "15090"]}
    - {key: connection.sni, values: [store.shop.test, "*.shop.test", "store.*", "*"], notValues: [admin.shop.test, "*.internal.test", "admin.*", "*"]}
    - {key: source.trustDomain, values: [shop.test, "shop-*", "*-partner.test", "*"], notValues: [evil.test, "evil-*", "*-legacy", "*"]}
    - {key: "experimental.envoy.filters.http.jwt_authn[payload]", values: [ok, "ok-*", "*-ok", "*"], notValues: [no, "no-*", "*-no", "*"]}
`,
    },
    {
      name: 'serviceAccounts together with namespaces in one source',
      yaml: `spec:
  rules:
  - from:
    - source: {namespaces: [payments], serviceAccounts: [payments/ledger]}
`,
      refused: 'from[0].source: cannot set serviceAccounts with namespaces or principals',
    },
    {
      name: 'serviceAccounts together with principals in one source',
      yaml: `spec:
  rules:
  - from:
    - source: {principals: [cluster.local/ns/payments/sa/ledger], serviceAccounts: [ledger]}
`,
      refused: 'from[0].source: cannot set serviceAccounts with namespaces or principals',
    },
    {
      name: 'a serviceAccount of three segments',
      yaml: `spec:
  rules:
  - from:
    - source: {serviceAccounts: [payments/ledger/extra]}
`,
      refused: "source.serviceAccounts[0]: expected format 'serviceAccount' or 'namespace/serviceAccount'",
    },
    {
      name: 'a trust domain with a wildcard in the middle',
      yaml: `spec:
  rules:
  - from:
    - source: {trustDomains: ["shop*test"]}
`,
      refused: 'source.trustDomains[0]: wildcard is only allowed at the start or end',
    },
  ],

  DestinationRule: [
    {
      name: 'warmup with a duration only',
      yaml: `spec:
  host: inventory.shop.svc.cluster.local
  trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST, warmup: {duration: 90s}}}
`,
    },
    {
      name: 'warmup with a duration and minimumPercent',
      yaml: `spec:
  host: inventory.shop.svc.cluster.local
  trafficPolicy: {loadBalancer: {warmup: {duration: 2m, minimumPercent: 20}}}
`,
    },
    {
      name: 'warmup with a duration, minimumPercent and aggression',
      yaml: `spec:
  host: inventory.shop.svc.cluster.local
  trafficPolicy: {loadBalancer: {warmup: {duration: 45s, minimumPercent: 0, aggression: 2.5}}}
`,
    },
    {
      name: 'http2KeepAlive with an interval and a timeout',
      yaml: `spec:
  host: inventory.shop.svc.cluster.local
  trafficPolicy: {connectionPool: {http: {http2KeepAlive: {interval: 30s, timeout: 3s}}}}
`,
    },
    {
      name: 'warmup minimumPercent above 100',
      yaml: `spec:
  host: inventory.shop.svc.cluster.local
  trafficPolicy: {loadBalancer: {warmup: {duration: 60s, minimumPercent: 101}}}
`,
      refused: 'warmup.minimumPercent: minimumPercent value should be in range 0..100',
    },
    {
      name: 'warmup without a duration',
      yaml: `spec:
  host: inventory.shop.svc.cluster.local
  trafficPolicy: {loadBalancer: {warmup: {minimumPercent: 30}}}
`,
      refused: 'warmup.duration: duration is required',
    },
    {
      name: 'warmup aggression below 1',
      yaml: `spec:
  host: inventory.shop.svc.cluster.local
  trafficPolicy: {loadBalancer: {warmup: {duration: 60s, aggression: 0.5}}}
`,
      refused: 'warmup.aggression: aggression should be greater than or equal to 1',
    },
    {
      name: 'http2KeepAlive without a timeout',
      yaml: `spec:
  host: inventory.shop.svc.cluster.local
  trafficPolicy: {connectionPool: {http: {http2KeepAlive: {interval: 30s}}}}
`,
      refused: 'http2KeepAlive.timeout: http2 keepalive timeout is required',
    },
  ],

  PeerAuthentication: [
    {
      name: 'selector, mtls mode and a port-level mode',
      yaml: `spec:
  selector: {matchLabels: {app: ledger}}
  mtls: {mode: STRICT}
  portLevelMtls:
    "9090": {mode: DISABLE}
    "9443": {mode: PERMISSIVE}
`,
    },
    {
      name: 'an empty selector',
      yaml: `spec:
  selector: {}
  mtls: {mode: PERMISSIVE}
`,
    },
    {
      name: 'an unknown mtls mode',
      yaml: `spec:
  mtls: {mode: OPTIONAL}
`,
      refused: 'spec.mtls.mode: invalid value "OPTIONAL"',
    },
    {
      name: 'a portLevelMtls key that is not a number',
      yaml: `spec:
  selector: {matchLabels: {app: ledger}}
  portLevelMtls:
    metrics: {mode: DISABLE}
`,
      refused: 'spec.portLevelMtls[metrics]: map key "metrics" must be an unsigned integer',
    },
    {
      name: 'portLevelMtls without a selector',
      yaml: `spec:
  mtls: {mode: STRICT}
  portLevelMtls:
    "9090": {mode: DISABLE}
`,
      refused: 'spec.portLevelMtls: mesh/namespace peer authentication cannot have port level mTLS',
    },
    {
      name: 'an empty portLevelMtls',
      yaml: `spec:
  selector: {matchLabels: {app: ledger}}
  portLevelMtls: {}
`,
      refused: 'spec.portLevelMtls: port level mTLS, if defined, must have at least one element',
    },
    {
      name: 'port 0 in portLevelMtls',
      yaml: `spec:
  selector: {matchLabels: {app: ledger}}
  portLevelMtls:
    "0": {mode: STRICT}
`,
      refused: 'spec.portLevelMtls[0]: port must be in range 1..65535',
    },
    {
      name: 'a port above 65535 in portLevelMtls',
      yaml: `spec:
  selector: {matchLabels: {app: ledger}}
  portLevelMtls:
    "70000": {mode: STRICT}
`,
      refused: 'spec.portLevelMtls[70000]: port must be in range 1..65535',
    },
  ],

  ServiceEntry: [
    {
      name: 'every field, addresses as a flow sequence holding an IPv6 address',
      yaml: `spec:
  hosts: [api.partner.test]
  addresses: [192.0.2.10, 2001:db8:1::]
  ports:
  - {number: 8080, targetPort: 18080, name: http-api, protocol: HTTP}
  location: MESH_EXTERNAL
  resolution: DNS
  workloadSelector: {labels: {app: partner-proxy}}
  exportTo: [., billing]
  subjectAltNames: [spiffe://partner.test/api]
`,
    },
    {
      name: 'a DNS endpoint with resolution DNS',
      yaml: `spec:
  hosts: [api.partner.test]
  ports:
  - {number: 443, targetPort: 8443, name: https, protocol: HTTPS}
  resolution: DNS
  endpoints:
  - address: eu.api.partner.test
`,
    },
    {
      name: 'an empty workloadSelector',
      yaml: `spec:
  hosts: [api.partner.test]
  workloadSelector: {}
`,
    },
    {
      name: 'a host with a leading wildcard and no dot',
      yaml: `spec:
  hosts: ["*partner"]
`,
    },
    {
      name: 'a CIDR address with the default resolution',
      yaml: `spec:
  hosts: [api.partner.test]
  addresses: [203.0.113.0/24]
`,
    },
    {
      name: 'no spec',
      yaml: '',
      refused: 'spec.hosts: service entry must have at least one host',
    },
    {
      name: 'no hosts',
      yaml: `spec:
  resolution: STATIC
`,
      refused: 'spec.hosts: service entry must have at least one host',
    },
    {
      name: 'a wildcard label value in workloadSelector',
      yaml: `spec:
  hosts: [api.partner.test]
  workloadSelector: {labels: {app: "*"}}
`,
      refused: 'spec.workloadSelector.labels[app]: wildcard is not supported in selector',
    },
    {
      name: 'both workloadSelector and endpoints',
      yaml: `spec:
  hosts: [api.partner.test]
  resolution: STATIC
  workloadSelector: {labels: {app: partner-proxy}}
  endpoints:
  - address: 192.0.2.20
`,
      refused: 'spec: only one of WorkloadSelector or Endpoints is allowed',
    },
    {
      name: 'the host "*"',
      yaml: `spec:
  hosts: ["*"]
`,
      refused: 'spec.hosts[0]: invalid host *',
    },
    {
      name: 'a CIDR address with resolution DNS',
      yaml: `spec:
  hosts: [api.partner.test]
  addresses: [198.51.100.0/25]
  resolution: DNS
`,
      refused: 'spec.addresses: CIDR addresses are allowed only for NONE/STATIC resolution types',
    },
    {
      name: 'two ports with the same name',
      yaml: `spec:
  hosts: [api.partner.test]
  ports:
  - {number: 8080, name: web}
  - {number: 8081, name: web}
`,
      refused: 'spec.ports[1].name: service entry port name "web" already defined',
    },
    {
      name: 'two ports with the same number',
      yaml: `spec:
  hosts: [api.partner.test]
  ports:
  - {number: 9000, name: grpc-a}
  - {number: 9000, name: grpc-b}
`,
      refused: 'spec.ports[1].number: service entry port 9000 already defined',
    },
    {
      name: 'a port number above 65535',
      yaml: `spec:
  hosts: [api.partner.test]
  ports:
  - {number: 65536, name: web}
`,
      refused: 'spec.ports[0].number: port number 65536 must be in the range 1..65535',
    },
    {
      name: 'a targetPort above 65535',
      yaml: `spec:
  hosts: [api.partner.test]
  ports:
  - {number: 8080, targetPort: 123456, name: web}
`,
      refused: 'spec.ports[0].targetPort: port number 123456 must be in the range 1..65535',
    },
    {
      name: 'endpoints with resolution NONE',
      yaml: `spec:
  hosts: [api.partner.test]
  resolution: NONE
  endpoints:
  - address: 192.0.2.30
`,
      refused: 'spec.endpoints: no endpoints should be provided for resolution type none',
    },
    {
      name: 'two endpoints with resolution DNS_ROUND_ROBIN',
      yaml: `spec:
  hosts: [api.partner.test]
  resolution: DNS_ROUND_ROBIN
  endpoints:
  - address: eu.api.partner.test
  - address: us.api.partner.test
`,
      refused: 'spec.endpoints: there must only be 0 or 1 endpoint for resolution mode DNS_ROUND_ROBIN',
    },
  ],

  WorkloadEntry: [
    {
      name: 'every field, an IP address',
      yaml: `spec:
  address: 10.40.0.12
  ports: {grpc: 9000}
  labels: {app: ledger, version: v3}
  network: dc-west
  locality: europe/west-2/rack-7
  weight: 10
  serviceAccount: ledger
`,
    },
    {
      name: 'no address but a network',
      yaml: `spec:
  network: dc-east
  labels: {app: ledger}
`,
    },
    {
      name: 'an abstract unix socket',
      yaml: `spec:
  address: unix://@ledger-socket
`,
    },
    {
      name: 'an absolute unix socket path',
      yaml: `spec:
  address: unix:///run/ledger/api.sock
`,
    },
    {
      name: 'a host name',
      yaml: `spec:
  address: ledger.vm.shop.test
`,
    },
    {
      name: 'no spec',
      yaml: '',
      refused: 'spec.address: address is required',
    },
    {
      name: 'neither address nor network',
      yaml: `spec:
  labels: {app: ledger}
`,
      refused: 'spec.address: address is required',
    },
    {
      name: 'a unix socket path that is a directory',
      yaml: `spec:
  address: unix:///run/ledger/
`,
      refused: 'spec.address: /run/ledger/ is not an absolute path to a file',
    },
    {
      name: 'a relative unix socket path',
      yaml: `spec:
  address: unix://run/ledger.sock
`,
      refused: 'spec.address: run/ledger.sock is not an absolute path to a file',
    },
    {
      name: 'a unix socket with ports',
      yaml: `spec:
  address: unix:///run/ledger.sock
  ports: {grpc: 9000}
`,
      refused: 'spec.ports: unix endpoint unix:///run/ledger.sock must not include ports',
    },
    {
      name: 'a port above 65535',
      yaml: `spec:
  address: 10.40.0.12
  ports: {grpc: 70000}
`,
      refused: 'spec.ports[grpc]: port number 70000 must be in the range 1..65535',
    },
    {
      name: 'a port name that is not a valid name',
      yaml: `spec:
  address: 10.40.0.12
  ports: {"grpc!": 9000}
`,
      refused: 'spec.ports[grpc!]: invalid port name',
    },
  ],
};

describe('agreement with Istio on valid and invalid documents', () => {
  for (const [kind, cases] of Object.entries(CASES) as [Kind, readonly Case[]][]) {
    describe(kind, () => {
      cases.forEach((c, i) => {
        const text = doc(kind, `case-${i}`, c.yaml);
        if (c.refused === undefined) {
          it(`accepts ${c.name}`, () => {
            const r = parseConfigDocuments(text, { source: `${kind}.yaml` });
            expect(r.ok ? 'accepted' : r.error.message).toBe('accepted');
          });
        } else {
          const fragment = c.refused;
          it(`refuses ${c.name}`, () => {
            const r = parseConfigDocuments(text, { source: `${kind}.yaml` });
            expect(r.ok, 'accepted a document Istio refuses').toBe(false);
            if (!r.ok) expect(r.error.message).toContain(fragment);
          });
        }
      });
    });
  }

  it('covers every kind with valid and invalid cases', () => {
    for (const cases of Object.values(CASES)) {
      expect(cases.some((c) => c.refused === undefined)).toBe(true);
      expect(cases.some((c) => c.refused !== undefined)).toBe(true);
    }
  });
});

describe('beyond accept or refuse: values read and errors reported as Istio does', () => {
  const one = (text: string) => {
    const r = parseConfigDocuments(text);
    return r.ok
      ? { ok: true as const, config: r.configs[0]! }
      : { ok: false as const, message: r.error.message };
  };
  const policy = (source: string) => `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: ns}
spec:
  rules:
  - from:
    - source: ${source}
`;

  it("reads a flow sequence item such as 2001:db8:: as Go's YAML reader does (one string)", () => {
    const r = one(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: se, namespace: ns}
spec:
  hosts: [example.com]
  addresses: [1.2.3.4, 2001:db8::, "::1", 10.0.0.0/8]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: NONE
`);
    expect(r.ok && r.config.kind === 'ServiceEntry' && r.config.spec.addresses).toEqual([
      '1.2.3.4',
      '2001:db8::',
      '::1',
      '10.0.0.0/8',
    ]);
    // A real one-pair mapping in a flow sequence (a space after the colon) stays a mapping.
    expect(one(policy('{principals: [a: b]}'))).toMatchObject({ ok: false });
  });

  it('AuthorizationPolicy: serviceAccounts as Istio checks them; trustDomains and notTrustDomains', () => {
    expect(one(policy('{serviceAccounts: [sa, ns/sa]}')).ok).toBe(true);
    expect(one(policy('{serviceAccounts: [a/b/c]}'))).toEqual({
      ok: false,
      message:
        "AuthorizationPolicy ns/p: spec.rules[0].from[0].source.serviceAccounts[0]: expected format 'serviceAccount' or 'namespace/serviceAccount', found \"a/b/c\" in serviceAccounts (at line 7, document 0)",
    });
    expect(one(policy('{serviceAccounts: ["ns/*"]}'))).toMatchObject({ ok: false });
    expect(one(policy('{trustDomains: [td, "*.td", "td-*"], notTrustDomains: ["*"]}')).ok).toBe(true);
    expect(one(policy('{trustDomains: ["a*b"]}'))).toMatchObject({
      ok: false,
      message: expect.stringContaining(
        'wildcard is only allowed at the start or end, found in trustDomains: "a*b"',
      ),
    });
    expect(one(policy('{trustDomains: ["td/x"]}'))).toMatchObject({
      ok: false,
      message: expect.stringContaining("trust domain must not contain '/'"),
    });
  });

  it('DestinationRule: connectionPool.http.http2KeepAlive needs both interval and timeout', () => {
    const dr = (keepAlive: string) => `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: d, namespace: ns}
spec:
  host: h
  trafficPolicy: {connectionPool: {http: {http2KeepAlive: ${keepAlive}}}}
`;
    expect(one(dr('{interval: 15s, timeout: 5s}')).ok).toBe(true);
    expect(one(dr('{interval: 15s}'))).toMatchObject({
      ok: false,
      message: expect.stringContaining('http2KeepAlive.timeout: http2 keepalive timeout is required'),
    });
  });
});
