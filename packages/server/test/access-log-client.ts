// An access-log client written against Envoy's protos (envoy.service.accesslog.v3): builds
// StreamAccessLogsMessage entries as Envoy's HTTP/TCP gRPC access loggers would, encodes them with
// protobufjs (the copy of Envoy's protos @meridian/envoy loads) and streams them with grpc-js.
// Shared by the telemetry tests and `pnpm bench telemetry`.
import * as grpc from '@grpc/grpc-js';
import { lookupMessage } from '@meridian/envoy';

/** One call as a proxy logs it. */
export interface CallSpec {
  /** `outbound` (reported by the caller's proxy) or `inbound` (by the callee's). */
  readonly direction: 'outbound' | 'inbound';
  readonly downstream: string;
  readonly downstreamLocal?: string;
  readonly upstream: string;
  readonly upstreamCluster: string;
  readonly code?: number;
  readonly grpcStatus?: string;
  readonly durationMs?: number;
  readonly authority?: string;
  /** URI SAN of the downstream peer certificate (inbound mTLS). */
  readonly peerUri?: string;
  readonly requestBytes?: number;
  readonly responseBytes?: number;
  readonly flags?: Record<string, boolean>;
}

const addr = (hostPort: string) => {
  const i = hostPort.lastIndexOf(':');
  return { socket_address: { address: hostPort.slice(0, i), port_value: Number(hostPort.slice(i + 1)) } };
};

const dur = (ms: number) => ({ seconds: Math.floor(ms / 1000), nanos: Math.round((ms % 1000) * 1e6) });

function common(c: CallSpec): Record<string, unknown> {
  return {
    downstream_remote_address: addr(c.downstream),
    ...(c.downstreamLocal ? { downstream_local_address: addr(c.downstreamLocal) } : {}),
    upstream_remote_address: addr(c.upstream),
    upstream_cluster: c.upstreamCluster,
    start_time: { seconds: Math.floor(Date.now() / 1000), nanos: 0 },
    time_to_last_downstream_tx_byte: dur(c.durationMs ?? 5),
    ...(c.peerUri
      ? { tls_properties: { peer_certificate_properties: { subject_alt_name: [{ uri: c.peerUri }] } } }
      : {}),
    ...(c.flags ? { response_flags: c.flags } : {}),
  };
}

/** An `HTTPAccessLogEntry` (gRPC when `grpcStatus` is set). */
export function httpEntry(c: CallSpec): Record<string, unknown> {
  return {
    common_properties: common(c),
    protocol_version: 'HTTP2',
    request: {
      authority: c.authority ?? '',
      path: '/',
      request_headers_bytes: 100,
      request_body_bytes: c.requestBytes ?? 50,
      ...(c.grpcStatus !== undefined ? { request_headers: { 'content-type': 'application/grpc' } } : {}),
    },
    response: {
      response_code: { value: c.code ?? 200 },
      response_headers_bytes: 60,
      response_body_bytes: c.responseBytes ?? 500,
      ...(c.grpcStatus !== undefined ? { response_trailers: { 'grpc-status': c.grpcStatus } } : {}),
    },
  };
}

/** A `TCPAccessLogEntry` of a closed connection. */
export function tcpEntry(c: CallSpec & { sent: number; received: number }): Record<string, unknown> {
  return {
    common_properties: { ...common(c), duration: dur(c.durationMs ?? 100) },
    connection_properties: { received_bytes: c.received, sent_bytes: c.sent },
  };
}

/** Encodes one `StreamAccessLogsMessage` (identifier only when `nodeId` is given). */
export function encodeAccessLogs(
  entries: { http?: Record<string, unknown>[]; tcp?: Record<string, unknown>[] },
  nodeId?: string,
  logName = 'meridian-access-log',
): Buffer {
  const t = lookupMessage('envoy.service.accesslog.v3.StreamAccessLogsMessage');
  if (!t) throw new Error('StreamAccessLogsMessage not loaded');
  const msg = t.fromObject({
    ...(nodeId ? { identifier: { node: { id: nodeId }, log_name: logName } } : {}),
    ...(entries.http ? { http_logs: { log_entry: entries.http } } : {}),
    ...(entries.tcp ? { tcp_logs: { log_entry: entries.tcp } } : {}),
  });
  return Buffer.from(t.encode(msg).finish());
}

/** Istio's node id of a sidecar at `ip` (pod `pod` in `namespace`). */
export const sidecarNodeId = (ip: string, pod: string, namespace: string) =>
  `sidecar~${ip}~${pod}.${namespace}~${namespace}.svc.cluster.local`;

/**
 * Streams encoded messages on one `StreamAccessLogs` call and half-closes; resolves with the call's
 * status (OK, or the error the replica ended it with).
 */
export function streamAccessLogs(
  address: string,
  messages: readonly Buffer[],
  credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
  options: grpc.ChannelOptions = {},
): Promise<{ code: grpc.status; details: string }> {
  const client = new grpc.Client(address, credentials, options);
  return new Promise((resolve) => {
    const call = client.makeClientStreamRequest(
      '/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs',
      (b: Buffer) => b,
      (b: Buffer) => b,
      (error, _value) => {
        client.close();
        resolve(
          error
            ? { code: error.code ?? grpc.status.UNKNOWN, details: error.details ?? '' }
            : { code: 0, details: '' },
        );
      },
    );
    for (const m of messages) call.write(m);
    call.end();
  });
}

/** The two workloads the telemetry tests call between: frontend (shop) and payments (pay). */
export const FRONTEND_IP = '10.1.0.5';
export const PAYMENTS_IP = '10.2.0.7';

/** The payments service and its v2 workload (a ServiceEntry and a WorkloadEntry). */
export const PAYMENTS_YAML = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: payments, namespace: pay}
spec:
  hosts: [payments.pay.svc.cluster.local]
  ports: [{number: 8080, name: http, protocol: HTTP}]
  resolution: STATIC
  location: MESH_INTERNAL
  workloadSelector: {labels: {app: payments}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: payments-v2, namespace: pay}
spec:
  address: ${PAYMENTS_IP}
  ports: {http: 8080}
  labels: {app: payments, version: v2}
  serviceAccount: payments
`;

/** The frontend service and its v1 workload. */
export const FRONTEND_YAML = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: frontend, namespace: shop}
spec:
  hosts: [frontend.shop.svc.cluster.local]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  location: MESH_INTERNAL
  workloadSelector: {labels: {app: frontend}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: frontend-v1, namespace: shop}
spec:
  address: ${FRONTEND_IP}
  ports: {http: 80}
  labels: {app: frontend, version: v1}
  serviceAccount: frontend
`;
