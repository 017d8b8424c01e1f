// Issue 12, item 3: incremental translation is correct by construction. For random sequences of
// config and endpoint changes, the resources a long-lived replica pipeline (one Translator, one
// Encoder, a new ProxySnapshot per change, caches carried across) serves to random proxies are
// byte-identical to a fresh translation of the final state by a new Translator and Encoder.
import { type ConfigObject, validateConfig } from '@meridian/api';
import { parseNode, type ResourceTypeUrl, TypeUrl } from '@meridian/envoy';
import {
  createConfigSnapshot,
  createRegistrySnapshot,
  type Endpoint,
  type RegistrySnapshot,
  type Service,
  Translator,
  withEndpoints,
} from '@meridian/translate';
import { type ProxyContext, ResourceCache } from '@meridian/xds';
import fc from 'fast-check';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { Encoder, ProxySnapshot } from '../src/proxy-snapshot.js';

const NAMESPACES = ['ns-a', 'ns-b', 'ns-c'];
const SERVICES = ['alpha', 'beta', 'gamma', 'delta', 'omega'];
const ZONES = ['z1', 'z2'];
const TYPES: readonly ResourceTypeUrl[] = [
  TypeUrl.Listener,
  TypeUrl.RouteConfiguration,
  TypeUrl.Cluster,
  TypeUrl.ClusterLoadAssignment,
];
const log = pino({ level: 'silent' });

function host(i: number): string {
  return `${SERVICES[i]}.${NAMESPACES[i % 3]}.svc.cluster.local`;
}

function validated(raw: unknown): ConfigObject {
  const v = validateConfig(raw);
  if (!v.ok) throw new Error(`test config invalid: ${JSON.stringify(v)}`);
  return v.config;
}

function services(grpcPorts: boolean): Service[] {
  return SERVICES.map((name, i) => ({
    hostname: host(i),
    namespace: NAMESPACES[i % 3]!,
    ports: [
      { name: 'http', port: 8080, protocol: 'HTTP' },
      ...(grpcPorts && i % 2 === 0 ? [{ name: 'grpc', port: 9090, protocol: 'GRPC' }] : []),
    ],
    labels: { app: name },
    exportTo: [],
    resolution: 'EDS' as const,
    addresses: [`10.96.0.${i + 1}`],
  }));
}

function endpoint(service: number, n: number, zone: number, version: string): Endpoint {
  return {
    address: `10.1.${service}.${n}`,
    ports: { http: 8080, grpc: 9090 },
    labels: { app: SERVICES[service]!, version },
    locality: { region: 'r1', zone: ZONES[zone]!, subZone: '' },
    network: '',
    clusterId: 'c1',
    health: 'HEALTHY',
    serviceAccount: `spiffe://cluster.local/ns/${NAMESPACES[service % 3]}/sa/${SERVICES[service]}`,
    weight: 1,
  };
}

/** One change to the mesh. */
type Change =
  | { kind: 'vs'; service: number; weight: number; subsetRoute: boolean; timeout: number; remove: boolean }
  | { kind: 'dr'; service: number; lb: number; outlier: boolean; remove: boolean }
  | { kind: 'sidecar'; namespace: number; hosts: number; remove: boolean }
  | { kind: 'endpoints'; service: number; count: number; zone: number; v2: boolean }
  | { kind: 'ports'; grpc: boolean };

const changeArb: fc.Arbitrary<Change> = fc.oneof(
  fc.record({
    kind: fc.constant('vs' as const),
    service: fc.integer({ min: 0, max: 4 }),
    weight: fc.integer({ min: 0, max: 100 }),
    subsetRoute: fc.boolean(),
    timeout: fc.integer({ min: 0, max: 3 }),
    remove: fc.boolean(),
  }),
  fc.record({
    kind: fc.constant('dr' as const),
    service: fc.integer({ min: 0, max: 4 }),
    lb: fc.integer({ min: 0, max: 2 }),
    outlier: fc.boolean(),
    remove: fc.boolean(),
  }),
  fc.record({
    kind: fc.constant('sidecar' as const),
    namespace: fc.integer({ min: 0, max: 2 }),
    hosts: fc.integer({ min: 0, max: 2 }),
    remove: fc.boolean(),
  }),
  fc.record({
    kind: fc.constant('endpoints' as const),
    service: fc.integer({ min: 0, max: 4 }),
    count: fc.integer({ min: 0, max: 3 }),
    zone: fc.integer({ min: 0, max: 1 }),
    v2: fc.boolean(),
  }),
  fc.record({ kind: fc.constant('ports' as const), grpc: fc.boolean() }),
);

/** The mesh as a ClusterState would hold it: unchanged objects keep their identity. */
class Mesh {
  readonly objects = new Map<string, ConfigObject>();
  registry: RegistrySnapshot;
  revision = 1;

  constructor() {
    const svcs = services(false);
    const eps = new Map<string, Endpoint[]>();
    for (const [i, s] of svcs.entries()) eps.set(s.hostname, [endpoint(i, 1, i % 2, 'v1')]);
    this.registry = createRegistrySnapshot(1, svcs, eps);
  }

  apply(c: Change): void {
    this.revision++;
    const name = (i: number) => SERVICES[i]!;
    switch (c.kind) {
      case 'vs': {
        const key = `VirtualService/${NAMESPACES[c.service % 3]}/${name(c.service)}`;
        if (c.remove) {
          this.objects.delete(key);
          return;
        }
        const other = (c.service + 1) % 5;
        this.objects.set(
          key,
          validated({
            apiVersion: 'networking.istio.io/v1',
            kind: 'VirtualService',
            metadata: { name: name(c.service), namespace: NAMESPACES[c.service % 3] },
            spec: {
              hosts: [host(c.service)],
              http: [
                ...(c.subsetRoute
                  ? [
                      {
                        match: [{ headers: { 'x-canary': { exact: 'yes' } } }],
                        route: [{ destination: { host: host(c.service), subset: 'v2' } }],
                      },
                    ]
                  : []),
                {
                  route: [
                    { destination: { host: host(c.service), subset: 'v1' }, weight: c.weight },
                    { destination: { host: host(other) }, weight: 100 - c.weight },
                  ],
                  ...(c.timeout > 0 ? { timeout: `${c.timeout}s` } : {}),
                },
              ],
            },
          }),
        );
        return;
      }
      case 'dr': {
        const key = `DestinationRule/${NAMESPACES[c.service % 3]}/${name(c.service)}`;
        if (c.remove) {
          this.objects.delete(key);
          return;
        }
        const lb = [
          { simple: 'ROUND_ROBIN' },
          { simple: 'LEAST_REQUEST' },
          { consistentHash: { httpHeaderName: 'x-user' } },
        ][c.lb];
        this.objects.set(
          key,
          validated({
            apiVersion: 'networking.istio.io/v1',
            kind: 'DestinationRule',
            metadata: { name: name(c.service), namespace: NAMESPACES[c.service % 3] },
            spec: {
              host: host(c.service),
              trafficPolicy: {
                loadBalancer: lb,
                ...(c.outlier ? { outlierDetection: { consecutive5xxErrors: 3, interval: '5s' } } : {}),
              },
              subsets: [
                { name: 'v1', labels: { version: 'v1' } },
                { name: 'v2', labels: { version: 'v2' } },
              ],
            },
          }),
        );
        return;
      }
      case 'sidecar': {
        const ns = NAMESPACES[c.namespace]!;
        const key = `Sidecar/${ns}/default`;
        if (c.remove) {
          this.objects.delete(key);
          return;
        }
        const hosts = [['./*'], ['./*', 'ns-a/*'], ['*/*']][c.hosts]!;
        this.objects.set(
          key,
          validated({
            apiVersion: 'networking.istio.io/v1',
            kind: 'Sidecar',
            metadata: { name: 'default', namespace: ns },
            spec: { egress: [{ hosts }] },
          }),
        );
        return;
      }
      case 'endpoints': {
        const list = Array.from({ length: c.count }, (_, n) =>
          endpoint(c.service, n + 1, (c.zone + n) % 2, c.v2 && n > 0 ? 'v2' : 'v1'),
        );
        this.registry = withEndpoints(this.registry, this.revision, host(c.service), list);
        return;
      }
      case 'ports': {
        const svcs = services(c.grpc);
        const old = this.registry.services;
        // Unchanged services keep their objects, as the registry's snapshots do.
        const merged = svcs.map((s, i) =>
          JSON.stringify(s) === JSON.stringify(old[i]) ? (old[i] as Service) : s,
        );
        const same = merged.every((s, i) => s === old[i]);
        if (!same)
          this.registry = Object.freeze({
            revision: this.revision,
            services: merged,
            endpoints: this.registry.endpoints,
          });
        return;
      }
    }
  }

  config() {
    const sorted = [...this.objects.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([, o]) => o);
    return createConfigSnapshot(this.revision, sorted);
  }
}

function proxies(): ProxyContext[] {
  const out: ProxyContext[] = [];
  let n = 0;
  for (const [i, ns] of NAMESPACES.entries()) {
    for (const kind of ['sidecar', 'grpc'] as const) {
      for (const zone of ZONES) {
        n++;
        // Each sidecar is a workload of one service (its IP is that service's first endpoint).
        const ip = `10.1.${i}.1`;
        out.push({
          connectionId: `c${n}`,
          authenticatedIdentity: undefined,
          peer: '',
          proxy: parseNode({
            id: `sidecar~${ip}~w${n}.${ns}~${ns}.svc.cluster.local`,
            metadata: {
              NAMESPACE: ns,
              LABELS: { app: SERVICES[i]!, version: 'v1' },
              INSTANCE_IPS: ip,
              ...(kind === 'grpc' ? { GENERATOR: 'grpc' } : {}),
            },
            locality: { region: 'r1', zone },
          }),
        });
      }
    }
  }
  return out;
}

/** name -> version (the hash of the encoded bytes) of every resource of every type. */
function served(snapshot: ProxySnapshot, proxy: ProxyContext): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = {};
  for (const type of TYPES) {
    const map = snapshot.resources(proxy, type);
    out[type] = Object.fromEntries([...(map ?? new Map()).values()].map((r) => [r.name, r.version]));
  }
  return out;
}

describe('incremental push contexts', () => {
  it('serve byte-identical resources to a fresh translation of the final state', () => {
    const all = proxies();
    fc.assert(
      fc.property(
        fc.array(changeArb, { minLength: 1, maxLength: 12 }),
        fc.array(fc.integer({ min: 0, max: all.length - 1 }), { minLength: 1, maxLength: 4 }),
        (changes, probes) => {
          const mesh = new Mesh();
          const translator = new Translator();
          const encoder = new Encoder(new ResourceCache());
          let step = 0;
          for (const change of changes) {
            mesh.apply(change);
            const snapshot = new ProxySnapshot(
              mesh.revision,
              mesh.config(),
              mesh.registry,
              translator,
              encoder,
              log,
            );
            // Intermediate states warm the caches for some proxies, as pushes would.
            for (const i of probes) served(snapshot, all[(i + step) % all.length]!);
            if (++step % 5 === 0) encoder.sweep();
          }
          const config = mesh.config();
          const incremental = new ProxySnapshot(
            mesh.revision,
            config,
            mesh.registry,
            translator,
            encoder,
            log,
          );
          const fresh = new ProxySnapshot(
            mesh.revision,
            config,
            mesh.registry,
            new Translator(),
            new Encoder(new ResourceCache()),
            log,
          );
          for (const proxy of all) expect(served(incremental, proxy)).toEqual(served(fresh, proxy));
        },
      ),
      { numRuns: 60 },
    );
  });
});
