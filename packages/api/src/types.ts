/**
 * TypeScript shapes of the Istio config kinds Meridian accepts, hand-written from Istio's API
 * reference (istio/api: networking/v1alpha3/*.proto, security/v1beta1/*.proto). Field names are the
 * protobuf JSON names Istio's YAML uses. `v1`, `v1beta1` and `v1alpha3` share these shapes.
 *
 * Durations are strings in Go/protobuf-JSON syntax (`"1.5s"`, `"100ms"`, `"5m"`); percentages are
 * numbers in 0..100. Every optional field may be absent; a validated object never carries `null`.
 */

/** A map of string keys to string values (labels, annotations, header values). */
export type StringMap = Record<string, string>;

// ---------------------------------------------------------------- common

/** Istio `StringMatch`: exactly one of `exact`, `prefix`, `regex` (RE2 syntax); `{}` matches presence. */
export interface StringMatch {
  exact?: string;
  prefix?: string;
  regex?: string;
}

/** Istio `Percent`: a double in 0..100. */
export interface Percent {
  value?: number;
}

/** Istio `PortSelector`: a port number. */
export interface PortSelector {
  number?: number;
}

/** `istio.type.v1beta1.WorkloadSelector` (security kinds): `matchLabels`. */
export interface WorkloadSelector {
  matchLabels?: StringMap;
}

/** `networking.v1alpha3.WorkloadSelector` (Sidecar, ServiceEntry): `labels`. */
export interface NetworkingWorkloadSelector {
  labels?: StringMap;
}

/** Gateway API policy target reference (AuthorizationPolicy `targetRef`). */
export interface PolicyTargetReference {
  group?: string;
  kind?: string;
  name?: string;
  namespace?: string;
}

// ---------------------------------------------------------------- VirtualService

/** Istio `Destination`: a service host (FQDN or short name), optional subset and port. */
export interface Destination {
  host?: string;
  subset?: string;
  port?: PortSelector;
}

/** Istio `Headers.HeaderOperations`. */
export interface HeaderOperations {
  set?: StringMap;
  add?: StringMap;
  remove?: string[];
}

/** Istio `Headers`: request and response header edits. */
export interface Headers {
  request?: HeaderOperations;
  response?: HeaderOperations;
}

/** Istio `HTTPMatchRequest`: all conditions of one match are ANDed. */
export interface HTTPMatchRequest {
  name?: string;
  uri?: StringMatch;
  scheme?: StringMatch;
  method?: StringMatch;
  authority?: StringMatch;
  headers?: Record<string, StringMatch>;
  port?: number;
  sourceLabels?: StringMap;
  gateways?: string[];
  queryParams?: Record<string, StringMatch>;
  ignoreUriCase?: boolean;
  withoutHeaders?: Record<string, StringMatch>;
  sourceNamespace?: string;
  statPrefix?: string;
}

/** Istio `HTTPRouteDestination`: a destination with a weight (0..100) and header edits. */
export interface HTTPRouteDestination {
  destination?: Destination;
  weight?: number;
  headers?: Headers;
}

/** Istio `HTTPRedirect`: `port` and `derivePort` are mutually exclusive. */
export interface HTTPRedirect {
  uri?: string;
  authority?: string;
  port?: number;
  derivePort?: 'FROM_PROTOCOL_DEFAULT' | 'FROM_REQUEST_PORT';
  scheme?: string;
  redirectCode?: number;
}

/** Istio `HTTPBody`: `string` or `bytes` (base64). */
export interface HTTPBody {
  string?: string;
  bytes?: string;
}

/** Istio `HTTPDirectResponse`. */
export interface HTTPDirectResponse {
  status?: number;
  body?: HTTPBody;
}

/** Istio `Delegate`: the VirtualService an HTTP route delegates to. */
export interface Delegate {
  name?: string;
  namespace?: string;
}

/** Istio `RegexRewrite`. */
export interface RegexRewrite {
  match?: string;
  rewrite?: string;
}

/** Istio `HTTPRewrite`. */
export interface HTTPRewrite {
  uri?: string;
  authority?: string;
  uriRegexRewrite?: RegexRewrite;
}

/** Istio `HTTPRetry`. */
export interface HTTPRetry {
  attempts?: number;
  perTryTimeout?: string;
  retryOn?: string;
  retryRemoteLocalities?: boolean;
  retryIgnorePreviousHosts?: boolean;
  /** Base interval between retries (Envoy default 25ms). */
  backoff?: string;
}

/** Istio `HTTPFaultInjection.Delay`: `fixedDelay` is required (`exponentialDelay` is unsupported). */
export interface FaultDelay {
  fixedDelay?: string;
  exponentialDelay?: string;
  percentage?: Percent;
  /** Deprecated integer percentage; use `percentage`. */
  percent?: number;
}

/** Istio `HTTPFaultInjection.Abort`: exactly one of `httpStatus`, `grpcStatus`, `http2Error`. */
export interface FaultAbort {
  httpStatus?: number;
  grpcStatus?: string;
  http2Error?: string;
  percentage?: Percent;
}

/** Istio `HTTPFaultInjection`. */
export interface HTTPFaultInjection {
  delay?: FaultDelay;
  abort?: FaultAbort;
}

/** Istio `HTTPMirrorPolicy`. */
export interface HTTPMirrorPolicy {
  destination?: Destination;
  percentage?: Percent;
}

/** Istio `CorsPolicy`. */
export interface CorsPolicy {
  allowOrigins?: StringMatch[];
  allowMethods?: string[];
  allowHeaders?: string[];
  exposeHeaders?: string[];
  maxAge?: string;
  allowCredentials?: boolean;
  unmatchedPreflights?: 'UNSPECIFIED' | 'FORWARD' | 'IGNORE';
}

/** Istio `HTTPRoute`: exactly one of `route`, `redirect`, `directResponse`, `delegate`. */
export interface HTTPRoute {
  name?: string;
  match?: HTTPMatchRequest[];
  route?: HTTPRouteDestination[];
  redirect?: HTTPRedirect;
  directResponse?: HTTPDirectResponse;
  delegate?: Delegate;
  rewrite?: HTTPRewrite;
  timeout?: string;
  retries?: HTTPRetry;
  fault?: HTTPFaultInjection;
  mirror?: Destination;
  mirrors?: HTTPMirrorPolicy[];
  mirrorPercentage?: Percent;
  /** Deprecated integer percentage (0..100); use `mirrorPercentage`. Accepted with a warning. */
  mirrorPercent?: number;
  corsPolicy?: CorsPolicy;
  headers?: Headers;
}

/** Istio `L4MatchAttributes` (TCP routes). */
export interface L4MatchAttributes {
  destinationSubnets?: string[];
  port?: number;
  /** Source IP or CIDR (hidden from Istio's docs, still in its API). */
  sourceSubnet?: string;
  sourceLabels?: StringMap;
  gateways?: string[];
  sourceNamespace?: string;
}

/** Istio `TLSMatchAttributes` (TLS routes): `sniHosts` is required. */
export interface TLSMatchAttributes {
  sniHosts?: string[];
  destinationSubnets?: string[];
  port?: number;
  sourceLabels?: StringMap;
  gateways?: string[];
  sourceNamespace?: string;
}

/** Istio `RouteDestination` (TCP/TLS routes). */
export interface RouteDestination {
  destination?: Destination;
  weight?: number;
}

/** Istio `TCPRoute`. */
export interface TCPRoute {
  match?: L4MatchAttributes[];
  route?: RouteDestination[];
}

/** Istio `TLSRoute`. */
export interface TLSRoute {
  match?: TLSMatchAttributes[];
  route?: RouteDestination[];
}

/** Istio `VirtualService` spec. */
export interface VirtualService {
  hosts?: string[];
  gateways?: string[];
  http?: HTTPRoute[];
  tls?: TLSRoute[];
  tcp?: TCPRoute[];
  exportTo?: string[];
}

// ---------------------------------------------------------------- DestinationRule

/** Istio `LoadBalancerSettings.SimpleLB`. */
export type SimpleLB =
  | 'UNSPECIFIED'
  | 'LEAST_CONN'
  | 'RANDOM'
  | 'PASSTHROUGH'
  | 'ROUND_ROBIN'
  | 'LEAST_REQUEST';

/** Istio `ConsistentHashLB.HTTPCookie.Attribute`. */
export interface HTTPCookieAttribute {
  name?: string;
  value?: string;
}

/** Istio `ConsistentHashLB.HTTPCookie`. */
export interface HTTPCookie {
  name?: string;
  path?: string;
  ttl?: string;
  attributes?: HTTPCookieAttribute[];
}

/** Istio `ConsistentHashLB.RingHash`. */
export interface RingHash {
  minimumRingSize?: number;
}

/** Istio `ConsistentHashLB.MagLev`. */
export interface MagLev {
  tableSize?: number;
}

/**
 * Istio `ConsistentHashLB`: exactly one hash key (`httpHeaderName`, `httpCookie`, `useSourceIp`,
 * `httpQueryParameterName`); at most one of `ringHash`, `maglev` (and deprecated `minimumRingSize`).
 */
export interface ConsistentHashLB {
  httpHeaderName?: string;
  httpCookie?: HTTPCookie;
  useSourceIp?: boolean;
  httpQueryParameterName?: string;
  ringHash?: RingHash;
  maglev?: MagLev;
  minimumRingSize?: number;
}

/** Istio `LocalityLoadBalancerSetting.Distribute`: `to` weights sum to 100. */
export interface LocalityDistribute {
  from?: string;
  to?: Record<string, number>;
}

/** Istio `LocalityLoadBalancerSetting.Failover`: regions only. */
export interface LocalityFailover {
  from?: string;
  to?: string;
}

/** Istio `LocalityLoadBalancerSetting`. */
export interface LocalityLoadBalancerSetting {
  distribute?: LocalityDistribute[];
  failover?: LocalityFailover[];
  failoverPriority?: string[];
  enabled?: boolean;
}

/** Istio `WarmupConfiguration`. */
export interface WarmupConfiguration {
  duration?: string;
  minimumPercent?: number;
  aggression?: number;
}

/** Istio `LoadBalancerSettings`: at most one of `simple`, `consistentHash`. */
export interface LoadBalancerSettings {
  simple?: SimpleLB;
  consistentHash?: ConsistentHashLB;
  localityLbSetting?: LocalityLoadBalancerSetting;
  warmupDurationSecs?: string;
  warmup?: WarmupConfiguration;
}

/** Istio `ConnectionPoolSettings.TCPSettings.TcpKeepalive`. */
export interface TcpKeepalive {
  probes?: number;
  time?: string;
  interval?: string;
}

/** Istio `ConnectionPoolSettings.TCPSettings`. */
export interface TCPSettings {
  maxConnections?: number;
  connectTimeout?: string;
  tcpKeepalive?: TcpKeepalive;
  maxConnectionDuration?: string;
  idleTimeout?: string;
}

/** Istio `ConnectionPoolSettings.HTTPSettings.HTTP2KeepAlive`: HTTP/2 PING frames upstream. */
export interface Http2KeepAlive {
  interval?: string;
  timeout?: string;
}

/** Istio `ConnectionPoolSettings.HTTPSettings`. */
export interface HTTPSettings {
  http1MaxPendingRequests?: number;
  http2MaxRequests?: number;
  maxRequestsPerConnection?: number;
  maxRetries?: number;
  idleTimeout?: string;
  h2UpgradePolicy?: 'DEFAULT' | 'DO_NOT_UPGRADE' | 'UPGRADE';
  useClientProtocol?: boolean;
  maxConcurrentStreams?: number;
  http2KeepAlive?: Http2KeepAlive;
}

/** Istio `ConnectionPoolSettings`. */
export interface ConnectionPoolSettings {
  tcp?: TCPSettings;
  http?: HTTPSettings;
}

/** Istio `OutlierDetection`. */
export interface OutlierDetection {
  splitExternalLocalOriginErrors?: boolean;
  consecutiveLocalOriginFailures?: number;
  consecutiveGatewayErrors?: number;
  consecutive5xxErrors?: number;
  /** Deprecated; use `consecutiveGatewayErrors` or `consecutive5xxErrors`. Accepted with a warning. */
  consecutiveErrors?: number;
  interval?: string;
  baseEjectionTime?: string;
  maxEjectionPercent?: number;
  minHealthPercent?: number;
}

/** Istio `ClientTLSSettings`. */
export interface ClientTLSSettings {
  mode?: 'DISABLE' | 'SIMPLE' | 'MUTUAL' | 'ISTIO_MUTUAL';
  clientCertificate?: string;
  privateKey?: string;
  caCertificates?: string;
  credentialName?: string;
  subjectAltNames?: string[];
  sni?: string;
  insecureSkipVerify?: boolean;
  caCrl?: string;
}

/** Istio `TrafficPolicy.PortTrafficPolicy`. */
export interface PortTrafficPolicy {
  port?: PortSelector;
  loadBalancer?: LoadBalancerSettings;
  connectionPool?: ConnectionPoolSettings;
  outlierDetection?: OutlierDetection;
  tls?: ClientTLSSettings;
}

/** Istio `TrafficPolicy.TunnelSettings`. */
export interface TunnelSettings {
  protocol?: string;
  targetHost?: string;
  targetPort?: number;
}

/** Istio `TrafficPolicy.ProxyProtocol`. */
export interface ProxyProtocol {
  version?: 'V1' | 'V2';
}

/** Istio `TrafficPolicy`. */
export interface TrafficPolicy {
  loadBalancer?: LoadBalancerSettings;
  connectionPool?: ConnectionPoolSettings;
  outlierDetection?: OutlierDetection;
  tls?: ClientTLSSettings;
  portLevelSettings?: PortTrafficPolicy[];
  tunnel?: TunnelSettings;
  proxyProtocol?: ProxyProtocol;
}

/** Istio `Subset`: a DNS-1123 label name and the endpoint labels that select it. */
export interface Subset {
  name?: string;
  labels?: StringMap;
  trafficPolicy?: TrafficPolicy;
}

/** Istio `DestinationRule` spec. */
export interface DestinationRule {
  host?: string;
  trafficPolicy?: TrafficPolicy;
  subsets?: Subset[];
  exportTo?: string[];
  workloadSelector?: WorkloadSelector;
}

// ---------------------------------------------------------------- ServiceEntry / WorkloadEntry

/** Istio `ServicePort` (ServiceEntry ports). */
export interface ServicePort {
  number?: number;
  protocol?: string;
  name?: string;
  targetPort?: number;
}

/** Istio `WorkloadEntry` spec (also a ServiceEntry endpoint). */
export interface WorkloadEntry {
  address?: string;
  ports?: Record<string, number>;
  labels?: StringMap;
  network?: string;
  locality?: string;
  weight?: number;
  serviceAccount?: string;
}

/** Istio `ServiceEntry` spec. */
export interface ServiceEntry {
  hosts?: string[];
  addresses?: string[];
  ports?: ServicePort[];
  location?: 'MESH_EXTERNAL' | 'MESH_INTERNAL';
  resolution?: 'NONE' | 'STATIC' | 'DNS' | 'DNS_ROUND_ROBIN';
  endpoints?: WorkloadEntry[];
  workloadSelector?: NetworkingWorkloadSelector;
  exportTo?: string[];
  subjectAltNames?: string[];
}

// ---------------------------------------------------------------- Sidecar

/** Istio `SidecarPort`. */
export interface SidecarPort {
  number?: number;
  protocol?: string;
  name?: string;
  targetPort?: number;
}

/** Istio `CaptureMode`. */
export type CaptureMode = 'DEFAULT' | 'IPTABLES' | 'NONE';

/** Istio `ServerTLSSettings.TLSCertificate`. */
export interface TLSCertificate {
  serverCertificate?: string;
  privateKey?: string;
  caCertificates?: string;
}

/** Istio `ServerTLSSettings` (used by Sidecar ingress). */
export interface ServerTLSSettings {
  httpsRedirect?: boolean;
  mode?: 'PASSTHROUGH' | 'SIMPLE' | 'MUTUAL' | 'AUTO_PASSTHROUGH' | 'ISTIO_MUTUAL' | 'OPTIONAL_MUTUAL';
  serverCertificate?: string;
  privateKey?: string;
  caCertificates?: string;
  caCrl?: string;
  credentialName?: string;
  credentialNames?: string[];
  tlsCertificates?: TLSCertificate[];
  subjectAltNames?: string[];
  verifyCertificateSpki?: string[];
  verifyCertificateHash?: string[];
  minProtocolVersion?: 'TLS_AUTO' | 'TLSV1_0' | 'TLSV1_1' | 'TLSV1_2' | 'TLSV1_3';
  maxProtocolVersion?: 'TLS_AUTO' | 'TLSV1_0' | 'TLSV1_1' | 'TLSV1_2' | 'TLSV1_3';
  cipherSuites?: string[];
}

/** Istio `IstioIngressListener`. */
export interface IstioIngressListener {
  port?: SidecarPort;
  bind?: string;
  captureMode?: CaptureMode;
  defaultEndpoint?: string;
  tls?: ServerTLSSettings;
  connectionPool?: ConnectionPoolSettings;
}

/** Istio `IstioEgressListener`: `hosts` entries are `namespace/dnsName`. */
export interface IstioEgressListener {
  port?: SidecarPort;
  bind?: string;
  captureMode?: CaptureMode;
  hosts?: string[];
}

/** Istio `OutboundTrafficPolicy`. */
export interface OutboundTrafficPolicy {
  mode?: 'REGISTRY_ONLY' | 'ALLOW_ANY';
  egressProxy?: Destination;
}

/** Istio `Sidecar` spec. */
export interface Sidecar {
  workloadSelector?: NetworkingWorkloadSelector;
  ingress?: IstioIngressListener[];
  egress?: IstioEgressListener[];
  inboundConnectionPool?: ConnectionPoolSettings;
  outboundTrafficPolicy?: OutboundTrafficPolicy;
}

// ---------------------------------------------------------------- security

/** Istio `PeerAuthentication.MutualTLS.Mode`. */
export type MutualTLSMode = 'UNSET' | 'DISABLE' | 'PERMISSIVE' | 'STRICT';

/** Istio `PeerAuthentication.MutualTLS`. */
export interface MutualTLS {
  mode?: MutualTLSMode;
}

/** Istio `PeerAuthentication` spec; `portLevelMtls` keys are port numbers and need a `selector`. */
export interface PeerAuthentication {
  selector?: WorkloadSelector;
  mtls?: MutualTLS;
  portLevelMtls?: Record<string, MutualTLS>;
}

/** Istio `Source` (AuthorizationPolicy `rules[].from[].source`). */
export interface Source {
  principals?: string[];
  notPrincipals?: string[];
  requestPrincipals?: string[];
  notRequestPrincipals?: string[];
  namespaces?: string[];
  notNamespaces?: string[];
  ipBlocks?: string[];
  notIpBlocks?: string[];
  remoteIpBlocks?: string[];
  notRemoteIpBlocks?: string[];
  serviceAccounts?: string[];
  notServiceAccounts?: string[];
  trustDomains?: string[];
  notTrustDomains?: string[];
}

/** Istio `Operation` (AuthorizationPolicy `rules[].to[].operation`). */
export interface Operation {
  hosts?: string[];
  notHosts?: string[];
  ports?: string[];
  notPorts?: string[];
  methods?: string[];
  notMethods?: string[];
  paths?: string[];
  notPaths?: string[];
}

/** Istio `Rule.From`. */
export interface RuleFrom {
  source?: Source;
}

/** Istio `Rule.To`. */
export interface RuleTo {
  operation?: Operation;
}

/** Istio `Condition` (AuthorizationPolicy `rules[].when[]`). */
export interface Condition {
  key?: string;
  values?: string[];
  notValues?: string[];
}

/** Istio `Rule`. */
export interface Rule {
  from?: RuleFrom[];
  to?: RuleTo[];
  when?: Condition[];
}

/** Istio `AuthorizationPolicy.ExtensionProvider`. */
export interface ExtensionProvider {
  name?: string;
}

/** Istio `AuthorizationPolicy.Action`. */
export type AuthorizationAction = 'ALLOW' | 'DENY' | 'AUDIT' | 'CUSTOM';

/** Istio `AuthorizationPolicy` spec. */
export interface AuthorizationPolicy {
  selector?: WorkloadSelector;
  targetRef?: PolicyTargetReference;
  targetRefs?: PolicyTargetReference[];
  rules?: Rule[];
  action?: AuthorizationAction;
  provider?: ExtensionProvider;
}
