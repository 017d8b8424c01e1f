// @meridian/registry: services and endpoints as one merged view of pluggable sources (local config
// and agent registrations now, federated imports later), as translate's RegistrySnapshot; and the
// workload registration gRPC service (proto/meridian/registry/v1/registry.proto).

export type { DiscoveredReplica, ReplicaDiscoverySource } from './discovery.js';
export {
  addReplicaDiscoveryService,
  DISCOVERY_PROTO_PATH,
  listReplicas,
  ReplicaDiscoveryClient,
} from './discovery.js';
export type { RegistryErrorCode } from './errors.js';
export {
  InvalidRegistrationError,
  RegistrationFailedError,
  RegistrationRefusedError,
  RegistryError,
} from './errors.js';
export { FederatedSource, importedSourceView } from './federated.js';
export type {
  RegisterRequest,
  RegisterResponse,
  RegistrationServiceOptions,
  WorkloadAgentOptions,
} from './grpc.js';
export { REGISTRY_PROTO_PATH, RegistrationService, WorkloadAgent } from './grpc.js';
export type { LocalInputs } from './local.js';
export { buildLocalView, LocalSource, parseLocality, registrationEndpoint } from './local.js';
export { Registry } from './registry.js';
export type { RegistrySource, SourceView, WorkloadRegistration } from './types.js';
export type { RegistrationCaller, WorkloadSpec } from './workloads.js';
export {
  checkRegistration,
  DEFAULT_REGISTRATION_TTL_S,
  peerHost,
  toRegistration,
  validateWorkload,
  WORKLOADS_PREFIX,
  workloadKey,
} from './workloads.js';
