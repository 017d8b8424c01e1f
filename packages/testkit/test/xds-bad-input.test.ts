// Bad input that needs real HTTP/2: streams that never read end as stuck, with a log line and a
// counter, never in unbounded memory. The other bad-input cases (unknown type URL, bad node ids,
// garbage and oversized requests, unknown names, made-up nonces) are checked on the stream loop itself,
// in packages/xds/test/stream-bad-input.test.ts.
import { connect, constants as h2 } from 'node:http2';
import { Client, credentials } from '@grpc/grpc-js';
import { encodeResource, TypeUrl } from '@meridian/envoy';
import {
  eventually,
  nextSnapshot,
  SimulatedProxy,
  sotwRequestBytes,
  type TestService,
  translateServices,
} from '@meridian/testkit';
import { ResourceCache, XdsServer, xdsLogger } from '@meridian/xds';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const services: TestService[] = [
  {
    host: 'a.default.svc.cluster.local',
    port: 80,
    endpoints: [{ address: '10.0.0.1', port: 8080 }],
    padding: 20_000,
  },
];

describe('bad input', () => {
  const lines: string[] = [];
  const server = new XdsServer({
    logger: xdsLogger({ level: 'info', write: (l) => lines.push(l) }),
    debounce: { quietMs: 0 },
    stuckTimeoutMs: 1000,
  });
  let port = 0;
  let client: Client;
  const opened: SimulatedProxy[] = [];
  const logged = (text: string) => lines.some((l) => l.includes(text));
  const proxy = (nodeId: string, metadata = {}) => {
    const p = new SimulatedProxy({
      nodeId,
      metadata,
      variant: 'sotw',
      subscriptions: [],
      manual: true,
      record: true,
    });
    p.connect(client);
    opened.push(p);
    return p;
  };

  beforeAll(async () => {
    server.update(nextSnapshot(new ResourceCache(), undefined, 'v1', translateServices(services)));
    port = await server.listen();
    client = new Client(`127.0.0.1:${port}`, credentials.createInsecure());
  });
  afterAll(() => {
    for (const p of opened) p.disconnect();
    client?.close();
    server.close();
  });

  it('1,000 streams that never read are closed as stuck; memory stays bounded', async () => {
    const heapBefore = process.memoryUsage().heapUsed;
    // A small stream window (8 KiB) so each 20 KB response blocks on flow control.
    const session = connect(`http://127.0.0.1:${port}`, { settings: { initialWindowSize: 8192 } });
    session.on('error', () => {});
    const node = encodeResource('envoy.config.core.v3.Node', {
      id: 'sidecar~10.3.0.1~flood.default~default.svc.cluster.local',
    });
    const body = sotwRequestBytes({ node, typeUrl: TypeUrl.Cluster });
    const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), body]);
    frame.writeUInt32BE(body.length, 1);
    const streams = [];
    for (let i = 0; i < 1000; i++) {
      const s = session.request({
        [h2.HTTP2_HEADER_METHOD]: 'POST',
        [h2.HTTP2_HEADER_PATH]:
          '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources',
        'content-type': 'application/grpc',
        te: 'trailers',
      });
      s.on('error', () => {});
      s.pause();
      s.write(frame);
      streams.push(s);
    }
    try {
      // Every flood stream ends up either closed as stuck or fully written (the client's HTTP/2 layer
      // buffered some responses before flow control stopped the rest).
      const flood = () => server.syncStatus().filter((st) => st.proxyId.includes('~flood.'));
      await eventually(
        'every flood stream closed or drained',
        () => {
          const left = flood();
          return (
            server.metrics.count('pilot_xds_write_timeout') + left.length === 1000 &&
            left.every((st) => st.bufferedBytes === 0)
          );
        },
        30_000,
      );
      const stuck = server.metrics.count('pilot_xds_write_timeout');
      const heapAfter = process.memoryUsage().heapUsed;
      console.log(
        `flood: ${stuck} of 1000 streams closed as stuck; heap ${(heapBefore / 2 ** 20).toFixed(1)} -> ${(heapAfter / 2 ** 20).toFixed(1)} MiB`,
      );
      expect(stuck).toBe(1000);
      expect(logged('closing xDS stream: proxy stopped reading: ')).toBe(true);
    } finally {
      session.destroy();
    }
    // The server still serves.
    const p = proxy('sidecar~10.2.0.7~after.default~default.svc.cluster.local');
    p.send(sotwRequestBytes({ node: p.node, typeUrl: TypeUrl.Cluster }));
    await eventually('served after the flood', () => p.responses.length === 1, 15_000);
  });
});
