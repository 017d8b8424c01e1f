// SotW responses of types that need not carry the whole state (everything but Listener and Cluster,
// per the xDS protocol page's "Grouping Resources into Responses") carry only what changed after a
// change, as istiod's partial EDS pushes do; a request still gets the whole subscribed set, and the
// full-state types are always whole. Checked on the wire with a recording client, then with
// @grpc/grpc-js-xds routing to every cluster after partial updates.
import { Client, credentials, status } from '@grpc/grpc-js';
import { decodeResource, TypeUrl } from '@meridian/envoy';
import {
  clusterName,
  type EchoBackend,
  eventually,
  freePort,
  GrpcClientProcess,
  listenerName,
  nextSnapshot,
  plaintextXdsBootstrap,
  SimulatedProxy,
  type SotwResponseView,
  startEchoBackend,
  type TestService,
  translateServices,
} from '@meridian/testkit';
import { type ChangeEvent, ResourceCache, type StaticSnapshot, XdsServer, xdsLogger } from '@meridian/xds';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { A, B, C, svc } from './xds-services.js';

const names = (r: SotwResponseView): string[] =>
  r.resources.map((v) => {
    const json = decodeResource(r.typeUrl, v);
    return String(json.name ?? json.cluster_name);
  });
const endpointsChanged = (...services: TestService[]): ChangeEvent => ({
  full: false,
  types: new Set([TypeUrl.ClusterLoadAssignment]),
  names: new Map([[TypeUrl.ClusterLoadAssignment, new Set(services.map(clusterName))]]),
  reason: ['endpoints'],
  at: performance.now(),
});

describe('SotW partial responses for types that need not carry the whole state', () => {
  const server = new XdsServer({ logger: xdsLogger({ level: 'silent' }), debounce: { quietMs: 0 } });
  const cache = new ResourceCache();
  let snapshot: StaticSnapshot | undefined;
  let v = 0;
  let client: Client;
  const proxies: SimulatedProxy[] = [];
  const publish = (services: TestService[], change?: ChangeEvent) => {
    snapshot = nextSnapshot(cache, snapshot, `v${++v}`, translateServices(services));
    server.update(snapshot, change);
  };
  const open = (i: number): SimulatedProxy => {
    const p = new SimulatedProxy({
      nodeId: `sidecar~10.9.1.${i}~partial-${i}.default~default.svc.cluster.local`,
      variant: 'sotw',
      record: true,
      subscriptions: [
        { typeUrl: TypeUrl.Cluster },
        { typeUrl: TypeUrl.ClusterLoadAssignment, names: [A, B, C].map(clusterName) },
        { typeUrl: TypeUrl.Listener },
        { typeUrl: TypeUrl.RouteConfiguration, names: [A, B, C].map(listenerName) },
      ],
    });
    p.connect(client);
    proxies.push(p);
    return p;
  };
  const edsResponses = (p: SimulatedProxy) =>
    p.responses.filter(
      (r): r is SotwResponseView => r.typeUrl === TypeUrl.ClusterLoadAssignment && 'versionInfo' in r,
    );

  beforeAll(async () => {
    publish([A, B, C]);
    const port = await server.listen();
    client = new Client(`127.0.0.1:${port}`, credentials.createInsecure());
  });
  afterAll(() => {
    for (const p of proxies) p.disconnect();
    client?.close();
    server.close();
  });

  it('an endpoint change sends that load assignment alone; the client holds all three, ACKed', async () => {
    const p = open(1);
    const q = open(2);
    await eventually('initial sync', () =>
      [p, q].every((x) => (x.state.get(TypeUrl.RouteConfiguration)?.acks ?? 0) === 1),
    );
    expect(names(edsResponses(p)[0]!)).toEqual([A, B, C].map(clusterName));

    const movedB = { ...B, endpoints: [{ address: '10.0.0.22', port: 8080 }] };
    publish([A, movedB, C], endpointsChanged(B));
    await eventually('the EDS update', () => [p, q].every((x) => edsResponses(x).length === 2));
    const [before, after] = edsResponses(p) as [SotwResponseView, SotwResponseView];
    expect(names(after)).toEqual([clusterName(B)]);
    expect(JSON.stringify(decodeResource(TypeUrl.ClusterLoadAssignment, after.resources[0]!))).toContain(
      '10.0.0.22',
    );
    expect(after.versionInfo).not.toBe(before.versionInfo);
    // Both proxies got the same bytes (one shared body), and each still holds all three.
    expect(names(edsResponses(q)[1]!)).toEqual([clusterName(B)]);
    for (const x of [p, q])
      expect([...x.state.get(TypeUrl.ClusterLoadAssignment)!.resources.keys()].sort()).toEqual(
        [A, B, C].map(clusterName).sort(),
      );
    await eventually('the partial response ACKed', () => {
      const st = server.syncStatus().find((s) => s.proxyId.includes('partial-1'));
      return st?.types.eds?.state === 'SYNCED' && st.types.eds.versionAcked === after.versionInfo;
    });

    // Two load assignments change: both, and only them.
    publish(
      [{ ...A, endpoints: [{ address: '10.0.0.11', port: 8080 }] }, movedB, { ...C, endpoints: [] }],
      endpointsChanged(A, C),
    );
    await eventually('the second EDS update', () => edsResponses(p).length === 3);
    expect(names(edsResponses(p)[2]!)).toEqual([clusterName(A), clusterName(C)]);
  });

  it('Listener and Cluster responses stay whole; a new stream gets every load assignment', async () => {
    const p = proxies[0]!;
    const cdsBefore = p.responses.filter((r) => r.typeUrl === TypeUrl.Cluster).length;
    const D = svc('d', '10.0.0.4');
    publish([A, B, C, D], { full: true, reason: ['add d'], at: performance.now() });
    await eventually(
      'CDS with d',
      () => p.responses.filter((r) => r.typeUrl === TypeUrl.Cluster).length === cdsBefore + 1,
    );
    const cds = p.responses.filter((r): r is SotwResponseView => r.typeUrl === TypeUrl.Cluster).at(-1)!;
    expect(names(cds)).toEqual([A, B, C, D].map(clusterName));
    await eventually('LDS with d', () => {
      const lds = p.responses.filter((r): r is SotwResponseView => r.typeUrl === TypeUrl.Listener).at(-1);
      return lds !== undefined && names(lds).length === 4;
    });

    const fresh = open(3);
    await eventually('fresh sync', () => edsResponses(fresh).length === 1);
    expect(names(edsResponses(fresh)[0]!)).toEqual([A, B, C].map(clusterName));
  });
});

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
