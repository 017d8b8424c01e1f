// Bootstrap files for the proxies beside a workload: the Envoy v3 bootstrap (ADS to
// the local agent, node in Istio's conventions, admin port) and the GRPC_XDS_BOOTSTRAP JSON of
// proxyless gRPC clients (node with locality, `file_watcher` certificate provider). Pure: both are
// functions of their options. The Envoy bootstrap is checked against `envoy.config.bootstrap.v3.Bootstrap`
// (unknown fields, types, protoc-gen-validate rules) before it is returned, so a file Envoy would refuse
// is never written.
import { isIP } from 'node:net';
import { type EnvoyJson, encodeResource, type JsonValue, type Locality } from '@meridian/envoy';

/** Full name of the message an Envoy bootstrap is encoded as. */
export const ENVOY_BOOTSTRAP_TYPE = 'envoy.config.bootstrap.v3.Bootstrap';
/** Name of the static cluster through which Envoy reaches the agent's ADS server (Istio's name). */
export const XDS_CLUSTER = 'xds-grpc';
/** Istio's template of proxyless gRPC server listener names (`<ip>:<port>` replaces `%s`). */
export const GRPC_SERVER_LISTENER_TEMPLATE = 'xds.istio.io/grpc/lds/inbound/%s';
/** Istio's file names for the `file_watcher` certificate provider. */
export const CERTIFICATE_FILES = {
  certificateChain: 'cert-chain.pem',
  privateKey: 'key.pem',
  rootCertificate: 'root-cert.pem',
} as const;
/** Default Envoy admin port (istio-proxy's). */
export const DEFAULT_ADMIN_PORT = 15000;
/** Default refresh interval of gRPC's `file_watcher` provider (istio-agent's). */
export const DEFAULT_CERTIFICATE_REFRESH = '900s';

const HTTP_PROTOCOL_OPTIONS = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DURATION = /^\d+(\.\d{1,9})?s$/;
/** Node metadata keys the bootstrap sets itself (extra metadata may not override them). */
const RESERVED_METADATA = new Set([
  'NAMESPACE',
  'CLUSTER_ID',
  'LABELS',
  'SERVICE_ACCOUNT',
  'MESH_ID',
  'NETWORK',
  'INSTANCE_IPS',
  'NAME',
  'GENERATOR',
]);

/** An option of a bootstrap that cannot be used; `field` names it. */
export class BootstrapError extends Error {
  override readonly name = 'BootstrapError';
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}

/** The workload a proxy runs beside: what its xDS `Node` says, in Istio's conventions. */
export interface WorkloadNodeOptions {
  /** The workload's IP address (the node id's second part and `INSTANCE_IPS`). */
  readonly ip: string;
  /** Pod or workload instance name. */
  readonly podName: string;
  readonly namespace: string;
  /** The Kubernetes service account, i.e. the workload's identity (`SERVICE_ACCOUNT`). */
  readonly serviceAccount: string;
  /** The cluster the workload runs in (`CLUSTER_ID`). */
  readonly clusterId: string;
  readonly meshId?: string;
  readonly network?: string;
  readonly labels?: Readonly<Record<string, string>>;
  /** `region/zone/subzone`, or the parts. */
  readonly locality?: string | Partial<Locality>;
  /** `sidecar` (default) or `router` (a gateway). */
  readonly nodeType?: 'sidecar' | 'router';
  /** DNS suffix of the node id's domain (default `cluster.local`: `<ns>.svc.cluster.local`). */
  readonly clusterDomain?: string;
  /** Envoy's `node.cluster` (default `<canonical name or app label or pod>.<namespace>`, as Istio). */
  readonly serviceCluster?: string;
  /** Further metadata keys (for example `PROXY_CONFIG`); the keys set from the fields above are refused. */
  readonly extraMetadata?: Readonly<Record<string, JsonValue>>;
}

/** Options of {@link envoyBootstrap}. */
export interface EnvoyBootstrapOptions extends WorkloadNodeOptions {
  /** Where the agent serves xDS: `host:port`, `[v6]:port`, or `unix:///path` (`unix:/path`). */
  readonly agentAddress: string;
  /** Envoy's admin port (default 15000), bound to `adminAddress`. */
  readonly adminPort?: number;
  /** Envoy's admin listen address (default `127.0.0.1`; the admin API must not leave the host). */
  readonly adminAddress?: string;
  /** Use Delta xDS (`DELTA_GRPC`) instead of State-of-the-World (default false). */
  readonly delta?: boolean;
}

/** Options of {@link grpcBootstrap}. */
export interface GrpcBootstrapOptions extends WorkloadNodeOptions {
  /** Where the agent serves xDS: `host:port`, `[v6]:port` or `unix:///path`. */
  readonly agentAddress: string;
  /** Directory of `cert-chain.pem`, `key.pem`, `root-cert.pem` (see WorkloadCertificates.writeFiles). */
  readonly certificateDir: string;
  /** How often gRPC re-reads the files (default `900s`, as istio-agent). */
  readonly refreshInterval?: string;
}

/** The `node` part shared by both bootstraps, in Envoy JSON. */
export interface BootstrapNode {
  readonly id: string;
  readonly cluster: string;
  readonly locality: { region: string; zone: string; sub_zone: string };
  readonly metadata: Record<string, JsonValue>;
}

/** The GRPC_XDS_BOOTSTRAP JSON (gRFC A27, with A29's certificate providers and Istio's template). */
export interface GrpcXdsBootstrap {
  readonly xds_servers: ReadonlyArray<{
    readonly server_uri: string;
    readonly channel_creds: ReadonlyArray<{ readonly type: string }>;
    readonly server_features: readonly string[];
  }>;
  readonly node: BootstrapNode;
  readonly certificate_providers: {
    readonly default: {
      readonly plugin_name: 'file_watcher';
      readonly config: {
        readonly certificate_file: string;
        readonly private_key_file: string;
        readonly ca_certificate_file: string;
        readonly refresh_interval: string;
      };
    };
  };
  readonly server_listener_resource_name_template: string;
}

function parseLocalityOption(value: WorkloadNodeOptions['locality']): Locality {
  if (value === undefined) return { region: '', zone: '', subZone: '' };
  if (typeof value === 'string') {
    const parts = value === '' ? [] : value.split('/');
    if (parts.length > 3)
      throw new BootstrapError(
        'locality',
        `"${value}" has ${parts.length} parts; expected region/zone/subzone`,
      );
    const [region = '', zone = '', subZone = ''] = parts;
    return { region, zone, subZone };
  }
  return { region: value.region ?? '', zone: value.zone ?? '', subZone: value.subZone ?? '' };
}

/**
 * The xDS `Node` of a workload in Istio's conventions: id `sidecar~<ip>~<pod>.<ns>~<ns>.svc.cluster.local`,
 * `cluster` the service cluster, `locality`, and metadata `NAMESPACE`, `CLUSTER_ID`, `LABELS`,
 * `SERVICE_ACCOUNT`, `MESH_ID`, `NETWORK`, `INSTANCE_IPS`, `NAME` (what `parseNode` of @meridian/envoy
 * reads on the replica). Throws {@link BootstrapError} naming the first bad option.
 */
export function workloadNode(o: WorkloadNodeOptions, extra: Record<string, JsonValue> = {}): BootstrapNode {
  if (isIP(o.ip) === 0) throw new BootstrapError('ip', `"${o.ip}" is not an IP address`);
  if (!o.podName || o.podName.length > 253 || !DNS_SUBDOMAIN.test(o.podName))
    throw new BootstrapError('podName', `"${o.podName}" is not a DNS-1123 subdomain`);
  if (!o.namespace || o.namespace.length > 63 || !DNS_LABEL.test(o.namespace))
    throw new BootstrapError('namespace', `"${o.namespace}" is not a DNS-1123 label`);
  if (!o.serviceAccount || o.serviceAccount.length > 253 || !DNS_SUBDOMAIN.test(o.serviceAccount))
    throw new BootstrapError('serviceAccount', `"${o.serviceAccount}" is not a DNS-1123 subdomain`);
  if (!o.clusterId || /[\s~/]/.test(o.clusterId))
    throw new BootstrapError('clusterId', `"${o.clusterId}" must be non-empty, without spaces, "~" or "/"`);
  const nodeType = o.nodeType ?? 'sidecar';
  if (nodeType !== 'sidecar' && nodeType !== 'router')
    throw new BootstrapError('nodeType', `must be sidecar or router, got "${String(nodeType)}"`);
  const domainSuffix = o.clusterDomain ?? 'cluster.local';
  if (!DNS_SUBDOMAIN.test(domainSuffix))
    throw new BootstrapError('clusterDomain', `"${domainSuffix}" is not a DNS name`);
  const labels: Record<string, string> = {};
  for (const key of Object.keys(o.labels ?? {}).sort()) {
    const value = o.labels![key];
    if (typeof value !== 'string') throw new BootstrapError(`labels.${key}`, 'must be a string');
    labels[key] = value;
  }
  const locality = parseLocalityOption(o.locality);
  for (const key of Object.keys(o.extraMetadata ?? {})) {
    if (RESERVED_METADATA.has(key))
      throw new BootstrapError(
        `extraMetadata.${key}`,
        'is set by the bootstrap itself; use the option instead',
      );
  }
  const canonical = labels['service.istio.io/canonical-name'] ?? labels.app ?? o.podName;
  const metadata: Record<string, JsonValue> = {
    ...(o.extraMetadata ?? {}),
    NAME: o.podName,
    NAMESPACE: o.namespace,
    CLUSTER_ID: o.clusterId,
    SERVICE_ACCOUNT: o.serviceAccount,
    LABELS: labels,
    INSTANCE_IPS: o.ip,
    ...(o.meshId ? { MESH_ID: o.meshId } : {}),
    ...(o.network ? { NETWORK: o.network } : {}),
    ...extra,
  };
  return {
    id: `${nodeType}~${o.ip}~${o.podName}.${o.namespace}~${o.namespace}.svc.${domainSuffix}`,
    cluster: o.serviceCluster ?? `${canonical}.${o.namespace}`,
    locality: { region: locality.region, zone: locality.zone, sub_zone: locality.subZone },
    metadata,
  };
}

/** An agent address as Envoy's `Address`: a socket address or a pipe (Unix domain socket). */
function envoyAddress(field: string, address: string): EnvoyJson {
  const unix = /^unix:(?:\/\/)?(\/.+)$/.exec(address);
  if (unix) return { pipe: { path: unix[1]! } };
  const { host, port } = splitHostPort(field, address);
  return { socket_address: { address: host, port_value: port } };
}

function splitHostPort(field: string, address: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(address) ?? /^([^:[\]]+):(\d+)$/.exec(address);
  if (!m) throw new BootstrapError(field, `"${address}" is not host:port, [ipv6]:port or unix:///path`);
  const port = Number(m[2]);
  if (port < 1 || port > 65535) throw new BootstrapError(field, `port ${m[2]} is outside 1..65535`);
  return { host: m[1]!, port };
}

/**
 * The Envoy v3 bootstrap of a sidecar beside this agent, as Envoy JSON (snake_case, as in Envoy's
 * docs): the node in Istio's conventions; ADS over gRPC (`envoy_grpc` to the static cluster
 * `xds-grpc`, HTTP/2, pointing at the agent) with `set_node_on_first_message_only`; CDS and LDS
 * through ADS (and with them RDS, EDS and SDS: the replica's clusters and listeners name the secrets
 * `default` and `ROOTCA` with `sds_config: {ads: {}}`, which the agent serves); the admin API on
 * `adminAddress:adminPort`. Checked against `envoy.config.bootstrap.v3.Bootstrap` before it is returned:
 * throws {@link BootstrapError} for a bad option, `EnvoySchemaError` if the result broke Envoy's schema.
 */
export function envoyBootstrap(o: EnvoyBootstrapOptions): EnvoyJson {
  const node = workloadNode(o);
  const adminPort = o.adminPort ?? DEFAULT_ADMIN_PORT;
  if (!Number.isInteger(adminPort) || adminPort < 1 || adminPort > 65535)
    throw new BootstrapError('adminPort', `must be 1..65535, got ${adminPort}`);
  const adminAddress = o.adminAddress ?? '127.0.0.1';
  if (isIP(adminAddress) === 0)
    throw new BootstrapError('adminAddress', `"${adminAddress}" is not an IP address`);
  const viaAds = { ads: {}, initial_fetch_timeout: '0s', resource_api_version: 'V3' };
  const bootstrap: EnvoyJson = {
    node: node as unknown as EnvoyJson,
    dynamic_resources: {
      ads_config: {
        api_type: o.delta ? 'DELTA_GRPC' : 'GRPC',
        transport_api_version: 'V3',
        set_node_on_first_message_only: true,
        grpc_services: [{ envoy_grpc: { cluster_name: XDS_CLUSTER } }],
      },
      cds_config: viaAds,
      lds_config: viaAds,
    },
    static_resources: {
      clusters: [
        {
          name: XDS_CLUSTER,
          type: 'STATIC',
          connect_timeout: '1s',
          load_assignment: {
            cluster_name: XDS_CLUSTER,
            endpoints: [
              { lb_endpoints: [{ endpoint: { address: envoyAddress('agentAddress', o.agentAddress) } }] },
            ],
          },
          typed_extension_protocol_options: {
            [HTTP_PROTOCOL_OPTIONS]: {
              '@type': `type.googleapis.com/${HTTP_PROTOCOL_OPTIONS}`,
              explicit_http_config: { http2_protocol_options: {} },
            },
          },
        },
      ],
    },
    admin: { address: { socket_address: { address: adminAddress, port_value: adminPort } } },
  };
  encodeResource(ENVOY_BOOTSTRAP_TYPE, bootstrap);
  return bootstrap;
}

/**
 * The GRPC_XDS_BOOTSTRAP JSON of a proxyless gRPC workload beside this agent: the agent as its only
 * xDS server (plaintext over loopback, `xds_v3`), the node as for Envoy plus `GENERATOR: grpc` (always
 * with a locality, which grpc-js-xds requires), the `default` certificate provider `file_watcher` on
 * Istio's file names in `certificateDir`, and Istio's server listener name template.
 */
export function grpcBootstrap(o: GrpcBootstrapOptions): GrpcXdsBootstrap {
  const node = workloadNode(o, { GENERATOR: 'grpc' });
  if (!/^unix:/.test(o.agentAddress)) splitHostPort('agentAddress', o.agentAddress);
  else if (!/^unix:(\/\/)?\/.+$/.test(o.agentAddress))
    throw new BootstrapError('agentAddress', `"${o.agentAddress}" is not unix:///absolute/path`);
  if (!o.certificateDir) throw new BootstrapError('certificateDir', 'is required');
  const refresh = o.refreshInterval ?? DEFAULT_CERTIFICATE_REFRESH;
  if (!DURATION.test(refresh) || Number(refresh.slice(0, -1)) <= 0)
    throw new BootstrapError('refreshInterval', `"${refresh}" is not a positive duration such as "900s"`);
  const dir = o.certificateDir.replace(/\/+$/, '') || '/';
  const file = (name: string) => (dir === '/' ? `/${name}` : `${dir}/${name}`);
  return {
    xds_servers: [
      {
        server_uri: o.agentAddress,
        channel_creds: [{ type: 'insecure' }],
        server_features: ['xds_v3'],
      },
    ],
    node,
    certificate_providers: {
      default: {
        plugin_name: 'file_watcher',
        config: {
          certificate_file: file(CERTIFICATE_FILES.certificateChain),
          private_key_file: file(CERTIFICATE_FILES.privateKey),
          ca_certificate_file: file(CERTIFICATE_FILES.rootCertificate),
          refresh_interval: refresh,
        },
      },
    },
    server_listener_resource_name_template: GRPC_SERVER_LISTENER_TEMPLATE,
  };
}
