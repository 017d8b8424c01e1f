// The compiled encoder against the encoder it replaced (test/reference-encoder.ts): on every edge of
// proto3 JSON it must give the same bytes, or the same EnvoySchemaError with the same problems.
import { checkResource, decodeResource, EnvoySchemaError, encodeResource, TypeUrl } from '@meridian/envoy';
import { describe, expect, it } from 'vitest';
import { encodeBothWays } from '../src/json.js';
import {
  ReferenceSchemaError,
  referenceCheckResource,
  referenceEncodeResource,
} from './reference-encoder.js';

type Outcome =
  | { readonly bytes: string }
  | { readonly error: string; readonly message: string; readonly problems?: unknown };

function outcome(encode: () => Uint8Array): Outcome {
  try {
    return { bytes: Buffer.from(encode()).toString('hex') };
  } catch (error) {
    if (error instanceof EnvoySchemaError || error instanceof ReferenceSchemaError) {
      return { error: 'EnvoySchemaError', message: error.message, problems: error.problems };
    }
    const e = error as Error;
    return { error: e.constructor.name, message: e.message };
  }
}

/** Asserts the new encoder agrees with the reference on `json` (encode and check); returns the outcome. */
function same(typeUrl: string, json: unknown): Outcome {
  const result = outcome(() => encodeResource(typeUrl, json));
  expect(result).toEqual(outcome(() => referenceEncodeResource(typeUrl, json)));
  const check = outcome(() => Buffer.from(JSON.stringify(checkResource(typeUrl, json))));
  expect(check).toEqual(outcome(() => Buffer.from(JSON.stringify(referenceCheckResource(typeUrl, json)))));
  return result;
}

/** Asserts `json` is accepted, by the compiled encoder itself (not left to the walker). */
function accepted(typeUrl: string, json: unknown): Uint8Array {
  const result = same(typeUrl, json);
  expect(result).toHaveProperty('bytes');
  const { checked, compiled } = encodeBothWays(typeUrl, json);
  expect(compiled, 'the compiled encoder handled it').toBeInstanceOf(Uint8Array);
  expect(Buffer.from(compiled!)).toEqual(Buffer.from(checked as Uint8Array));
  return compiled!;
}

/** Asserts `json` is rejected with exactly these problems (and that the reference agrees). */
function rejected(typeUrl: string, json: unknown, problems: unknown): void {
  const result = same(typeUrl, json);
  expect(result).toMatchObject({ error: 'EnvoySchemaError', problems });
}

const route = (action: Record<string, unknown>) => ({
  name: 'r',
  virtual_hosts: [
    { name: 'v', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'c', ...action } }] },
  ],
});
const at = 'virtual_hosts[0].routes[0].route';
const cluster = (fields: Record<string, unknown>) => ({ name: 'c', ...fields });

describe('compiled encoder: proto3 JSON edges, same as the reference encoder', () => {
  it('64-bit integers as strings or numbers; beyond 2^53, fractions and junk refused', () => {
    const bytes = accepted(
      TypeUrl.RouteConfiguration,
      route({ retry_policy: { host_selection_retry_max_attempts: '5' } }),
    );
    expect(decodeResource(TypeUrl.RouteConfiguration, bytes)).toMatchObject(
      route({ retry_policy: { host_selection_retry_max_attempts: '5' } }),
    );
    accepted(TypeUrl.RouteConfiguration, route({ retry_policy: { host_selection_retry_max_attempts: -7 } }));
    accepted(
      TypeUrl.RouteConfiguration,
      route({ retry_policy: { host_selection_retry_max_attempts: '-007' } }),
    );
    rejected(
      TypeUrl.RouteConfiguration,
      route({ retry_policy: { host_selection_retry_max_attempts: '9007199254740993' } }),
      [
        {
          path: `${at}.retry_policy.host_selection_retry_max_attempts`,
          reason: '9007199254740993 is beyond the integers this encoder represents exactly (2^53)',
        },
      ],
    );
    for (const bad of ['1.5', 1.5, '5 ', true, '0x10']) {
      same(TypeUrl.RouteConfiguration, route({ retry_policy: { host_selection_retry_max_attempts: bad } }));
    }
  });

  it('repeated scalars (packed) and 32-bit ranges', () => {
    const json = route({ retry_policy: { retriable_status_codes: [503, '504', 0] } });
    const bytes = accepted(TypeUrl.RouteConfiguration, json);
    expect(decodeResource(TypeUrl.RouteConfiguration, bytes)).toMatchObject(
      route({ retry_policy: { retriable_status_codes: [503, 504, 0] } }),
    );
    accepted(TypeUrl.RouteConfiguration, route({ retry_policy: { retriable_status_codes: [] } }));
    rejected(TypeUrl.RouteConfiguration, route({ retry_policy: { retriable_status_codes: [2 ** 32] } }), [
      {
        path: `${at}.retry_policy.retriable_status_codes[0]`,
        reason: '4294967296 is out of range for uint32',
      },
    ]);
    for (const bad of [[null], [-1], 503, [[1]], ['x']]) {
      same(TypeUrl.RouteConfiguration, route({ retry_policy: { retriable_status_codes: bad } }));
    }
  });

  it('durations: "1.5s", nanoseconds, negative refused by the rule, other forms refused', () => {
    const bytes = accepted(TypeUrl.Cluster, cluster({ connect_timeout: '1.5s' }));
    expect(decodeResource(TypeUrl.Cluster, bytes)).toEqual(cluster({ connect_timeout: '1.5s' }));
    accepted(TypeUrl.Cluster, cluster({ connect_timeout: '0.000000001s' }));
    accepted(TypeUrl.Cluster, cluster({ connect_timeout: '315576000000s' }));
    rejected(TypeUrl.Cluster, cluster({ connect_timeout: '-1.25s' }), [
      { path: 'connect_timeout', reason: 'must be greater than 0s, got -1.25s' },
    ]);
    for (const bad of ['1.5', 1.5, '1.0000000001s', '315576000001s', '', '1m', null, {}]) {
      same(TypeUrl.Cluster, cluster({ connect_timeout: bad }));
    }
    // Durations without rules, in a repeated field of messages.
    accepted(TypeUrl.RouteConfiguration, route({ timeout: '0s', idle_timeout: '3.000000700s' }));
  });

  it('wrappers as bare values, with and without rules on the wrapped value', () => {
    accepted(TypeUrl.Cluster, cluster({ per_connection_buffer_limit_bytes: 32768 }));
    accepted(TypeUrl.Cluster, cluster({ per_connection_buffer_limit_bytes: 0 }));
    accepted(TypeUrl.RouteConfiguration, route({ auto_host_rewrite: false }));
    accepted(TypeUrl.Cluster, cluster({ ring_hash_lb_config: { minimum_ring_size: '1024' } }));
    rejected(TypeUrl.Cluster, cluster({ ring_hash_lb_config: { minimum_ring_size: '9000000' } }), [
      { path: 'ring_hash_lb_config.minimum_ring_size', reason: 'must be at most 8388608, got 9000000' },
    ]);
    for (const bad of ['false', { value: true }, 1])
      same(TypeUrl.RouteConfiguration, route({ auto_host_rewrite: bad }));
    for (const bad of [-1, '1.5', { value: 3 }])
      same(TypeUrl.Cluster, cluster({ per_connection_buffer_limit_bytes: bad }));
  });

  it('Struct and Value: nesting, null, lists, key order (array-index keys first), __proto__ left to the walker', () => {
    const istio = {
      b: [1, 'x', null, true, { c: {} }, []],
      a: 1.5,
      10: 'ten',
      9: 'nine',
      n: null,
      z: { y: { x: [] } },
    };
    const bytes = accepted(TypeUrl.Cluster, cluster({ metadata: { filter_metadata: { istio, empty: {} } } }));
    expect(decodeResource(TypeUrl.Cluster, bytes)).toEqual(
      cluster({ metadata: { filter_metadata: { empty: {}, istio } } }),
    );
    same(
      TypeUrl.Cluster,
      cluster({ metadata: { filter_metadata: JSON.parse('{"__proto__": {"a": 1}, "b": {}}') } }),
    );
    same(
      TypeUrl.Cluster,
      cluster({ metadata: { filter_metadata: { a: JSON.parse('{"__proto__": 1, "b": 2}') } } }),
    );
    for (const bad of [[], 'x', { a: [] }, { a: 1 }])
      same(TypeUrl.Cluster, cluster({ metadata: { filter_metadata: bad } }));
    // Well-known types at the top level.
    accepted('google.protobuf.Value', null);
    accepted('google.protobuf.Value', [1, [2, { a: null }]]);
    accepted('google.protobuf.ListValue', [null, 'a']);
    accepted('google.protobuf.Struct', {});
    accepted('google.protobuf.Duration', '-0.5s');
    accepted('google.protobuf.Timestamp', '2026-12-06T10:00:00.250Z');
    for (const bad of [undefined, [undefined], Symbol('s'), () => 1]) same('google.protobuf.Value', bad);
    // biome-ignore lint/suspicious/noSparseArray: a hole, which is not null
    same('google.protobuf.ListValue', [1, , 2]);
    same('google.protobuf.Timestamp', 'yesterday');
  });

  it('Any: by @type (known, unknown, missing, nested), well-known values under "value"', () => {
    const options = (any: unknown) => cluster({ typed_extension_protocol_options: { 'envoy.x': any } });
    const http = 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions';
    accepted(
      TypeUrl.Cluster,
      options({ '@type': http, explicit_http_config: { http2_protocol_options: {} } }),
    );
    accepted(
      TypeUrl.Cluster,
      options({ '@type': 'type.googleapis.com/google.protobuf.Duration', value: '2s' }),
    );
    accepted(
      TypeUrl.Cluster,
      options({ '@type': 'example.com/google.protobuf.UInt32Value', value: 5, x: 1 }),
    );
    accepted(
      TypeUrl.Cluster,
      options({ '@type': 'type.googleapis.com/google.protobuf.Struct', value: { a: [1] } }),
    );
    accepted(TypeUrl.Cluster, options({ '@type': 'type.googleapis.com/google.protobuf.Value', value: null }));
    accepted(TypeUrl.Cluster, options({ '@type': 'type.googleapis.com/google.protobuf.Empty' }));
    rejected(TypeUrl.Cluster, options({ '@type': 'type.googleapis.com/envoy.nope.v3.Nothing' }), [
      {
        path: 'typed_extension_protocol_options.envoy.x.@type',
        reason: 'unknown type "type.googleapis.com/envoy.nope.v3.Nothing"',
      },
    ]);
    rejected(TypeUrl.Cluster, options({ '@type': http, explicit_http_config: { http9: {} } }), [
      {
        path: 'typed_extension_protocol_options.envoy.x.explicit_http_config',
        reason:
          'one of "http_protocol_options", "http2_protocol_options", "http3_protocol_options" is required',
      },
      {
        path: 'typed_extension_protocol_options.envoy.x.explicit_http_config.http9',
        reason:
          'unknown field "http9" in envoy.extensions.upstreams.http.v3.HttpProtocolOptions.ExplicitHttpConfig',
      },
    ]);
    for (const bad of [
      { explicit_http_config: {} },
      { '@type': 'HttpProtocolOptions' },
      { '@type': 5 },
      { '@type': 'type.googleapis.com/google.protobuf.Any', value: {} },
      { '@type': 'type.googleapis.com/google.protobuf.Any', '@type2': http },
      { '@type': 'type.googleapis.com/google.protobuf.Duration' },
      { '@type': 'type.googleapis.com/google.protobuf.Value' },
      { '@type': 'type.googleapis.com/envoy.config.cluster.v3.Cluster.LbPolicy' },
      'x',
    ]) {
      same(TypeUrl.Cluster, options(bad));
    }
  });

  it('enums by name and by number; unknown names and non-integers refused', () => {
    accepted(TypeUrl.Cluster, cluster({ lb_policy: 'LEAST_REQUEST' }));
    accepted(TypeUrl.Cluster, cluster({ lb_policy: 1 }));
    accepted(TypeUrl.Cluster, cluster({ lb_policy: 99 }));
    expect(Buffer.from(encodeResource(TypeUrl.Cluster, cluster({ lb_policy: 'LEAST_REQUEST' })))).toEqual(
      Buffer.from(encodeResource(TypeUrl.Cluster, cluster({ lb_policy: 1 }))),
    );
    // Names the walker resolves through the enum's prototype (numbers as strings) behave as before.
    for (const odd of ['0', '1', 'FASTEST', 1.5, true, 'constructor'])
      same(TypeUrl.Cluster, cluster({ lb_policy: odd }));
  });

  it('maps: sorted keys whatever the input order, null entries skipped, item bounds', () => {
    const any = (n: number) => ({
      '@type': 'type.googleapis.com/google.protobuf.UInt32Value',
      value: n,
    });
    const a = accepted(
      TypeUrl.Cluster,
      cluster({ typed_extension_protocol_options: { b: any(1), a: any(2), c: null } }),
    );
    const b = accepted(
      TypeUrl.Cluster,
      cluster({ typed_extension_protocol_options: { a: any(2), b: any(1) } }),
    );
    expect(Buffer.from(a)).toEqual(Buffer.from(b));
    // Integer map keys (written as the key type, from the JSON key string).
    accepted('google.api.expr.v1alpha1.SourceInfo', { positions: { '10': 2, '5': 1, '-3': 4 } });
    same('google.api.expr.v1alpha1.SourceInfo', { positions: { x: 1 } });
    same('envoy.extensions.filters.network.dubbo_proxy.v3.MethodMatch', {
      name: { exact: 'm' },
      params_match: { '2': { exact_match: 'a' }, '10': { range_match: { start: '1', end: 5 } } },
    });
    same(TypeUrl.Cluster, cluster({ typed_extension_protocol_options: [] }));
    same(TypeUrl.Cluster, cluster({ typed_extension_protocol_options: { a: 5 } }));
  });

  it('oneofs: two members refused, a required oneof left empty refused', () => {
    rejected(
      TypeUrl.RouteConfiguration,
      {
        name: 'r',
        virtual_hosts: [
          {
            name: 'v',
            domains: ['*'],
            routes: [{ match: { prefix: '/', path: '/x' }, route: { cluster: 'c' } }],
          },
        ],
      },
      [
        {
          path: 'virtual_hosts[0].routes[0].match',
          reason: 'fields "prefix" and "path" are all set, but belong to oneof "path_specifier"',
        },
      ],
    );
    same(TypeUrl.RouteConfiguration, {
      name: 'r',
      virtual_hosts: [{ name: 'v', domains: ['*'], routes: [{ match: {}, route: { cluster: 'c' } }] }],
    });
    // A member set to null is not set.
    accepted(TypeUrl.RouteConfiguration, {
      name: 'r',
      virtual_hosts: [
        {
          name: 'v',
          domains: ['*'],
          routes: [{ match: { prefix: '/', path: null }, route: { cluster: 'c' } }],
        },
      ],
    });
  });

  it('bytes as base64 (standard and URL-safe); anything else refused', () => {
    const secret = (inline: unknown) => ({
      name: 's',
      tls_certificate: { certificate_chain: { inline_bytes: inline } },
    });
    const bytes = accepted(TypeUrl.Secret, secret('aGVsbG8='));
    expect(decodeResource(TypeUrl.Secret, bytes)).toEqual(secret('aGVsbG8='));
    accepted(TypeUrl.Secret, secret('-_-_'));
    accepted(TypeUrl.Secret, secret(''));
    for (const bad of ['@@@', 'aGVsbG8===', 5, ['aA==']]) same(TypeUrl.Secret, secret(bad));
  });

  it('doubles: numbers and "NaN"/"Infinity"/"-Infinity" strings', () => {
    const bias = (value: unknown) =>
      cluster({
        least_request_lb_config: { active_request_bias: { default_value: value, runtime_key: 'k' } },
      });
    for (const value of ['NaN', 'Infinity', '-Infinity', 0.25, -0]) accepted(TypeUrl.Cluster, bias(value));
    expect(decodeResource(TypeUrl.Cluster, encodeResource(TypeUrl.Cluster, bias('-Infinity')))).toEqual(
      bias('-Infinity'),
    );
    for (const bad of ['nan', '1.5', null, true]) same(TypeUrl.Cluster, bias(bad));
    // A rule on a double: Percent.value in [0, 100], which NaN breaks.
    for (const value of [50, 'NaN', 101, -1])
      same(TypeUrl.Cluster, cluster({ common_lb_config: { healthy_panic_threshold: { value } } }));
  });

  it('field names: proto names and lowerCamelCase; both for one field; unknown and inherited keys', () => {
    accepted(TypeUrl.ClusterLoadAssignment, { clusterName: 'a', endpoints: [] });
    same(TypeUrl.ClusterLoadAssignment, { clusterName: 'a', cluster_name: 'b' });
    same(TypeUrl.ClusterLoadAssignment, { cluster_name: 'b', clusterName: 'a' });
    rejected(TypeUrl.ClusterLoadAssignment, { cluster_name: 'a', colour: 'blue', Colour: null }, [
      { path: 'Colour', reason: 'unknown field "Colour" in envoy.config.endpoint.v3.ClusterLoadAssignment' },
      { path: 'colour', reason: 'unknown field "colour" in envoy.config.endpoint.v3.ClusterLoadAssignment' },
    ]);
    same(TypeUrl.ClusterLoadAssignment, { cluster_name: 'a', constructor: 5 });
    same(
      TypeUrl.ClusterLoadAssignment,
      Object.assign(Object.create({ cluster_name: 'inherited' }), { endpoints: [] }),
    );
    same(
      TypeUrl.ClusterLoadAssignment,
      Object.assign(Object.create({ colour: 'inherited' }), { cluster_name: 'a' }),
    );
    for (const bad of [null, [], 'x', 5]) same(TypeUrl.ClusterLoadAssignment, bad);
  });

  it('string rules count code points and UTF-8 bytes', () => {
    accepted(TypeUrl.ClusterLoadAssignment, { cluster_name: '😀' });
    same(TypeUrl.ClusterLoadAssignment, { cluster_name: '\ud800' });
    rejected(TypeUrl.ClusterLoadAssignment, { cluster_name: '' }, [
      { path: 'cluster_name', reason: 'must not be empty' },
    ]);
    // HeaderValue.key: at most 16384 bytes.
    const header = (key: string) => ({
      name: 'r',
      request_headers_to_add: [{ header: { key, value: 'v' } }],
    });
    accepted(TypeUrl.RouteConfiguration, header('€'.repeat(5461)));
    rejected(TypeUrl.RouteConfiguration, header('€'.repeat(5462)), [
      { path: 'request_headers_to_add[0].header.key', reason: 'must be at most 16384 bytes long' },
    ]);
    same(TypeUrl.RouteConfiguration, header('😀'.repeat(4096)));
    same(TypeUrl.RouteConfiguration, header('😀'.repeat(4097)));
  });

  it('nesting deeper than protobufjs encodes fails the same way', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 120; i++) deep = { a: deep };
    same('google.protobuf.Struct', deep);
    let list: unknown = [];
    for (let i = 0; i < 60; i++) list = [list];
    same('google.protobuf.Value', list);
  });
});
