// @meridian/xds: Aggregated Discovery Service (SotW and Delta) with push queue and encoded-resource cache

export {
  encodedResource,
  ResourceCache,
  ResourceNameError,
  resourceNameField,
  versionOf,
} from './cache.js';
export type { ConnectionHost, StreamLimits } from './connection.js';
export { Connection } from './connection.js';
export { LayeredResourceMap } from './layered-map.js';
export type { TriggerReason } from './metrics.js';
export {
  grpcCodeName,
  ISTIOD_BUCKETS,
  shortType,
  TRIGGER_REASONS,
  triggerReason,
  XdsMetrics,
} from './metrics.js';
export type {
  AckOutcome,
  DeltaDiff,
  DeltaRequestFields,
  DeltaWatch,
  NackRecord,
  RequestResult,
  SotwRequestFields,
  SotwWatch,
  SyncState,
  WatchState,
} from './protocol.js';
export {
  applyDeltaRequest,
  applySotwRequest,
  deltaDiff,
  deltaSent,
  isFullStateType,
  PUSH_ORDER,
  pushRank,
  sortedOf,
  sotwChanged,
  sotwHeld,
  sotwPartial,
  sotwRemovals,
  sotwSent,
  sotwTarget,
  syncState,
  WILDCARD,
} from './protocol.js';
export type { DebounceOptions, Pushable, Timer } from './push-queue.js';
export { Debouncer, PushQueue, realTimer } from './push-queue.js';
export type { XdsServerOptions } from './server.js';
export { adsServiceDefinition, identityOf, XdsServer, xdsLogger } from './server.js';
export { StaticSnapshot } from './static-snapshot.js';
export type { DebugSource, DumpedResource, ProxySyncStatus, TypeSyncStatus } from './status.js';
export {
  connectionConfigDump,
  connectionCurrentConfig,
  connectionStatus,
  debugHandler,
  proxyName,
  REDACTED,
  redactSecrets,
} from './status.js';
export { changeAffects } from './stream-push.js';
export type { Variant } from './stream-state.js';
export type { ChangeEvent, EncodedResource, ProxyContext, ResourceMap, XdsSnapshot } from './types.js';
export { mergeChanges, ProxyTranslationError } from './types.js';
export type { DeltaRequest, ProtobufField, SotwRequest } from './wire.js';
export {
  anyMessage,
  decodeDeltaRequest,
  decodeSotwRequest,
  deltaResponse,
  frameResource,
  lengthDelimited,
  protobufFields,
  sotwResponse,
  stringField,
} from './wire.js';
