// The rate-limit service cluster over mesh mTLS (issue 16): with the replicas' CA-port addresses
// marked `mtls`, the proxy presents its workload certificate (SDS `default`) and accepts only a
// certificate from the mesh root (SDS `ROOTCA`) naming one of the replicas' hosts; plaintext only
// when no address is marked. Checked against Envoy's proto schema.
import { parseConfigDocuments } from '@meridian/api';
import { checkResource, decodeResource, type EnvoyJson, encodeResource, TypeUrl } from '@meridian/envoy';
import { describe, expect, it } from 'vitest';
import {
  createConfigSnapshot,
  type PolicyInputs,
  type ProxyResources,
  rateLimitCluster,
  replicaServiceTransportSocket,
  translateProxy,
} from '../src/index.js';
import { bookinfoRegistry, proxy } from './fixtures.js';

const RL = `apiVersion: policy.meridian.io/v1alpha1
kind: RateLimit
metadata: {name: rl, namespace: default}
spec:
  global: {limits: [{key: SOURCE_PRINCIPAL, requestsPerUnit: 10, unit: MINUTE}]}
`;

function translate(inputs: PolicyInputs): ProxyResources {
  const r = parseConfigDocuments(RL, { source: 't.yaml' });
  if (!r.ok) throw new Error(r.error.message);
  return translateProxy(
    createConfigSnapshot(1, r.configs, inputs),
    bookinfoRegistry(),
    proxy({ grpc: false }),
  );
}

const cluster = (out: ProxyResources) => out.clusters.find((c) => c.name === 'meridian-ratelimit')?.resource;

describe('rate-limit service cluster', () => {
  it('mTLS to the replicas: workload certificate, mesh root, replica hosts as typed SANs', () => {
    const out = translate({
      rateLimitService: [
        { host: '10.0.0.12', port: 15012, mtls: true },
        { host: 'replica-a.meridian.svc', port: 15012, mtls: true },
        { host: '10.0.0.11', port: 15012, mtls: true },
        { host: '10.0.0.11', port: 15013, mtls: true },
      ],
    });
    const c = cluster(out);
    expect(c).toBeDefined();
    expect(checkResource(TypeUrl.Cluster, c)).toEqual([]);
    expect(decodeResource(TypeUrl.Cluster, encodeResource(TypeUrl.Cluster, c)).name).toBe(
      'meridian-ratelimit',
    );
    expect(c?.transport_socket).toEqual({
      name: 'envoy.transport_sockets.tls',
      typed_config: {
        '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
        common_tls_context: {
          tls_certificate_sds_secret_configs: [
            { name: 'default', sds_config: { ads: {}, resource_api_version: 'V3' } },
          ],
          combined_validation_context: {
            default_validation_context: {
              match_typed_subject_alt_names: [
                { san_type: 'IP_ADDRESS', matcher: { exact: '10.0.0.11' } },
                { san_type: 'IP_ADDRESS', matcher: { exact: '10.0.0.12' } },
                { san_type: 'DNS', matcher: { exact: 'replica-a.meridian.svc' } },
              ],
            },
            validation_context_sds_secret_config: {
              name: 'ROOTCA',
              sds_config: { ads: {}, resource_api_version: 'V3' },
            },
          },
          alpn_protocols: ['h2'],
        },
      },
    });
    // Endpoints keep the given order (the replica sorts them by replica id).
    const endpoints = ((c!.load_assignment as EnvoyJson).endpoints as EnvoyJson[])[0]
      ?.lb_endpoints as EnvoyJson[];
    expect(endpoints.map((e) => JSON.stringify(e))).toEqual([
      JSON.stringify({
        endpoint: { address: { socket_address: { address: '10.0.0.12', port_value: 15012 } } },
      }),
      JSON.stringify({
        endpoint: { address: { socket_address: { address: 'replica-a.meridian.svc', port_value: 15012 } } },
      }),
      JSON.stringify({
        endpoint: { address: { socket_address: { address: '10.0.0.11', port_value: 15012 } } },
      }),
      JSON.stringify({
        endpoint: { address: { socket_address: { address: '10.0.0.11', port_value: 15013 } } },
      }),
    ]);
    expect(c?.type).toBe('STRICT_DNS');
  });

  it('IPv6 hosts are IP SANs', () => {
    const tls = replicaServiceTransportSocket([{ host: '::1', port: 15012, mtls: true }]);
    const ctx = (tls!.typed_config as EnvoyJson).common_tls_context as EnvoyJson;
    expect(
      ((ctx.combined_validation_context as EnvoyJson).default_validation_context as EnvoyJson)
        .match_typed_subject_alt_names,
    ).toEqual([{ san_type: 'IP_ADDRESS', matcher: { exact: '::1' } }]);
  });

  it('plaintext only when no address is marked mtls; one marked makes the whole cluster mTLS', () => {
    const plain = cluster(translate({ rateLimitService: [{ host: '10.0.0.11', port: 15010 }] }));
    expect(plain?.transport_socket).toBeUndefined();
    expect(checkResource(TypeUrl.Cluster, plain)).toEqual([]);
    const mixed = rateLimitCluster([
      { host: '10.0.0.11', port: 15010 },
      { host: '10.0.0.12', port: 15012, mtls: true },
    ]);
    expect(mixed.transport_socket).toBeDefined();
    expect(replicaServiceTransportSocket([])).toBeUndefined();
  });
});
