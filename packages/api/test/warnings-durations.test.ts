import { durationToProto, hostSubsetOf, hostsMatch, parseDurationNanos, validateConfig } from '@meridian/api';
import { describe, expect, it } from 'vitest';
import { drWithPolicy, obj, specErrors, vsWithRoute } from './helpers.js';

function warningsOf(input: unknown): string[] {
  const r = validateConfig(input);
  if (!r.ok) throw new Error(r.error.message);
  return r.warnings.map((w) => `${w.path}: ${w.message}`);
}

describe('durations (Go time.ParseDuration syntax, as Istio reads them)', () => {
  it.each([
    ['1s', 1e9],
    ['1.5s', 1.5e9],
    ['100ms', 1e8],
    ['0.5s', 5e8],
    ['5m', 300e9],
    ['1h30m', 5400e9],
    ['2h45m10.5s', (2 * 3600 + 45 * 60 + 10.5) * 1e9],
    ['10us', 1e4],
    ['10µs', 1e4],
    ['7ns', 7],
    ['0', 0],
    ['.5s', 5e8],
    ['-1s', -1e9],
  ])('parses %s', (text, ns) => {
    expect(parseDurationNanos(text)).toBe(ns);
  });

  it.each(['', '1', 's', '1 s', '1sec', '1.s.', '1d', 'ms', '.s', '1s2'])('rejects %j', (text) => {
    expect(parseDurationNanos(text)).toBeUndefined();
  });

  it('accepts the forms Istio configs use in every duration field', () => {
    for (const timeout of ['1.5s', '100ms', '5m', '1h', '0.001s']) {
      expect(specErrors('VirtualService', vsWithRoute({ timeout }))).toEqual([]);
    }
  });

  it('converts to protobuf Duration parts', () => {
    expect(durationToProto('1.5s')).toEqual({ seconds: 1, nanos: 500_000_000 });
    expect(durationToProto('100ms')).toEqual({ seconds: 0, nanos: 100_000_000 });
    expect(durationToProto('1h')).toEqual({ seconds: 3600, nanos: 0 });
    expect(durationToProto('-1.5s')).toEqual({ seconds: -1, nanos: -500_000_000 });
    expect(durationToProto('x')).toBeUndefined();
  });

  it('the idle timeout 0s means disabled and is accepted', () => {
    expect(
      specErrors('DestinationRule', drWithPolicy({ connectionPool: { tcp: { idleTimeout: '0s' } } })),
    ).toEqual([]);
  });
});

describe('warnings (valid objects, with a note)', () => {
  it('deprecated mirrorPercent', () => {
    expect(
      warningsOf(obj('VirtualService', vsWithRoute({ mirror: { host: 'shadow' }, mirrorPercent: 5 }))),
    ).toEqual([
      'spec.http[0].mirrorPercent: using deprecated setting "mirrorPercent", use "mirrorPercentage" instead',
    ]);
    expect(
      specErrors('VirtualService', vsWithRoute({ mirror: { host: 'shadow' }, mirrorPercent: 101 })),
    ).toEqual([
      'VirtualService default/t: spec.http[0].mirrorPercent: mirror_percent must have a max value of 100 (it has 101)',
    ]);
  });

  it('deprecated consecutiveErrors and minimumRingSize', () => {
    expect(
      warningsOf(
        obj(
          'DestinationRule',
          drWithPolicy({
            outlierDetection: { consecutiveErrors: 5 },
            loadBalancer: { consistentHash: { useSourceIp: true, minimumRingSize: 1024 } },
          }),
        ),
      ),
    ).toEqual([
      "spec.trafficPolicy.loadBalancer.consistentHash.minimumRingSize: consistent hash MinimumRingSize is deprecated, use ConsistentHashLB's RingHash configuration instead",
      'spec.trafficPolicy.outlierDetection.consecutiveErrors: outlier detection consecutive errors is deprecated, use consecutiveGatewayErrors or consecutive5xxErrors instead',
    ]);
  });

  it('selector without labels', () => {
    expect(warningsOf(obj('PeerAuthentication', { selector: {}, mtls: { mode: 'STRICT' } }))).toEqual([
      'spec.selector.matchLabels: workload selector specified without labels',
    ]);
  });
});

describe('exportTo', () => {
  it('rejects an invalid namespace and ~ outside ServiceEntry', () => {
    expect(
      specErrors('VirtualService', {
        hosts: ['r'],
        exportTo: ['Bad', '~'],
        http: [{ route: [{ destination: { host: 'r' } }] }],
      }),
    ).toEqual([
      'VirtualService default/t: spec.exportTo[0]: only . or * or a valid namespace is allowed in exportTo, got Bad',
      'VirtualService default/t: spec.exportTo[1]: only . or * or a valid namespace is allowed in exportTo, got ~',
    ]);
  });
});

describe('host matching helpers', () => {
  it('match wildcards either way and test containment', () => {
    expect(hostsMatch('a.example.com', '*.example.com')).toBe(true);
    expect(hostsMatch('*.example.com', '*.com')).toBe(true);
    expect(hostsMatch('a.example.com', 'b.example.com')).toBe(false);
    expect(hostSubsetOf('a.example.com', '*.example.com')).toBe(true);
    expect(hostSubsetOf('*.example.com', 'a.example.com')).toBe(false);
    expect(hostSubsetOf('anything', '*')).toBe(true);
  });
});

describe('client TLS settings Istio ignores', () => {
  it('warns (does not reject) certificates with DISABLE or ISTIO_MUTUAL', () => {
    expect(
      warningsOf(
        obj('DestinationRule', drWithPolicy({ tls: { mode: 'ISTIO_MUTUAL', clientCertificate: '/c.pem' } })),
      ),
    ).toEqual([
      'spec.trafficPolicy.tls.clientCertificate: clientCertificate is ignored when mode is ISTIO_MUTUAL',
    ]);
  });
});

describe('proto field names', () => {
  it('accepts snake_case proto names and canonicalises them to the JSON names', () => {
    const r = validateConfig(
      obj('VirtualService', {
        hosts: ['r'],
        http: [{ route: [{ destination: { host: 'r' } }], retries: { attempts: 2, per_try_timeout: '1s' } }],
      }),
    );
    if (!r.ok) throw new Error(r.error.message);
    expect(r.config.spec).toEqual({
      hosts: ['r'],
      http: [{ retries: { attempts: 2, perTryTimeout: '1s' }, route: [{ destination: { host: 'r' } }] }],
    });
    expect(
      specErrors('DestinationRule', drWithPolicy({ outlierDetection: { consecutive_5xx_errors: -1 } })),
    ).toEqual([
      'DestinationRule default/t: spec.trafficPolicy.outlierDetection.consecutive_5xx_errors: integer -1 out of range 0..4294967295',
    ]);
  });

  it('rejects a field written in both spellings', () => {
    expect(
      specErrors('WorkloadEntry', { address: '10.0.0.1', serviceAccount: 'a', service_account: 'b' }),
    ).toEqual([
      'WorkloadEntry default/t: spec.service_account: field "serviceAccount" is set twice (as "service_account" and its other spelling)',
    ]);
  });
});

describe('unreachable rules (Istio VirtualServiceUnreachableRule)', () => {
  it('warns about rules after a catch-all and about repeated matches', () => {
    const to = [{ destination: { host: 'r' } }];
    expect(
      warningsOf(
        obj('VirtualService', {
          hosts: ['r'],
          http: [
            { name: 'api', match: [{ uri: { prefix: '/api' } }], route: to },
            { match: [{ uri: { prefix: '/api' } }, { uri: { prefix: '/b' } }], route: to },
            { route: to },
            { match: [{ uri: { prefix: '/c' } }], route: to },
          ],
        }),
      ),
    ).toEqual([
      'spec.http[1].match[0]: virtualService rule #1 match #0 is not used (duplicate/overlapping match in rule "api")',
      'spec.http[3]: virtualService rule #3 not used (route without matches defined before)',
    ]);
  });
});
