// The Translator lists clusters and load assignments in name order without sorting every name: it
// sorts the few `<port>|<subset>|` prefixes and keeps each one's clusters in hostname order. Port
// numbers sort as text (`10000` before `80|`, `80|` after `8080`), subsets out of order in the
// DestinationRule, hostnames whose order changes with the `:port` suffix, a DNS service (no load
// assignment) and the fixed clusters in between: the lists must be what sorting every name gives, on
// a fresh Translator and after an endpoint change.
import { describe, expect, it } from 'vitest';
import { createRegistrySnapshot, type NamedResource, Translator, withEndpoints } from '../src/index.js';
import { configFromYaml, endpoint, proxy, service } from './fixtures.js';

const names = (list: readonly NamedResource[]) => list.map((r) => r.name);
const sorted = (list: readonly NamedResource[]) => names(list).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));

describe('resource order', () => {
  it('clusters and load assignments are in name order', () => {
    const ports = [
      { name: 'http', port: 80, protocol: 'HTTP' },
      { name: 'web', port: 8080, protocol: 'HTTP' },
      { name: 'grpc', port: 10000, protocol: 'GRPC' },
      { name: 'tcp', port: 9, protocol: 'TCP' },
    ];
    const services = [
      service('a', 'default', ports),
      service('a-b', 'default', ports),
      service('ab', 'default', ports.slice(0, 2)),
      service('b', 'other', ports.slice(1)),
      service('c', 'default', ports.slice(0, 1), { resolution: 'DNS', addresses: ['10.96.0.9'] }),
      service('Zed', 'default', ports.slice(2)),
    ];
    const eps = new Map(
      services.map((s, i) => [
        s.hostname,
        [endpoint(`10.0.${i}.1`, { http: 80 }, { app: 'x', version: i % 2 ? 'v1' : 'v2' })],
      ]),
    );
    const registry = createRegistrySnapshot(1, services, eps);
    const config = configFromYaml(`
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: a, namespace: default }
spec:
  host: a
  subsets:
  - { name: v2, labels: { version: v2 } }
  - { name: v1, labels: { version: v1 } }
  - { name: canary-1, labels: { version: v3 } }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: b, namespace: other }
spec:
  host: b.other.svc.cluster.local
  subsets:
  - { name: v1, labels: { version: v1 } }
`);
    const translator = new Translator();
    for (const p of [proxy(), proxy({ grpc: true, ip: '10.1.0.2' })]) {
      const out = translator.translate(config, registry, p);
      expect(names(out.clusters)).toEqual(sorted(out.clusters));
      expect(names(out.endpoints)).toEqual(sorted(out.endpoints));
      expect(out.clusters.length).toBeGreaterThan(20);
      const host = services[1]?.hostname ?? '';
      const next = withEndpoints(registry, 2, host, [endpoint('10.9.9.9', { http: 80 }, { version: 'v1' })]);
      const after = translator.translate(config, next, p);
      expect(names(after.clusters)).toEqual(sorted(after.clusters));
      expect(names(after.endpoints)).toEqual(names(out.endpoints));
      expect(after).toEqual(new Translator().translate(config, next, p));
    }
  });
});
