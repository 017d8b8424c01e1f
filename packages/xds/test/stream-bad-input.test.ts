// Bad input on a stream: each case ends in a clear log line and a counter (and, where the stream
// cannot go on, a status naming the problem), never in a crash. Driven through in-memory streams
// (fake-stream.ts); the flood of streams that never read stays in testkit (it needs real HTTP/2).
import { status } from '@grpc/grpc-js';
import { encodeResource, TypeUrl } from '@meridian/envoy';
import { XdsServer, xdsLogger } from '@meridian/xds';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FakeAds, type FakeStream } from './fake-stream.js';
import { A, clusterName, Publisher } from './mesh-fixtures.js';

describe('bad input', () => {
  const lines: string[] = [];
  const xds = new XdsServer({
    logger: xdsLogger({ level: 'info', write: (l) => lines.push(l) }),
    debounce: { quietMs: 0 },
  });
  const ads = new FakeAds(xds);
  const logged = (text: string) => lines.some((l) => l.includes(text));
  const proxy = (nodeId: string): FakeStream => ads.open({ variant: 'sotw', nodeId });

  beforeAll(() => {
    new Publisher(xds).publish([A]);
  });
  afterEach(() => ads.assertClean());
  afterAll(() => {
    ads.closeAll();
    xds.close();
  });

  it('an unknown type URL is ignored with a log line and a counter; the stream keeps working', async () => {
    const p = proxy('sidecar~10.2.0.1~bad-1.default~default.svc.cluster.local');
    p.sotw('type.googleapis.com/foo.Bar', []);
    p.sotw(TypeUrl.Cluster, []);
    expect((await p.next()).typeUrl).toBe(TypeUrl.Cluster);
    expect(p.responses).toHaveLength(1);
    expect(xds.metrics.count('meridian_xds_bad_requests{reason=unknown_type}')).toBe(1);
    expect(logged('ignoring request for unknown type URL \\"type.googleapis.com/foo.Bar\\"')).toBe(true);
  });

  it('an empty node id ends the stream with INVALID_ARGUMENT', async () => {
    const p = proxy('');
    p.sotw(TypeUrl.Cluster, []);
    await p.until('the stream end', () => p.ended !== undefined);
    expect(p.ended).toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: 'node.id: is empty',
      hard: false,
    });
    expect(logged('closing xDS stream: node.id: is empty')).toBe(true);
    expect(p.responses).toEqual([]);
  });

  it('a garbage node id ends the stream with INVALID_ARGUMENT naming the field', async () => {
    const p = proxy('garbage~id');
    p.sotw(TypeUrl.Cluster, []);
    await p.until('the stream end', () => p.ended !== undefined);
    const details =
      'node.id: "garbage~id" is not an Istio node id (type~ip~pod.namespace~domain) and node.metadata.NAMESPACE is not set';
    expect(p.ended).toMatchObject({ code: status.INVALID_ARGUMENT, details });
    expect(xds.metrics.count('meridian_xds_bad_requests{reason=bad_node}')).toBe(2);
  });

  it('bytes that are not a DiscoveryRequest end the stream with INVALID_ARGUMENT', async () => {
    const p = proxy('sidecar~10.2.0.3~bad-3.default~default.svc.cluster.local');
    p.send(Buffer.from([0xff, 0xff, 0xff, 0xff]));
    await p.until('the stream end', () => p.ended !== undefined);
    expect(p.ended?.code).toBe(status.INVALID_ARGUMENT);
    expect(p.ended?.details.startsWith('request is not a DiscoveryRequest: ')).toBe(true);
    expect(xds.metrics.count('meridian_xds_bad_requests{reason=garbage}')).toBe(1);
  });

  it('resource names that do not exist get an empty response, a log line and a counter', async () => {
    const p = proxy('sidecar~10.2.0.4~bad-4.default~default.svc.cluster.local');
    p.sotw(TypeUrl.ClusterLoadAssignment, ['outbound|1||nope']);
    const r = await p.next();
    expect(r).toMatchObject({ typeUrl: TypeUrl.ClusterLoadAssignment, names: [], resourceBytes: 0 });
    expect(logged('subscribed resources do not exist: outbound|1||nope')).toBe(true);
    expect(xds.metrics.count('meridian_xds_bad_requests{reason=unknown_resource,type=eds}')).toBe(1);
  });

  it('an ACK with a nonce never sent is ignored and counted', async () => {
    const p = proxy('sidecar~10.2.0.5~bad-5.default~default.svc.cluster.local');
    p.sotw(TypeUrl.ClusterLoadAssignment, [clusterName(A)]);
    await p.next();
    p.sotw(TypeUrl.ClusterLoadAssignment, [], { nonce: 'made-up', version: 'v9' });
    expect(xds.metrics.count('pilot_xds_expired_nonce{type=eds}')).toBe(1);
    await ads.settle();
    expect(p.responses).toHaveLength(1);
  });

  it('a 10 MB request ends the stream with RESOURCE_EXHAUSTED', async () => {
    const p = proxy('sidecar~10.2.0.6~bad-6.default~default.svc.cluster.local');
    const huge = encodeResource('envoy.service.discovery.v3.DiscoveryRequest', {
      node: { id: p.options.nodeId },
      type_url: TypeUrl.Cluster,
      resource_names: ['x'.repeat(10 * 1024 * 1024)],
    });
    p.send(huge);
    await p.until('the stream end', () => p.ended !== undefined);
    expect(p.ended).toMatchObject({
      code: status.RESOURCE_EXHAUSTED,
      details: `request of ${huge.length} bytes exceeds the limit of 4194304 bytes`,
    });
    expect(xds.metrics.count('meridian_xds_bad_requests{reason=too_large}')).toBe(1);
    expect(p.responses).toEqual([]);
  });
});
