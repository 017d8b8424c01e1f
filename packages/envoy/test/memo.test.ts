// The identity memo of encoded sub-messages (issue 12): re-encoding a resource whose sub-objects are
// the same JS objects as before copies their bytes instead of encoding them again. It must never
// change an answer: same bytes, or the same EnvoySchemaError, as the encoding without it.
import { EnvoySchemaError, encodeResource, TypeUrl } from '@meridian/envoy';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { memoCounters } from '../src/compiled.js';
import { encodeResourceWith } from '../src/json.js';
import { message, type Outcome, outcome, RESOURCES, root } from './schema-arbitrary.js';

type Json = { [key: string]: unknown };

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');
const without = (typeUrl: string, json: unknown): Outcome =>
  outcome(() => encodeResourceWith(typeUrl, json, 'off'));
const withAll = (typeUrl: string, json: unknown): Outcome =>
  outcome(() => encodeResourceWith(typeUrl, json, 'all'));

function route(host: string, i: number): Json {
  return {
    match: { prefix: `/api/v${i}`, headers: [{ name: 'end-user', string_match: { exact: `tester-${i}` } }] },
    route: {
      weighted_clusters: {
        clusters: [
          { name: `outbound|8080|v1|${host}`, weight: 90 },
          { name: `outbound|8080|v2|${host}`, weight: 10 },
        ],
      },
      timeout: '2s',
      retry_policy: { retry_on: 'connect-failure,refused-stream,unavailable', num_retries: 2 },
    },
    decorator: { operation: `${host}:8080/api/v${i}/*` },
  };
}

function virtualHost(i: number): Json {
  const host = `svc${i}.ns${i % 7}.svc.cluster.local`;
  return {
    name: `${host}:8080`,
    domains: [host, `svc${i}.ns${i % 7}`, `10.96.0.${i % 250}`],
    routes: [route(host, 1), route(host, 2), route(host, 3)],
    include_request_attempt_count: true,
  };
}

function routeConfiguration(hosts: readonly Json[]): Json {
  return { name: '8080', virtual_hosts: hosts, validate_clusters: false };
}

describe('identity memo: re-encoding shared sub-objects', () => {
  it('a RouteConfiguration with one virtual host replaced reads the others from the memo, same bytes', () => {
    const hosts = Array.from({ length: 40 }, (_, i) => virtualHost(i));
    const first = routeConfiguration(hosts);
    const before = { ...memoCounters };
    const firstBytes = encodeResource(TypeUrl.RouteConfiguration, first);
    expect(hex(firstBytes)).toBe(hex(encodeResourceWith(TypeUrl.RouteConfiguration, first, 'off')));
    // Virtual hosts (and their routes) are large enough for the default mode to remember them.
    expect(memoCounters.stores - before.stores).toBeGreaterThanOrEqual(40);

    const edited = structuredClone(hosts[17]!);
    ((edited.routes as Json[])[0]!.route as Json).timeout = '5s';
    const second = routeConfiguration(hosts.map((h, i) => (i === 17 ? edited : h)));
    const middle = { ...memoCounters };
    const secondBytes = encodeResource(TypeUrl.RouteConfiguration, second);
    expect(memoCounters.hits - middle.hits).toBe(39);
    expect(memoCounters.stores - middle.stores).toBeGreaterThanOrEqual(1);
    expect(hex(secondBytes)).toBe(hex(encodeResourceWith(TypeUrl.RouteConfiguration, second, 'off')));
    expect(hex(secondBytes)).not.toBe(hex(firstBytes));
  });

  it('small objects repeated within a resource are found again (the default mode samples them)', () => {
    // One retry host predicate object shared by every route, as translate shares it: small (well
    // under the size that is always remembered), but repeated.
    const predicate = {
      name: 'envoy.retry_host_predicates.previous_hosts',
      typed_config: {
        '@type': 'type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate',
      },
    };
    const routes = Array.from({ length: 300 }, (_, i) => ({
      match: { prefix: `/p${i}` },
      route: { cluster: `c${i}`, retry_policy: { retry_on: '5xx', retry_host_predicate: [predicate] } },
    }));
    const rc = routeConfiguration([{ name: 'small', domains: ['*'], routes }]);
    const hits = memoCounters.hits;
    const bytes = encodeResource(TypeUrl.RouteConfiguration, rc);
    expect(memoCounters.hits - hits).toBeGreaterThan(200);
    expect(hex(bytes)).toBe(hex(encodeResourceWith(TypeUrl.RouteConfiguration, rc, 'off')));
  });

  it('an object accepted as one message type is still checked as another', () => {
    const host = virtualHost(1);
    encodeResource(TypeUrl.RouteConfiguration, routeConfiguration([host]));
    // The same object as a Listener's filter chain: FilterChain has a `name` but no `domains`.
    const listener = { name: 'l', filter_chains: [host] };
    const hits = memoCounters.hits;
    expect(() => encodeResource(TypeUrl.Listener, listener)).toThrow(EnvoySchemaError);
    expect(withAll(TypeUrl.Listener, listener)).toEqual(without(TypeUrl.Listener, listener));
    expect(withAll(TypeUrl.Listener, listener)).toMatchObject({
      error: 'schema',
      message: expect.stringContaining('filter_chains[0].domains: unknown field "domains"'),
    });
    expect(memoCounters.hits).toBe(hits);

    // And the other way round: a filter chain accepted first, then used as a virtual host (which
    // needs at least one domain).
    const chain = { name: 'chain', filters: [{ name: 'envoy.filters.network.tcp_proxy_x' }] };
    expect(withAll(TypeUrl.Listener, { name: 'l2', filter_chains: [chain] })).toHaveProperty('bytes');
    const rc = routeConfiguration([chain]);
    expect(withAll(TypeUrl.RouteConfiguration, rc)).toEqual(without(TypeUrl.RouteConfiguration, rc));
    expect(() => encodeResource(TypeUrl.RouteConfiguration, rc)).toThrow(/virtual_hosts\[0\]\.domains/);
  });

  it('a sub-object that failed is never remembered; a valid sibling of a failed one is', () => {
    const good = virtualHost(2);
    const bad = { ...virtualHost(3), domains: [] }; // min_items 1
    const both = routeConfiguration([good, bad]);
    const stores = memoCounters.stores;
    expect(() => encodeResourceWith(TypeUrl.RouteConfiguration, both, 'all')).toThrow(
      /virtual_hosts\[1\]\.domains/,
    );
    // Again, alone: still rejected, with the same error as without the memo.
    const alone = routeConfiguration([bad]);
    expect(withAll(TypeUrl.RouteConfiguration, alone)).toEqual(without(TypeUrl.RouteConfiguration, alone));
    expect(withAll(TypeUrl.RouteConfiguration, alone)).toHaveProperty('error', 'schema');
    // The good one was accepted (and remembered) before its sibling failed: its bytes are right.
    expect(memoCounters.stores).toBeGreaterThan(stores);
    const fixed = routeConfiguration([good]);
    expect(withAll(TypeUrl.RouteConfiguration, fixed)).toEqual(without(TypeUrl.RouteConfiguration, fixed));
  });

  it('an object accepted shallow is checked again when it sits deeper (nesting limit)', () => {
    // Permission -> Set -> repeated Permission: two levels per step.
    const wrap = (inner: Json, steps: number): Json => {
      let p = inner;
      for (let i = 0; i < steps; i++) p = { and_rules: { rules: [p] } };
      return p;
    };
    const type = 'envoy.config.rbac.v3.Permission';
    const core = wrap({ header: { name: ':path', string_match: { prefix: '/admin' } } }, 20);
    const shallow = wrap(core, 2);
    expect(withAll(type, shallow)).toHaveProperty('bytes');
    expect(withAll(type, shallow)).toEqual(without(type, shallow));
    const deep = wrap(core, 45);
    const answer = without(type, deep);
    expect(withAll(type, deep)).toEqual(answer);
    expect(outcome(() => encodeResource(type, deep))).toEqual(answer);
    // Not vacuous: past protobufjs' nesting limit the answer is different.
    expect(answer).not.toHaveProperty('bytes');
  });
});

// ---- the property: structurally shared variants of random resources ----

/** Every object and array of a JSON tree, once each. */
function nodesOf(json: unknown, out = new Set<object>()): object[] {
  if (typeof json === 'object' && json !== null && !out.has(json)) {
    out.add(json);
    for (const value of Object.values(json)) nodesOf(value, out);
  }
  return [...out];
}

/**
 * A variant of `json` that shares with it (the same objects) everything it does not touch: along a
 * random walk, objects are kept, copied with their children varied, replaced by a deep copy (same
 * content, new identity), replaced by another object of the tree (usually of another message type),
 * or copied with a key or element dropped or an element repeated (the same object twice in a list).
 */
function variant(json: unknown, pool: readonly object[], next: () => number): unknown {
  if (typeof json !== 'object' || json === null) {
    if (next() % 8 !== 0) return json;
    return typeof json === 'string' ? `${json}x` : typeof json === 'number' ? json + 1 : json;
  }
  const choice = next() % 10;
  if (choice < 4) return json;
  if (choice === 4) return structuredClone(json);
  if (choice === 5 && pool.length > 0) return pool[next() % pool.length];
  if (Array.isArray(json)) {
    const out = json.map((item) => variant(item, pool, next));
    if (choice === 6 && out.length > 0) out.splice(next() % out.length, 1);
    if (choice === 7 && out.length > 0) out.push(out[next() % out.length]);
    return out;
  }
  const out: Json = {};
  for (const [key, value] of Object.entries(json)) out[key] = variant(value, pool, next);
  const keys = Object.keys(out);
  if (choice === 6 && keys.length > 0) delete out[keys[next() % keys.length]!];
  return out;
}

describe('identity memo, property: structurally shared variants encode as without the memo', () => {
  for (const [typeUrl, depth] of RESOURCES) {
    const label = typeUrl.slice(typeUrl.lastIndexOf('.') + 1);
    const type = root.lookupType(typeUrl.slice(typeUrl.lastIndexOf('/') + 1));

    it(`${label}: random resources, then variants sharing their sub-objects: same bytes or errors`, () => {
      const hits = memoCounters.hits;
      let valid = 0;
      let total = 0;
      fc.assert(
        fc.property(
          fc.oneof(message(type, depth, 'tame'), message(type, depth, 'wild')),
          fc.array(fc.nat(), { minLength: 64, maxLength: 64 }),
          (json, decisions) => {
            let i = 0;
            const next = () => decisions[i++ % decisions.length]!;
            const pool = nodesOf(json);
            expect(withAll(typeUrl, json)).toEqual(without(typeUrl, json));
            for (let round = 0; round < 4; round++) {
              // The resource itself is always a new object, as a new translation makes it; the first
              // round shares every sub-object.
              const v = round === 0 ? json : variant(json, pool, next);
              const changed = typeof v === 'object' && v !== null && !Array.isArray(v) ? { ...v } : v;
              const expected = without(typeUrl, changed);
              total++;
              if ('bytes' in expected) valid++;
              expect(withAll(typeUrl, changed)).toEqual(expected);
              expect(outcome(() => encodeResource(typeUrl, changed))).toEqual(expected);
            }
            // The original once more, after its variants filled the memo.
            expect(withAll(typeUrl, json)).toEqual(without(typeUrl, json));
          },
        ),
        { numRuns: 150 },
      );
      // Not vacuous: variants were often valid, and encoded partly from the memo.
      expect(valid).toBeGreaterThan(total / 10);
      expect(memoCounters.hits - hits).toBeGreaterThan(30);
    });
  }
});
