// Multi-network endpoints (issue 7; Istio's EndpointsByNetworkFilter): endpoints of another network
// are reached through that network's east-west gateway, a registered workload of a service labeled
// topology.istio.io/network.
import { describe, expect, it } from 'vitest';
import {
  createRegistrySnapshot,
  type Endpoint,
  endpointsForNetwork,
  networkGateways,
  registryForNetwork,
  translateProxy,
} from '../src/index.js';
import { configFromYaml, endpoint, proxy, service } from './fixtures.js';

const reviews = service('reviews', 'default', [{ name: 'http', port: 9080, protocol: 'HTTP' }]);
const gateway = service('eastwest', 'istio-system', [{ name: 'tls', port: 15443, protocol: 'TLS' }], {
  labels: { 'topology.istio.io/network': 'net2', istio: 'eastwestgateway' },
});
const local = (addr: string) => endpoint(addr, { http: 9080 }, { app: 'reviews', version: 'v1' });
const remote = (addr: string, version = 'v1', extra: Partial<Endpoint> = {}) =>
  endpoint(addr, { http: 9080 }, { app: 'reviews', version }, 'us-west1/us-west1-a/', {
    network: 'net2',
    clusterId: 'cluster2',
    ...extra,
  });
const gw = (addr: string, port = 15443) =>
  endpoint(addr, { tls: port }, { istio: 'eastwestgateway' }, 'us-west1/us-west1-a/', {
    network: 'net2',
    clusterId: 'cluster2',
  });

function registry(endpoints: Record<string, Endpoint[]>, withGateway = true) {
  return createRegistrySnapshot(1, withGateway ? [reviews, gateway] : [reviews], endpoints);
}

describe('endpoints of other networks', () => {
  it('finds the gateways of each network from services labeled topology.istio.io/network', () => {
    const r = registry({
      [gateway.hostname]: [gw('192.0.2.10', 31443), gw('192.0.2.11', 31443)],
      [reviews.hostname]: [],
    });
    expect([...networkGateways(r)]).toEqual([
      [
        'net2',
        [
          { network: 'net2', address: '192.0.2.10', port: 31443, clusterId: 'cluster2' },
          { network: 'net2', address: '192.0.2.11', port: 31443, clusterId: 'cluster2' },
        ],
      ],
    ]);
  });

  it('replaces remote endpoints by their gateway, aggregated by locality, labels and health', () => {
    const r = registry({
      [gateway.hostname]: [gw('192.0.2.10')],
      [reviews.hostname]: [
        local('10.0.0.1'),
        remote('10.8.0.1'),
        remote('10.8.0.2'),
        remote('10.8.0.3', 'v2'),
        remote('10.8.0.4', 'v1', { network: 'net3' }), // no gateway for net3: dropped
      ],
    });
    const seen = registryForNetwork(r, 'net1').endpoints.get(reviews.hostname)!;
    expect(seen.map((e) => [e.address, e.ports, e.labels.version, e.weight, e.network])).toEqual([
      ['10.0.0.1', { http: 9080 }, 'v1', 1, 'net1'],
      ['192.0.2.10', { http: 15443 }, 'v1', 2, 'net2'],
      ['192.0.2.10', { http: 15443 }, 'v2', 1, 'net2'],
    ]);
    // From inside net2 nothing is rewritten, only net1's endpoints would be (no gateway: dropped).
    expect(
      registryForNetwork(r, 'net2')
        .endpoints.get(reviews.hostname)!
        .map((e) => e.address),
    ).toEqual(['10.8.0.1', '10.8.0.2', '10.8.0.3']);
  });

  it('keeps the registry (and every list) as is without gateways, for proxies without a network, and for same-network lists', () => {
    const plain = registry({ [reviews.hostname]: [local('10.0.0.1'), remote('10.8.0.1')] }, false);
    expect(registryForNetwork(plain, 'net1')).toBe(plain);
    const r = registry({ [gateway.hostname]: [gw('192.0.2.10')], [reviews.hostname]: [local('10.0.0.1')] });
    expect(registryForNetwork(r, '')).toBe(r);
    const view = registryForNetwork(r, 'net1');
    expect(view.endpoints.get(reviews.hostname)).toBe(r.endpoints.get(reviews.hostname));
    // memoized: the same list object for the same (list, network, gateways)
    const list = [local('10.0.0.1'), remote('10.8.0.1')];
    const gws = networkGateways(r);
    expect(endpointsForNetwork(list, 'net1', gws)).toBe(endpointsForNetwork(list, 'net1', gws));
  });

  it('a remote endpoint without a port map gets the gateway port for every service port', () => {
    const r = registry({
      [gateway.hostname]: [gw('192.0.2.10')],
      [reviews.hostname]: [remote('10.8.0.1', 'v1', { ports: {} })],
    });
    expect(
      registryForNetwork(r, 'net1')
        .endpoints.get(reviews.hostname)!
        .map((e) => e.ports),
    ).toEqual([{ http: 15443 }]);
  });

  it('an unhealthy remote cluster stays unhealthy behind its gateway', () => {
    const r = registry({
      [gateway.hostname]: [gw('192.0.2.10')],
      [reviews.hostname]: [remote('10.8.0.1', 'v1', { health: 'UNHEALTHY' })],
    });
    expect(
      registryForNetwork(r, 'net1')
        .endpoints.get(reviews.hostname)!
        .map((e) => e.health),
    ).toEqual(['UNHEALTHY']);
  });

  it('in the ClusterLoadAssignment: the gateway in the remote locality priority, local endpoints first', () => {
    const config = configFromYaml(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: ${reviews.hostname}
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 30s}
`);
    const r = registry({
      [gateway.hostname]: [gw('192.0.2.10')],
      [reviews.hostname]: [local('10.0.0.1'), remote('10.8.0.1'), remote('10.8.0.2')],
    });
    const p = proxy({ locality: { region: 'us-east1', zone: 'us-east1-b' } });
    const out = translateProxy(config, registryForNetwork(r, p.network), p);
    const cla = out.endpoints.find((e) => e.name === `outbound|9080||${reviews.hostname}`)!.resource as {
      endpoints: {
        priority?: number;
        locality: { region?: string };
        lb_endpoints: {
          endpoint: { address: { socket_address: { address: string; port_value: number } } };
        }[];
      }[];
    };
    expect(
      cla.endpoints.map((l) => [
        l.priority ?? 0,
        l.locality.region,
        l.lb_endpoints.map(
          (e) =>
            `${e.endpoint.address.socket_address.address}:${e.endpoint.address.socket_address.port_value}`,
        ),
      ]),
    ).toEqual([
      [0, 'us-east1', ['10.0.0.1:9080']],
      [1, 'us-west1', ['192.0.2.10:15443']],
    ]);
  });
});
