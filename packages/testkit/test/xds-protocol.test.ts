// Protocol tests over loopback, written from Envoy's xDS protocol page: a simulated client on a real
// grpc-js channel, checking on every response that its type URL was requested and its nonce is new.
import { Client, credentials } from '@grpc/grpc-js';
import { decodeResource, TypeUrl } from '@meridian/envoy';
import {
  clusterName,
  type DeltaResponseView,
  eventually,
  listenerName,
  nextSnapshot,
  SimulatedProxy,
  type SimulatedProxyOptions,
  type SotwResponseView,
  sotwRequestBytes,
  type TestService,
  translateServices,
} from '@meridian/testkit';
import { type ChangeEvent, ResourceCache, type StaticSnapshot, XdsServer, xdsLogger } from '@meridian/xds';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { A, B, C } from './xds-services.js';

const full = (reason: string): ChangeEvent => ({ full: true, reason: [reason], at: performance.now() });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Checks every response as it is recorded: requested type, never-seen nonce. */
function checked(proxy: SimulatedProxy): () => void {
  const seen = new Set<string>();
  let checkedUpTo = 0;
  return () => {
    const types = new Set(proxy.options.subscriptions.map((s) => s.typeUrl));
    for (; checkedUpTo < proxy.responses.length; checkedUpTo++) {
      const r = proxy.responses[checkedUpTo]!;
      expect(types.has(r.typeUrl) || proxy.options.manual).toBe(true);
      expect(r.nonce).not.toBe('');
      expect(seen.has(r.nonce)).toBe(false);
      seen.add(r.nonce);
    }
  };
}

const names = (type: string, r: SotwResponseView): string[] =>
  r.resources.map((v) => {
    const json = decodeResource(type, v);
    return String(json.name ?? json.cluster_name);
  });

describe('xDS protocol over loopback', () => {
  const lines: string[] = [];
  const server = new XdsServer({
    logger: xdsLogger({ level: 'debug', write: (l) => lines.push(l) }),
    debounce: { quietMs: 0 },
  });
  const cache = new ResourceCache();
  let snapshot: StaticSnapshot | undefined;
  let v = 0;
  let client: Client;
  const proxies: SimulatedProxy[] = [];
  const publish = (services: TestService[], change?: ChangeEvent) => {
    snapshot = nextSnapshot(cache, snapshot, `v${++v}`, translateServices(services));
    server.update(snapshot, change);
  };
  const open = (i: number, o: Partial<SimulatedProxyOptions>): SimulatedProxy => {
    const p = new SimulatedProxy({
      nodeId: `sidecar~10.9.0.${i}~proto-${i}.default~default.svc.cluster.local`,
      variant: 'sotw',
      subscriptions: [],
      record: true,
      ...o,
    });
    p.connect(client);
    proxies.push(p);
    return p;
  };

  beforeAll(async () => {
    publish([A, B]);
    const port = await server.listen();
    client = new Client(`127.0.0.1:${port}`, credentials.createInsecure());
  });
  afterAll(() => {
    for (const p of proxies) p.disconnect();
    client?.close();
    server.close();
  });

  it('SotW: wildcard answered at once; an ACK is not answered; a stale nonce is ignored and counted', async () => {
    const p = open(1, { manual: true, subscriptions: [{ typeUrl: TypeUrl.Cluster }] });
    const check = checked(p);
    p.send(sotwRequestBytes({ node: p.node, typeUrl: TypeUrl.Cluster }));
    await eventually('the CDS response', () => p.responses.length === 1);
    check();
    const first = p.responses[0] as SotwResponseView;
    expect(first.typeUrl).toBe(TypeUrl.Cluster);
    expect(names(TypeUrl.Cluster, first)).toEqual([clusterName(A), clusterName(B)]);
    p.send(
      sotwRequestBytes({
        typeUrl: TypeUrl.Cluster,
        versionInfo: first.versionInfo,
        responseNonce: first.nonce,
      }),
    );
    p.send(sotwRequestBytes({ typeUrl: TypeUrl.Cluster, resourceNames: ['x'], responseNonce: 'never-sent' }));
    await eventually(
      'the stale nonce counted',
      () => server.metrics.count('pilot_xds_expired_nonce{type=cds}') === 1,
    );
    await sleep(100);
    expect(p.responses).toHaveLength(1);
    const st = server.syncStatus().find((s) => s.proxyId.includes('proto-1'))!;
    expect(st.types.cds).toMatchObject({ state: 'SYNCED', wildcard: true, versionAcked: first.versionInfo });
  });

  it('SotW: additions go clusters before listeners; removals after, listeners before clusters', async () => {
    const p = open(2, {
      subscriptions: [
        { typeUrl: TypeUrl.Cluster },
        { typeUrl: TypeUrl.ClusterLoadAssignment, names: [clusterName(A)] },
        { typeUrl: TypeUrl.Listener },
        { typeUrl: TypeUrl.RouteConfiguration, names: [listenerName(A)] },
      ],
    });
    const check = checked(p);
    await eventually('initial sync', () => (p.state.get(TypeUrl.RouteConfiguration)?.acks ?? 0) === 1);
    check();
    const before = p.responses.length;
    publish([A, B, C], full('add c'));
    await eventually('CDS and LDS with c', () => p.responses.length === before + 2);
    check();
    expect(p.responses.slice(before).map((r) => r.typeUrl)).toEqual([TypeUrl.Cluster, TypeUrl.Listener]);
    publish([A, B], full('remove c'));
    await eventually('LDS and CDS without c', () => p.responses.length === before + 4);
    check();
    const removal = p.responses.slice(before + 2) as SotwResponseView[];
    expect(removal.map((r) => r.typeUrl)).toEqual([TypeUrl.Listener, TypeUrl.Cluster]);
    expect(names(TypeUrl.Cluster, removal[1]!)).toEqual([clusterName(A), clusterName(B)]);
  });

  it('SotW: an endpoint change reaches only the proxies watching that cluster', async () => {
    const watchA = open(3, {
      subscriptions: [{ typeUrl: TypeUrl.ClusterLoadAssignment, names: [clusterName(A)] }],
    });
    const watchB = open(4, {
      subscriptions: [{ typeUrl: TypeUrl.ClusterLoadAssignment, names: [clusterName(B)] }],
    });
    await eventually('both synced', () => watchA.responses.length === 1 && watchB.responses.length === 1);
    const moved = { ...A, endpoints: [{ address: '10.0.0.9', port: 8080 }] };
    publish([moved, B], {
      full: false,
      types: new Set([TypeUrl.ClusterLoadAssignment]),
      names: new Map([[TypeUrl.ClusterLoadAssignment, new Set([clusterName(A)])]]),
      reason: ['endpoints'],
      at: performance.now(),
    });
    await eventually('watcher of a updated', () => watchA.responses.length === 2);
    await sleep(100);
    expect(watchB.responses).toHaveLength(1);
    publish([A, B], full('restore'));
  });

  it('Delta: removed_resources; a reconnect with current versions receives no resource bytes', async () => {
    const p = open(5, {
      variant: 'delta',
      subscriptions: [
        { typeUrl: TypeUrl.Cluster },
        { typeUrl: TypeUrl.ClusterLoadAssignment, names: [clusterName(A)] },
      ],
    });
    const check = checked(p);
    await eventually('initial sync', () => (p.state.get(TypeUrl.ClusterLoadAssignment)?.acks ?? 0) === 1);
    check();
    expect([...p.state.get(TypeUrl.Cluster)!.resources.keys()].sort()).toEqual([
      clusterName(A),
      clusterName(B),
    ]);
    const before = p.responses.length;
    publish([A], full('remove b'));
    await eventually('the removal', () => p.responses.length === before + 1);
    check();
    const removal = p.responses[before] as DeltaResponseView;
    expect(removal).toMatchObject({ typeUrl: TypeUrl.Cluster, removed: [clusterName(B)], resources: [] });
    publish([A, B], full('add b'));
    await eventually('b again', () => p.state.get(TypeUrl.Cluster)?.resources.size === 2);

    // Reconnect (as to another replica) with the versions held: nothing is resent.
    const bytesBefore = p.totalResourceBytes;
    const responsesBefore = p.responses.length;
    p.disconnect();
    p.connect(client, true);
    await eventually('the reconnect answered', () => p.responses.length === responsesBefore + 2);
    expect(p.totalResourceBytes).toBe(bytesBefore);
    // A stale version for one cluster: exactly that one is sent.
    p.state.get(TypeUrl.Cluster)!.resources.set(clusterName(B), 'old');
    p.disconnect();
    p.connect(client, true);
    await eventually('the second reconnect answered', () => p.responses.length === responsesBefore + 4);
    const resent = p.responses.slice(responsesBefore + 2) as DeltaResponseView[];
    const cds = resent.find((r) => r.typeUrl === TypeUrl.Cluster)!;
    expect(cds.resources.map((r) => r.name)).toEqual([clusterName(B)]);
  });

  it('Delta: a NACK is recorded and counted, and never answered by a resend', async () => {
    const p = open(6, { variant: 'delta', subscriptions: [{ typeUrl: TypeUrl.Cluster }] });
    p.nackTypes.set(TypeUrl.Cluster, 'rejected by the test');
    await eventually('the NACK', () => (p.state.get(TypeUrl.Cluster)?.nacks ?? 0) === 1);
    await eventually('ERROR status', () => {
      const st = server.syncStatus().find((s) => s.proxyId.includes('proto-6'));
      return st?.types.cds?.state === 'ERROR';
    });
    const st = server.syncStatus().find((s) => s.proxyId.includes('proto-6'))!;
    expect(st.types.cds?.error).toBe('rejected by the test');
    expect(server.metrics.count('pilot_total_xds_rejects{type=cds}')).toBe(1);
    await sleep(200);
    expect(p.responses).toHaveLength(1);
    expect(lines.some((l) => l.includes('"msg":"NACK: rejected by the test"'))).toBe(true);
  });
});
