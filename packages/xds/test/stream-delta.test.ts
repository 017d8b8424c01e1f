// The Delta (incremental) stream loop, driven through in-memory streams (fake-stream.ts) that check
// every response as it is written: a DeltaDiscoveryResponse of a type the stream subscribed to, with a
// new nonce that follows the server's scheme. Written from Envoy's xDS protocol page (Incremental xDS:
// subscriptions, wildcard, removed_resources, initial_resource_versions, ACK/NACK).
import { TypeUrl } from '@meridian/envoy';
import { type ProxySyncStatus, XdsServer, xdsLogger } from '@meridian/xds';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FakeAds, type FakeStream, type FakeStreamOptions } from './fake-stream.js';
import { A, B, C, clusterName, endpointsChanged, fullChange, Publisher, svc } from './mesh-fixtures.js';

const CDS = TypeUrl.Cluster;
const EDS = TypeUrl.ClusterLoadAssignment;

describe('Delta stream loop', () => {
  const lines: string[] = [];
  const xds = new XdsServer({
    logger: xdsLogger({ level: 'debug', write: (l) => lines.push(l) }),
    debounce: { quietMs: 0 },
  });
  const ads = new FakeAds(xds);
  const mesh = new Publisher(xds);
  let nodes = 0;
  const nodeId = (name: string) => `sidecar~10.9.2.${++nodes}~${name}.default~default.svc.cluster.local`;
  const open = (name: string, o: Partial<FakeStreamOptions> = {}): FakeStream =>
    ads.open({ variant: 'delta', nodeId: nodeId(name), ...o });
  const status = (name: string): ProxySyncStatus => {
    const st = xds.syncStatus().find((s) => s.proxyId.includes(`~${name}.`));
    if (!st) throw new Error(`${name} is not connected`);
    return st;
  };

  beforeAll(() => {
    mesh.publish([A, B]);
  });
  afterEach(() => {
    ads.assertClean();
    ads.closeAll();
    mesh.publish([A, B], fullChange('reset'));
  });
  afterAll(() => xds.close());

  it('subscribing by name sends those resources; an unsubscribed name is no longer pushed', async () => {
    const s = open('names');
    s.delta(EDS, { subscribe: [clusterName(A)] });
    const r1 = await s.next();
    expect(r1).toMatchObject({ typeUrl: EDS, names: [clusterName(A)], removed: [] });
    // A second subscription sends the new name alone.
    s.delta(EDS, { ack: r1, subscribe: [clusterName(B)] });
    const r2 = await s.next();
    expect(r2).toMatchObject({ typeUrl: EDS, names: [clusterName(B)], removed: [] });
    // Unsubscribing is not answered: the client drops the resource itself.
    s.delta(EDS, { ack: r2, unsubscribe: [clusterName(A)] });
    await ads.settle();
    expect(s.unread).toEqual([]);
    expect(status('names').types.eds).toMatchObject({
      state: 'SYNCED',
      wildcard: false,
      subscribed: [clusterName(B)],
    });
    // A change of a's endpoints no longer reaches it; a change of b's does, with b alone.
    mesh.publish([svc('a', '10.0.0.5'), B], endpointsChanged(A));
    await ads.settle();
    expect(s.unread).toEqual([]);
    mesh.publish([svc('a', '10.0.0.5'), svc('b', '10.0.0.6')], endpointsChanged(B));
    const r3 = await s.next();
    expect(r3).toMatchObject({ typeUrl: EDS, names: [clusterName(B)], removed: [] });
    expect(JSON.stringify(r3.resources[0])).toContain('10.0.0.6');
    expect(r3.versions.get(clusterName(B))).not.toBe(r2.versions.get(clusterName(B)));
  });

  it('a wildcard subscription gets everything, then only what was added, changed or removed', async () => {
    const legacy = open('wild-legacy');
    legacy.delta(CDS);
    const explicit = open('wild-explicit');
    explicit.delta(CDS, { subscribe: ['*'] });
    for (const s of [legacy, explicit]) {
      const first = await s.next();
      expect(first).toMatchObject({ typeUrl: CDS, names: [clusterName(A), clusterName(B)], removed: [] });
      s.delta(CDS, { ack: first });
    }
    expect(status('wild-legacy').types.cds).toMatchObject({ state: 'SYNCED', wildcard: true });
    expect(status('wild-explicit').types.cds).toMatchObject({ state: 'SYNCED', wildcard: true });
    mesh.publish([A, B, C], fullChange('add c'));
    for (const s of [legacy, explicit]) {
      const added = await s.next();
      expect(added).toMatchObject({ typeUrl: CDS, names: [clusterName(C)], removed: [] });
      s.delta(CDS, { ack: added });
    }
    mesh.publish([A, C], fullChange('remove b'));
    for (const s of [legacy, explicit]) {
      const removed = await s.next();
      expect(removed).toMatchObject({ typeUrl: CDS, names: [], removed: [clusterName(B)] });
      s.delta(CDS, { ack: removed });
      expect([...s.held.get(CDS)!.keys()].sort()).toEqual([clusterName(A), clusterName(C)]);
    }
    await ads.settle();
    expect([legacy.unread, explicit.unread]).toEqual([[], []]);
  });

  it('an ACK with a nonce that was never sent is ignored and counted', async () => {
    const s = open('stale');
    s.delta(CDS);
    const first = await s.next();
    const before = xds.metrics.count('pilot_xds_expired_nonce{type=cds}');
    s.delta(CDS, { nonce: 'never-sent' });
    expect(xds.metrics.count('pilot_xds_expired_nonce{type=cds}')).toBe(before + 1);
    expect(status('stale').types.cds?.state).not.toBe('SYNCED');
    s.delta(CDS, { ack: first });
    expect(status('stale').types.cds?.state).toBe('SYNCED');
    await ads.settle();
    expect(s.unread).toEqual([]);
  });

  it('removed_resources; a reconnect with current versions receives no resource bytes', async () => {
    const subscriptions = [{ typeUrl: CDS }, { typeUrl: EDS, names: [clusterName(A)] }];
    const p = open('proto-5', { autoAck: true });
    p.subscribe(subscriptions);
    await p.until('initial sync', () => p.acks.get(EDS) === 1);
    expect([...p.held.get(CDS)!.keys()].sort()).toEqual([clusterName(A), clusterName(B)]);
    const before = p.responses.length;
    mesh.publish([A], fullChange('remove b'));
    await p.until('the removal', () => p.responses.length === before + 1);
    expect(p.responses[before]).toMatchObject({ typeUrl: CDS, removed: [clusterName(B)], names: [] });
    mesh.publish([A, B], fullChange('add b'));
    await p.until('b again', () => p.held.get(CDS)?.size === 2);

    // Reconnect (as to another replica) with the versions held: nothing is resent.
    const reconnect = (held: ReadonlyMap<string, ReadonlyMap<string, string>>): FakeStream => {
      const q = ads.open({ variant: 'delta', nodeId: p.options.nodeId, autoAck: true });
      for (const sub of subscriptions)
        q.delta(sub.typeUrl, { subscribe: sub.names ?? [], initial: held.get(sub.typeUrl) });
      return q;
    };
    p.cancel();
    const again = reconnect(p.held);
    await again.until('the reconnect answered', () => again.responses.length === 2);
    expect(again.responses.map((r) => r.resourceBytes)).toEqual([0, 0]);
    // A stale version for one cluster: exactly that one is sent.
    const stale = new Map(p.held);
    stale.set(CDS, new Map([...p.held.get(CDS)!, [clusterName(B), 'old']]));
    again.cancel();
    const third = reconnect(stale);
    await third.until('the second reconnect answered', () => third.responses.length === 2);
    const cds = third.responses.find((r) => r.typeUrl === CDS)!;
    expect(cds.names).toEqual([clusterName(B)]);
  });

  it('a NACK is recorded and counted, and never answered by a resend', async () => {
    const p = open('proto-6', { autoAck: true });
    p.nackTypes.set(CDS, 'rejected by the test');
    p.subscribe([{ typeUrl: CDS }]);
    await p.until('the NACK', () => p.nacks.get(CDS) === 1);
    await p.until('ERROR status', () => status('proto-6').types.cds?.state === 'ERROR');
    expect(status('proto-6').types.cds?.error).toBe('rejected by the test');
    expect(xds.metrics.count('pilot_total_xds_rejects{type=cds}')).toBe(1);
    await ads.settle();
    expect(p.responses).toHaveLength(1);
    expect(lines.some((l) => l.includes('"msg":"NACK: rejected by the test"'))).toBe(true);
  });
});
