/**
 * Decoding what the proxies send to the telemetry receivers (telemetry-ingest.ts): Envoy's
 * `StreamAccessLogsMessage`, the metrics service's `StreamMetricsMessage` (declared here, as the
 * Prometheus client model is not among the protos shipped with @grpc/grpc-js-xds), and Istio's peer
 * metadata carried in access-log filter state. Decoders are built once, on first use.
 */
import * as protoLoader from '@grpc/proto-loader';
import { lookupMessage } from '@meridian/envoy';
import type { PeerMetadataDecoder } from './access-log.js';

/** A decoded message (protobufjs/proto-loader objects, snake_case fields), read defensively. */
export type Msg = Record<string, unknown> | null | undefined;

let metricsDecoder: ((b: Buffer) => Msg) | undefined;

/**
 * `envoy.service.metrics.v3.StreamMetricsMessage`, wire-compatible: the copy of Envoy's protos
 * shipped with @grpc/grpc-js-xds lacks `io/prometheus/client/metrics.proto`, so the Prometheus
 * client model's fields read here are declared (field numbers of that public schema) and the node is
 * decoded with Envoy's `Node`.
 */
export function streamMetricsDecoder(): (b: Buffer) => Msg {
  if (metricsDecoder) return metricsDecoder;
  const def = protoLoader.fromJSON(
    {
      nested: {
        m: {
          nested: {
            LabelPair: { fields: { name: { type: 'string', id: 1 }, value: { type: 'string', id: 2 } } },
            Value: { fields: { value: { type: 'double', id: 1 } } },
            Metric: {
              fields: {
                label: { rule: 'repeated', type: 'LabelPair', id: 1 },
                gauge: { type: 'Value', id: 2 },
                counter: { type: 'Value', id: 3 },
                untyped: { type: 'Value', id: 5 },
                timestamp_ms: { type: 'int64', id: 6 },
              },
            },
            MetricFamily: {
              fields: {
                name: { type: 'string', id: 1 },
                help: { type: 'string', id: 2 },
                type: { type: 'int32', id: 3 },
                metric: { rule: 'repeated', type: 'Metric', id: 4 },
              },
            },
            Identifier: { fields: { node: { type: 'bytes', id: 1 } } },
            StreamMetricsMessage: {
              fields: {
                identifier: { type: 'Identifier', id: 1 },
                envoy_metrics: { rule: 'repeated', type: 'MetricFamily', id: 2 },
              },
            },
            Empty: { fields: {} },
            MetricsService: {
              methods: {
                StreamMetrics: {
                  requestType: 'StreamMetricsMessage',
                  responseType: 'Empty',
                  requestStream: true,
                  comment: '',
                },
              },
            },
          },
        },
      },
    },
    { keepCase: true, longs: Number, defaults: false },
  );
  const service = def['m.MetricsService'] as unknown as Record<
    string,
    protoLoader.MethodDefinition<unknown, unknown>
  >;
  const decode = service.StreamMetrics!.requestDeserialize as (b: Buffer) => Msg;
  metricsDecoder = decode;
  return decode;
}

let accessLogMessage: NonNullable<ReturnType<typeof lookupMessage>> | undefined;

/** `StreamAccessLogsMessage` of Envoy's protos (looked up once). */
export function accessLogType(): NonNullable<ReturnType<typeof lookupMessage>> {
  if (accessLogMessage) return accessLogMessage;
  const t = lookupMessage('envoy.service.accesslog.v3.StreamAccessLogsMessage');
  if (!t)
    throw new Error('envoy.service.accesslog.v3.StreamAccessLogsMessage is not in the loaded Envoy protos');
  accessLogMessage = t;
  return t;
}

/** Istio's peer metadata (filter state `upstream_peer` / `downstream_peer`) as a Struct. */
export const peerMetadata: PeerMetadataDecoder = (any) => {
  if (!any || str(any.type_url) !== 'type.googleapis.com/google.protobuf.Struct') return undefined;
  const struct = lookupMessage('google.protobuf.Struct');
  if (!struct) return undefined;
  try {
    // protobufjs defines google.protobuf.Value itself, with camelCase field names.
    type Value = { stringValue?: string; structValue?: { fields?: Record<string, Value> } };
    const json = struct.toObject(struct.decode(any.value as Uint8Array)) as {
      fields?: Record<string, Value>;
    };
    const f = json.fields ?? {};
    const s = (k: string) => f[k]?.stringValue ?? '';
    const labels = f.LABELS?.structValue?.fields ?? {};
    const name = s('WORKLOAD_NAME');
    if (!name) return undefined;
    return {
      name,
      namespace: s('NAMESPACE') || 'unknown',
      cluster: s('CLUSTER_ID') || 'unknown',
      app: labels.app?.stringValue || s('APP') || 'unknown',
      version: labels.version?.stringValue || s('VERSION') || 'unknown',
    };
  } catch {
    return undefined;
  }
};

const str = (x: unknown): string => (typeof x === 'string' ? x : '');
