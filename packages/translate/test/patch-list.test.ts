// An endpoint change patches the outbound part's load-assignment list: the new list says which list
// it came from and which positions changed (patchOf), so the replica's encoder updates its map for
// those entries only; every other position holds the same object.
import { describe, expect, it } from 'vitest';
import { createConfigSnapshot, patchOf, Translator, translateProxy, withEndpoints } from '../src/index.js';
import { bookinfoRegistry, configFromYaml, proxy } from './fixtures.js';

describe('patched outbound lists', () => {
  it('an endpoint change yields a load-assignment list patched at that service only', () => {
    const config = createConfigSnapshot(1, []);
    const before = bookinfoRegistry();
    const t = new Translator();
    const p = proxy({ ip: '10.1.0.1' });
    const a = t.translateParts(config, before, p).outbound;
    const host = [...before.endpoints.keys()].find((h) => h.startsWith('reviews'))!;
    const list = before.endpoints.get(host)!;
    const after = withEndpoints(before, 2, host, [
      { ...list[0]!, weight: list[0]!.weight + 5 },
      ...list.slice(1),
    ]);
    const b = t.translateParts(config, after, p).outbound;
    expect(b.endpoints).not.toBe(a.endpoints);
    const patch = patchOf(b.endpoints);
    expect(patch?.from).toBe(a.endpoints);
    const changed = patch!.positions.map((i) => b.endpoints[i]!.name);
    expect(changed.length).toBeGreaterThan(0);
    expect(changed.every((name) => name.endsWith(`|${host}`))).toBe(true);
    b.endpoints.forEach((r, i) => {
      if (!patch!.positions.includes(i)) expect(r).toBe(a.endpoints[i]);
      else expect(r).not.toBe(a.endpoints[i]);
    });
    // Clusters did not change: the same list, not a patch.
    expect(b.clusters).toBe(a.clusters);
    expect(patchOf(a.endpoints)).toBeUndefined();
  });

  it("a DestinationRule edit patches its host's clusters and load assignments, equal to a fresh translation", () => {
    const dr = (lb: string, subsetVersion: string) => `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews, namespace: default }
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: { simple: ${lb} }
  subsets:
    - name: v1
      labels: { version: v1 }
    - name: near
      labels: { version: ${subsetVersion} }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ratings, namespace: default }
spec:
  host: ratings
  trafficPolicy:
    loadBalancer: { simple: RANDOM }
`;
    const registry = bookinfoRegistry();
    const t = new Translator();
    const proxies = [proxy({ ip: '10.1.0.1' }), proxy({ ip: '10.1.0.9', pod: 'productpage-v1-y' })];
    const before = configFromYaml(dr('ROUND_ROBIN', 'v2'), 1);
    const a = proxies.map((p) => t.translateParts(before, registry, p).outbound);
    const after = configFromYaml(dr('LEAST_REQUEST', 'v3'), 2);
    for (const [i, p] of proxies.entries()) {
      const b = t.translateParts(after, registry, p).outbound;
      // Patched from the previous config's lists where the DestinationRules' references changed.
      const clusters = patchOf(b.clusters);
      expect(clusters?.from).toBe(a[i]!.clusters);
      const patched = new Set(clusters!.positions.map((k) => b.clusters[k]!.name));
      for (const r of b.clusters)
        if (r.name.endsWith('|reviews.default.svc.cluster.local')) expect(patched.has(r.name)).toBe(true);
      // Equal to a fresh translation of the new config.
      const fresh = translateProxy(after, registry, p);
      const byName = (list: readonly { name: string; resource: unknown }[]) =>
        new Map(list.map((r) => [r.name, JSON.stringify(r.resource)]));
      const freshClusters = byName(fresh.clusters);
      for (const r of b.clusters) expect(JSON.stringify(r.resource), r.name).toBe(freshClusters.get(r.name));
      const freshCla = byName(fresh.endpoints);
      for (const r of b.endpoints) expect(JSON.stringify(r.resource), r.name).toBe(freshCla.get(r.name));
    }
  });
});
