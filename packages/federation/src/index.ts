// @meridian/federation: service discovery federated across clusters over NATS.
// The protocol between clusters is documented in ../PROTOCOL.md.

export type { FederationErrorCode, RejectReason } from './errors.js';
export {
  ExporterFencedError,
  FederationError,
  FederationNatsError,
  FederationStateError,
  InvalidNameError,
  WireFormatError,
} from './errors.js';
export type { ExporterOptions, SyncResult } from './exporter.js';
export { FederationExporter } from './exporter.js';
export type { ImportCache, ImportCacheSnapshot } from './import-cache.js';
export { memoryImportCache } from './import-cache.js';
export type {
  ImportChange,
  ImportedService,
  ImportedView,
  RemoteClusterStatus,
  ServiceRef,
} from './import-view.js';
export type { ImporterOptions } from './importer.js';
export { FederationImporter } from './importer.js';
export type { FederationInstruments } from './metrics.js';
export { federationInstruments } from './metrics.js';
export {
  checkId,
  isExportableHostname,
  META_KEY,
  parseServiceKey,
  Subjects,
  serviceId,
  serviceKey,
} from './naming.js';
export type { ClusterCredentials, ClusterPermissions, NatsAuthorizationOptions } from './nats-config.js';
export {
  clusterPermissions,
  generateClusterCredentials,
  publicKeyOfSeed,
  renderNatsAuthorization,
} from './nats-config.js';
export { endpointToWire, localExportStates, serviceToWire } from './registry.js';
export type { ExportDecision, ExportSelection } from './select.js';
export { EXPORT_LABEL, exportDecision } from './select.js';
export type {
  EndpointHealth,
  EpochMarker,
  ExportedServiceState,
  FederatedEndpoint,
  FederatedService,
  FederationMessage,
  Heartbeat,
  Locality,
  Resolution,
  ServicePort,
  ServiceRecord,
} from './wire.js';
export { decodeMessage, encodeMessage, isNewer, PROTOCOL_VERSION } from './wire.js';
