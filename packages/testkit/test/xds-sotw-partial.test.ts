// SotW responses of types that need not carry the whole state (everything but Listener and Cluster,
// per the xDS protocol page's "Grouping Resources into Responses") carry only what changed after a
// change, as istiod's partial EDS pushes do. Here @grpc/grpc-js-xds routes to every cluster after
// partial updates; what the responses carry is checked on the stream loop itself, in
// packages/xds/test/stream-sotw.test.ts.
import { status } from '@grpc/grpc-js';
import { TypeUrl } from '@meridian/envoy';
import {
  clusterName,
  type EchoBackend,
  eventually,
  freePort,
  GrpcClientProcess,
  listenerName,
  nextSnapshot,
  plaintextXdsBootstrap,
  startEchoBackend,
  type TestService,
  translateServices,
} from '@meridian/testkit';
import { type ChangeEvent, ResourceCache, type StaticSnapshot, XdsServer, xdsLogger } from '@meridian/xds';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

describe('@grpc/grpc-js-xds after partial EDS responses', () => {
  const cache = new ResourceCache();
  const backends: EchoBackend[] = [];
  let xds: XdsServer;
  let client: GrpcClientProcess;
  let snapshot: StaticSnapshot | undefined;
  let v = 0;
  const host = (name: string) => `${name}.default.svc.cluster.local`;
  const services = (a: number, b: number): TestService[] => [
    {
      host: host('echo-a'),
      port: 7070,
      endpoints: [{ address: '127.0.0.1', port: a, region: 'r1', zone: 'z1' }],
    },
    {
      host: host('echo-b'),
      port: 7070,
      endpoints: [{ address: '127.0.0.1', port: b, region: 'r1', zone: 'z1' }],
    },
  ];
  const publish = (list: TestService[], change?: ChangeEvent) => {
    snapshot = nextSnapshot(cache, snapshot, `v${++v}`, translateServices(list));
    xds.update(snapshot, change);
  };
  const call = async (name: string) => {
    const r = await client.call(listenerName({ host: host(name), port: 7070 }), {
      method: '/test.Echo/Name',
      deadlineMs: 5000,
    });
    return r.code === status.OK ? r.backend : `error ${r.code}: ${r.message}`;
  };

  beforeAll(async () => {
    for (const name of ['A', 'B', 'C']) backends.push(await startEchoBackend(name));
    xds = new XdsServer({
      logger: xdsLogger({ level: 'silent' }),
      debounce: { quietMs: 10, maxDelayMs: 100 },
    });
    publish(services(backends[0]!.port, backends[1]!.port));
    const port = await freePort();
    await xds.listen('127.0.0.1', port);
    client = await GrpcClientProcess.start(
      plaintextXdsBootstrap(`127.0.0.1:${port}`, 'partial-client', 'c1'),
    );
  });
  afterAll(async () => {
    await client?.stop();
    xds?.close();
    for (const b of backends) b.server.forceShutdown();
  });

  it('an update of one service keeps the other service routed, on one ADS stream', async () => {
    expect(await call('echo-a')).toBe('A');
    expect(await call('echo-b')).toBe('B');
    const edsA = clusterName({ host: host('echo-a'), port: 7070 });
    publish(services(backends[2]!.port, backends[1]!.port), endpointsChangedNamed(edsA));
    await eventually('echo-a answered by C', async () => (await call('echo-a')) === 'C');
    // The response that moved echo-a carried echo-a alone; echo-b is still served from what it held.
    const st = xds.syncStatus().find((s) => s.proxyId.includes('partial-client'))!;
    expect(st.types.eds).toMatchObject({ state: 'SYNCED', resources: 2 });
    for (let i = 0; i < 5; i++) expect(await call('echo-b')).toBe('B');
  });
});

function endpointsChangedNamed(...names: string[]): ChangeEvent {
  return {
    full: false,
    types: new Set([TypeUrl.ClusterLoadAssignment]),
    names: new Map([[TypeUrl.ClusterLoadAssignment, new Set(names)]]),
    reason: ['endpoints'],
    at: performance.now(),
  };
}
