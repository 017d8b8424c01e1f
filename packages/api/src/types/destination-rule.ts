/**
 * Istio `DestinationRule` (networking.istio.io): load balancing, connection pools, outlier
 * detection, client TLS, per-port policies and subsets.
 */
import type { PortSelector, StringMap, WorkloadSelector } from './common.js';

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
