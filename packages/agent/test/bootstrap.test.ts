// The bootstraps as pure functions: the Envoy bootstrap round-trips through
// envoy.config.bootstrap.v3.Bootstrap (Envoy's own protos, strict: no unknown field, enum or PGV rule
// broken), a deliberately wrong field is refused with its path, and the node is what the replica's
// parseNode reads; the gRPC bootstrap has the shape gRFC A27/A29 and Istio use. The gRPC bootstrap is
// also run by a real grpc-js-xds client in bootstrap-grpc.test.ts.
import { decodeResource, type EnvoyJson, EnvoySchemaError, encodeResource, parseNode } from '@meridian/envoy';
import { describe, expect, it } from 'vitest';
import {
  BootstrapError,
  ENVOY_BOOTSTRAP_TYPE,
  type EnvoyBootstrapOptions,
  envoyBootstrap,
  grpcBootstrap,
} from '../src/bootstrap.js';

const WORKLOAD: EnvoyBootstrapOptions = {
  ip: '10.1.0.5',
  podName: 'reviews-v1-7f9c',
  namespace: 'shop',
  serviceAccount: 'bookinfo-reviews',
  clusterId: 'c1',
  meshId: 'mesh1',
  network: 'net-a',
  labels: { app: 'reviews', version: 'v1' },
  locality: 'eu-west/eu-west-1a/rack-3',
  agentAddress: '127.0.0.1:15010',
  adminPort: 15000,
};

const section = (json: EnvoyJson, ...path: string[]): EnvoyJson =>
  path.reduce((at, key) => at[key] as EnvoyJson, json);

function schemaError(json: unknown): EnvoySchemaError {
  try {
    encodeResource(ENVOY_BOOTSTRAP_TYPE, json);
  } catch (error) {
    if (error instanceof EnvoySchemaError) return error;
    throw error;
  }
  throw new Error('expected the bootstrap to be refused');
}

describe('envoyBootstrap', () => {
  it('round-trips through envoy.config.bootstrap.v3.Bootstrap with no unknown field', () => {
    const b = envoyBootstrap(WORKLOAD);
    const bytes = encodeResource(ENVOY_BOOTSTRAP_TYPE, b);
    expect(decodeResource(ENVOY_BOOTSTRAP_TYPE, bytes)).toEqual(b);

    expect(b.node).toEqual({
      id: 'sidecar~10.1.0.5~reviews-v1-7f9c.shop~shop.svc.cluster.local',
      cluster: 'reviews.shop',
      locality: { region: 'eu-west', zone: 'eu-west-1a', sub_zone: 'rack-3' },
      metadata: {
        NAME: 'reviews-v1-7f9c',
        NAMESPACE: 'shop',
        CLUSTER_ID: 'c1',
        SERVICE_ACCOUNT: 'bookinfo-reviews',
        LABELS: { app: 'reviews', version: 'v1' },
        INSTANCE_IPS: '10.1.0.5',
        MESH_ID: 'mesh1',
        NETWORK: 'net-a',
      },
    });
    expect(section(b, 'dynamic_resources')).toEqual({
      ads_config: {
        api_type: 'GRPC',
        transport_api_version: 'V3',
        set_node_on_first_message_only: true,
        grpc_services: [{ envoy_grpc: { cluster_name: 'xds-grpc' } }],
      },
      cds_config: { ads: {}, initial_fetch_timeout: '0s', resource_api_version: 'V3' },
      lds_config: { ads: {}, initial_fetch_timeout: '0s', resource_api_version: 'V3' },
    });
    const [xds] = section(b, 'static_resources').clusters as EnvoyJson[];
    expect(xds!.name).toBe('xds-grpc');
    expect(section(xds!, 'load_assignment').endpoints).toEqual([
      {
        lb_endpoints: [
          { endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: 15010 } } } },
        ],
      },
    ]);
    expect(section(xds!, 'typed_extension_protocol_options')).toEqual({
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
        '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
        explicit_http_config: { http2_protocol_options: {} },
      },
    });
    expect(b.admin).toEqual({ address: { socket_address: { address: '127.0.0.1', port_value: 15000 } } });
  });

  it('the node is what the replica reads with Istio’s conventions', () => {
    const node = parseNode(envoyBootstrap(WORKLOAD).node as EnvoyJson);
    expect(node).toMatchObject({
      kind: 'sidecar',
      ipAddresses: ['10.1.0.5'],
      workloadName: 'reviews-v1-7f9c',
      namespace: 'shop',
      dnsDomain: 'shop.svc.cluster.local',
      clusterId: 'c1',
      meshId: 'mesh1',
      network: 'net-a',
      serviceAccount: 'bookinfo-reviews',
      labels: { app: 'reviews', version: 'v1' },
      locality: { region: 'eu-west', zone: 'eu-west-1a', subZone: 'rack-3' },
    });
    const gateway = parseNode(envoyBootstrap({ ...WORKLOAD, nodeType: 'router' }).node as EnvoyJson);
    expect(gateway.kind).toBe('router');
  });

  it('a Unix socket agent address becomes a pipe; delta selects DELTA_GRPC', () => {
    const b = envoyBootstrap({ ...WORKLOAD, agentAddress: 'unix:///var/run/meridian/xds.sock', delta: true });
    encodeResource(ENVOY_BOOTSTRAP_TYPE, b);
    const [xds] = section(b, 'static_resources').clusters as EnvoyJson[];
    expect(section(xds!, 'load_assignment').endpoints).toEqual([
      { lb_endpoints: [{ endpoint: { address: { pipe: { path: '/var/run/meridian/xds.sock' } } } }] },
    ]);
    expect(section(b, 'dynamic_resources', 'ads_config').api_type).toBe('DELTA_GRPC');
  });

  it('a deliberately wrong field is refused by the Bootstrap proto, with its path', () => {
    const b = envoyBootstrap(WORKLOAD);
    const ads = section(b, 'dynamic_resources', 'ads_config');
    const typo = {
      ...b,
      dynamic_resources: {
        ...section(b, 'dynamic_resources'),
        ads_config: { ...ads, set_node_on_first_message: true },
      },
    };
    expect(schemaError(typo).problems).toEqual([
      {
        path: 'dynamic_resources.ads_config.set_node_on_first_message',
        reason: 'unknown field "set_node_on_first_message" in envoy.config.core.v3.ApiConfigSource',
      },
    ]);
    const enumValue = {
      ...b,
      dynamic_resources: {
        ...section(b, 'dynamic_resources'),
        ads_config: { ...ads, transport_api_version: 'V4' },
      },
    };
    expect(schemaError(enumValue).problems[0]!.path).toBe(
      'dynamic_resources.ads_config.transport_api_version',
    );
    // protoc-gen-validate: a port above 65535 (the proto type is uint32).
    const port = {
      ...b,
      admin: { address: { socket_address: { address: '127.0.0.1', port_value: 70000 } } },
    };
    expect(schemaError(port).problems).toEqual([
      { path: 'admin.address.socket_address.port_value', reason: 'must be at most 65535, got 70000' },
    ]);
    // And at the top level.
    expect(schemaError({ ...b, nodes: {} }).message).toBe(
      'envoy.config.bootstrap.v3.Bootstrap: nodes: unknown field "nodes" in envoy.config.bootstrap.v3.Bootstrap',
    );
  });

  it('bad options are refused naming the option', () => {
    const refused = (o: Partial<EnvoyBootstrapOptions>) => {
      try {
        envoyBootstrap({ ...WORKLOAD, ...o });
      } catch (error) {
        expect(error).toBeInstanceOf(BootstrapError);
        return (error as BootstrapError).message;
      }
      throw new Error('expected a BootstrapError');
    };
    expect(refused({ ip: 'pod-a' })).toBe('ip: "pod-a" is not an IP address');
    expect(refused({ namespace: 'Shop' })).toBe('namespace: "Shop" is not a DNS-1123 label');
    expect(refused({ podName: '' })).toBe('podName: "" is not a DNS-1123 subdomain');
    expect(refused({ serviceAccount: '' })).toBe('serviceAccount: "" is not a DNS-1123 subdomain');
    expect(refused({ clusterId: '' })).toBe('clusterId: "" must be non-empty, without spaces, "~" or "/"');
    expect(refused({ adminPort: 0 })).toBe('adminPort: must be 1..65535, got 0');
    expect(refused({ agentAddress: 'localhost' })).toBe(
      'agentAddress: "localhost" is not host:port, [ipv6]:port or unix:///path',
    );
    expect(refused({ agentAddress: '127.0.0.1:99999' })).toBe('agentAddress: port 99999 is outside 1..65535');
    expect(refused({ locality: 'a/b/c/d' })).toBe(
      'locality: "a/b/c/d" has 4 parts; expected region/zone/subzone',
    );
    expect(refused({ extraMetadata: { NAMESPACE: 'other' } })).toBe(
      'extraMetadata.NAMESPACE: is set by the bootstrap itself; use the option instead',
    );
    const e = (() => {
      try {
        envoyBootstrap({ ...WORKLOAD, adminAddress: 'localhost' });
      } catch (error) {
        return error as BootstrapError;
      }
    })();
    expect(e?.field).toBe('adminAddress');
  });
});

describe('grpcBootstrap', () => {
  it('is the GRPC_XDS_BOOTSTRAP JSON with the agent, the node, file_watcher and Istio’s template', () => {
    const b = grpcBootstrap({
      ...WORKLOAD,
      agentAddress: '127.0.0.1:15010',
      certificateDir: '/var/run/secrets/workload-spiffe-credentials/',
    });
    expect(b.xds_servers).toEqual([
      { server_uri: '127.0.0.1:15010', channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] },
    ]);
    expect(b.node.metadata.GENERATOR).toBe('grpc');
    expect(b.node.locality).toEqual({ region: 'eu-west', zone: 'eu-west-1a', sub_zone: 'rack-3' });
    expect(b.certificate_providers).toEqual({
      default: {
        plugin_name: 'file_watcher',
        config: {
          certificate_file: '/var/run/secrets/workload-spiffe-credentials/cert-chain.pem',
          private_key_file: '/var/run/secrets/workload-spiffe-credentials/key.pem',
          ca_certificate_file: '/var/run/secrets/workload-spiffe-credentials/root-cert.pem',
          refresh_interval: '900s',
        },
      },
    });
    expect(b.server_listener_resource_name_template).toBe('xds.istio.io/grpc/lds/inbound/%s');
    const node = parseNode(b.node as unknown as EnvoyJson);
    expect(node.kind).toBe('grpc');
    expect(node.namespace).toBe('shop');
    expect(node.serviceAccount).toBe('bookinfo-reviews');
    // grpc-js-xds requires a locality: there is always one, empty parts when unknown.
    expect(grpcBootstrap({ ...WORKLOAD, locality: undefined, certificateDir: '/c' }).node.locality).toEqual({
      region: '',
      zone: '',
      sub_zone: '',
    });
  });

  it('bad options are refused naming the option', () => {
    const o = { ...WORKLOAD, certificateDir: '/c' };
    expect(() => grpcBootstrap({ ...o, refreshInterval: '15m' })).toThrow(
      new BootstrapError('refreshInterval', '"15m" is not a positive duration such as "900s"'),
    );
    expect(() => grpcBootstrap({ ...o, certificateDir: '' })).toThrow(
      new BootstrapError('certificateDir', 'is required'),
    );
    expect(() => grpcBootstrap({ ...o, agentAddress: 'unix:relative' })).toThrow(
      new BootstrapError('agentAddress', '"unix:relative" is not unix:///absolute/path'),
    );
    expect(() => grpcBootstrap({ ...o, extraMetadata: { GENERATOR: 'envoy' } })).toThrow(BootstrapError);
  });
});
