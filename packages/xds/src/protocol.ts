// The xDS subscription and ACK/NACK rules, as pure functions over a small per-stream, per-type state.
// Source: Envoy's "xDS REST and gRPC protocol" page
// (https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol), sections cited as [§name].
// The stream loop (connection.ts) calls these and performs the sends they ask for; nothing here does
// I/O, so every rule is unit-tested in test/protocol.test.ts.
// The rules live in protocol-common.ts (both variants), protocol-sotw.ts, protocol-delta.ts and
// resource-order.ts; this module is their one import path.
export * from './protocol-common.js';
export * from './protocol-delta.js';
export * from './protocol-sotw.js';
export { sortedOf } from './resource-order.js';
