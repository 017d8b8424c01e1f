// @meridian/api: Istio-compatible config kinds: parsing and validation with precise errors.
//
// Typical use (admin API, CLI):
//   const r = parseConfigDocuments(yamlText, { source: 'reviews.yaml' });
//   if (!r.ok) reject(r.error.message);      // one line per FieldError
//   else store(r.configs);                   // canonical objects (see normalize)
//   const warnings = analyzeConfigs(allConfigs, { knownHosts });

export type {
  AnalysisContext,
  AnalysisMessage,
} from './analyze.js';
export {
  ANALYZED_KINDS,
  AnalysisCode,
  analyzeConfigs,
  formatAnalysisMessage,
  resolveHost,
} from './analyze.js';
export type { ProtoDuration } from './duration.js';
export { durationToProto, parseDurationNanos } from './duration.js';
export type { FieldError } from './errors.js';
export { formatFieldError, sortFieldErrors, ValidationError } from './errors.js';
export type {
  AuthorizationPolicyConfig,
  ConfigKindInfo,
  ConfigObject,
  DestinationRuleConfig,
  KindName,
  ObjectMeta,
  PeerAuthenticationConfig,
  RateLimitConfig,
  RequestAuthenticationConfig,
  ServiceEntryConfig,
  SidecarConfig,
  SpecByKind,
  TelemetryConfig,
  TypedConfigObject,
  VirtualServiceConfig,
  WorkloadEntryConfig,
} from './kinds.js';
export { ALL_KINDS, ConfigKind, configKey, lookupKind } from './kinds.js';
export { canonicalJSON, normalize } from './normalize.js';
export type { DocumentResult, ParseOptions, ParseResult } from './parse.js';
export { parseConfigDocuments } from './parse.js';
export type {
  GlobalLimit,
  GlobalRateLimit,
  LocalRateLimit,
  RateLimit,
  RateLimitKey,
  RateLimitUnit,
} from './rate-limit.js';
export { RATE_LIMIT_STATUS_CODES, rateLimitWindowMs } from './rate-limit.js';
export type { ClaimToHeader, JWTHeader, JWTRule, RequestAuthentication } from './request-authn.js';
export { jwksError, jwksUriError } from './request-authn.js';
export { hostSubsetOf, hostsMatch } from './rules.js';
export type { AccessLogging, ProviderRef, Telemetry, Tracing } from './telemetry-kind.js';
export { accessLoggingEnabled, MERIDIAN_ACCESS_LOG_PROVIDER } from './telemetry-kind.js';
export type * from './types.js';
export type { ValidateOptions, ValidateResult } from './validate.js';
export { validateConfig } from './validate.js';
