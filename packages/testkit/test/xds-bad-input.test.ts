// Bad input from the issue: each case ends in a clear log line and a counter, never in a crash or
// unbounded memory.
import { connect, constants as h2 } from 'node:http2';
import { Client, credentials, status } from '@grpc/grpc-js';
import { encodeResource, TypeUrl } from '@meridian/envoy';
import {
  clusterName,
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

  it('an unknown type URL is ignored with a log line and a counter; the stream keeps working', async () => {
    const p = proxy('sidecar~10.2.0.1~bad-1.default~default.svc.cluster.local');
    p.send(sotwRequestBytes({ node: p.node, typeUrl: 'type.googleapis.com/foo.Bar' }));
    p.send(sotwRequestBytes({ typeUrl: TypeUrl.Cluster }));
    await eventually('the CDS response', () => p.responses.length === 1, 15_000);
    expect(p.responses[0]?.typeUrl).toBe(TypeUrl.Cluster);
    expect(server.metrics.count('meridian_xds_bad_requests{reason=unknown_type}')).toBe(1);
    expect(logged('ignoring request for unknown type URL \\"type.googleapis.com/foo.Bar\\"')).toBe(true);
  });

  it('an empty node id ends the stream with INVALID_ARGUMENT', async () => {
    const p = new SimulatedProxy({ nodeId: 'x', variant: 'sotw', subscriptions: [], manual: true });
    p.connect(client);
    opened.push(p);
    p.send(
      sotwRequestBytes({
        node: encodeResource('envoy.config.core.v3.Node', { id: '' }),
        typeUrl: TypeUrl.Cluster,
      }),
    );
    await eventually('the stream end', () => p.ended !== undefined, 15_000);
    expect(p.ended).toEqual({ code: status.INVALID_ARGUMENT, details: 'node.id: is empty' });
    expect(logged('closing xDS stream: node.id: is empty')).toBe(true);
  });

  it('a garbage node id ends the stream with INVALID_ARGUMENT naming the field', async () => {
    const p = proxy('garbage~id');
    p.send(sotwRequestBytes({ node: p.node, typeUrl: TypeUrl.Cluster }));
    await eventually('the stream end', () => p.ended !== undefined, 15_000);
    const details =
      'node.id: "garbage~id" is not an Istio node id (type~ip~pod.namespace~domain) and node.metadata.NAMESPACE is not set';
    expect(p.ended).toEqual({ code: status.INVALID_ARGUMENT, details });
    expect(server.metrics.count('meridian_xds_bad_requests{reason=bad_node}')).toBe(2);
  });

  it('bytes that are not a DiscoveryRequest end the stream with INVALID_ARGUMENT', async () => {
    const p = proxy('sidecar~10.2.0.3~bad-3.default~default.svc.cluster.local');
    p.send(Buffer.from([0xff, 0xff, 0xff, 0xff]));
    await eventually('the stream end', () => p.ended !== undefined, 15_000);
    expect(p.ended?.code).toBe(status.INVALID_ARGUMENT);
    expect(p.ended?.details.startsWith('request is not a DiscoveryRequest: ')).toBe(true);
    expect(server.metrics.count('meridian_xds_bad_requests{reason=garbage}')).toBe(1);
  });

  it('resource names that do not exist get an empty response, a log line and a counter', async () => {
    const p = proxy('sidecar~10.2.0.4~bad-4.default~default.svc.cluster.local');
    p.send(
      sotwRequestBytes({
        node: p.node,
        typeUrl: TypeUrl.ClusterLoadAssignment,
        resourceNames: ['outbound|1||nope'],
      }),
    );
    await eventually('the EDS response', () => p.responses.length === 1, 15_000);
    expect(p.responses[0]?.resourceBytes).toBe(0);
    expect(logged('subscribed resources do not exist: outbound|1||nope')).toBe(true);
    expect(server.metrics.count('meridian_xds_bad_requests{reason=unknown_resource,type=eds}')).toBe(1);
  });

  it('an ACK with a nonce never sent is ignored and counted', async () => {
    const p = proxy('sidecar~10.2.0.5~bad-5.default~default.svc.cluster.local');
    p.send(
      sotwRequestBytes({
        node: p.node,
        typeUrl: TypeUrl.ClusterLoadAssignment,
        resourceNames: [clusterName(services[0]!)],
      }),
    );
    await eventually('the EDS response', () => p.responses.length === 1, 15_000);
    p.send(
      sotwRequestBytes({
        typeUrl: TypeUrl.ClusterLoadAssignment,
        responseNonce: 'made-up',
        versionInfo: 'v9',
      }),
    );
    await eventually(
      'counted',
      () => server.metrics.count('pilot_xds_expired_nonce{type=eds}') === 1,
      15_000,
    );
    expect(p.responses).toHaveLength(1);
  });

  it('a 10 MB request ends the stream with RESOURCE_EXHAUSTED', async () => {
    const p = proxy('sidecar~10.2.0.6~bad-6.default~default.svc.cluster.local');
    const huge = sotwRequestBytes({
      node: p.node,
      typeUrl: TypeUrl.Cluster,
      resourceNames: ['x'.repeat(10 * 1024 * 1024)],
    });
    p.send(huge);
    await eventually('the stream end', () => p.ended !== undefined, 15_000);
    expect(p.ended).toEqual({
      code: status.RESOURCE_EXHAUSTED,
      details: `request of ${huge.length} bytes exceeds the limit of 4194304 bytes`,
    });
    expect(server.metrics.count('meridian_xds_bad_requests{reason=too_large}')).toBe(1);
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
