// @meridian/agent: meridian-agent, the node agent beside each workload (as istio-agent beside Envoy):
// replica discovery and choice, a local xDS relay with warm failover, last-known-good on disk.

export type { AgentOptions } from './agent.js';
export { Agent } from './agent.js';
export type {
  BootstrapNode,
  EnvoyBootstrapOptions,
  GrpcBootstrapOptions,
  GrpcXdsBootstrap,
  WorkloadNodeOptions,
} from './bootstrap.js';
export { BootstrapError, envoyBootstrap, grpcBootstrap, workloadNode } from './bootstrap.js';
export type { SavedState } from './cache.js';
export { LastKnownGood } from './cache.js';
export type {
  CertificateAuth,
  CertificateMaterial,
  RotationReason,
  WorkloadCertificatesOptions,
} from './certificates.js';
export { CertificateError, WorkloadCertificates } from './certificates.js';
export { AgentMetrics } from './metrics.js';
export type { AgentPlace, Candidate } from './rank.js';
export { localityTier, RTT_BUCKET_MS, rankCandidates } from './rank.js';
export type {
  AgentRegistrationOptions,
  ProbeResult,
  ReadinessProbe,
  ReadinessState,
  RegistrationStatus,
  WorkloadHealth,
} from './registration.js';
export { AgentRegistration, AgentRegistrationError, nextReadiness, runProbe } from './registration.js';
export type { XdsRelayOptions } from './relay.js';
export { XdsRelay } from './relay.js';
export type { ReplicaSelectorOptions } from './replicas.js';
export { ReplicaSelector } from './replicas.js';
export type { LocalSecret, LocalSecrets } from './sds.js';
export { certificateSecrets } from './sds.js';
