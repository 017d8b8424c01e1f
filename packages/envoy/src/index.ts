// @meridian/envoy: Envoy's and xDS's protobuf schemas (the copies @grpc/grpc-js-xds ships), the type
// URLs of the xDS resource types, and strict conversion between Envoy JSON and protobuf bytes.

export type { EnvoyJson, JsonValue, SchemaProblem } from './json.js';
export { checkResource, decodeResource, EnvoySchemaError, encodeResource } from './json.js';
export type { Locality, ProxyInfo, ProxyKind } from './node.js';
export { NodeError, parseNode } from './node.js';
export { envoyProtoIncludeDirs, envoyRoot, lookupMessage } from './schema.js';
export { type ResourceTypeUrl, TypeUrl, typeUrlOf } from './type-urls.js';
