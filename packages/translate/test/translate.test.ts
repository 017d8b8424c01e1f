// Unit tests of translation semantics: Sidecar scoping, VirtualService/DestinationRule precedence,
// locality priorities and weights, names and domains, and what the incremental cache rebuilds.
import { checkResource, type EnvoyJson, TypeUrl } from '@meridian/envoy';
import { describe, expect, it } from 'vitest';
import {
  altHosts,
  buildLoadAssignment,
  createRegistrySnapshot,
  type ProxyResources,
  Translator,
  translateProxy,
  withEndpoints,
} from '../src/index.js';
import { bookinfoRegistry, configFromYaml, endpoint, proxy, scenarios, service } from './fixtures.js';

function names(list: readonly { name: string }[]): string[] {
  return list.map((r) => r.name);
}

function find(
  resources: ProxyResources,
  kind: Exclude<keyof ProxyResources, 'warnings'>,
  name: string,
): EnvoyJson {
  const r = resources[kind].find((x) => x.name === name);
  if (!r) throw new Error(`${kind} ${name} not generated; have ${names(resources[kind]).join(', ')}`);
  return r.resource;
}

describe('Sidecar scoping', () => {
  const s = scenarios().find((x) => x.name === 'sidecar-scoping');
  if (!s) throw new Error('scenario missing');

  it('a proxy receives only the hosts its namespace Sidecar lists (and the allowed ports)', () => {
    const r = translateProxy(s.config, s.registry, s.proxy);
    const outbound = names(r.clusters).filter((n) => n.startsWith('outbound|'));
    expect(outbound).toEqual([
      'outbound|15014||metrics.istio-system.svc.cluster.local',
      'outbound|8080||cart.shop.svc.cluster.local',
      'outbound|8080||frontend.shop.svc.cluster.local',
      'outbound|8080||payments.billing.svc.cluster.local',
      'outbound|9090||cart.shop.svc.cluster.local',
    ]);
    // ledger is exported only to billing; admin (ops) and api.example.com are not listed.
    expect(find(r, 'listeners', 'virtualOutbound').filter_chains).toEqual([
      expect.objectContaining({ name: 'virtualOutbound-catchall-tcp' }),
    ]);
    const route = find(r, 'routes', '8080');
    const vhosts = route.virtual_hosts as EnvoyJson[];
    expect(vhosts.at(-1)?.name).toBe('block_all');
  });

  it('without a namespace Sidecar the root namespace Sidecar applies; without one, everything exported', () => {
    const other = proxy({ ip: '10.5.0.1', pod: 'admin-1', namespace: 'ops', labels: { app: 'admin' } });
    const r = translateProxy(s.config, s.registry, other);
    const outbound = names(r.clusters).filter((n) => n.startsWith('outbound|'));
    expect(outbound).toContain('outbound|443||api.example.com');
    expect(outbound).toContain('outbound|8080||admin.ops.svc.cluster.local');
    expect(outbound).not.toContain('outbound|8080||ledger.billing.svc.cluster.local');
    const noRoot = configFromYaml('');
    const all = translateProxy(noRoot, s.registry, other);
    expect(names(all.clusters).filter((n) => n.startsWith('outbound|'))).toEqual(outbound);
  });
});

describe('VirtualService and DestinationRule selection', () => {
  it('the proxy namespace DestinationRule wins over the service namespace one', () => {
    const config = configFromYaml(`
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews, namespace: default }
spec:
  host: reviews
  trafficPolicy: { loadBalancer: { simple: RANDOM } }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews, namespace: team }
spec:
  host: reviews.default.svc.cluster.local
  trafficPolicy: { loadBalancer: { simple: ROUND_ROBIN } }
`);
    const registry = bookinfoRegistry();
    const inDefault = translateProxy(config, registry, proxy());
    const inTeam = translateProxy(config, registry, proxy({ namespace: 'team', ip: '10.9.0.1' }));
    const name = 'outbound|9080||reviews.default.svc.cluster.local';
    expect(find(inDefault, 'clusters', name).lb_policy).toBe('RANDOM');
    expect(find(inTeam, 'clusters', name).lb_policy).toBe('ROUND_ROBIN');
  });

  it('a VirtualService not exported to the proxy namespace does not apply', () => {
    const config = configFromYaml(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ratings, namespace: default }
spec:
  hosts: [ratings]
  exportTo: ["."]
  http:
  - timeout: 3s
    route:
    - destination: { host: ratings }
`);
    const vhost = (r: ProxyResources) =>
      (find(r, 'routes', '9080').virtual_hosts as EnvoyJson[]).find(
        (v) => v.name === 'ratings.default.svc.cluster.local:9080',
      ) as EnvoyJson;
    const own = vhost(translateProxy(config, bookinfoRegistry(), proxy()));
    const other = vhost(
      translateProxy(config, bookinfoRegistry(), proxy({ namespace: 'team', ip: '10.9.0.1' })),
    );
    const timeout = (vh: EnvoyJson) => ((vh.routes as EnvoyJson[])[0] as { route: EnvoyJson }).route.timeout;
    expect(timeout(own)).toBe('3s');
    expect(timeout(other)).toBe('0s');
  });
});

describe('locality load balancing (Istio algorithm)', () => {
  const svc = service('reviews', 'default', [{ name: 'http', port: 9080, protocol: 'HTTP' }]);
  const eps = [
    endpoint('10.0.0.1', { http: 9080 }, {}, 'us-east1/us-east1-b/rack1'),
    endpoint('10.0.0.2', { http: 9080 }, {}, 'us-east1/us-east1-b/rack2'),
    endpoint('10.0.0.3', { http: 9080 }, {}, 'us-east1/us-east1-c/'),
    endpoint('10.0.0.4', { http: 9080 }, {}, 'europe-west1/europe-west1-b/'),
    endpoint('10.0.0.5', { http: 9080 }, {}, 'asia-east1/asia-east1-a/'),
  ];
  const here = {
    locality: { region: 'us-east1', zone: 'us-east1-b', subZone: 'rack1' },
    labels: {},
    network: 'net1',
    clusterId: 'c1',
  };
  const priorities = (cla: EnvoyJson) =>
    (cla.endpoints as EnvoyJson[]).map((e) => [
      (
        (e.lb_endpoints as EnvoyJson[])[0] as {
          endpoint: { address: { socket_address: { address: string } } };
        }
      ).endpoint.address.socket_address.address,
      e.priority ?? 0,
    ]);

  it('failover: same subzone 0, same zone 1, same region 2, failover region 3, others 4 (renumbered)', () => {
    const cla = buildLoadAssignment({
      clusterName: 'c',
      service: svc,
      port: svc.ports[0] as never,
      endpoints: eps,
      subsetLabels: undefined,
      localityLb: { failover: [{ from: 'us-east1', to: 'europe-west1' }] },
      failover: true,
      proxy: here,
    });
    expect(priorities(cla)).toEqual([
      ['10.0.0.1', 0],
      ['10.0.0.2', 1],
      ['10.0.0.3', 2],
      ['10.0.0.4', 3],
      ['10.0.0.5', 4],
    ]);
    expect(checkResource(TypeUrl.ClusterLoadAssignment, cla)).toEqual([]);
  });

  it('failoverPriority splits by matching labels before locality', () => {
    const labelled = eps.map((e, i) => ({ ...e, labels: { tier: i % 2 === 0 ? 'gold' : 'silver' } }));
    const cla = buildLoadAssignment({
      clusterName: 'c',
      service: svc,
      port: svc.ports[0] as never,
      endpoints: labelled,
      subsetLabels: undefined,
      localityLb: { failoverPriority: ['tier'] },
      failover: true,
      proxy: { ...here, labels: { tier: 'gold' } },
    });
    // gold: .1 (subzone) .3 (region) .5 (other); silver: .2 (zone) .4 (other) -> 0..5 without gaps.
    expect(priorities(cla)).toEqual([
      ['10.0.0.1', 0],
      ['10.0.0.3', 1],
      ['10.0.0.5', 2],
      ['10.0.0.2', 3],
      ['10.0.0.4', 4],
    ]);
  });

  it('without outlier detection there is no failover (one priority)', () => {
    const cla = buildLoadAssignment({
      clusterName: 'c',
      service: svc,
      port: svc.ports[0] as never,
      endpoints: eps,
      subsetLabels: undefined,
      localityLb: undefined,
      failover: false,
      proxy: here,
    });
    expect(priorities(cla).every(([, p]) => p === 0)).toBe(true);
  });

  it('distribute sets locality weights and drops localities no rule names', () => {
    const cla = buildLoadAssignment({
      clusterName: 'c',
      service: svc,
      port: svc.ports[0] as never,
      endpoints: eps,
      subsetLabels: undefined,
      localityLb: {
        distribute: [{ from: 'us-east1/*', to: { 'us-east1/us-east1-b/*': 70, 'europe-west1/*': 30 } }],
      },
      failover: false,
      proxy: here,
    });
    const weights = (cla.endpoints as EnvoyJson[]).map((e) => [
      (e.locality as EnvoyJson).zone,
      (e.locality as EnvoyJson).sub_zone ?? '',
      e.load_balancing_weight,
    ]);
    expect(weights).toEqual([
      ['europe-west1-b', '', 30],
      ['us-east1-b', 'rack1', 35],
      ['us-east1-b', 'rack2', 35],
    ]);
  });
});

describe('names and domains', () => {
  it('generates Istio alt hosts for the same and other namespaces', () => {
    expect(altHosts('reviews.default.svc.cluster.local', undefined, 'default.svc.cluster.local')).toEqual([
      'reviews',
      'reviews.default.svc',
      'reviews.default',
    ]);
    expect(altHosts('reviews.default.svc.cluster.local', 9080, 'team.svc.cluster.local')).toEqual([
      'reviews.default',
      'reviews.default:9080',
      'reviews.default.svc',
      'reviews.default.svc:9080',
    ]);
    expect(altHosts('api.example.com', undefined, 'default.svc.cluster.local')).toEqual([]);
  });
});

describe('incremental cache', () => {
  it('an endpoint change rebuilds only the changed service ClusterLoadAssignments', () => {
    const s = scenarios().find((x) => x.name === 'bookinfo');
    if (!s) throw new Error('scenario missing');
    const t = new Translator();
    const first = t.translate(s.config, s.registry, s.proxy);
    const built = { ...t.stats };
    const host = 'reviews.default.svc.cluster.local';
    const next = withEndpoints(s.registry, 2, host, [
      ...(s.registry.endpoints.get(host) ?? []),
      endpoint('10.1.1.9', { http: 9080 }, { app: 'reviews', version: 'v2' }),
    ]);
    const second = t.translate(s.config, next, s.proxy);
    // reviews: default + v1, v2, v3 subsets = 4 CLAs rebuilt; nothing else.
    expect(t.stats.loadAssignmentsBuilt - built.loadAssignmentsBuilt).toBe(4);
    expect(t.stats.clustersBuilt - built.clustersBuilt).toBe(0);
    expect(t.stats.routeSetsBuilt - built.routeSetsBuilt).toBe(0);
    expect(t.stats.scopesBuilt - built.scopesBuilt).toBe(0);
    const changed = second.endpoints.filter((r, i) => r !== first.endpoints[i]).map((r) => r.name);
    expect(changed).toEqual([
      'outbound|9080|v1|reviews.default.svc.cluster.local',
      'outbound|9080|v2|reviews.default.svc.cluster.local',
      'outbound|9080|v3|reviews.default.svc.cluster.local',
      'outbound|9080||reviews.default.svc.cluster.local',
    ]);
    // The result equals a translation from scratch.
    expect(JSON.stringify(second)).toBe(JSON.stringify(translateProxy(s.config, next, s.proxy)));
  });

  it('a DestinationRule change rebuilds that host clusters, not the others', () => {
    const registry = bookinfoRegistry();
    const dr = (lb: string) =>
      configFromYaml(
        `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ratings, namespace: default }
spec:
  host: ratings
  trafficPolicy: { loadBalancer: { simple: ${lb} } }
`,
        lb === 'RANDOM' ? 1 : 2,
      );
    const t = new Translator();
    t.translate(dr('RANDOM'), registry, proxy());
    const before = t.stats.clustersBuilt;
    const r = t.translate(dr('ROUND_ROBIN'), registry, proxy());
    expect(t.stats.clustersBuilt - before).toBe(1);
    expect(find(r, 'clusters', 'outbound|9080||ratings.default.svc.cluster.local').lb_policy).toBe(
      'ROUND_ROBIN',
    );
  });

  it('services removed from the registry disappear from the output', () => {
    const s = scenarios().find((x) => x.name === 'bookinfo');
    if (!s) throw new Error('scenario missing');
    const t = new Translator();
    t.translate(s.config, s.registry, s.proxy);
    const fewer = createRegistrySnapshot(
      3,
      s.registry.services.filter((x) => !x.hostname.startsWith('details.')),
      s.registry.endpoints,
    );
    const r = t.translate(s.config, fewer, s.proxy);
    expect(names(r.clusters).some((n) => n.includes('details'))).toBe(false);
  });
});

describe('TLS extension points (for the identity issue)', () => {
  const sds = { name: 'default', sds_config: { ads: {}, resource_api_version: 'V3' } };
  const downstream = {
    name: 'envoy.transport_sockets.tls',
    typed_config: {
      '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext',
      require_client_certificate: true,
      common_tls_context: { tls_certificate_sds_secret_configs: [sds] },
    },
  };
  const upstream = {
    name: 'envoy.transport_sockets.tls',
    typed_config: {
      '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
      common_tls_context: { tls_certificate_sds_secret_configs: [sds] },
    },
  };
  const permissive = ({ chain }: { chain: EnvoyJson }) => {
    const match = chain.filter_chain_match as EnvoyJson | undefined;
    return [
      {
        ...chain,
        name: `${chain.name}-mtls`,
        filter_chain_match: { ...match, transport_protocol: 'tls' },
        transport_socket: downstream,
      },
      { ...chain, filter_chain_match: { ...match, transport_protocol: 'raw_buffer' } },
    ];
  };

  it('upstreamTls sets each cluster transport socket; inboundFilterChains replaces inbound chains', () => {
    const s = scenarios().find((x) => x.name === 'bookinfo');
    if (!s) throw new Error('scenario missing');
    const seen: string[] = [];
    const r = translateProxy(s.config, s.registry, s.proxy, {
      upstreamTls: (c) => {
        seen.push(`${c.clusterName} ${c.subset} ${c.tls === undefined}`);
        return c.service.hostname.startsWith('reviews.') ? upstream : undefined;
      },
      inboundFilterChains: permissive,
    });
    expect(
      find(r, 'clusters', 'outbound|9080|v1|reviews.default.svc.cluster.local').transport_socket,
    ).toEqual(upstream);
    expect(
      find(r, 'clusters', 'outbound|9080||ratings.default.svc.cluster.local').transport_socket,
    ).toBeUndefined();
    expect(seen).toContain('outbound|9080|v2|reviews.default.svc.cluster.local v2 true');
    const inbound = find(r, 'listeners', 'virtualInbound');
    expect((inbound.filter_chains as EnvoyJson[]).map((c) => c.name)).toEqual([
      'inbound|9080||-mtls',
      'inbound|9080||',
      'virtualInbound-catchall-tcp',
    ]);
    expect((inbound.listener_filters as EnvoyJson[]).map((f) => f.name)).toEqual([
      'envoy.filters.listener.original_dst',
      'envoy.filters.listener.tls_inspector',
    ]);
    for (const l of r.listeners) expect(checkResource(TypeUrl.Listener, l.resource)).toEqual([]);
    for (const c of r.clusters) expect(checkResource(TypeUrl.Cluster, c.resource)).toEqual([]);
  });

  it('the inbound hook also shapes proxyless gRPC server listeners', () => {
    const s = scenarios().find((x) => x.name === 'proxyless-grpc');
    if (!s) throw new Error('scenario missing');
    const r = translateProxy(s.config, s.registry, s.proxy, {
      inboundFilterChains: ({ chain, proxy: p }) => {
        expect(p.kind).toBe('grpc');
        return [{ ...chain, transport_socket: downstream }];
      },
    });
    const server = find(r, 'listeners', 'xds.istio.io/grpc/lds/inbound/10.6.1.1:17071');
    expect((server.filter_chains as EnvoyJson[])[0]?.transport_socket).toEqual(downstream);
    expect(checkResource(TypeUrl.Listener, server)).toEqual([]);
  });
});
