import type { PeerAuthenticationConfig } from '@meridian/api';
import {
  grpcServerTransportSocket,
  inboundFilterChains,
  modeForPort,
  resolvePeerAuthentication,
  TLS_INSPECTOR,
  upstreamTransportSocket,
} from '@meridian/ca';
import { checkResource, type EnvoyJson, TypeUrl } from '@meridian/envoy';
import { describe, expect, it } from 'vitest';

function pa(
  namespace: string,
  name: string,
  spec: PeerAuthenticationConfig['spec'],
  creationTimestamp?: string,
): PeerAuthenticationConfig {
  return {
    apiVersion: 'security.istio.io/v1',
    kind: 'PeerAuthentication',
    metadata: { namespace, name, ...(creationTimestamp ? { creationTimestamp } : {}) },
    spec,
  };
}

const shopApp = { namespace: 'shop', labels: { app: 'cart' } };

describe('PeerAuthentication resolution (Istio precedence)', () => {
  it('defaults to PERMISSIVE', () => {
    expect(resolvePeerAuthentication([], shopApp)).toEqual({ mode: 'PERMISSIVE', ports: new Map() });
  });

  it('workload over namespace over mesh; UNSET inherits', () => {
    const mesh = pa('istio-system', 'default', { mtls: { mode: 'STRICT' } });
    const ns = pa('shop', 'default', { mtls: { mode: 'PERMISSIVE' } });
    const wl = pa('shop', 'cart', { selector: { matchLabels: { app: 'cart' } }, mtls: { mode: 'DISABLE' } });
    const unset = pa('shop', 'cart-unset', {
      selector: { matchLabels: { app: 'cart' } },
      mtls: { mode: 'UNSET' },
    });
    expect(resolvePeerAuthentication([mesh], shopApp).mode).toBe('STRICT');
    expect(resolvePeerAuthentication([mesh, ns], shopApp).mode).toBe('PERMISSIVE');
    expect(resolvePeerAuthentication([mesh, ns, wl], shopApp).mode).toBe('DISABLE');
    expect(resolvePeerAuthentication([mesh, unset], shopApp).mode).toBe('STRICT');
    // A selector that does not match, and another namespace's policy, do not apply.
    const other = pa('shop', 'web', { selector: { matchLabels: { app: 'web' } }, mtls: { mode: 'DISABLE' } });
    const elsewhere = pa('billing', 'default', { mtls: { mode: 'DISABLE' } });
    expect(resolvePeerAuthentication([mesh, other, elsewhere], shopApp).mode).toBe('STRICT');
  });

  it('port-level modes need a selector; an UNSET port inherits', () => {
    const wl = pa('shop', 'cart', {
      selector: { matchLabels: { app: 'cart' } },
      mtls: { mode: 'STRICT' },
      portLevelMtls: { '8080': { mode: 'DISABLE' }, '9090': { mode: 'UNSET' } },
    });
    const r = resolvePeerAuthentication([wl], shopApp);
    expect(modeForPort(r, 8080)).toBe('DISABLE');
    expect(modeForPort(r, 9090)).toBe('STRICT');
    expect(modeForPort(r, 443)).toBe('STRICT');
    const nsLevel = pa('shop', 'default', {
      mtls: { mode: 'STRICT' },
      portLevelMtls: { '8080': { mode: 'DISABLE' } },
    });
    expect(modeForPort(resolvePeerAuthentication([nsLevel], shopApp), 8080)).toBe('STRICT');
  });

  it('the oldest policy wins at one level', () => {
    const older = pa('shop', 'b', { mtls: { mode: 'STRICT' } }, '2026-01-01T00:00:00Z');
    const newer = pa('shop', 'a', { mtls: { mode: 'DISABLE' } }, '2026-06-01T00:00:00Z');
    expect(resolvePeerAuthentication([newer, older], shopApp).mode).toBe('STRICT');
  });
});

function listenerWith(chains: EnvoyJson[]): EnvoyJson {
  return {
    name: 'virtualInbound',
    address: { socket_address: { address: '0.0.0.0', port_value: 15006 } },
    listener_filters: [TLS_INSPECTOR],
    filter_chains: chains,
  };
}

const plain: EnvoyJson = {
  name: 'inbound|8080||',
  filter_chain_match: { destination_port: 8080 },
  filters: [
    {
      name: 'envoy.filters.network.tcp_proxy',
      typed_config: {
        '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
        stat_prefix: 'inbound|8080||',
        cluster: 'inbound|8080||',
      },
    },
  ],
};

describe('Envoy resources that enforce the mode (validated against Envoy schemas)', () => {
  it('STRICT: only a TLS chain requiring client certificates; PERMISSIVE: TLS + plaintext; DISABLE: plaintext', () => {
    const strict = inboundFilterChains('STRICT', plain);
    expect(strict).toHaveLength(1);
    expect(strict[0]).toMatchObject({
      filter_chain_match: { destination_port: 8080, transport_protocol: 'tls' },
      transport_socket: { typed_config: { require_client_certificate: true } },
    });
    const permissive = inboundFilterChains('PERMISSIVE', plain);
    expect(permissive.map((c) => (c.filter_chain_match as EnvoyJson).transport_protocol)).toEqual([
      'tls',
      'raw_buffer',
    ]);
    expect(inboundFilterChains('DISABLE', plain)).toEqual([plain]);
    for (const chains of [strict, permissive]) {
      expect(checkResource(TypeUrl.Listener, listenerWith(chains))).toEqual([]);
    }
    // The schema check reaches into typed_config: a wrong field there is reported.
    const broken = JSON.parse(JSON.stringify(strict[0])) as EnvoyJson;
    ((broken.transport_socket as EnvoyJson).typed_config as EnvoyJson).require_client_cert = true;
    expect(checkResource(TypeUrl.Listener, listenerWith([broken])).length).toBeGreaterThan(0);
  });

  it('proxyless gRPC server: STRICT uses the bootstrap certificate provider, otherwise plaintext', () => {
    const ts = grpcServerTransportSocket('STRICT')!;
    expect(ts).toMatchObject({
      typed_config: {
        require_client_certificate: true,
        common_tls_context: {
          tls_certificate_provider_instance: { instance_name: 'default', certificate_name: 'default' },
          validation_context: {
            ca_certificate_provider_instance: { instance_name: 'default', certificate_name: 'ROOTCA' },
          },
        },
      },
    });
    expect(checkResource(TypeUrl.Listener, listenerWith([{ ...plain, transport_socket: ts }]))).toEqual([]);
    expect(grpcServerTransportSocket('PERMISSIVE')).toBeUndefined();
  });

  const cluster = (transport_socket: EnvoyJson | undefined): EnvoyJson => ({
    name: 'outbound|8080||cart.shop.svc.cluster.local',
    type: 'EDS',
    eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' } },
    ...(transport_socket ? { transport_socket } : {}),
  });
  const facts = (tls: Record<string, unknown> | undefined, kind: 'sidecar' | 'grpc' = 'sidecar') => ({
    service: { hostname: 'cart.shop.svc.cluster.local', namespace: 'shop' },
    port: { port: 8080 },
    subset: '',
    tls,
    proxy: { kind },
  });

  it('DestinationRule ISTIO_MUTUAL -> UpstreamTlsContext with SDS, SNI and SAN check; DISABLE -> plaintext', () => {
    const o = { trustDomain: 'cluster.local', peerAuthentications: [] };
    const ts = upstreamTransportSocket(facts({ mode: 'ISTIO_MUTUAL' }), o)!;
    expect(ts).toMatchObject({
      typed_config: {
        sni: 'outbound_.8080_._.cart.shop.svc.cluster.local',
        common_tls_context: {
          tls_certificate_sds_secret_configs: [{ name: 'default' }],
          combined_validation_context: {
            default_validation_context: { match_subject_alt_names: [{ prefix: 'spiffe://cluster.local/' }] },
            validation_context_sds_secret_config: { name: 'ROOTCA' },
          },
        },
      },
    });
    expect(checkResource(TypeUrl.Cluster, cluster(ts))).toEqual([]);
    expect(upstreamTransportSocket(facts({ mode: 'DISABLE' }), o)).toBeUndefined();
    const grpcTs = upstreamTransportSocket(facts({ mode: 'ISTIO_MUTUAL' }, 'grpc'), o)!;
    expect(checkResource(TypeUrl.Cluster, cluster(grpcTs))).toEqual([]);
  });

  it('automatic mTLS follows the destination namespace PeerAuthentication', () => {
    const disabled = pa('shop', 'default', { mtls: { mode: 'DISABLE' } });
    const o = { trustDomain: 'cluster.local', peerAuthentications: [disabled] };
    expect(upstreamTransportSocket(facts(undefined), o)).toBeUndefined();
    expect(upstreamTransportSocket(facts(undefined), { ...o, peerAuthentications: [] })).toBeDefined();
    expect(
      upstreamTransportSocket(facts(undefined), { ...o, peerAuthentications: [], autoMtls: false }),
    ).toBeUndefined();
  });

  it('a DestinationRule tls block without a mode is DISABLE (canonical form drops it): no automatic mTLS', () => {
    const o = { trustDomain: 'cluster.local', peerAuthentications: [] };
    expect(upstreamTransportSocket(facts(undefined), o)).toBeDefined();
    expect(upstreamTransportSocket(facts({}), o)).toBeUndefined();
  });
});
