// @meridian/server: meridiand, the control-plane replica process (issue 5). `src/main.ts` is the
// command; this module exports the parts for tests, benchmarks and embedding.

export type { AdminHost } from './admin-http.js';
export { startAdminServer } from './admin-http.js';
export type {
  AdmissionContext,
  AdmissionResponse,
  AdmissionReviewAnswer,
  AdmissionWebhookOptions,
} from './admission.js';
export {
  ADMISSION_PATH,
  AdmissionRequestError,
  reviewAdmission,
  startAdmissionWebhook,
} from './admission.js';
export type { StateChange } from './cluster-state.js';
export { ClusterState } from './cluster-state.js';
export type { CommitState } from './config-commit.js';
export { COMMIT_KEY, STAGING_PREFIX } from './config-commit.js';
export type {
  ApplyItem,
  ApplyResult,
  ConfigServiceOptions,
  LastKnownConfig,
  StoreAvailability,
} from './config-service.js';
export {
  CONFIG_PREFIX,
  ConfigService,
  configStoreKey,
  MAX_APPLY_OBJECTS,
  requireKind,
  resolveKind,
  resourceName,
} from './config-service.js';
export type { LoadedSnapshot, SnapshotState } from './disk-snapshot.js';
export {
  DiskSnapshot,
  describeServing,
  MAX_SNAPSHOT_BYTES,
  SNAPSHOT_FORMAT,
  snapshotFile,
} from './disk-snapshot.js';
export type { AdminErrorBody, AdminErrorCode } from './errors.js';
export { AdminError, ServerConfigError } from './errors.js';
export type { FederationStatus, ReplicaFederationOptions } from './federation.js';
export {
  etcdImportCache,
  exportSelection,
  IMPORT_CACHE_KEY,
  natsAuthenticator,
  ReplicaFederation,
} from './federation.js';
export { StoreHealth } from './health.js';
export type { LeaderStatus, ReplicaInfo, Term } from './membership.js';
export { LEADER_STATUS_KEY, Membership, REPLICAS_PREFIX, SINGLETON_ELECTION } from './membership.js';
export type { ServerOptions } from './options.js';
export { resolveOptions, splitAddress, usage } from './options.js';
export { Encoder, ProxySnapshot } from './proxy-snapshot.js';
export type { GrpcExtension, ReplicaStartOptions } from './replica.js';
export { MERIDIAN_VERSION, Replica } from './replica.js';
export { Telemetry } from './telemetry.js';
