import type { Endpoint, Service } from '@meridian/translate';
import { describe, expect, test } from 'vitest';
import { localExportStates } from '../src/index.js';

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

// The import side (and the round trip through the wire) is tested with @meridian/registry's
// FederatedSource, the one merge of imported services.
describe('registry mapping (export side)', () => {
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
});
