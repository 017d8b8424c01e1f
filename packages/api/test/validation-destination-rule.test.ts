/**
 * DestinationRule validation: host, subsets, traffic policy (load balancer, connection pool, outlier
 * detection, locality, per-port settings, TLS, tunnel) and exportTo with a workload selector.
 */
import { describe } from 'vitest';
import { drWithPolicy } from './helpers.js';
import { run } from './validation-cases.js';

const DR = 'DestinationRule default/t: ';

describe('DestinationRule', () => {
  run('DestinationRule', [
    {
      name: 'host required and valid',
      spec: { host: 'bad host' },
      errors: [`${DR}spec.host: domain name "bad host" invalid (label "bad host" invalid)`],
    },
    {
      name: 'subset name empty',
      spec: { host: 'reviews', subsets: [{ labels: { version: 'v1' } }] },
      errors: [`${DR}spec.subsets[0].name: subset name cannot be empty`],
    },
    {
      name: 'subset name DNS-1123 label',
      spec: { host: 'reviews', subsets: [{ name: 'v1.0', labels: { version: 'v1' } }] },
      errors: [`${DR}spec.subsets[0].name: subset name is invalid: v1.0`],
    },
    {
      name: 'duplicate subset names',
      spec: { host: 'reviews', subsets: [{ name: 'v1' }, { name: 'v1' }] },
      errors: [`${DR}spec.subsets[1].name: duplicate subset names: v1`],
    },
    {
      name: 'subset labels syntax',
      spec: { host: 'reviews', subsets: [{ name: 'v1', labels: { version: 'v 1' } }] },
      errors: [`${DR}spec.subsets[0].labels[version]: invalid label value: "v 1"`],
    },
    {
      name: 'a mistyped policy field does not also report an empty traffic policy',
      spec: drWithPolicy({ loadBalancer: 'ROUND_ROBIN' }),
      errors: [`${DR}spec.trafficPolicy.loadBalancer: expected object, got string`],
    },
    {
      name: 'empty traffic policy',
      spec: drWithPolicy({}),
      errors: [`${DR}spec.trafficPolicy: traffic policy must have at least one field`],
    },
    {
      name: 'loadBalancer: simple and consistentHash are a oneof',
      spec: drWithPolicy({ loadBalancer: { simple: 'ROUND_ROBIN', consistentHash: { useSourceIp: true } } }),
      errors: [
        `${DR}spec.trafficPolicy.loadBalancer: only one of simple, consistentHash may be set, got simple and consistentHash`,
      ],
    },
    {
      name: 'consistentHash: one hash key only',
      spec: drWithPolicy({
        loadBalancer: { consistentHash: { httpHeaderName: 'x-user', useSourceIp: true } },
      }),
      errors: [
        `${DR}spec.trafficPolicy.loadBalancer.consistentHash: only one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName may be set, got httpHeaderName and useSourceIp`,
      ],
    },
    {
      name: 'consistentHash: a hash key is required',
      spec: drWithPolicy({ loadBalancer: { consistentHash: { ringHash: { minimumRingSize: 1024 } } } }),
      errors: [
        `${DR}spec.trafficPolicy.loadBalancer.consistentHash: consistent hash must set one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName`,
      ],
    },
    {
      name: 'consistentHash: cookie name required',
      spec: drWithPolicy({ loadBalancer: { consistentHash: { httpCookie: { ttl: '10s' } } } }),
      errors: [
        `${DR}spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name: name required for HttpCookie`,
      ],
    },
    {
      name: 'consistentHash: maglev table size prime',
      spec: drWithPolicy({
        loadBalancer: { consistentHash: { useSourceIp: true, maglev: { tableSize: 1000 } } },
      }),
      errors: [
        `${DR}spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize: tableSize must be a prime number for maglev`,
      ],
    },
    {
      name: 'consistentHash: deprecated minimumRingSize with ringHash',
      spec: drWithPolicy({
        loadBalancer: {
          consistentHash: { useSourceIp: true, minimumRingSize: 10, ringHash: { minimumRingSize: 10 } },
        },
      }),
      errors: [
        `${DR}spec.trafficPolicy.loadBalancer.consistentHash: only one of MinimumRingSize or Maglev/Ringhash can be specified`,
      ],
    },
    {
      name: 'connectionPool: needs tcp or http',
      spec: drWithPolicy({ connectionPool: {} }),
      errors: [`${DR}spec.trafficPolicy.connectionPool: connection pool must have at least one field`],
    },
    {
      name: 'connectionPool: negative limits',
      spec: drWithPolicy({ connectionPool: { tcp: { maxConnections: -1 }, http: { http2MaxRequests: -5 } } }),
      errors: [
        `${DR}spec.trafficPolicy.connectionPool.http.http2MaxRequests: http2 max requests must be non-negative`,
        `${DR}spec.trafficPolicy.connectionPool.tcp.maxConnections: max connections must be non-negative`,
      ],
    },
    {
      name: 'connectionPool: connectTimeout at least 1ms',
      spec: drWithPolicy({ connectionPool: { tcp: { connectTimeout: '0s' } } }),
      errors: [
        `${DR}spec.trafficPolicy.connectionPool.tcp.connectTimeout: duration must be greater than 1ms`,
      ],
    },
    {
      name: 'connectionPool: UPGRADE with useClientProtocol',
      spec: drWithPolicy({
        connectionPool: { http: { h2UpgradePolicy: 'UPGRADE', useClientProtocol: true } },
      }),
      errors: [
        `${DR}spec.trafficPolicy.connectionPool.http.useClientProtocol: use client protocol must not be true when H2UpgradePolicy is UPGRADE`,
      ],
    },
    {
      name: 'outlierDetection: percent ranges',
      spec: drWithPolicy({ outlierDetection: { maxEjectionPercent: 120, minHealthPercent: -1 } }),
      errors: [
        `${DR}spec.trafficPolicy.outlierDetection.maxEjectionPercent: percentage 120 is not in range 0..100`,
        `${DR}spec.trafficPolicy.outlierDetection.minHealthPercent: percentage -1 is not in range 0..100`,
      ],
    },
    {
      name: 'outlierDetection: interval duration',
      spec: drWithPolicy({ outlierDetection: { interval: '5 minutes' } }),
      errors: [`${DR}spec.trafficPolicy.outlierDetection.interval: invalid duration "5 minutes"`],
    },
    {
      name: 'outlierDetection: local origin failures need split',
      spec: drWithPolicy({ outlierDetection: { consecutiveLocalOriginFailures: 5 } }),
      errors: [
        `${DR}spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures: outlier detection consecutive local origin failures is specified, but split external local origin errors is set to false`,
      ],
    },
    {
      name: 'outlierDetection: consecutive5xxErrors is unsigned',
      spec: drWithPolicy({ outlierDetection: { consecutive5xxErrors: -3 } }),
      errors: [
        `${DR}spec.trafficPolicy.outlierDetection.consecutive5xxErrors: integer -3 out of range 0..4294967295`,
      ],
    },
    {
      name: 'localityLbSetting: distribute weights sum to 100 per from',
      spec: drWithPolicy({
        loadBalancer: {
          localityLbSetting: {
            distribute: [{ from: 'us-west/zone1/*', to: { 'us-west/zone1/*': 80, 'us-west/zone2/*': 10 } }],
          },
        },
        outlierDetection: { consecutive5xxErrors: 5 },
      }),
      errors: [
        `${DR}spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to: locality weights must sum to 100, got 90`,
      ],
    },
    {
      name: 'localityLbSetting: weight range',
      spec: drWithPolicy({
        loadBalancer: {
          localityLbSetting: {
            distribute: [{ from: 'us-west/*', to: { 'us-west/*': 0, 'us-east/*': 100 } }],
          },
        },
      }),
      errors: [
        `${DR}spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to[us-west/*]: locality weight must be in range [1, 100]`,
      ],
    },
    {
      name: 'localityLbSetting: wildcard only as last segment',
      spec: drWithPolicy({
        loadBalancer: { localityLbSetting: { distribute: [{ from: '*/zone1', to: { 'us-west/*': 100 } }] } },
      }),
      errors: [
        `${DR}spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].from: locality */zone1 wildcard '*' must be the whole last segment`,
      ],
    },
    {
      name: 'localityLbSetting: distribute and failover exclusive',
      spec: drWithPolicy({
        loadBalancer: {
          localityLbSetting: {
            distribute: [{ from: 'us-west/*', to: { 'us-west/*': 100 } }],
            failover: [{ from: 'us-west', to: 'us-east' }],
          },
        },
        outlierDetection: { consecutive5xxErrors: 5 },
      }),
      errors: [
        `${DR}spec.trafficPolicy.loadBalancer.localityLbSetting: can not simultaneously specify 'distribute' and 'failover'`,
      ],
    },
    {
      name: 'localityLbSetting: failover regions differ',
      spec: drWithPolicy({
        loadBalancer: { localityLbSetting: { failover: [{ from: 'us-west', to: 'us-west' }] } },
        outlierDetection: { consecutive5xxErrors: 5 },
      }),
      errors: [
        `${DR}spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0]: locality lb failover settings must specify different regions`,
      ],
    },
    {
      name: 'localityLbSetting: failover regions only',
      spec: drWithPolicy({
        loadBalancer: { localityLbSetting: { failover: [{ from: 'us-west/zone1', to: 'us-east' }] } },
        outlierDetection: { consecutive5xxErrors: 5 },
      }),
      errors: [
        `${DR}spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0]: locality lb failover only specify region`,
      ],
    },
    {
      name: 'localityLbSetting: failover needs outlier detection',
      spec: drWithPolicy({
        loadBalancer: { localityLbSetting: { failoverPriority: ['topology.kubernetes.io/region'] } },
      }),
      errors: [
        `${DR}spec.trafficPolicy.loadBalancer.localityLbSetting: outlier detection policy must be provided for failover`,
      ],
    },
    {
      name: 'localityLbSetting: failoverPriority labels unique',
      spec: drWithPolicy({
        loadBalancer: {
          localityLbSetting: { failoverPriority: ['topology.istio.io/network', 'topology.istio.io/network'] },
        },
        outlierDetection: { consecutive5xxErrors: 5 },
      }),
      errors: [
        `${DR}spec.trafficPolicy.loadBalancer.localityLbSetting.failoverPriority[1]: duplicate failoverPriority label topology.istio.io/network`,
      ],
    },
    {
      name: 'portLevelSettings: port required',
      spec: drWithPolicy({ portLevelSettings: [{ loadBalancer: { simple: 'RANDOM' } }] }),
      errors: [`${DR}spec.trafficPolicy.portLevelSettings[0].port: portTrafficPolicy must have valid port`],
    },
    {
      name: 'portLevelSettings: needs a policy',
      spec: drWithPolicy({ portLevelSettings: [{ port: { number: 80 } }] }),
      errors: [
        `${DR}spec.trafficPolicy.portLevelSettings[0]: port traffic policy must have at least one field`,
      ],
    },
    {
      name: 'tls: credentialName excludes file certificates',
      spec: drWithPolicy({
        tls: { mode: 'SIMPLE', credentialName: 'cacert', caCertificates: '/etc/ca.pem' },
      }),
      errors: [
        `${DR}spec.trafficPolicy.tls: cannot specify client certificates or CA certificate or CA CRL If credentialName is set`,
      ],
    },
    {
      name: 'tls: MUTUAL needs a client certificate and key',
      spec: drWithPolicy({ tls: { mode: 'MUTUAL', caCertificates: '/etc/ca.pem' } }),
      errors: [
        `${DR}spec.trafficPolicy.tls: client certificate required for mutual tls`,
        `${DR}spec.trafficPolicy.tls: private key required for mutual tls`,
      ],
    },
    {
      name: 'tls: subjectAltNames with insecureSkipVerify',
      spec: drWithPolicy({ tls: { mode: 'SIMPLE', insecureSkipVerify: true, subjectAltNames: ['a'] } }),
      errors: [
        `${DR}spec.trafficPolicy.tls.subjectAltNames: cannot specify SubjectAltNames when InsecureSkipVerify is set`,
      ],
    },
    {
      name: 'tunnel: protocol and target',
      spec: drWithPolicy({ tunnel: { protocol: 'GET', targetHost: 'proxy.example.com', targetPort: 0 } }),
      errors: [
        `${DR}spec.trafficPolicy.tunnel.protocol: tunnel protocol must be "CONNECT" or "POST"`,
        `${DR}spec.trafficPolicy.tunnel.targetPort: tunnel target port is invalid: port number 0 must be in the range 1..65535`,
      ],
    },
    {
      name: 'workloadSelector DR cannot export beyond its namespace',
      spec: { host: 'reviews', workloadSelector: { matchLabels: { app: 'x' } }, exportTo: ['*'] },
      errors: [
        `${DR}spec.exportTo: destination rule with workload selector cannot have exportTo beyond current namespace`,
      ],
    },
  ]);
});
