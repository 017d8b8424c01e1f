/**
 * Field descriptors for every supported message, typed against the interfaces in types.ts so the
 * two cannot drift: each message lists exactly the fields of its interface. The structural decoder
 * (decode.ts) uses them to check JSON types, reject unknown fields and enforce protobuf oneofs.
 */
import type * as T from './types.js';

/** How one field is encoded in Istio's JSON/YAML. */
export type FieldSchema =
  | { readonly t: 'string' }
  | { readonly t: 'bool'; readonly presence?: boolean }
  | { readonly t: 'int'; readonly min: number; readonly max: number; readonly presence?: boolean }
  | { readonly t: 'double'; readonly presence?: boolean }
  | { readonly t: 'duration' }
  | { readonly t: 'enum'; readonly values: readonly string[] }
  | { readonly t: 'message'; readonly of: () => MessageSchema }
  | { readonly t: 'list'; readonly of: FieldSchema }
  | { readonly t: 'map'; readonly of: FieldSchema; readonly uint32Keys?: boolean };

/** One protobuf message: its fields and its oneof groups (at most one member may be set). */
export interface MessageSchema {
  readonly name: string;
  readonly fields: Readonly<Record<string, FieldSchema>>;
  readonly oneofs: readonly (readonly string[])[];
}

function message<M>(
  name: string,
  fields: { readonly [K in keyof Required<M>]: FieldSchema },
  oneofs: readonly (readonly (keyof M & string)[])[] = [],
): MessageSchema {
  return { name, fields: fields as Record<string, FieldSchema>, oneofs };
}

const str: FieldSchema = { t: 'string' };
const bool: FieldSchema = { t: 'bool' };
/** google.protobuf.BoolValue: `false` is distinct from unset. */
const boolValue: FieldSchema = { t: 'bool', presence: true };
const int32: FieldSchema = { t: 'int', min: -2147483648, max: 2147483647 };
const uint32: FieldSchema = { t: 'int', min: 0, max: 4294967295 };
const uint32Value: FieldSchema = { t: 'int', min: 0, max: 4294967295, presence: true };
const uint64: FieldSchema = { t: 'int', min: 0, max: Number.MAX_SAFE_INTEGER };
const double: FieldSchema = { t: 'double' };
const doubleValue: FieldSchema = { t: 'double', presence: true };
const duration: FieldSchema = { t: 'duration' };
const strList: FieldSchema = { t: 'list', of: str };
const strMap: FieldSchema = { t: 'map', of: str };
const enumOf = (values: readonly string[]): FieldSchema => ({ t: 'enum', values });
const msg = (of: () => MessageSchema): FieldSchema => ({ t: 'message', of });
const listOf = (of: () => MessageSchema): FieldSchema => ({ t: 'list', of: { t: 'message', of } });
const mapOf = (of: () => MessageSchema): FieldSchema => ({ t: 'map', of: { t: 'message', of } });

// ---------------------------------------------------------------- common

export const StringMatchSchema = message<T.StringMatch>(
  'StringMatch',
  { exact: str, prefix: str, regex: str },
  [['exact', 'prefix', 'regex']],
);
const PercentSchema = message<T.Percent>('Percent', { value: double });
const PortSelectorSchema = message<T.PortSelector>('PortSelector', { number: uint32 });
const WorkloadSelectorSchema = message<T.WorkloadSelector>('WorkloadSelector', { matchLabels: strMap });
const NetworkingWorkloadSelectorSchema = message<T.NetworkingWorkloadSelector>('WorkloadSelector', {
  labels: strMap,
});
const PolicyTargetReferenceSchema = message<T.PolicyTargetReference>('PolicyTargetReference', {
  group: str,
  kind: str,
  name: str,
  namespace: str,
});

// ---------------------------------------------------------------- VirtualService

const DestinationSchema = message<T.Destination>('Destination', {
  host: str,
  subset: str,
  port: msg(() => PortSelectorSchema),
});
const HeaderOperationsSchema = message<T.HeaderOperations>('HeaderOperations', {
  set: strMap,
  add: strMap,
  remove: strList,
});
const HeadersSchema = message<T.Headers>('Headers', {
  request: msg(() => HeaderOperationsSchema),
  response: msg(() => HeaderOperationsSchema),
});
const HTTPMatchRequestSchema = message<T.HTTPMatchRequest>('HTTPMatchRequest', {
  name: str,
  uri: msg(() => StringMatchSchema),
  scheme: msg(() => StringMatchSchema),
  method: msg(() => StringMatchSchema),
  authority: msg(() => StringMatchSchema),
  headers: mapOf(() => StringMatchSchema),
  port: uint32,
  sourceLabels: strMap,
  gateways: strList,
  queryParams: mapOf(() => StringMatchSchema),
  ignoreUriCase: bool,
  withoutHeaders: mapOf(() => StringMatchSchema),
  sourceNamespace: str,
  statPrefix: str,
});
const HTTPRouteDestinationSchema = message<T.HTTPRouteDestination>('HTTPRouteDestination', {
  destination: msg(() => DestinationSchema),
  weight: int32,
  headers: msg(() => HeadersSchema),
});
const HTTPRedirectSchema = message<T.HTTPRedirect>(
  'HTTPRedirect',
  {
    uri: str,
    authority: str,
    port: uint32,
    derivePort: enumOf(['FROM_PROTOCOL_DEFAULT', 'FROM_REQUEST_PORT']),
    scheme: str,
    redirectCode: uint32,
  },
  [['port', 'derivePort']],
);
const HTTPBodySchema = message<T.HTTPBody>('HTTPBody', { string: str, bytes: str }, [['string', 'bytes']]);
const HTTPDirectResponseSchema = message<T.HTTPDirectResponse>('HTTPDirectResponse', {
  status: uint32,
  body: msg(() => HTTPBodySchema),
});
const DelegateSchema = message<T.Delegate>('Delegate', { name: str, namespace: str });
const RegexRewriteSchema = message<T.RegexRewrite>('RegexRewrite', { match: str, rewrite: str });
const HTTPRewriteSchema = message<T.HTTPRewrite>('HTTPRewrite', {
  uri: str,
  authority: str,
  uriRegexRewrite: msg(() => RegexRewriteSchema),
});
const HTTPRetrySchema = message<T.HTTPRetry>('HTTPRetry', {
  attempts: int32,
  perTryTimeout: duration,
  retryOn: str,
  retryRemoteLocalities: boolValue,
  retryIgnorePreviousHosts: boolValue,
  backoff: duration,
});
const FaultDelaySchema = message<T.FaultDelay>(
  'Delay',
  { fixedDelay: duration, exponentialDelay: duration, percentage: msg(() => PercentSchema), percent: int32 },
  [['fixedDelay', 'exponentialDelay']],
);
const FaultAbortSchema = message<T.FaultAbort>(
  'Abort',
  { httpStatus: int32, grpcStatus: str, http2Error: str, percentage: msg(() => PercentSchema) },
  [['httpStatus', 'grpcStatus', 'http2Error']],
);
const HTTPFaultInjectionSchema = message<T.HTTPFaultInjection>('HTTPFaultInjection', {
  delay: msg(() => FaultDelaySchema),
  abort: msg(() => FaultAbortSchema),
});
const HTTPMirrorPolicySchema = message<T.HTTPMirrorPolicy>('HTTPMirrorPolicy', {
  destination: msg(() => DestinationSchema),
  percentage: msg(() => PercentSchema),
});
const CorsPolicySchema = message<T.CorsPolicy>('CorsPolicy', {
  allowOrigins: listOf(() => StringMatchSchema),
  allowMethods: strList,
  allowHeaders: strList,
  exposeHeaders: strList,
  maxAge: duration,
  allowCredentials: boolValue,
  unmatchedPreflights: enumOf(['UNSPECIFIED', 'FORWARD', 'IGNORE']),
});
const HTTPRouteSchema = message<T.HTTPRoute>('HTTPRoute', {
  name: str,
  match: listOf(() => HTTPMatchRequestSchema),
  route: listOf(() => HTTPRouteDestinationSchema),
  redirect: msg(() => HTTPRedirectSchema),
  directResponse: msg(() => HTTPDirectResponseSchema),
  delegate: msg(() => DelegateSchema),
  rewrite: msg(() => HTTPRewriteSchema),
  timeout: duration,
  retries: msg(() => HTTPRetrySchema),
  fault: msg(() => HTTPFaultInjectionSchema),
  mirror: msg(() => DestinationSchema),
  mirrors: listOf(() => HTTPMirrorPolicySchema),
  mirrorPercentage: msg(() => PercentSchema),
  mirrorPercent: uint32Value,
  corsPolicy: msg(() => CorsPolicySchema),
  headers: msg(() => HeadersSchema),
});
const L4MatchSchema = message<T.L4MatchAttributes>('L4MatchAttributes', {
  destinationSubnets: strList,
  port: uint32,
  sourceSubnet: str,
  sourceLabels: strMap,
  gateways: strList,
  sourceNamespace: str,
});
const TLSMatchSchema = message<T.TLSMatchAttributes>('TLSMatchAttributes', {
  sniHosts: strList,
  destinationSubnets: strList,
  port: uint32,
  sourceLabels: strMap,
  gateways: strList,
  sourceNamespace: str,
});
const RouteDestinationSchema = message<T.RouteDestination>('RouteDestination', {
  destination: msg(() => DestinationSchema),
  weight: int32,
});
const TCPRouteSchema = message<T.TCPRoute>('TCPRoute', {
  match: listOf(() => L4MatchSchema),
  route: listOf(() => RouteDestinationSchema),
});
const TLSRouteSchema = message<T.TLSRoute>('TLSRoute', {
  match: listOf(() => TLSMatchSchema),
  route: listOf(() => RouteDestinationSchema),
});
/** Schema of the VirtualService spec. */
export const VirtualServiceSchema = message<T.VirtualService>('VirtualService', {
  hosts: strList,
  gateways: strList,
  http: listOf(() => HTTPRouteSchema),
  tls: listOf(() => TLSRouteSchema),
  tcp: listOf(() => TCPRouteSchema),
  exportTo: strList,
});

// ---------------------------------------------------------------- DestinationRule

const HTTPCookieAttributeSchema = message<T.HTTPCookieAttribute>('Attribute', { name: str, value: str });
const HTTPCookieSchema = message<T.HTTPCookie>('HTTPCookie', {
  name: str,
  path: str,
  ttl: duration,
  attributes: listOf(() => HTTPCookieAttributeSchema),
});
const ConsistentHashLBSchema = message<T.ConsistentHashLB>(
  'ConsistentHashLB',
  {
    httpHeaderName: str,
    httpCookie: msg(() => HTTPCookieSchema),
    useSourceIp: bool,
    httpQueryParameterName: str,
    ringHash: msg(() => message<T.RingHash>('RingHash', { minimumRingSize: uint64 })),
    maglev: msg(() => message<T.MagLev>('MagLev', { tableSize: uint64 })),
    minimumRingSize: uint64,
  },
  [
    ['httpHeaderName', 'httpCookie', 'useSourceIp', 'httpQueryParameterName'],
    ['ringHash', 'maglev'],
  ],
);
const LocalityLbSchema = message<T.LocalityLoadBalancerSetting>('LocalityLoadBalancerSetting', {
  distribute: listOf(() =>
    message<T.LocalityDistribute>('Distribute', { from: str, to: { t: 'map', of: uint32 } }),
  ),
  failover: listOf(() => message<T.LocalityFailover>('Failover', { from: str, to: str })),
  failoverPriority: strList,
  enabled: boolValue,
});
const LoadBalancerSettingsSchema = message<T.LoadBalancerSettings>(
  'LoadBalancerSettings',
  {
    simple: enumOf(['UNSPECIFIED', 'LEAST_CONN', 'RANDOM', 'PASSTHROUGH', 'ROUND_ROBIN', 'LEAST_REQUEST']),
    consistentHash: msg(() => ConsistentHashLBSchema),
    localityLbSetting: msg(() => LocalityLbSchema),
    warmupDurationSecs: duration,
    warmup: msg(() =>
      message<T.WarmupConfiguration>('WarmupConfiguration', {
        duration,
        minimumPercent: doubleValue,
        aggression: doubleValue,
      }),
    ),
  },
  [['simple', 'consistentHash']],
);
const ConnectionPoolSchema = message<T.ConnectionPoolSettings>('ConnectionPoolSettings', {
  tcp: msg(() =>
    message<T.TCPSettings>('TCPSettings', {
      maxConnections: int32,
      connectTimeout: duration,
      tcpKeepalive: msg(() =>
        message<T.TcpKeepalive>('TcpKeepalive', { probes: uint32, time: duration, interval: duration }),
      ),
      maxConnectionDuration: duration,
      idleTimeout: duration,
    }),
  ),
  http: msg(() =>
    message<T.HTTPSettings>('HTTPSettings', {
      http1MaxPendingRequests: int32,
      http2MaxRequests: int32,
      maxRequestsPerConnection: int32,
      maxRetries: int32,
      idleTimeout: duration,
      h2UpgradePolicy: enumOf(['DEFAULT', 'DO_NOT_UPGRADE', 'UPGRADE']),
      useClientProtocol: bool,
      maxConcurrentStreams: int32,
      http2KeepAlive: msg(() =>
        message<T.Http2KeepAlive>('HTTP2KeepAlive', { interval: duration, timeout: duration }),
      ),
    }),
  ),
});
const OutlierDetectionSchema = message<T.OutlierDetection>('OutlierDetection', {
  splitExternalLocalOriginErrors: bool,
  consecutiveLocalOriginFailures: uint32Value,
  consecutiveGatewayErrors: uint32Value,
  consecutive5xxErrors: uint32Value,
  consecutiveErrors: int32,
  interval: duration,
  baseEjectionTime: duration,
  maxEjectionPercent: int32,
  minHealthPercent: int32,
});
const ClientTLSSettingsSchema = message<T.ClientTLSSettings>('ClientTLSSettings', {
  mode: enumOf(['DISABLE', 'SIMPLE', 'MUTUAL', 'ISTIO_MUTUAL']),
  clientCertificate: str,
  privateKey: str,
  caCertificates: str,
  credentialName: str,
  subjectAltNames: strList,
  sni: str,
  insecureSkipVerify: boolValue,
  caCrl: str,
});
const PortTrafficPolicySchema = message<T.PortTrafficPolicy>('PortTrafficPolicy', {
  port: msg(() => PortSelectorSchema),
  loadBalancer: msg(() => LoadBalancerSettingsSchema),
  connectionPool: msg(() => ConnectionPoolSchema),
  outlierDetection: msg(() => OutlierDetectionSchema),
  tls: msg(() => ClientTLSSettingsSchema),
});
const TrafficPolicySchema = message<T.TrafficPolicy>('TrafficPolicy', {
  loadBalancer: msg(() => LoadBalancerSettingsSchema),
  connectionPool: msg(() => ConnectionPoolSchema),
  outlierDetection: msg(() => OutlierDetectionSchema),
  tls: msg(() => ClientTLSSettingsSchema),
  portLevelSettings: listOf(() => PortTrafficPolicySchema),
  tunnel: msg(() =>
    message<T.TunnelSettings>('TunnelSettings', { protocol: str, targetHost: str, targetPort: uint32 }),
  ),
  proxyProtocol: msg(() => message<T.ProxyProtocol>('ProxyProtocol', { version: enumOf(['V1', 'V2']) })),
});
const SubsetSchema = message<T.Subset>('Subset', {
  name: str,
  labels: strMap,
  trafficPolicy: msg(() => TrafficPolicySchema),
});
/** Schema of the DestinationRule spec. */
export const DestinationRuleSchema = message<T.DestinationRule>('DestinationRule', {
  host: str,
  trafficPolicy: msg(() => TrafficPolicySchema),
  subsets: listOf(() => SubsetSchema),
  exportTo: strList,
  workloadSelector: msg(() => WorkloadSelectorSchema),
});

// ---------------------------------------------------------------- ServiceEntry / WorkloadEntry

/** Schema of the WorkloadEntry spec (also ServiceEntry endpoints). */
export const WorkloadEntrySchema = message<T.WorkloadEntry>('WorkloadEntry', {
  address: str,
  ports: { t: 'map', of: uint32 },
  labels: strMap,
  network: str,
  locality: str,
  weight: uint32,
  serviceAccount: str,
});
const ServicePortSchema = message<T.ServicePort>('ServicePort', {
  number: uint32,
  protocol: str,
  name: str,
  targetPort: uint32,
});
/** Schema of the ServiceEntry spec. */
export const ServiceEntrySchema = message<T.ServiceEntry>('ServiceEntry', {
  hosts: strList,
  addresses: strList,
  ports: listOf(() => ServicePortSchema),
  location: enumOf(['MESH_EXTERNAL', 'MESH_INTERNAL']),
  resolution: enumOf(['NONE', 'STATIC', 'DNS', 'DNS_ROUND_ROBIN']),
  endpoints: listOf(() => WorkloadEntrySchema),
  workloadSelector: msg(() => NetworkingWorkloadSelectorSchema),
  exportTo: strList,
  subjectAltNames: strList,
});

// ---------------------------------------------------------------- Sidecar

const SidecarPortSchema = message<T.SidecarPort>('SidecarPort', {
  number: uint32,
  protocol: str,
  name: str,
  targetPort: uint32,
});
const captureMode = enumOf(['DEFAULT', 'IPTABLES', 'NONE']);
const tlsVersion = enumOf(['TLS_AUTO', 'TLSV1_0', 'TLSV1_1', 'TLSV1_2', 'TLSV1_3']);
const ServerTLSSettingsSchema = message<T.ServerTLSSettings>('ServerTLSSettings', {
  httpsRedirect: bool,
  mode: enumOf(['PASSTHROUGH', 'SIMPLE', 'MUTUAL', 'AUTO_PASSTHROUGH', 'ISTIO_MUTUAL', 'OPTIONAL_MUTUAL']),
  serverCertificate: str,
  privateKey: str,
  caCertificates: str,
  caCrl: str,
  credentialName: str,
  credentialNames: strList,
  tlsCertificates: listOf(() =>
    message<T.TLSCertificate>('TLSCertificate', {
      serverCertificate: str,
      privateKey: str,
      caCertificates: str,
    }),
  ),
  subjectAltNames: strList,
  verifyCertificateSpki: strList,
  verifyCertificateHash: strList,
  minProtocolVersion: tlsVersion,
  maxProtocolVersion: tlsVersion,
  cipherSuites: strList,
});
/** Schema of the Sidecar spec. */
export const SidecarSchema = message<T.Sidecar>('Sidecar', {
  workloadSelector: msg(() => NetworkingWorkloadSelectorSchema),
  ingress: listOf(() =>
    message<T.IstioIngressListener>('IstioIngressListener', {
      port: msg(() => SidecarPortSchema),
      bind: str,
      captureMode,
      defaultEndpoint: str,
      tls: msg(() => ServerTLSSettingsSchema),
      connectionPool: msg(() => ConnectionPoolSchema),
    }),
  ),
  egress: listOf(() =>
    message<T.IstioEgressListener>('IstioEgressListener', {
      port: msg(() => SidecarPortSchema),
      bind: str,
      captureMode,
      hosts: strList,
    }),
  ),
  inboundConnectionPool: msg(() => ConnectionPoolSchema),
  outboundTrafficPolicy: msg(() =>
    message<T.OutboundTrafficPolicy>('OutboundTrafficPolicy', {
      mode: enumOf(['REGISTRY_ONLY', 'ALLOW_ANY']),
      egressProxy: msg(() => DestinationSchema),
    }),
  ),
});

// ---------------------------------------------------------------- security

const MutualTLSSchema = message<T.MutualTLS>('MutualTLS', {
  mode: enumOf(['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT']),
});
/** Schema of the PeerAuthentication spec. */
export const PeerAuthenticationSchema = message<T.PeerAuthentication>('PeerAuthentication', {
  selector: msg(() => WorkloadSelectorSchema),
  mtls: msg(() => MutualTLSSchema),
  portLevelMtls: { t: 'map', of: { t: 'message', of: () => MutualTLSSchema }, uint32Keys: true },
});
const SourceSchema = message<T.Source>('Source', {
  principals: strList,
  notPrincipals: strList,
  requestPrincipals: strList,
  notRequestPrincipals: strList,
  namespaces: strList,
  notNamespaces: strList,
  ipBlocks: strList,
  notIpBlocks: strList,
  remoteIpBlocks: strList,
  notRemoteIpBlocks: strList,
  serviceAccounts: strList,
  notServiceAccounts: strList,
  trustDomains: strList,
  notTrustDomains: strList,
});
const OperationSchema = message<T.Operation>('Operation', {
  hosts: strList,
  notHosts: strList,
  ports: strList,
  notPorts: strList,
  methods: strList,
  notMethods: strList,
  paths: strList,
  notPaths: strList,
});
const RuleSchema = message<T.Rule>('Rule', {
  from: listOf(() => message<T.RuleFrom>('From', { source: msg(() => SourceSchema) })),
  to: listOf(() => message<T.RuleTo>('To', { operation: msg(() => OperationSchema) })),
  when: listOf(() => message<T.Condition>('Condition', { key: str, values: strList, notValues: strList })),
});
/** Schema of the AuthorizationPolicy spec. */
export const AuthorizationPolicySchema = message<T.AuthorizationPolicy>('AuthorizationPolicy', {
  selector: msg(() => WorkloadSelectorSchema),
  targetRef: msg(() => PolicyTargetReferenceSchema),
  targetRefs: listOf(() => PolicyTargetReferenceSchema),
  rules: listOf(() => RuleSchema),
  action: enumOf(['ALLOW', 'DENY', 'AUDIT', 'CUSTOM']),
  provider: msg(() => message<T.ExtensionProvider>('ExtensionProvider', { name: str })),
});
