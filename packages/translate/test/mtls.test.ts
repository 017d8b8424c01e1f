import type { PeerAuthenticationConfig } from '@meridian/api';
import { checkResource, type EnvoyJson, TypeUrl } from '@meridian/envoy';
import { describe, expect, it } from 'vitest';
import {
  type ConfigSnapshot,
  createRegistrySnapshot,
  grpcServerTransportSocket,
  inboundFilterChains,
  modeForPort,
  type ProxyResources,
  resolvePeerAuthentication,
  TLS_INSPECTOR,
  Translator,
  upstreamSubjectAltNames,
  upstreamTransportSocket,
} from '../src/index.js';
import { configFromYaml, endpoint, proxy, service } from './fixtures.js';

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

describe('upstream peer identity: exact SPIFFE ids of the destination (Istio buildUpstreamTLSSettings)', () => {
  const o = { trustDomain: 'cluster.local', peerAuthentications: [] };
  // Endpoints of two namespaces and service accounts, from two clusters, in registry order (unsorted,
  // with duplicates): what @meridian/translate hands over is already sorted, but the SAN list must not
  // depend on it.
  const accounts = [
    { namespace: 'shop', serviceAccount: 'cart' },
    { namespace: 'payments', serviceAccount: 'cart-remote' },
    { namespace: 'shop', serviceAccount: 'cart' },
    { namespace: 'shop', serviceAccount: 'cart-canary' },
  ];
  const expected = [
    'spiffe://cluster.local/ns/payments/sa/cart-remote',
    'spiffe://cluster.local/ns/shop/sa/cart',
    'spiffe://cluster.local/ns/shop/sa/cart-canary',
  ];
  const facts = (
    tls: Record<string, unknown> | undefined,
    serviceAccounts: readonly { namespace: string; serviceAccount: string }[] | undefined,
    kind: 'sidecar' | 'grpc' = 'sidecar',
    subjectAltNames?: string[],
  ) => ({
    service: {
      hostname: 'cart.shop.svc.cluster.local',
      namespace: 'shop',
      ...(subjectAltNames ? { subjectAltNames } : {}),
    },
    port: { port: 8080 },
    subset: '',
    serviceAccounts,
    tls,
    proxy: { kind },
  });
  const sans = (ts: EnvoyJson | undefined, kind: 'sidecar' | 'grpc' = 'sidecar') => {
    if (!ts) throw new Error('expected an UpstreamTlsContext, got plaintext');
    const common = (ts.typed_config as EnvoyJson).common_tls_context as EnvoyJson;
    const vc =
      kind === 'grpc'
        ? (common.validation_context as EnvoyJson)
        : ((common.combined_validation_context as EnvoyJson).default_validation_context as EnvoyJson);
    return vc.match_subject_alt_names;
  };
  const cluster = (transport_socket: EnvoyJson): EnvoyJson => ({
    name: 'outbound|8080||cart.shop.svc.cluster.local',
    type: 'EDS',
    eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' } },
    transport_socket,
  });

  it('ISTIO_MUTUAL: exact SANs of every endpoint service account, sorted and de-duplicated', () => {
    const ts = upstreamTransportSocket(facts({ mode: 'ISTIO_MUTUAL' }, accounts), o)!;
    expect(sans(ts)).toEqual(expected.map((exact) => ({ exact })));
    expect(checkResource(TypeUrl.Cluster, cluster(ts))).toEqual([]);
    // Automatic mTLS (no tls block) checks the same identities.
    expect(sans(upstreamTransportSocket(facts(undefined, accounts), o))).toEqual(
      expected.map((exact) => ({ exact })),
    );
  });

  it('is deterministic: the same bytes whatever the order of the accounts', () => {
    const a = upstreamTransportSocket(facts({ mode: 'ISTIO_MUTUAL' }, accounts), o);
    const b = upstreamTransportSocket(facts({ mode: 'ISTIO_MUTUAL' }, [...accounts].reverse()), o);
    expect(JSON.stringify(b)).toBe(JSON.stringify(a));
  });

  it('the DestinationRule subjectAltNames replace the service accounts', () => {
    const rule = ['spiffe://cluster.local/ns/shop/sa/impostor', 'spiffe://cluster.local/ns/a/sa/b'];
    const ts = upstreamTransportSocket(facts({ mode: 'ISTIO_MUTUAL', subjectAltNames: rule }, accounts), o);
    expect(sans(ts)).toEqual([
      { exact: 'spiffe://cluster.local/ns/a/sa/b' },
      { exact: 'spiffe://cluster.local/ns/shop/sa/impostor' },
    ]);
    // An empty list is no override.
    expect(
      sans(upstreamTransportSocket(facts({ mode: 'ISTIO_MUTUAL', subjectAltNames: [] }, accounts), o)),
    ).toEqual(expected.map((exact) => ({ exact })));
  });

  it('ServiceEntry subjectAltNames are added to the endpoints identities', () => {
    const se = ['spiffe://other.domain/ns/x/sa/y', 'spiffe://cluster.local/ns/shop/sa/cart'];
    expect(
      upstreamSubjectAltNames(facts({ mode: 'ISTIO_MUTUAL' }, accounts, 'sidecar', se), 'cluster.local'),
    ).toEqual([...expected, 'spiffe://other.domain/ns/x/sa/y']);
    expect(
      upstreamSubjectAltNames(facts({ mode: 'ISTIO_MUTUAL' }, [], 'sidecar', se), 'cluster.local'),
    ).toEqual(['spiffe://cluster.local/ns/shop/sa/cart', 'spiffe://other.domain/ns/x/sa/y']);
  });

  it('no identity known (endpoints without a service account): the trust-domain prefix', () => {
    for (const serviceAccounts of [undefined, []]) {
      expect(upstreamSubjectAltNames(facts({ mode: 'ISTIO_MUTUAL' }, serviceAccounts), 'cluster.local')).toBe(
        undefined,
      );
      expect(sans(upstreamTransportSocket(facts({ mode: 'ISTIO_MUTUAL' }, serviceAccounts), o))).toEqual([
        { prefix: 'spiffe://cluster.local/' },
      ]);
    }
  });

  it('proxyless gRPC: the exact SANs sit in the validation context naming the CA provider (gRFC A29)', () => {
    const ts = upstreamTransportSocket(facts({ mode: 'ISTIO_MUTUAL' }, accounts, 'grpc'), o)!;
    expect((ts.typed_config as EnvoyJson).common_tls_context).toEqual({
      tls_certificate_provider_instance: { instance_name: 'default', certificate_name: 'default' },
      validation_context: {
        ca_certificate_provider_instance: { instance_name: 'default', certificate_name: 'ROOTCA' },
        match_subject_alt_names: expected.map((exact) => ({ exact })),
      },
    });
    expect(checkResource(TypeUrl.Cluster, cluster(ts))).toEqual([]);
  });

  it('a service account given as a SPIFFE id is used as is', () => {
    expect(
      upstreamSubjectAltNames(
        facts({ mode: 'ISTIO_MUTUAL' }, [
          { namespace: 'shop', serviceAccount: 'spiffe://cluster.local/ns/shop/sa/cart' },
          { namespace: 'shop', serviceAccount: 'cart' },
        ]),
        'cluster.local',
      ),
    ).toEqual(['spiffe://cluster.local/ns/shop/sa/cart']);
  });
});

// The Translator with `mtls` reads the PeerAuthentications of the config snapshot (issue 12, item 5):
// a warm translator must give the bytes a fresh one gives after every change of them, although its
// cluster and inbound caches outlive config snapshots.
describe('Translator({ mtls }): PeerAuthentication from the config snapshot', () => {
  const HTTP = [{ name: 'http', port: 8080, protocol: 'HTTP' }];
  const cart = service('cart', 'shop', HTTP);
  const web = service('web', 'shop', [{ name: 'http', port: 9080, protocol: 'HTTP' }]);
  const registry = createRegistrySnapshot(1, [cart, web], {
    [cart.hostname]: [
      endpoint('10.0.0.1', { http: 8080 }, { app: 'cart' }, 'r1/z1/', { serviceAccount: 'cart' }),
    ],
    // The proxy's own workload: an inbound port 9080.
    [web.hostname]: [
      endpoint('10.1.0.1', { http: 9080 }, { app: 'web' }, 'r1/z1/', { serviceAccount: 'web' }),
    ],
  });
  const sidecar = proxy({ namespace: 'shop', labels: { app: 'web' }, ip: '10.1.0.1' });
  const grpcClient = proxy({ namespace: 'shop', labels: { app: 'web' }, ip: '10.1.0.1', grpc: true });
  const CART = `outbound|8080||${cart.hostname}`;
  const mtls = { trustDomain: 'cluster.local' };
  const peer = (mode: string) => `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: shop}
spec: {mtls: {mode: ${mode}}}
`;
  const vs = `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: cart, namespace: shop}
spec:
  hosts: [cart.shop.svc.cluster.local]
  http: [{route: [{destination: {host: cart.shop.svc.cluster.local}}], timeout: 3s}]
`;
  const clusterOf = (r: ProxyResources, name = CART) => r.clusters.find((c) => c.name === name)?.resource;
  const chainNames = (r: ProxyResources) =>
    ((r.listeners.find((l) => l.name === 'virtualInbound')?.resource.filter_chains ?? []) as EnvoyJson[]).map(
      (c) => c.name,
    );
  const fresh = (config: ConfigSnapshot, p = sidecar) =>
    new Translator({ mtls }).translate(config, registry, p);

  it('follows every PeerAuthentication change on a warm translator, byte for byte as a fresh one', () => {
    const t = new Translator({ mtls });
    const none = configFromYaml(vs, 1);
    const disable = configFromYaml(`${vs}---${peer('DISABLE')}`, 2);
    const strict = configFromYaml(`${vs}---${peer('STRICT')}`, 3);
    const back = configFromYaml(vs, 4);

    // No policy: PERMISSIVE, so automatic mTLS upstream and TLS + plaintext inbound.
    const r1 = t.translate(none, registry, sidecar);
    expect(clusterOf(r1)?.transport_socket).toMatchObject({
      typed_config: {
        sni: `outbound_.8080_._.${cart.hostname}`,
        common_tls_context: {
          combined_validation_context: {
            default_validation_context: {
              match_subject_alt_names: [{ exact: 'spiffe://cluster.local/ns/shop/sa/cart' }],
            },
          },
        },
      },
    });
    expect(chainNames(r1)).toContain('inbound|9080||-mtls');
    expect(chainNames(r1)).toContain('inbound|9080||');

    // DISABLE in the destination's (and the proxy's) namespace: plaintext both ways.
    const r2 = t.translate(disable, registry, sidecar);
    expect(clusterOf(r2)?.transport_socket).toBeUndefined();
    expect(chainNames(r2)).not.toContain('inbound|9080||-mtls');
    expect(chainNames(r2)).toContain('inbound|9080||');

    // STRICT: mTLS upstream, and no plaintext chain for the port.
    const r3 = t.translate(strict, registry, sidecar);
    expect(clusterOf(r3)?.transport_socket).toBeDefined();
    expect(chainNames(r3)).toContain('inbound|9080||-mtls');
    expect(chainNames(r3)).not.toContain('inbound|9080||');

    const r4 = t.translate(back, registry, sidecar);
    for (const [got, config] of [
      [r1, none],
      [r2, disable],
      [r3, strict],
      [r4, back],
    ] as const) {
      expect(JSON.stringify(got)).toBe(JSON.stringify(fresh(config)));
      for (const l of got.listeners) expect(checkResource(TypeUrl.Listener, l.resource)).toEqual([]);
      for (const c of got.clusters) expect(checkResource(TypeUrl.Cluster, c.resource)).toEqual([]);
    }
  });

  it('a config change that keeps the PeerAuthentications keeps the clusters', () => {
    const t = new Translator({ mtls });
    const first = clusterOf(t.translate(configFromYaml(`${vs}---${peer('STRICT')}`, 1), registry, sidecar));
    const edited = configFromYaml(`${vs.replace('3s', '5s')}---${peer('STRICT')}`, 2);
    const built = t.stats.clustersBuilt;
    expect(clusterOf(t.translate(edited, registry, sidecar))).toBe(first);
    expect(t.stats.clustersBuilt).toBe(built);
  });

  it('proxyless gRPC clients get TLS from ISTIO_MUTUAL only (no automatic mTLS); gRPC servers from STRICT', () => {
    expect(clusterOf(fresh(configFromYaml(vs), grpcClient))?.transport_socket).toBeUndefined();
    const dr = `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: cart, namespace: shop}
spec: {host: cart.shop.svc.cluster.local, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}
`;
    const r = fresh(configFromYaml(`${dr}---${peer('STRICT')}`), grpcClient);
    expect(clusterOf(r)?.transport_socket).toMatchObject({
      typed_config: {
        common_tls_context: {
          tls_certificate_provider_instance: { instance_name: 'default', certificate_name: 'default' },
        },
      },
    });
    const server = r.listeners.find((l) => l.name === 'xds.istio.io/grpc/lds/inbound/10.1.0.1:9080');
    if (!server) throw new Error('no gRPC server listener for 10.1.0.1:9080');
    expect((server.resource.filter_chains as EnvoyJson[])[0]?.transport_socket).toEqual(
      grpcServerTransportSocket('STRICT'),
    );
  });

  it('without `mtls` PeerAuthentications change nothing', () => {
    const r = new Translator().translate(configFromYaml(`${vs}---${peer('STRICT')}`), registry, sidecar);
    expect(clusterOf(r)?.transport_socket).toBeUndefined();
    expect(chainNames(r)).not.toContain('inbound|9080||-mtls');
  });

  it('`mtls` and the lower-level TLS hooks are exclusive', () => {
    expect(() => new Translator({ mtls, upstreamTls: () => undefined })).toThrow(
      new TypeError(
        'TranslateOptions.mtls cannot be combined with TranslateOptions.upstreamTls or inboundFilterChains',
      ),
    );
    expect(() => new Translator({ mtls: { trustDomain: '' } })).toThrow(
      new TypeError('TranslateOptions.mtls.trustDomain is empty'),
    );
  });
});
