import { checkResource, decodeResource, EnvoySchemaError, encodeResource, TypeUrl } from '@meridian/envoy';
import { describe, expect, it } from 'vitest';

const cluster = {
  name: 'outbound|9080||reviews.default.svc.cluster.local',
  type: 'EDS',
  eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' } },
  connect_timeout: '10s',
  lb_policy: 'LEAST_REQUEST',
  circuit_breakers: { thresholds: [{ max_connections: 100, max_retries: 3 }] },
  typed_extension_protocol_options: {
    'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
      '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
      explicit_http_config: { http2_protocol_options: {} },
    },
  },
  metadata: { filter_metadata: { istio: { services: [{ host: 'reviews', namespace: 'default' }] } } },
};

describe('encodeResource / decodeResource', () => {
  it('round-trips a cluster with Any, Duration, wrappers, enums, maps and Struct', () => {
    const bytes = encodeResource(TypeUrl.Cluster, cluster);
    expect(bytes.length).toBeGreaterThan(50);
    expect(decodeResource(TypeUrl.Cluster, bytes)).toEqual(cluster);
  });

  it('gives identical bytes whatever the key order of the input', () => {
    const reordered = Object.fromEntries(Object.entries(cluster).reverse());
    expect(Buffer.from(encodeResource(TypeUrl.Cluster, reordered))).toEqual(
      Buffer.from(encodeResource(TypeUrl.Cluster, cluster)),
    );
  });

  it('accepts lowerCamelCase field names as Envoy does', () => {
    const bytes = encodeResource(TypeUrl.ClusterLoadAssignment, { clusterName: 'a', endpoints: [] });
    expect(decodeResource(TypeUrl.ClusterLoadAssignment, bytes)).toEqual({ cluster_name: 'a' });
  });

  it('rejects unknown fields, bad enums, bad durations and wrong types, naming each path', () => {
    const bad = {
      name: 'c',
      type: 'EDS',
      connect_timeout: '10',
      lb_policy: 'FASTEST',
      colour: 'blue',
      circuit_breakers: { thresholds: [{ max_connections: -1 }] },
    };
    expect(() => encodeResource(TypeUrl.Cluster, bad)).toThrow(EnvoySchemaError);
    expect(checkResource(TypeUrl.Cluster, bad)).toEqual([
      { path: 'circuit_breakers.thresholds[0].max_connections', reason: '-1 is out of range for uint32' },
      { path: 'colour', reason: 'unknown field "colour" in envoy.config.cluster.v3.Cluster' },
      { path: 'connect_timeout', reason: 'expected a duration such as "1.5s", got string "10"' },
      {
        path: 'lb_policy',
        reason: expect.stringMatching(
          /^unknown value "FASTEST" for enum envoy.config.cluster.v3.Cluster.LbPolicy; expected one of ROUND_ROBIN, LEAST_REQUEST/,
        ),
      },
    ]);
  });

  it('rejects unknown fields inside an Any', () => {
    const listener = {
      name: 'l',
      api_listener: {
        api_listener: {
          '@type':
            'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
          rds: { route_config_name: 'r', config_source: { ads: {} } },
          stat_prfix: 'x',
        },
      },
    };
    expect(checkResource(TypeUrl.Listener, listener)).toEqual([
      // Envoy requires stat_prefix (min_len 1): a misspelt field leaves it empty.
      { path: 'api_listener.api_listener.stat_prefix', reason: 'must not be empty' },
      {
        path: 'api_listener.api_listener.stat_prfix',
        reason:
          'unknown field "stat_prfix" in envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
      },
    ]);
  });

  it('enforces protoc-gen-validate rules Envoy applies (required names, oneofs, bounds)', () => {
    expect(checkResource(TypeUrl.ClusterLoadAssignment, {})).toEqual([
      { path: 'cluster_name', reason: 'must not be empty' },
    ]);
    expect(
      checkResource(TypeUrl.RouteConfiguration, {
        name: 'r',
        virtual_hosts: [
          {
            name: 'v',
            domains: ['*'],
            routes: [{ match: { prefix: '/', path: '/x' }, route: { cluster: 'c' } }],
          },
        ],
      }),
    ).toEqual([
      {
        path: 'virtual_hosts[0].routes[0].match',
        reason: 'fields "prefix" and "path" are all set, but belong to oneof "path_specifier"',
      },
    ]);
    expect(
      checkResource(TypeUrl.RouteConfiguration, {
        name: 'r',
        virtual_hosts: [{ name: 'v', domains: [], routes: [{ match: { prefix: '/' } }] }],
      }),
    ).toEqual([
      { path: 'virtual_hosts[0].domains', reason: 'needs at least 1 item(s), has 0' },
      {
        path: 'virtual_hosts[0].routes[0]',
        reason:
          'one of "route", "redirect", "direct_response", "filter_action", "non_forwarding_action" is required',
      },
    ]);
    expect(checkResource(TypeUrl.Cluster, { name: 'c', connect_timeout: '0s' })).toEqual([
      { path: 'connect_timeout', reason: 'must be greater than 0s, got 0s' },
    ]);
  });

  it('names an unknown message type', () => {
    expect(() => encodeResource('type.googleapis.com/envoy.nope.v3.Thing', {})).toThrow(
      'envoy.nope.v3.Thing: (root): unknown message type "envoy.nope.v3.Thing"',
    );
  });
});
