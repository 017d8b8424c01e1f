/** @meridian/proto: the repo's .proto files loaded as gRPC services with one set of loader options. */
export type { ProtoLoadOptions } from './load.js';
export {
  loadProtoPackage,
  loadServiceClient,
  loadServiceDefinition,
  PROTO_DIR,
  PROTO_LOADER_OPTIONS,
  protoPath,
} from './load.js';
