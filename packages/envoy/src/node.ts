import type { JsonValue } from './json.js';

/** What kind of xDS client a node is: an Envoy sidecar, an Envoy gateway, or a proxyless gRPC client. */
export type ProxyKind = 'sidecar' | 'router' | 'grpc';

/** Where a proxy runs, as Envoy's `Locality`. Empty strings mean unknown. */
export interface Locality {
  readonly region: string;
  readonly zone: string;
  readonly subZone: string;
}

/** The facts about a connected proxy that translation and policy need, read from its xDS `Node`. */
export interface ProxyInfo {
  /** The node id exactly as sent. */
  readonly id: string;
  readonly kind: ProxyKind;
  readonly ipAddresses: readonly string[];
  /** Pod or workload name, when the id follows Istio's convention. */
  readonly workloadName: string;
  readonly namespace: string;
  /** DNS domain of the id, e.g. `default.svc.cluster.local`. */
  readonly dnsDomain: string;
  /** The cluster the proxy runs in (metadata CLUSTER_ID); empty when not sent. */
  readonly clusterId: string;
  readonly meshId: string;
  readonly network: string;
  readonly serviceAccount: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly locality: Locality;
  /** The node's metadata as sent, for generator-specific keys. */
  readonly metadata: Readonly<Record<string, JsonValue>>;
}

/** A node that cannot be understood; `field` names the part of `Node` that is wrong. */
export class NodeError extends Error {
  override readonly name = 'NodeError';
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`node.${field}: ${message}`);
  }
}

const ISTIO_NODE_TYPES = new Set(['sidecar', 'router']);

function text(value: JsonValue | undefined): string {
  return typeof value === 'string' ? value : '';
}

/**
 * Reads an xDS `Node` (in Envoy JSON, as decodeResource gives it) with Istio's conventions: id
 * `sidecar~<ip>~<pod>.<ns>~<ns>.svc.cluster.local` (or `router~...`), metadata `NAMESPACE`,
 * `CLUSTER_ID`, `LABELS`, `SERVICE_ACCOUNT`, `MESH_ID`, `NETWORK`, `INSTANCE_IPS` and
 * `GENERATOR: grpc` for proxyless gRPC clients. A node id in another form is accepted when
 * `metadata.NAMESPACE` says where the proxy runs.
 */
export function parseNode(node: { readonly [key: string]: JsonValue } | undefined): ProxyInfo {
  if (!node) throw new NodeError('id', 'the first request of a stream must carry a node');
  const id = text(node.id).trim();
  if (id === '') throw new NodeError('id', 'is empty');
  if (id.length > 1024)
    throw new NodeError('id', `is ${id.length} characters long; at most 1024 are allowed`);
  const rawMetadata = node.metadata;
  const metadata: Record<string, JsonValue> =
    rawMetadata && typeof rawMetadata === 'object' && !Array.isArray(rawMetadata) ? rawMetadata : {};

  let kind: ProxyKind = 'sidecar';
  let ipAddresses: string[] = [];
  let workloadName = '';
  let namespace = text(metadata.NAMESPACE);
  let dnsDomain = '';
  const parts = id.split('~');
  if (parts.length === 4) {
    const [type, ip, workload, domain] = parts as [string, string, string, string];
    if (!ISTIO_NODE_TYPES.has(type)) {
      throw new NodeError('id', `"${id}" has node type "${type}"; expected sidecar or router`);
    }
    kind = type as ProxyKind;
    ipAddresses = ip === '' ? [] : [ip];
    const dot = workload.lastIndexOf('.');
    workloadName = dot > 0 ? workload.slice(0, dot) : workload;
    if (namespace === '' && dot > 0) namespace = workload.slice(dot + 1);
    if (namespace === '') namespace = domain.split('.')[0] ?? '';
    dnsDomain = domain;
  } else if (namespace === '') {
    throw new NodeError(
      'id',
      `"${id}" is not an Istio node id (type~ip~pod.namespace~domain) and node.metadata.NAMESPACE is not set`,
    );
  }
  if (namespace === '')
    throw new NodeError('metadata.NAMESPACE', 'is empty and the node id names no namespace');

  const instanceIps = text(metadata.INSTANCE_IPS)
    .split(',')
    .map((ip) => ip.trim())
    .filter((ip) => ip !== '');
  for (const ip of instanceIps) if (!ipAddresses.includes(ip)) ipAddresses.push(ip);
  if (text(metadata.GENERATOR) === 'grpc') kind = 'grpc';

  const labels: Record<string, string> = {};
  const rawLabels = metadata.LABELS;
  if (rawLabels && typeof rawLabels === 'object' && !Array.isArray(rawLabels)) {
    for (const key of Object.keys(rawLabels).sort()) {
      const value = rawLabels[key];
      if (typeof value !== 'string') throw new NodeError(`metadata.LABELS.${key}`, 'must be a string');
      labels[key] = value;
    }
  }
  const rawLocality = node.locality;
  const locality =
    rawLocality && typeof rawLocality === 'object' && !Array.isArray(rawLocality)
      ? {
          region: text(rawLocality.region),
          zone: text(rawLocality.zone),
          subZone: text(rawLocality.sub_zone),
        }
      : { region: '', zone: '', subZone: '' };

  return {
    id,
    kind,
    ipAddresses,
    workloadName,
    namespace,
    dnsDomain,
    clusterId: text(metadata.CLUSTER_ID),
    meshId: text(metadata.MESH_ID),
    network: text(metadata.NETWORK),
    serviceAccount: text(metadata.SERVICE_ACCOUNT),
    labels,
    locality,
    metadata,
  };
}
