// The State-of-the-World stream loop, driven through in-memory streams (fake-stream.ts) that check
// every response as it is written: requested type URL, version_info, a new nonce that follows the
// server's scheme. Written from Envoy's xDS protocol page (ACK/NACK, resource ordering, "Grouping
// Resources into Responses") and the push pipeline of the package README.
import { TypeUrl } from '@meridian/envoy';
import { type ProxySyncStatus, XdsServer, xdsLogger } from '@meridian/xds';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FakeAds, type FakeStream, type FakeStreamOptions, type Response } from './fake-stream.js';
import {
  A,
  B,
  C,
  clusterName,
  endpointsChanged,
  fullChange,
  listenerName,
  Publisher,
  svc,
} from './mesh-fixtures.js';

const CDS = TypeUrl.Cluster;
const EDS = TypeUrl.ClusterLoadAssignment;
const LDS = TypeUrl.Listener;
const RDS = TypeUrl.RouteConfiguration;

describe('SotW stream loop', () => {
  const lines: string[] = [];
  const xds = new XdsServer({
    logger: xdsLogger({ level: 'debug', write: (l) => lines.push(l) }),
    debounce: { quietMs: 0 },
  });
  const ads = new FakeAds(xds);
  const mesh = new Publisher(xds);
  let nodes = 0;
  const open = (name: string, o: Partial<FakeStreamOptions> = {}): FakeStream =>
    ads.open({
      variant: 'sotw',
      nodeId: `sidecar~10.9.0.${++nodes}~${name}.default~default.svc.cluster.local`,
      ...o,
    });
  const status = (name: string): ProxySyncStatus => {
    const st = xds.syncStatus().find((s) => s.proxyId.includes(`~${name}.`));
    if (!st) throw new Error(`${name} is not connected`);
    return st;
  };
  const allFour = (names: readonly string[]) => [
    { typeUrl: CDS },
    { typeUrl: EDS, names: names.map((n) => clusterName({ name: n })) },
    { typeUrl: LDS },
    { typeUrl: RDS, names: names.map((n) => listenerName({ name: n })) },
  ];

  beforeAll(() => {
    mesh.publish([A, B]);
  });
  afterEach(() => {
    ads.assertClean();
    ads.closeAll();
    mesh.failFor = undefined;
    mesh.publish([A, B], fullChange('reset'));
  });
  afterAll(() => xds.close());

  it('a wildcard request is answered at once; an ACK is not answered; a stale nonce is ignored and counted', async () => {
    const p = open('proto-1');
    p.sotw(CDS, []);
    const first = await p.next();
    expect(first.typeUrl).toBe(CDS);
    expect(first.names).toEqual([clusterName(A), clusterName(B)]);
    p.sotw(CDS, [], { ack: first });
    p.sotw(CDS, ['x'], { nonce: 'never-sent' });
    expect(xds.metrics.count('pilot_xds_expired_nonce{type=cds}')).toBe(1);
    await ads.settle();
    expect(p.unread).toEqual([]);
    expect(status('proto-1').types.cds).toMatchObject({
      state: 'SYNCED',
      wildcard: true,
      versionAcked: first.version,
    });
  });

  it('a request by name is answered with exactly those resources, and its ACK makes the type SYNCED', async () => {
    const p = open('by-name');
    p.sotw(EDS, [clusterName(B)]);
    const r = await p.next();
    expect(r).toMatchObject({ typeUrl: EDS, names: [clusterName(B)] });
    expect(JSON.stringify(r.resources[0])).toContain('10.0.0.2');
    expect(status('by-name').types.eds?.state).not.toBe('SYNCED');
    p.sotw(EDS, [clusterName(B)], { ack: r });
    expect(status('by-name').types.eds).toMatchObject({
      state: 'SYNCED',
      wildcard: false,
      subscribed: [clusterName(B)],
      versionAcked: r.version,
      nonceAcked: r.nonce,
    });
    await ads.settle();
    expect(p.unread).toEqual([]);
  });

  it('a NACK keeps the last good version and is not answered by a resend until the resources change', async () => {
    const p = open('nack');
    p.sotw(CDS, []);
    const good = await p.next();
    p.sotw(CDS, [], { ack: good });
    mesh.publish([A, B, C], fullChange('add c'));
    const bad = await p.next();
    expect(bad.names).toEqual([A, B, C].map(clusterName));
    p.sotw(CDS, [], { nonce: bad.nonce, error: 'cluster c rejected' });
    const st = status('nack').types.cds;
    expect(st).toMatchObject({ state: 'ERROR', error: 'cluster c rejected', versionAcked: good.version });
    expect(xds.metrics.count('pilot_total_xds_rejects{type=cds}')).toBe(1);
    expect(lines.some((l) => l.includes('"msg":"NACK: cluster c rejected"'))).toBe(true);
    // Not resent: not on its own, not on a push that leaves its resources as they are, not on a change
    // of a type it does not watch.
    await ads.settle();
    mesh.publish([A, B, C], fullChange('same clusters'));
    mesh.publish([A, svc('b', '10.0.0.9'), C], endpointsChanged(B));
    await ads.settle();
    expect(p.unread).toEqual([]);
    expect(status('nack').types.cds?.state).toBe('ERROR');
    // A change of its resources is sent, and its ACK clears the error.
    mesh.publish([A, B], fullChange('remove c'));
    const fixed = await p.next();
    expect(fixed.names).toEqual([clusterName(A), clusterName(B)]);
    expect(fixed.version).toBe(good.version);
    p.sotw(CDS, [], { ack: fixed });
    expect(status('nack').types.cds).toMatchObject({ state: 'SYNCED', versionAcked: good.version });
  });

  it('additions go clusters before listeners; removals after, listeners before clusters', async () => {
    const p = open('proto-2', { autoAck: true });
    p.subscribe(allFour(['a']));
    await p.until('initial sync', () => p.acks.get(RDS) === 1);
    const before = p.responses.length;
    mesh.publish([A, B, C], fullChange('add c'));
    await p.until('CDS and LDS with c', () => p.responses.length === before + 2);
    expect(p.responses.slice(before).map((r) => r.typeUrl)).toEqual([CDS, LDS]);
    mesh.publish([A, B], fullChange('remove c'));
    await p.until('LDS and CDS without c', () => p.responses.length === before + 4);
    const removal = p.responses.slice(before + 2);
    expect(removal.map((r) => r.typeUrl)).toEqual([LDS, CDS]);
    expect(removal[1]!.names).toEqual([clusterName(A), clusterName(B)]);
    await ads.settle();
    expect(p.responses).toHaveLength(before + 4);
  });

  it('a full push that changes every type sends CDS, EDS, LDS, RDS in that order, whatever the request order', async () => {
    const p = open('order', { autoAck: true });
    // Subscribed in reverse; the names of d are asked for before d exists.
    p.subscribe(allFour(['a', 'd']).reverse());
    await p.until('initial sync', () => [CDS, EDS, LDS, RDS].every((t) => p.acks.get(t) === 1));
    const before = p.responses.length;
    mesh.publish([A, B, svc('d', '10.0.0.4')], fullChange('add d'));
    await p.until('four responses', () => p.responses.length === before + 4);
    const pushed = p.responses.slice(before);
    expect(pushed.map((r) => r.typeUrl)).toEqual([CDS, EDS, LDS, RDS]);
    expect(pushed[1]!.names).toEqual([clusterName({ name: 'd' })]);
    expect(pushed[3]!.names).toEqual([listenerName({ name: 'd' })]);
    await ads.settle();
    expect(p.responses).toHaveLength(before + 4);
  });

  it('an endpoint change reaches only the proxies watching that cluster', async () => {
    const watchA = open('proto-3', { autoAck: true });
    watchA.subscribe([{ typeUrl: EDS, names: [clusterName(A)] }]);
    const watchB = open('proto-4', { autoAck: true });
    watchB.subscribe([{ typeUrl: EDS, names: [clusterName(B)] }]);
    const wildcard = open('proto-4w', { autoAck: true });
    wildcard.subscribe([{ typeUrl: CDS }, { typeUrl: LDS }]);
    await ads.settle();
    expect([watchA, watchB].map((s) => s.responses.length)).toEqual([1, 1]);
    const cdsLds = wildcard.responses.length;
    mesh.publish([svc('a', '10.0.0.9'), B], endpointsChanged(A));
    await watchA.until('watcher of a updated', () => watchA.responses.length === 2);
    expect(JSON.stringify(watchA.responses[1]!.resources)).toContain('10.0.0.9');
    await ads.settle();
    expect(watchB.responses).toHaveLength(1);
    expect(wildcard.responses).toHaveLength(cdsLds);
  });

  it('a proxy whose resources cannot be built gets nothing (it keeps its last good config); the next change retries', async () => {
    const p = open('broken-1');
    const healthy = open('healthy-1');
    for (const s of [p, healthy]) {
      s.sotw(CDS, []);
      s.sotw(CDS, [], { ack: await s.next() });
    }
    const internalBefore = xds.metrics.count('pilot_total_xds_internal_errors');
    mesh.failFor = (ctx) => ctx.proxy.id.includes('~broken-');
    mesh.publish([A, B, C], fullChange('add c'));
    expect((await healthy.next()).names).toEqual([A, B, C].map(clusterName));
    await ads.settle();
    expect(p.unread).toEqual([]);
    expect(xds.metrics.count('pilot_total_xds_internal_errors')).toBe(internalBefore + 1);
    const failed = status('broken-1');
    expect(failed.pushError?.message).toBe(
      `resources for proxy ${failed.proxyId} could not be built from snapshot ${mesh.snapshot!.version}: no route to build`,
    );
    expect(failed.types.cds?.state).toBe('SYNCED');
    // A new request fails the same way: nothing is sent, and it is not counted twice.
    p.sotw(LDS, []);
    await ads.settle();
    expect(p.unread).toEqual([]);
    expect(xds.metrics.count('pilot_total_xds_internal_errors')).toBe(internalBefore + 1);
    // Fixed: the next change, even one of a type the proxy does not watch, brings both types.
    mesh.failFor = undefined;
    mesh.publish([svc('a', '10.0.0.7'), B, C], endpointsChanged(A));
    const retried = [await p.next(), await p.next()];
    expect(retried.map((r) => [r.typeUrl, r.names])).toEqual([
      [CDS, [A, B, C].map(clusterName)],
      [LDS, [A, B, C].map(listenerName)],
    ]);
    expect(status('broken-1').pushError).toBeUndefined();
    await ads.settle();
    expect(healthy.unread).toEqual([]);
  });

  it('requests arriving while a response is still being written are answered once it is taken', async () => {
    const p = open('slow');
    p.stopReading();
    p.sotw(CDS, []);
    const cds = await p.next();
    // The write is not taken yet: these subscriptions wait for it.
    p.sotw(CDS, [], { ack: cds });
    p.sotw(LDS, []);
    p.sotw(EDS, [clusterName(A)]);
    await ads.settle();
    expect(p.unread).toEqual([]);
    expect(status('slow').bufferedBytes).toBeGreaterThan(0);
    p.resumeReading();
    expect([(await p.next()).typeUrl, (await p.next()).typeUrl]).toEqual([EDS, LDS]);
    await ads.settle();
    expect(status('slow').bufferedBytes).toBe(0);
  });
});

describe('SotW partial responses for types that need not carry the whole state', () => {
  // Everything but Listener and Cluster [xDS protocol: Grouping Resources into Responses] carries
  // only what changed after a change, as istiod's partial EDS pushes do; a request still gets the
  // whole subscribed set, and the full-state types are always whole.
  const xds = new XdsServer({ logger: xdsLogger({ level: 'silent' }), debounce: { quietMs: 0 } });
  const ads = new FakeAds(xds);
  const mesh = new Publisher(xds);
  const streams: FakeStream[] = [];
  const open = (i: number): FakeStream => {
    const p = ads.open({
      variant: 'sotw',
      nodeId: `sidecar~10.9.1.${i}~partial-${i}.default~default.svc.cluster.local`,
      autoAck: true,
    });
    p.subscribe([
      { typeUrl: CDS },
      { typeUrl: EDS, names: [A, B, C].map(clusterName) },
      { typeUrl: LDS },
      { typeUrl: RDS, names: [A, B, C].map(listenerName) },
    ]);
    streams.push(p);
    return p;
  };
  const edsResponses = (p: FakeStream) => p.responses.filter((r) => r.typeUrl === EDS);

  beforeAll(() => {
    mesh.publish([A, B, C]);
  });
  afterEach(() => ads.assertClean());
  afterAll(() => {
    ads.closeAll();
    xds.close();
  });

  it('an endpoint change sends that load assignment alone; the client holds all three, ACKed', async () => {
    const p = open(1);
    const q = open(2);
    await p.until('initial sync', () => [p, q].every((x) => x.acks.get(RDS) === 1));
    expect(edsResponses(p)[0]!.names).toEqual([A, B, C].map(clusterName));

    const movedB = svc('b', '10.0.0.22');
    mesh.publish([A, movedB, C], endpointsChanged(B));
    await p.until('the EDS update', () => [p, q].every((x) => edsResponses(x).length === 2));
    const [before, after] = edsResponses(p) as [Response, Response];
    expect(after.names).toEqual([clusterName(B)]);
    expect(JSON.stringify(after.resources[0])).toContain('10.0.0.22');
    expect(after.version).not.toBe(before.version);
    // Both proxies got the same response, and each still holds all three.
    expect(edsResponses(q)[1]!.names).toEqual([clusterName(B)]);
    for (const x of [p, q])
      expect([...x.held.get(EDS)!.keys()].sort()).toEqual([A, B, C].map(clusterName).sort());
    await p.until('the partial response ACKed', () => {
      const st = xds.syncStatus().find((s) => s.proxyId.includes('partial-1'));
      return st?.types.eds?.state === 'SYNCED' && st.types.eds.versionAcked === after.version;
    });

    // Two load assignments change: both, and only them.
    mesh.publish([svc('a', '10.0.0.11'), movedB, svc('c')], endpointsChanged(A, C));
    await p.until('the second EDS update', () => edsResponses(p).length === 3);
    expect(edsResponses(p)[2]!.names).toEqual([clusterName(A), clusterName(C)]);
  });

  it('Listener and Cluster responses stay whole; a new stream gets every load assignment', async () => {
    const p = streams[0]!;
    const cdsBefore = p.responses.filter((r) => r.typeUrl === CDS).length;
    const D = svc('d', '10.0.0.4');
    mesh.publish([A, B, C, D], fullChange('add d'));
    await p.until('CDS with d', () => p.responses.filter((r) => r.typeUrl === CDS).length === cdsBefore + 1);
    const cds = p.responses.filter((r) => r.typeUrl === CDS).at(-1)!;
    expect(cds.names).toEqual([A, B, C, D].map(clusterName));
    await p.until('LDS with d', () => {
      const lds = p.responses.filter((r) => r.typeUrl === LDS).at(-1);
      return lds !== undefined && lds.names.length === 4;
    });

    const fresh = open(3);
    await fresh.until('fresh sync', () => edsResponses(fresh).length === 1);
    expect(edsResponses(fresh)[0]!.names).toEqual([A, B, C].map(clusterName));
  });
});
