import type { Endpoint, Service } from '@meridian/translate';
import { describe, expect, test } from 'vitest';
import {
  decodeMessage,
  encodeMessage,
  endpointFromWire,
  endpointToWire,
  type ImportedService,
  type ImportedView,
  importedRegistryEntries,
  localExportStates,
  type ServiceRecord,
  serviceFromWire,
  serviceToWire,
} from '../src/index.js';

const service: Service = {
  hostname: 'reviews.default.svc.cluster.local',
  namespace: 'default',
  ports: [{ name: 'http', port: 9080, protocol: 'HTTP', targetPort: 8080 }],
  labels: { app: 'reviews' },
  exportTo: ['*'],
  resolution: 'EDS',
  addresses: ['10.96.0.12'],
};
const ep = (address: string, clusterId: string, health: Endpoint['health'] = 'HEALTHY'): Endpoint => ({
  address,
  ports: { http: 8080 },
  labels: { app: 'reviews', version: 'v1' },
  locality: { region: 'eu', zone: 'eu-1', subZone: '' },
  network: `net-${clusterId}`,
  clusterId,
  health,
  serviceAccount: 'reviews',
  weight: 2,
});

describe('registry mapping', () => {
  test('registry types survive the wire (except cluster-local VIPs)', () => {
    const e = ep('10.0.0.1', 'east');
    const record: ServiceRecord = {
      v: 1,
      kind: 'service',
      mesh: 'm',
      origin: 'east',
      epoch: 1,
      seq: 1,
      namespace: 'default',
      hostname: service.hostname,
      deleted: false,
      service: serviceToWire(service),
      endpoints: [endpointToWire(e)],
      exportedAt: '',
    };
    const back = decodeMessage(encodeMessage(record)) as ServiceRecord;
    const { addresses: _vips, ...withoutVips } = service;
    expect(serviceFromWire(back.service!)).toEqual(withoutVips);
    expect(endpointFromWire(back.endpoints[0]!)).toEqual(e);
  });

  test('export input: only local endpoints, never mesh-external services', () => {
    const external: Service = { ...service, hostname: 'api.example.com', meshExternal: true };
    const states = localExportStates(
      'east',
      [service, external],
      new Map([[service.hostname, [ep('10.0.0.1', 'east'), ep('10.1.0.1', 'west')]]]),
    );
    expect(states).toHaveLength(1);
    expect(states[0]!.endpoints.map((e) => e.address)).toEqual(['10.0.0.1']);
  });

  test('import output: one service per hostname, endpoints of every cluster, deterministic', () => {
    const imported = (
      cluster: string,
      labels: Record<string, string>,
      addresses: string[],
    ): ImportedService => ({
      cluster,
      namespace: 'default',
      hostname: service.hostname,
      service: { ...serviceToWire(service), labels },
      endpoints: addresses.map((a) => endpointToWire(ep(a, cluster))),
      stale: false,
      epoch: 1,
      seq: 1,
    });
    const view = (order: ImportedService[]): ImportedView => ({
      version: 1,
      services: new Map(order.map((s) => [`${s.cluster}/${s.namespace}/${s.hostname}`, s])),
      staleClusters: new Set(),
    });
    const north = imported('north', { from: 'north' }, ['10.2.0.2', '10.2.0.1']);
    const east = imported('east', { from: 'east' }, ['10.0.0.1']);
    const a = importedRegistryEntries(view([north, east]));
    const b = importedRegistryEntries(view([east, north]));
    expect(a).toEqual(b);
    expect(a.services.get(service.hostname)!.labels).toEqual({ from: 'east' });
    expect(a.endpoints.get(service.hostname)!.map((e) => `${e.clusterId}:${e.address}`)).toEqual([
      'east:10.0.0.1',
      'north:10.2.0.1',
      'north:10.2.0.2',
    ]);
  });
});
