// @meridian/ca: mesh root and per-cluster intermediate CAs, workload certificate issuance
// (Istio's CreateCertificate), bootstrap tokens, trust bundles and root rotation.
export type { AuthMethod, CaCounters, CaEvent } from './audit.js';
export { CaAudit, ISTIO_CA_METRICS, istioCaMetrics } from './audit.js';
export type {
  CaKeyPair,
  ClusterCaMaterial,
  IntermediateOptions,
  ParsedCertificate,
  RootCa,
  RootCaOptions,
  RootKeyType,
} from './authority.js';
export {
  createIntermediateCa,
  createRootCa,
  DEFAULT_INTERMEDIATE_VALIDITY_MS,
  DEFAULT_ROOT_VALIDITY_MS,
  generatePrivateKey,
  loadPrivateKey,
  PLUGIN_FILES,
  parseCertificate,
  parseCertificates,
  privateKeyPem,
  readPluginCa,
  readRootCa,
  SigningCa,
  validateClusterId,
  writePluginCa,
  writeRootCa,
} from './authority.js';
export type { CaErrorCode, CaStatus } from './errors.js';
export {
  AuthenticationError,
  CaConfigError,
  CaError,
  CaUnavailableError,
  InvalidRequestError,
  PermissionDeniedError,
  TOKEN_REPLAY_REASON,
  TokenReplayError,
} from './errors.js';
export type {
  CertificateServiceClient,
  CertificateServiceOptions,
  IstioCertificateRequest,
  IstioCertificateResponse,
} from './grpc.js';
export {
  addCertificateService,
  CA_PROTO_PATH,
  CREATE_CERTIFICATE_PATH,
  createCaServerCredentials,
  createCertificate,
  createCertificateServiceClient,
  identityFromPeerCertificate,
  loadCaProto,
  MemoryCertificateProvider,
} from './grpc.js';
export type { IssuedCertificate, IssueRequest, IssuerOptions } from './issuer.js';
export {
  DEFAULT_WORKLOAD_TTL_S,
  MAX_WORKLOAD_TTL_S,
  resolveTtlSeconds,
  WorkloadCertificateIssuer,
} from './issuer.js';
export type { SealedKey } from './keywrap.js';
export { generateKek, KEK_ENV, loadKek, openPrivateKey, parseKek, sealPrivateKey } from './keywrap.js';
export { addRootToBundle, reissueIntermediate, removeRootFromBundle } from './rotation.js';
export type { ClusterCaRuntimeOptions, SecretChange } from './runtime.js';
export { ClusterCaRuntime } from './runtime.js';
export { tlsCertificateSecretJson, validationContextSecretJson } from './sds.js';
export type { Timers, WorkloadSecret, WorkloadSecretsOptions } from './secrets.js';
export { SDS_DEFAULT_SECRET, SDS_ROOT_SECRET, WorkloadSecrets } from './secrets.js';
export type { WorkloadIdentity } from './spiffe.js';
export { parseSpiffeId, spiffeId, validateName, validateTrustDomain } from './spiffe.js';
export type { CaStore, StoredClusterCa } from './storage.js';
export {
  CA_KEYS,
  caStoreFrom,
  installClusterCa,
  loadClusterCa,
  MemoryCaStore,
  parseStoredClusterCa,
  watchClusterCa,
} from './storage.js';
export type {
  ConsumeTokenOptions,
  CreateTokenOptions,
  TokenSigningKey,
  VerifiedBootstrapToken,
} from './token.js';
export {
  authenticateBootstrapToken,
  consumeSingleUse,
  createBootstrapToken,
  generateTokenSigningKey,
  MAX_TOKEN_TTL_S,
  publicJwkOf,
  publishTokenKey,
  readTokenKeys,
  SINGLE_USE_CLAIM,
  TOKEN_AUDIENCE,
  TOKEN_ISSUER,
  TokenVerifier,
  usedTokenKey,
} from './token.js';
export type { BundleRoot } from './trust-bundle.js';
export { TrustBundle } from './trust-bundle.js';
export type { CsrOptions, KeyType, ParsedCsr } from './x509.js';
export { basicConstraints, CSR_LIMITS, createCsr, parseCsr } from './x509.js';
