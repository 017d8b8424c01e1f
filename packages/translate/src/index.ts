// @meridian/translate: pure translation of config and registry snapshots to Envoy and
// proxyless-gRPC xDS resources (Istio's pilot/pkg/networking/core and grpcgen, in TypeScript).
//
// The replica calls `new Translator(options)` (with `{ mtls }` when it runs a CA) once and `translator.translate(config, registry,
// proxy)` per proxy push; `translateProxy` is the uncached one-shot form. Inputs: see types.ts.

export {
  ACCESS_LOG_CLUSTER,
  accessLogCluster,
  httpGrpcAccessLog,
  listenersWithAccessLog,
  tcpGrpcAccessLog,
  withAccessLog,
} from './access-log.js';
export type { AuthzFilters, AuthzFinding, AuthzTarget, WorkloadPolicies } from './authz.js';
export {
  buildAuthzFilters,
  DRY_RUN_ANNOTATION,
  formatAuthzFinding,
  GRPC_RBAC_DENY_FILTER,
  grpcAuthzFindings,
  HTTP_RBAC_FILTER,
  hasPolicies,
  isDryRun,
  NETWORK_RBAC_FILTER,
  rbacPolicyName,
  selectAuthorizationPolicies,
} from './authz.js';
export { effectivePolicy } from './cluster.js';
export { altHosts, virtualHostDomains } from './domains.js';
export { buildLoadAssignment, localityMatches } from './endpoint.js';
export type { ServiceAccounts } from './identity.js';
export { serviceAccountsOf } from './identity.js';
export type { JwksSource, JwtFilter } from './jwt.js';
export {
  buildJwtFilter,
  JWT_AUTHN_FILTER,
  JWT_PAYLOAD_METADATA_KEY,
  jwksSourceKey,
  jwksSources,
  selectRequestAuthentications,
  UNVERIFIABLE_JWKS,
} from './jwt.js';
export type { InboundAuthz, InboundChains, InboundHttpPolicy } from './listener.js';
export { GRPC_SERVER_LISTENER_PREFIX, inboundHttpPolicy } from './listener.js';
export type {
  CertificateSource,
  DestinationServiceAccount,
  EffectiveMtlsMode,
  EffectivePeerAuthentication,
  UpstreamClusterFacts,
  UpstreamTlsOptions,
  WorkloadFacts,
} from './mtls.js';
export {
  certificateSourceOf,
  grpcServerTransportSocket,
  inboundFilterChains,
  inboundMtlsTransportSocket,
  modeForPort,
  mtlsInboundFilterChains,
  mtlsUpstreamTls,
  peerAuthenticationsKey,
  resolvePeerAuthentication,
  SDS_DEFAULT_SECRET,
  SDS_ROOT_SECRET,
  sdsSecret,
  TLS_INSPECTOR,
  upstreamSubjectAltNames,
  upstreamTransportSocket,
} from './mtls.js';
export type { NetworkGateway } from './network.js';
export {
  DEFAULT_GATEWAY_PORT,
  endpointsForNetwork,
  GATEWAY_PORT_LABEL,
  NETWORK_LABEL,
  networkGateways,
  registryForNetwork,
} from './network.js';
export type { RateLimitFilters, RateLimitRoutes, RouteDecoration } from './ratelimit.js';
export {
  buildRateLimitFilters,
  LIMIT_DESCRIPTOR_KEY,
  LOCAL_RATE_LIMIT_FILTER,
  RATE_LIMIT_CLUSTER,
  RATE_LIMIT_DOMAIN,
  RATE_LIMIT_FILTER,
  rateLimitCluster,
  replicaServiceTransportSocket,
  selectRateLimits,
} from './ratelimit.js';
export type { ListPatch } from './resource-lists.js';
export { patchOf } from './resource-lists.js';
export { encodeProxyResources, resourcesByTypeUrl } from './resources.js';
export { FAULT_FILTER, ROUTER_FILTER } from './route.js';
export type { ProxyScope } from './scope.js';
export { buildScope, selectSidecar } from './scope.js';
export { createConfigSnapshot, createRegistrySnapshot, sortEndpoints, withEndpoints } from './snapshot.js';
export type {
  HcmTracing,
  MeshTracing,
  OpenTelemetryProvider,
  ProxyTracing,
  TracingProviderDefinition,
  TracingSpec,
  ZipkinProvider,
} from './tracing.js';
export { hcmTracing, partWithTracing, proxyTracing, resolveTracing, withTracing } from './tracing.js';
export type { TranslatorStats } from './translator.js';
export { mergeParts, Translator, translateProxy } from './translator.js';
export type {
  ConfigSnapshot,
  Endpoint,
  EndpointHealth,
  EndpointLocality,
  InboundResources,
  InboundTlsContext,
  MtlsOptions,
  NamedResource,
  OutboundResources,
  PolicyInputs,
  ProxyParts,
  ProxyResources,
  RegistrySnapshot,
  ReplicaServiceAddress,
  Resolution,
  Service,
  ServicePort,
  TranslateOptions,
  UpstreamTlsContext,
  WorkloadServiceAccount,
} from './types.js';
