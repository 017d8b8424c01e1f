import type { ServiceEntryConfig, WorkloadEntryConfig } from '@meridian/api';
import {
  decodeMessage,
  encodeMessage,
  endpointToWire,
  type ImportedService,
  type ImportedView,
  type ServiceRecord,
  serviceToWire,
} from '@meridian/federation';
import type { Endpoint, Service } from '@meridian/translate';
import { describe, expect, it } from 'vitest';
import {
  buildLocalView,
  FederatedSource,
  InvalidRegistrationError,
  importedSourceView,
  LocalSource,
  Registry,
  type RegistrySource,
  type SourceView,
  toRegistration,
  validateWorkload,
  type WorkloadRegistration,
} from '../src/index.js';

const se = (name: string, spec: ServiceEntryConfig['spec']): ServiceEntryConfig => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'ServiceEntry',
  metadata: { name, namespace: 'default' },
  spec,
});

const we = (name: string, address: string, labels: Record<string, string>): WorkloadEntryConfig => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'WorkloadEntry',
  metadata: { name, namespace: 'default' },
  spec: { address, labels, locality: 'r1/z1', serviceAccount: 'sa' },
});

const reg = (name: string, address: string, health: WorkloadRegistration['health'] = 'HEALTHY') =>
  toRegistration(
    { name, namespace: 'default', address, labels: { app: 'reviews' }, ports: { http: 9080 }, health },
    'replica-a',
    new Date(0),
  );

const reviews = se('reviews', {
  hosts: ['reviews.default.svc.cluster.local'],
  ports: [{ number: 9080, name: 'http', protocol: 'HTTP' }],
  resolution: 'STATIC',
  workloadSelector: { labels: { app: 'reviews' } },
});

describe('local source', () => {
  it('turns ServiceEntries into services and selects WorkloadEntries and registrations by labels', () => {
    const view = buildLocalView(
      {
        serviceEntries: [reviews],
        workloadEntries: [we('w1', '10.0.0.1', { app: 'reviews' }), we('w2', '10.0.0.2', { app: 'other' })],
        registrations: [reg('r1', '10.0.0.3', 'UNHEALTHY')],
      },
      'c1',
    );
    expect(view.services).toEqual([
      {
        hostname: 'reviews.default.svc.cluster.local',
        namespace: 'default',
        ports: [{ name: 'http', port: 9080, protocol: 'HTTP' }],
        labels: {},
        exportTo: [],
        resolution: 'EDS',
      },
    ]);
    const eps = view.endpoints.get('reviews.default.svc.cluster.local')!;
    expect(eps.map((e) => [e.address, e.health, e.clusterId])).toEqual([
      ['10.0.0.1', 'HEALTHY', 'c1'],
      ['10.0.0.3', 'UNHEALTHY', 'c1'],
    ]);
    expect(eps[0]!.locality).toEqual({ region: 'r1', zone: 'z1', subZone: '' });
  });

  it('uses inline endpoints without a selector and maps resolutions', () => {
    const view = buildLocalView(
      {
        serviceEntries: [
          se('ext', {
            hosts: ['api.example.com'],
            ports: [{ number: 443, name: 'https', protocol: 'TLS' }],
            resolution: 'DNS',
            location: 'MESH_EXTERNAL',
            endpoints: [{ address: 'api.example.com' }],
          }),
          se('none', {
            hosts: ['x.example.com'],
            ports: [{ number: 80, name: 'http' }],
            subjectAltNames: ['spiffe://cluster.local/ns/x/sa/y'],
          }),
        ],
        workloadEntries: [],
        registrations: [],
      },
      'c1',
    );
    expect(view.services.map((s) => [s.hostname, s.resolution, s.meshExternal ?? false])).toEqual([
      ['api.example.com', 'DNS', true],
      ['x.example.com', 'PASSTHROUGH', false],
    ]);
    expect(view.endpoints.get('api.example.com')!.map((e) => e.address)).toEqual(['api.example.com']);
    // ServiceEntry subjectAltNames: identities the upstream peer may also present.
    expect(view.services.map((s) => s.subjectAltNames)).toEqual([
      undefined,
      ['spiffe://cluster.local/ns/x/sa/y'],
    ]);
  });
});

class StaticSource implements RegistrySource {
  constructor(
    readonly name: string,
    public current: SourceView,
  ) {}
  view(): SourceView {
    return this.current;
  }
  onChange(): () => void {
    return () => {};
  }
}

describe('registry', () => {
  it('keeps the identity of unchanged services, endpoint lists and the snapshot itself', () => {
    const local = new LocalSource('c1');
    const registry = new Registry([local]);
    const inputs = { serviceEntries: [reviews], workloadEntries: [], registrations: [reg('a', '10.0.0.1')] };
    local.update(inputs);
    const s1 = registry.snapshot(1);
    local.update(inputs); // same content, new objects
    expect(registry.snapshot(2)).toBe(s1);
    local.update({ ...inputs, registrations: [reg('a', '10.0.0.1', 'UNHEALTHY')] });
    const s3 = registry.snapshot(3);
    expect(s3).not.toBe(s1);
    expect(s3.services).toBe(s1.services); // only endpoints changed: translate keeps its scopes
    expect(s3.endpoints.get('reviews.default.svc.cluster.local')![0]!.health).toBe('UNHEALTHY');
  });

  it('merges a later source (federation): first definition of a host wins, endpoints add up', () => {
    const local = new LocalSource('c1');
    local.update({ serviceEntries: [reviews], workloadEntries: [], registrations: [reg('a', '10.0.0.1')] });
    const remoteService: Service = {
      hostname: 'reviews.default.svc.cluster.local',
      namespace: 'default',
      ports: [],
      labels: {},
      exportTo: [],
      resolution: 'EDS',
    };
    const remoteEndpoint: Endpoint = {
      address: '10.1.0.1',
      ports: { http: 9080 },
      labels: {},
      locality: { region: 'r2', zone: '', subZone: '' },
      network: 'n2',
      clusterId: 'c2',
      health: 'HEALTHY',
      serviceAccount: '',
      weight: 1,
    };
    const remote = new StaticSource('federation', {
      services: [remoteService],
      endpoints: new Map([[remoteService.hostname, [remoteEndpoint]]]),
    });
    const registry = new Registry([local]);
    registry.addSource(remote);
    const snap = registry.snapshot(1);
    expect(snap.services).toHaveLength(1);
    expect(snap.services[0]!.ports).toHaveLength(1); // the local definition
    expect(snap.endpoints.get(remoteService.hostname)!.map((e) => [e.address, e.clusterId])).toEqual([
      ['10.0.0.1', 'c1'],
      ['10.1.0.1', 'c2'],
    ]);
  });
});

describe('registration validation', () => {
  it('names the bad field', () => {
    expect(() => validateWorkload({ name: 'Bad_Name', namespace: 'default', address: '10.0.0.1' })).toThrow(
      new InvalidRegistrationError('default/Bad_Name', 'name', '"Bad_Name" is not a DNS-1123 label'),
    );
    try {
      validateWorkload({ name: 'w', namespace: 'default', address: '10.0.0.1', ports: { http: 70000 } });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(InvalidRegistrationError);
      expect((error as Error).message).toBe(
        'workload default/w: ports.http: port must be 1..65535, got 70000',
      );
    }
  });
});

describe('federated source', () => {
  it('adds imported endpoints (tagged with their origin cluster) to a locally defined service', () => {
    const local = new LocalSource('c1');
    local.update({ serviceEntries: [reviews], workloadEntries: [], registrations: [reg('a', '10.0.0.1')] });
    const federated = new FederatedSource();
    const registry = new Registry([local, federated]);
    const before = registry.snapshot(1);
    federated.update({
      version: 1,
      staleClusters: new Set(),
      services: new Map([
        [
          'c2/default/reviews.default.svc.cluster.local',
          {
            cluster: 'c2',
            namespace: 'default',
            hostname: 'reviews.default.svc.cluster.local',
            service: {
              hostname: 'reviews.default.svc.cluster.local',
              namespace: 'default',
              ports: [{ name: 'http', port: 9080, protocol: 'HTTP' }],
              labels: {},
              exportTo: [],
              resolution: 'EDS',
            },
            endpoints: [
              {
                address: '10.2.0.1',
                ports: { http: 9080 },
                labels: { app: 'reviews' },
                locality: { region: 'r2', zone: 'z1', subZone: '' },
                network: 'n2',
                cluster: 'c2',
                health: 'HEALTHY',
                serviceAccount: 'reviews',
                weight: 1,
              },
            ],
            stale: false,
            epoch: 1,
            seq: 1,
          },
        ],
      ]),
    });
    const after = registry.snapshot(2);
    expect(after.services).toBe(before.services); // the local definition is kept
    expect(
      after.endpoints
        .get('reviews.default.svc.cluster.local')!
        .map((e) => [e.address, e.clusterId, e.locality.region, e.namespace, e.serviceAccount]),
    ).toEqual([
      ['10.0.0.1', 'c1', '', undefined, ''],
      // The imported endpoint carries its origin service's namespace (its identity's namespace).
      ['10.2.0.1', 'c2', 'r2', 'default', 'reviews'],
    ]);
  });

  // Moved from @meridian/federation's registry mapping tests when its second merge of imported
  // services (importedRegistryEntries, used only by tests) was removed: this source is the one merge.
  const wireService: Service = {
    hostname: 'ratings.default.svc.cluster.local',
    namespace: 'default',
    ports: [{ name: 'http', port: 9080, protocol: 'HTTP', targetPort: 8080 }],
    labels: { app: 'ratings' },
    exportTo: ['*'],
    resolution: 'EDS',
    addresses: ['10.96.0.12'],
  };
  const wireEndpoint = (address: string, clusterId: string): Endpoint => ({
    address,
    ports: { http: 8080 },
    labels: { app: 'ratings', version: 'v1' },
    locality: { region: 'eu', zone: 'eu-1', subZone: '' },
    network: `net-${clusterId}`,
    clusterId,
    health: 'HEALTHY',
    serviceAccount: 'ratings',
    weight: 2,
  });
  const imported = (
    cluster: string,
    labels: Record<string, string>,
    addresses: string[],
  ): ImportedService => ({
    cluster,
    namespace: 'default',
    hostname: wireService.hostname,
    service: { ...serviceToWire(wireService), labels },
    endpoints: addresses.map((a) => endpointToWire(wireEndpoint(a, cluster))),
    stale: false,
    epoch: 1,
    seq: 1,
  });
  const viewOf = (order: ImportedService[]): ImportedView => ({
    version: 1,
    services: new Map(order.map((s) => [`${s.cluster}/${s.namespace}/${s.hostname}`, s])),
    staleClusters: new Set(),
  });

  it('registry types survive the wire and the import (except cluster-local VIPs; endpoints gain their namespace)', () => {
    const e = wireEndpoint('10.0.0.1', 'east');
    const record: ServiceRecord = {
      v: 1,
      kind: 'service',
      mesh: 'm',
      origin: 'east',
      epoch: 1,
      seq: 1,
      namespace: 'default',
      hostname: wireService.hostname,
      deleted: false,
      service: serviceToWire(wireService),
      endpoints: [endpointToWire(e)],
      exportedAt: '',
    };
    const back = decodeMessage(encodeMessage(record)) as ServiceRecord;
    const view = importedSourceView(
      viewOf([{ ...imported('east', {}, []), service: back.service!, endpoints: back.endpoints }]),
    );
    const { addresses: _vips, ...withoutVips } = wireService;
    expect(view.services).toEqual([withoutVips]);
    expect(view.endpoints.get(wireService.hostname)).toEqual([{ ...e, namespace: 'default' }]);
  });

  it('imported services: one service per hostname (the first cluster by name), endpoints of every cluster, whatever the order of the view', () => {
    const north = imported('north', { from: 'north' }, ['10.2.0.2', '10.2.0.1']);
    const east = imported('east', { from: 'east' }, ['10.0.0.1']);
    const snapshot = (order: ImportedService[]) => {
      const federated = new FederatedSource();
      federated.update(viewOf(order));
      return new Registry([federated]).snapshot(1);
    };
    const a = snapshot([north, east]);
    const b = snapshot([east, north]);
    expect(a.services).toEqual(b.services);
    expect(a.endpoints).toEqual(b.endpoints);
    expect(a.services.find((s) => s.hostname === wireService.hostname)!.labels).toEqual({ from: 'east' });
    expect(a.endpoints.get(wireService.hostname)!.map((e) => `${e.clusterId}:${e.address}`)).toEqual([
      'east:10.0.0.1',
      'north:10.2.0.1',
      'north:10.2.0.2',
    ]);
  });

  it('an imported endpoint is never given a weight below 1', () => {
    const east = imported('east', {}, ['10.0.0.1']);
    const zero = { ...east, endpoints: east.endpoints.map((e) => ({ ...e, weight: 0 })) };
    expect(
      importedSourceView(viewOf([zero]))
        .endpoints.get(wireService.hostname)!
        .map((e) => e.weight),
    ).toEqual([1]);
  });
});
