// The destination's identities handed to the upstream TLS hook (UpstreamTlsContext.serviceAccounts):
// the service accounts of every endpoint of the service, across clusters and namespaces, sorted and
// de-duplicated; a change of that set rebuilds the cluster, an endpoint change that keeps it does not.
import type { EnvoyJson } from '@meridian/envoy';
import { describe, expect, it } from 'vitest';
import {
  createRegistrySnapshot,
  type Endpoint,
  registryForNetwork,
  serviceAccountsOf,
  Translator,
  translateProxy,
  type UpstreamTlsContext,
  withEndpoints,
} from '../src/index.js';
import { configFromYaml, endpoint, proxy, service } from './fixtures.js';

const cart = service('cart', 'shop', [{ name: 'http', port: 8080, protocol: 'HTTP' }]);
const CLUSTER = `outbound|8080||${cart.hostname}`;
const ep = (address: string, serviceAccount: string, extra: Partial<Endpoint> = {}) =>
  endpoint(address, { http: 8080 }, { app: 'cart', version: 'v1' }, 'r1/z1/', {
    serviceAccount,
    ...extra,
  });
const endpoints = [
  ep('10.0.0.2', 'cart'),
  ep('10.0.0.1', 'cart'),
  ep('10.0.0.3', 'cart-canary', { health: 'UNHEALTHY', labels: { app: 'cart', version: 'v2' } }),
  ep('10.0.0.4', ''),
  // Imported from another cluster, whose service lives in another namespace.
  ep('10.9.0.1', 'cart-remote', { clusterId: 'cluster2', namespace: 'payments' }),
];
const EXPECTED = [
  { namespace: 'payments', serviceAccount: 'cart-remote' },
  { namespace: 'shop', serviceAccount: 'cart' },
  { namespace: 'shop', serviceAccount: 'cart-canary' },
];
const config = configFromYaml(`
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: cart, namespace: shop}
spec:
  host: cart.shop.svc.cluster.local
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
  subsets:
  - {name: v1, labels: {version: v1}}
`);
const client = proxy({ namespace: 'shop', labels: { app: 'web' }, ip: '10.1.0.1' });

/** A hook that writes the accounts it is given into the socket, as the CA's would. */
function recordingHook(seen: Map<string, readonly unknown[]>) {
  return (c: UpstreamTlsContext): EnvoyJson => {
    seen.set(c.clusterName, c.serviceAccounts);
    return {
      name: 'envoy.transport_sockets.tls',
      typed_config: {
        '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
        common_tls_context: {
          combined_validation_context: {
            default_validation_context: {
              match_subject_alt_names: c.serviceAccounts.map((a) => ({
                exact: `spiffe://cluster.local/ns/${a.namespace}/sa/${a.serviceAccount}`,
              })),
            },
          },
        },
      },
    };
  };
}

const clusterJson = (r: ReturnType<typeof translateProxy>, name = CLUSTER) =>
  r.clusters.find((c) => c.name === name)?.resource;

describe('UpstreamTlsContext.serviceAccounts', () => {
  it('are every endpoint service account (all clusters, namespaces, health), sorted and unique', () => {
    const seen = new Map<string, readonly unknown[]>();
    const registry = createRegistrySnapshot(1, [cart], { [cart.hostname]: endpoints });
    translateProxy(config, registry, client, { upstreamTls: recordingHook(seen) });
    expect(seen.get(CLUSTER)).toEqual(EXPECTED);
    // Subset clusters check the service-level identities (as Istio).
    expect(seen.get(`outbound|8080|v1|${cart.hostname}`)).toEqual(EXPECTED);
    expect(serviceAccountsOf('shop', [ep('10.0.0.4', '')]).list).toEqual([]);
  });

  it('is deterministic: endpoint order does not change the output bytes', () => {
    const a = createRegistrySnapshot(1, [cart], { [cart.hostname]: endpoints });
    const b = createRegistrySnapshot(1, [cart], { [cart.hostname]: [...endpoints].reverse() });
    const seen = new Map<string, readonly unknown[]>();
    const ra = translateProxy(config, a, client, { upstreamTls: recordingHook(seen) });
    const rb = translateProxy(config, b, client, { upstreamTls: recordingHook(seen) });
    expect(JSON.stringify(rb.clusters)).toBe(JSON.stringify(ra.clusters));
    // And directly on the unsorted list (the memo is per list: a fresh list is recomputed).
    expect(serviceAccountsOf('shop', [...endpoints].reverse()).list).toEqual(EXPECTED);
  });

  it('a change of an endpoint service account rebuilds the cluster; other endpoint changes reuse it', () => {
    const seen = new Map<string, readonly unknown[]>();
    const t = new Translator({ upstreamTls: recordingHook(seen) });
    const r1 = createRegistrySnapshot(1, [cart], { [cart.hostname]: endpoints });
    const first = clusterJson(t.translate(config, r1, client));

    // A new endpoint with an already known account: the cluster is reused as is.
    const r2 = withEndpoints(r1, 2, cart.hostname, [...endpoints, ep('10.0.0.9', 'cart')]);
    const built = t.stats.clustersBuilt;
    expect(clusterJson(t.translate(config, r2, client))).toBe(first);
    expect(t.stats.clustersBuilt).toBe(built);

    // One endpoint now runs as another account: a new cluster naming it.
    const changed = endpoints.map((e) =>
      e.address === '10.0.0.1' ? { ...e, serviceAccount: 'impostor' } : e,
    );
    const r3 = withEndpoints(r2, 3, cart.hostname, changed);
    const third = clusterJson(t.translate(config, r3, client));
    expect(t.stats.clustersBuilt).toBeGreaterThan(built);
    expect(third).not.toEqual(first);
    expect(seen.get(CLUSTER)).toEqual([
      { namespace: 'payments', serviceAccount: 'cart-remote' },
      { namespace: 'shop', serviceAccount: 'cart' },
      { namespace: 'shop', serviceAccount: 'cart-canary' },
      { namespace: 'shop', serviceAccount: 'impostor' },
    ]);
    // The last endpoint of an account leaves: the account leaves the cluster.
    const r4 = withEndpoints(
      r3,
      4,
      cart.hostname,
      changed.filter((e) => e.serviceAccount !== 'cart-canary'),
    );
    const fourth = clusterJson(t.translate(config, r4, client));
    expect(JSON.stringify(fourth)).not.toContain('cart-canary');
    // A fresh translator gives the same bytes as the incremental one.
    expect(
      JSON.stringify(clusterJson(translateProxy(config, r4, client, { upstreamTls: recordingHook(seen) }))),
    ).toBe(JSON.stringify(fourth));
  });

  it('without a TLS hook an account change reuses the cluster (nothing in it depends on accounts)', () => {
    const t = new Translator();
    const r1 = createRegistrySnapshot(1, [cart], { [cart.hostname]: endpoints });
    const first = clusterJson(t.translate(config, r1, client));
    const r2 = withEndpoints(
      r1,
      2,
      cart.hostname,
      endpoints.map((e) => ({ ...e, serviceAccount: 'other' })),
    );
    expect(clusterJson(t.translate(config, r2, client))).toBe(first);
  });

  it('the multi-network view keeps every account behind a gateway', () => {
    const gateway = service('eastwest', 'istio-system', [{ name: 'tls', port: 15443, protocol: 'TLS' }], {
      labels: { 'topology.istio.io/network': 'net2' },
    });
    const remote = (address: string, serviceAccount: string) =>
      ep(address, serviceAccount, { network: 'net2', clusterId: 'cluster2' });
    const registry = createRegistrySnapshot(1, [cart, gateway], {
      [cart.hostname]: [ep('10.0.0.1', 'cart'), remote('10.8.0.1', 'cart'), remote('10.8.0.2', 'cart-west')],
      [gateway.hostname]: [
        endpoint('192.0.2.10', { tls: 15443 }, { istio: 'eastwestgateway' }, 'r1/z1/', {
          network: 'net2',
          clusterId: 'cluster2',
        }),
      ],
    });
    const view = registryForNetwork(registry, 'net1');
    expect(view.endpoints.get(cart.hostname)?.some((e) => e.address === '10.8.0.2')).toBe(false);
    expect(serviceAccountsOf('shop', view.endpoints.get(cart.hostname) ?? []).list).toEqual([
      { namespace: 'shop', serviceAccount: 'cart' },
      { namespace: 'shop', serviceAccount: 'cart-west' },
    ]);
  });
});
