// Representative meshes for the golden, property and traffic tests: Istio YAML parsed and validated
// by @meridian/api, services and endpoints as the registry would produce them, proxies parsed from
// Istio node ids by @meridian/envoy.
import { parseConfigDocuments } from '@meridian/api';
import { type JsonValue, type ProxyInfo, parseNode } from '@meridian/envoy';
import {
  type ConfigSnapshot,
  createConfigSnapshot,
  createRegistrySnapshot,
  type Endpoint,
  type RegistrySnapshot,
  type Service,
} from '../src/index.js';

/** Parses Istio YAML with @meridian/api; throws with the validation message on invalid input. */
export function configFromYaml(yaml: string, revision = 1): ConfigSnapshot {
  const r = parseConfigDocuments(yaml, { source: 'fixture.yaml' });
  if (!r.ok) throw new Error(r.error.message);
  return createConfigSnapshot(revision, r.configs);
}

/** A Kubernetes-style service `<name>.<ns>.svc.cluster.local`. */
export function service(
  name: string,
  namespace: string,
  ports: { name: string; port: number; protocol: string; targetPort?: number }[],
  extra: Partial<Service> = {},
): Service {
  return {
    hostname: `${name}.${namespace}.svc.cluster.local`,
    namespace,
    ports,
    labels: { app: name },
    exportTo: [],
    resolution: 'EDS',
    ...extra,
  };
}

/** An endpoint with a locality `region/zone/subzone`. */
export function endpoint(
  address: string,
  ports: Record<string, number>,
  labels: Record<string, string>,
  locality = 'us-east1/us-east1-b/',
  extra: Partial<Endpoint> = {},
): Endpoint {
  const [region = '', zone = '', subZone = ''] = locality.split('/');
  return {
    address,
    ports,
    labels,
    locality: { region, zone, subZone },
    network: 'net1',
    clusterId: 'cluster1',
    health: 'HEALTHY',
    serviceAccount: `spiffe://cluster.local/ns/default/sa/${labels.app ?? 'default'}`,
    weight: 1,
    ...extra,
  };
}

/** A sidecar (or, with `grpc`, proxyless) proxy parsed from an Istio node. */
export function proxy(
  options: {
    ip?: string;
    pod?: string;
    namespace?: string;
    labels?: Record<string, string>;
    locality?: { region: string; zone: string; sub_zone?: string };
    grpc?: boolean;
  } = {},
): ProxyInfo {
  const ip = options.ip ?? '10.1.0.1';
  const ns = options.namespace ?? 'default';
  const pod = options.pod ?? 'productpage-v1-6b746f74dc-9stvs';
  const metadata: Record<string, JsonValue> = {
    NAMESPACE: ns,
    CLUSTER_ID: 'cluster1',
    NETWORK: 'net1',
    LABELS: options.labels ?? { app: 'productpage', version: 'v1' },
    INSTANCE_IPS: ip,
  };
  if (options.grpc) metadata.GENERATOR = 'grpc';
  const locality = options.locality ?? { region: 'us-east1', zone: 'us-east1-b' };
  return parseNode({
    id: `sidecar~${ip}~${pod}.${ns}~${ns}.svc.cluster.local`,
    metadata,
    locality: locality as unknown as JsonValue,
  });
}

const HTTP = (port = 9080) => [{ name: 'http', port, protocol: 'HTTP' }];

/** Bookinfo: productpage -> reviews v1/v2/v3 -> ratings; details; a TCP mongodb. */
export function bookinfoRegistry(revision = 1): RegistrySnapshot {
  const svc = [
    service('productpage', 'default', HTTP()),
    service('reviews', 'default', HTTP(), { addresses: ['10.96.0.12'] }),
    service('ratings', 'default', HTTP()),
    service('details', 'default', HTTP()),
    service('mongodb', 'default', [{ name: 'tcp', port: 27017, protocol: 'TCP' }], {
      addresses: ['10.96.0.20'],
    }),
  ];
  const eps: Record<string, Endpoint[]> = {
    'productpage.default.svc.cluster.local': [
      endpoint('10.1.0.1', { http: 9080 }, { app: 'productpage', version: 'v1' }),
    ],
    'reviews.default.svc.cluster.local': [
      endpoint('10.1.1.1', { http: 9080 }, { app: 'reviews', version: 'v1' }),
      endpoint('10.1.1.2', { http: 9080 }, { app: 'reviews', version: 'v2' }, 'us-east1/us-east1-c/'),
      endpoint('10.1.1.3', { http: 9080 }, { app: 'reviews', version: 'v3' }, 'europe-west1/europe-west1-b/'),
    ],
    'ratings.default.svc.cluster.local': [
      endpoint('10.1.2.1', { http: 9080 }, { app: 'ratings', version: 'v1' }),
      endpoint('10.1.2.2', { http: 9080 }, { app: 'ratings', version: 'v1' }, 'us-east1/us-east1-b/', {
        health: 'DRAINING',
      }),
    ],
    'details.default.svc.cluster.local': [
      endpoint('10.1.3.1', { http: 9080 }, { app: 'details', version: 'v1' }),
    ],
    'mongodb.default.svc.cluster.local': [
      endpoint('10.1.4.1', { tcp: 27017 }, { app: 'mongodb', version: 'v1' }),
    ],
  };
  return createRegistrySnapshot(revision, svc, eps);
}

const REVIEWS_DR = `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews, namespace: default }
spec:
  host: reviews
  subsets:
  - name: v1
    labels: { version: v1 }
  - name: v2
    labels: { version: v2 }
  - name: v3
    labels: { version: v3 }
`;

/** One golden scenario: a name, config, registry and proxy. */
export interface Scenario {
  readonly name: string;
  readonly config: ConfigSnapshot;
  readonly registry: RegistrySnapshot;
  readonly proxy: ProxyInfo;
}

/** The golden scenarios (see test/testdata/golden/<name>.json). */
export function scenarios(): Scenario[] {
  const registry = bookinfoRegistry();
  return [
    { name: 'bookinfo', config: configFromYaml(REVIEWS_DR), registry, proxy: proxy() },
    {
      name: 'canary-90-10',
      config: configFromYaml(`${REVIEWS_DR}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews, namespace: default }
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: { host: reviews, subset: v1 }
      weight: 90
    - destination: { host: reviews, subset: v2 }
      weight: 10
`),
      registry,
      proxy: proxy(),
    },
    {
      name: 'header-ab',
      config: configFromYaml(`${REVIEWS_DR}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews, namespace: default }
spec:
  hosts: [reviews]
  http:
  - name: jason
    match:
    - headers:
        end-user: { exact: jason }
      uri: { prefix: /reviews }
    - queryParams:
        beta: { exact: "true" }
      method: { exact: GET }
      authority: { regex: "reviews.*" }
    - withoutHeaders:
        x-legacy: {}
      uri: { regex: "/v[0-9]+/reviews" }
      ignoreUriCase: true
    route:
    - destination: { host: reviews, subset: v2 }
  - route:
    - destination: { host: reviews, subset: v1 }
`),
      registry,
      proxy: proxy(),
    },
    {
      name: 'retries-timeouts',
      config: configFromYaml(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ratings, namespace: default }
spec:
  hosts: [ratings]
  http:
  - timeout: 2.5s
    retries:
      attempts: 3
      perTryTimeout: 500ms
      retryOn: gateway-error,connect-failure,503
      retryRemoteLocalities: true
    route:
    - destination: { host: ratings }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: details, namespace: default }
spec:
  hosts: [details]
  http:
  - match:
    - uri: { exact: /old }
    redirect: { uri: /new, authority: details.example.com, redirectCode: 308 }
  - match:
    - uri: { prefix: /static }
    directResponse: { status: 200, body: { string: "ok" } }
  - match:
    - uri: { prefix: /api/v1 }
    rewrite: { uri: /v1, authority: details-internal }
    corsPolicy:
      allowOrigins: [{ exact: "https://example.com" }, { regex: "https://.*\\\\.example\\\\.org" }]
      allowMethods: [GET, POST]
      allowHeaders: [x-user]
      exposeHeaders: [x-trace]
      maxAge: 24h
      allowCredentials: false
    mirror: { host: details, subset: canary }
    mirrorPercentage: { value: 25 }
    headers:
      request:
        set: { x-route: api }
        add: { x-trace: "1" }
        remove: [x-debug]
      response:
        remove: [server]
    route:
    - destination: { host: details }
      headers:
        response:
          set: { x-backend: details }
  - retries: { attempts: 0 }
    route:
    - destination: { host: details }
`),
      registry,
      proxy: proxy(),
    },
    {
      name: 'fault-injection',
      config: configFromYaml(`${REVIEWS_DR}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ratings, namespace: default }
spec:
  hosts: [ratings]
  http:
  - match:
    - headers: { end-user: { exact: jason } }
    fault:
      delay:
        fixedDelay: 7s
        percentage: { value: 100 }
    route:
    - destination: { host: ratings }
  - fault:
      abort:
        httpStatus: 500
        percentage: { value: 50 }
      delay:
        fixedDelay: 100ms
        percentage: { value: 0.5 }
    route:
    - destination: { host: ratings }
`),
      registry,
      proxy: proxy(),
    },
    {
      name: 'consistent-hash',
      config: configFromYaml(`
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews, namespace: default }
spec:
  host: reviews.default.svc.cluster.local
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpHeaderName: x-user
        ringHash: { minimumRingSize: 2048 }
  subsets:
  - name: v1
    labels: { version: v1 }
    trafficPolicy:
      loadBalancer:
        consistentHash:
          httpCookie: { name: session, path: /, ttl: 0s }
          maglev: { tableSize: 65537 }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ratings, namespace: default }
spec:
  host: ratings
  trafficPolicy:
    loadBalancer:
      consistentHash: { useSourceIp: true }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: details, namespace: default }
spec:
  host: details
  trafficPolicy:
    loadBalancer:
      simple: RANDOM
    portLevelSettings:
    - port: { number: 9080 }
      loadBalancer:
        consistentHash: { httpQueryParameterName: user }
`),
      registry,
      proxy: proxy(),
    },
    {
      name: 'outlier-detection',
      config: configFromYaml(`
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews, namespace: default }
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: { simple: ROUND_ROBIN, localityLbSetting: { enabled: false } }
    connectionPool:
      tcp: { maxConnections: 100, connectTimeout: 30ms, tcpKeepalive: { time: 7200s, interval: 75s, probes: 9 } }
      http: { http1MaxPendingRequests: 10, http2MaxRequests: 1000, maxRequestsPerConnection: 10, maxRetries: 3, idleTimeout: 30s }
    outlierDetection:
      consecutive5xxErrors: 7
      consecutiveGatewayErrors: 3
      interval: 5m
      baseEjectionTime: 15m
      maxEjectionPercent: 50
      minHealthPercent: 30
`),
      registry,
      proxy: proxy(),
    },
    {
      name: 'locality-failover',
      config: configFromYaml(`
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews, namespace: default }
spec:
  host: reviews
  trafficPolicy:
    outlierDetection: { consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 1m }
    loadBalancer:
      localityLbSetting:
        enabled: true
        failover:
        - from: us-east1
          to: europe-west1
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ratings, namespace: default }
spec:
  host: ratings
  trafficPolicy:
    loadBalancer:
      localityLbSetting:
        distribute:
        - from: us-east1/us-east1-b/*
          to:
            "us-east1/us-east1-b/*": 80
            "us-east1/*": 20
`),
      registry: createRegistrySnapshot(2, registry.services, {
        ...Object.fromEntries(registry.endpoints),
        'ratings.default.svc.cluster.local': [
          endpoint('10.1.2.1', { http: 9080 }, { app: 'ratings' }, 'us-east1/us-east1-b/'),
          endpoint('10.1.2.2', { http: 9080 }, { app: 'ratings' }, 'us-east1/us-east1-c/'),
          endpoint('10.1.2.3', { http: 9080 }, { app: 'ratings' }, 'us-east1/us-east1-d/'),
          endpoint('10.1.2.4', { http: 9080 }, { app: 'ratings' }, 'asia-east1/asia-east1-a/'),
        ],
        'reviews.default.svc.cluster.local': [
          endpoint('10.1.1.1', { http: 9080 }, { app: 'reviews' }, 'us-east1/us-east1-b/'),
          endpoint('10.1.1.2', { http: 9080 }, { app: 'reviews' }, 'us-east1/us-east1-c/'),
          endpoint('10.1.1.3', { http: 9080 }, { app: 'reviews' }, 'europe-west1/europe-west1-b/'),
          endpoint('10.1.1.4', { http: 9080 }, { app: 'reviews' }, 'asia-east1/asia-east1-a/'),
        ],
      }),
      proxy: proxy(),
    },
    sidecarScoping(),
    proxylessGrpc(),
  ];
}

function sidecarScoping(): Scenario {
  const services = [
    service('frontend', 'shop', HTTP(8080)),
    service('cart', 'shop', [
      { name: 'http', port: 8080, protocol: 'HTTP' },
      { name: 'grpc', port: 9090, protocol: 'GRPC' },
    ]),
    service('payments', 'billing', HTTP(8080)),
    service('ledger', 'billing', HTTP(8080), { exportTo: ['.'] }),
    service('metrics', 'istio-system', HTTP(15014)),
    service('admin', 'ops', HTTP(8080)),
    service('api', 'external', HTTP(443), {
      meshExternal: true,
      resolution: 'DNS',
      hostname: 'api.example.com',
    }),
  ];
  const eps: Record<string, Endpoint[]> = {
    'frontend.shop.svc.cluster.local': [endpoint('10.2.0.1', { http: 8080 }, { app: 'frontend' })],
    'cart.shop.svc.cluster.local': [endpoint('10.2.0.2', { http: 8080, grpc: 9090 }, { app: 'cart' })],
    'payments.billing.svc.cluster.local': [endpoint('10.3.0.1', { http: 8080 }, { app: 'payments' })],
    'ledger.billing.svc.cluster.local': [endpoint('10.3.0.2', { http: 8080 }, { app: 'ledger' })],
    'metrics.istio-system.svc.cluster.local': [endpoint('10.4.0.1', { http: 15014 }, { app: 'metrics' })],
    'admin.ops.svc.cluster.local': [endpoint('10.5.0.1', { http: 8080 }, { app: 'admin' })],
    'api.example.com': [endpoint('api.example.com', { http: 443 }, { app: 'api' })],
  };
  return {
    name: 'sidecar-scoping',
    config: configFromYaml(`
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: { name: default, namespace: shop }
spec:
  egress:
  - port: { number: 8080, protocol: HTTP, name: http }
    hosts: ["billing/payments.billing.svc.cluster.local", "billing/ledger.billing.svc.cluster.local"]
  - hosts: ["./*", "istio-system/*"]
  outboundTrafficPolicy: { mode: REGISTRY_ONLY }
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: { name: default, namespace: istio-system }
spec:
  egress:
  - hosts: ["*/*"]
`),
    registry: createRegistrySnapshot(1, services, eps),
    proxy: proxy({
      ip: '10.2.0.1',
      pod: 'frontend-5d8f7c9b4-abcde',
      namespace: 'shop',
      labels: { app: 'frontend' },
    }),
  };
}

/** The proxyless gRPC scenario: a gRPC client with weighted routes, faults, retries, ring hash. */
export function proxylessGrpc(): Scenario {
  const services = [
    service('echo', 'grpc', [{ name: 'grpc', port: 7070, protocol: 'GRPC' }]),
    service('client', 'grpc', [{ name: 'grpc', port: 7071, protocol: 'GRPC' }]),
  ];
  const eps: Record<string, Endpoint[]> = {
    'echo.grpc.svc.cluster.local': [
      endpoint('10.6.0.1', { grpc: 7070 }, { app: 'echo', version: 'v1' }),
      endpoint('10.6.0.2', { grpc: 7070 }, { app: 'echo', version: 'v2' }, 'us-east1/us-east1-c/'),
    ],
    'client.grpc.svc.cluster.local': [endpoint('10.6.1.1', { grpc: 17071 }, { app: 'client' })],
  };
  return {
    name: 'proxyless-grpc',
    config: configFromYaml(`
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: echo, namespace: grpc }
spec:
  host: echo
  trafficPolicy:
    loadBalancer: { consistentHash: { httpHeaderName: x-user } }
    outlierDetection: { consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 50 }
    connectionPool: { http: { http2MaxRequests: 100 } }
  subsets:
  - name: v1
    labels: { version: v1 }
  - name: v2
    labels: { version: v2 }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: echo, namespace: grpc }
spec:
  hosts: [echo]
  http:
  - match:
    - headers: { x-canary: { exact: "yes" } }
    route:
    - destination: { host: echo, subset: v2 }
    timeout: 1s
    retries: { attempts: 2, retryOn: unavailable }
  - match:
    - queryParams: { skipped: { exact: "yes" } }
    route:
    - destination: { host: echo, subset: v2 }
  - match:
    - uri: { prefix: /old }
    redirect: { uri: /new }
  - fault:
      abort: { grpcStatus: UNAVAILABLE, percentage: { value: 5 } }
    route:
    - destination: { host: echo, subset: v1 }
      weight: 90
    - destination: { host: echo, subset: v2 }
      weight: 10
`),
    registry: createRegistrySnapshot(1, services, eps),
    proxy: proxy({
      ip: '10.6.1.1',
      pod: 'client-7d9c-xyz',
      namespace: 'grpc',
      labels: { app: 'client' },
      grpc: true,
    }),
  };
}
