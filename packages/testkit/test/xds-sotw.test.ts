import { TypeUrl } from '@meridian/envoy';
import {
  clusterName,
  LoadGenerator,
  listenerName,
  nextSnapshot,
  type TestService,
  translateServices,
} from '@meridian/testkit';
import { ResourceCache, XdsServer, xdsLogger } from '@meridian/xds';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const services: TestService[] = [
  { host: 'a.default.svc.cluster.local', port: 80, endpoints: [{ address: '10.0.0.1', port: 8080 }] },
  { host: 'b.default.svc.cluster.local', port: 80, endpoints: [{ address: '10.0.0.2', port: 8080 }] },
];

describe('SotW and Delta streams side by side', () => {
  const lines: string[] = [];
  const logger = xdsLogger({ level: 'debug', write: (l) => lines.push(l) });
  const server = new XdsServer({ logger, debounce: { quietMs: 0 } });
  const cache = new ResourceCache();
  let port = 0;
  beforeAll(async () => {
    server.update(nextSnapshot(cache, undefined, 'v1', translateServices(services)));
    port = await server.listen();
  });
  afterAll(() => server.close());

  it('serve the same snapshot; every type SYNCED', async () => {
    const gen = new LoadGenerator({
      address: `127.0.0.1:${port}`,
      proxies: 3,
      proxy: (i) => ({
        nodeId: `sidecar~10.1.0.${i}~p${i}.default~default.svc.cluster.local`,
        variant: i === 2 ? 'delta' : 'sotw',
        subscriptions: [
          { typeUrl: TypeUrl.Cluster },
          { typeUrl: TypeUrl.ClusterLoadAssignment, names: [clusterName(services[0]!)] },
          { typeUrl: TypeUrl.Listener },
          { typeUrl: TypeUrl.RouteConfiguration, names: [listenerName(services[0]!)] },
        ],
      }),
    });
    try {
      gen.connect();
      const ok = await gen.waitFor(() => {
        // The server has processed every ACK (the client counting its own ACKs would race it).
        const st = server.syncStatus();
        return (
          st.length === 3 &&
          st.every((s) => Object.values(s.types).filter((t) => t.state === 'SYNCED').length === 4)
        );
      }, 10000);
      expect(ok).toBe(true);
      const status = server.syncStatus();
      expect(status.map((s) => s.variant)).toEqual(['sotw', 'sotw', 'delta']);
      for (const s of status) {
        expect(Object.values(s.types).map((t) => t.state)).toEqual(['SYNCED', 'SYNCED', 'SYNCED', 'SYNCED']);
        expect(s.types.cds?.resources).toBe(2);
        expect(s.types.eds?.resources).toBe(1);
      }
      expect(lines.filter((l) => l.includes('"msg":"proxy connected"'))).toHaveLength(3);
    } finally {
      gen.close();
    }
  });
});
