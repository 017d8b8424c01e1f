// @meridian/store: typed access to cluster state; etcd and in-memory implementations of one interface.

export type { Codec } from './codec.js';
export { bytesCodec, jsonCodec, stringCodec } from './codec.js';
export type { CollectionOptions, MirrorOptions } from './collection.js';
export { Collection, Mirror } from './collection.js';
export type { Candidate } from './election.js';
export { Election, Leadership, Observer } from './election.js';
export type { StoreErrorCode } from './errors.js';
export {
  CompactedError,
  ConflictError,
  InvalidKeyError,
  LeadershipLostError,
  LeaseLostError,
  MalformedValueError,
  StoreClosedError,
  StoreError,
  StoreUnavailableError,
  TxnTooLargeError,
} from './errors.js';
export type { EtcdStoreOptions } from './etcd.js';
export { EtcdStore } from './etcd.js';
export { DEFAULT_MESH_ID, Keyspace } from './keyspace.js';
export { Membership } from './membership.js';
export type { MemoryStoreOptions } from './memory.js';
export { MemoryBackend, MemoryStore } from './memory.js';
export type {
  DeleteOptions,
  DeleteResult,
  Expectation,
  KeyValue,
  Lease,
  LeaseId,
  LeaseState,
  ListResult,
  PutOptions,
  Store,
  Watch,
  WatchBatch,
  WatchEvent,
  WatchHandler,
  WatchOptions,
  WatchStatus,
  WriteOp,
  WriteResult,
} from './types.js';
