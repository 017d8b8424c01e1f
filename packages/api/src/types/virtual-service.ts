/** Istio `VirtualService` (networking.istio.io) and the HTTP, TCP and TLS route shapes it holds. */
import type { Percent, PortSelector, StringMap, StringMatch } from './common.js';

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
