/**
 * Agreement with Istio on valid and invalid documents of the networking kinds (DestinationRule,
 * ServiceEntry, WorkloadEntry); how the cases are run: istio-crds-cases.ts.
 */
import { describe, expect, it } from 'vitest';
import { type Case, describeAgreementWithIstio, one, policy } from './istio-crds-cases.js';

const CASES: Record<'DestinationRule' | 'ServiceEntry' | 'WorkloadEntry', readonly Case[]> = {
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

describeAgreementWithIstio(CASES);

describe('beyond accept or refuse: values read and errors reported as Istio does', () => {
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
