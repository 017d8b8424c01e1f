import { TypeUrl } from '@meridian/envoy';
import {
  applyDeltaRequest,
  applySotwRequest,
  type ChangeEvent,
  changeAffects,
  Debouncer,
  deltaDiff,
  deltaSent,
  encodedResource,
  mergeChanges,
  PUSH_ORDER,
  PushQueue,
  ResourceCache,
  type SotwRequestFields,
  sotwChanged,
  sotwRemovals,
  sotwSent,
  sotwTarget,
  syncState,
  type Timer,
} from '@meridian/xds';
import { describe, expect, it } from 'vitest';

const CDS = TypeUrl.Cluster;
const EDS = TypeUrl.ClusterLoadAssignment;
const res = (type: typeof CDS | typeof EDS, name: string, content = name) =>
  encodedResource(type, name, Buffer.from(content));
const req = (over: Partial<SotwRequestFields>): SotwRequestFields => ({
  typeUrl: CDS,
  resourceNames: [],
  responseNonce: '',
  versionInfo: '',
  errorDetail: undefined,
  ...over,
});

describe('SotW rules', () => {
  it('an empty first request is the legacy wildcard; `*` is the explicit one; names replace the set', () => {
    const first = applySotwRequest(undefined, req({}));
    expect(first).toMatchObject({ respond: true, why: 'first-request' });
    expect(first.state.wildcard).toBe(true);
    const sent = sotwSent(first.state, 'n1', []);
    const named = applySotwRequest(sent, req({ resourceNames: ['a'], responseNonce: 'n1' }));
    expect(named.state.wildcard).toBe(false);
    expect([...named.state.names]).toEqual(['a']);
    expect(named).toMatchObject({
      respond: true,
      why: 'subscription-changed',
      ack: { kind: 'ack', nonce: 'n1' },
    });
    // After naming resources, an empty list means "nothing", not the wildcard.
    const empty = applySotwRequest(sotwSent(named.state, 'n2', []), req({ responseNonce: 'n2' }));
    expect(empty.state.wildcard).toBe(false);
    expect(empty.state.names.size).toBe(0);
    const star = applySotwRequest(
      sotwSent(empty.state, 'n3', []),
      req({ resourceNames: ['*', 'b'], responseNonce: 'n3' }),
    );
    expect(star.state.wildcard).toBe(true);
    expect([...star.state.names]).toEqual(['b']);
  });

  it('an ACK with an unchanged subscription is not answered; a stale nonce is ignored entirely', () => {
    const s = sotwSent(applySotwRequest(undefined, req({ resourceNames: ['a'] })).state, 'n1', []);
    const ack = applySotwRequest(s, req({ resourceNames: ['a'], responseNonce: 'n1', versionInfo: 'v1' }));
    expect(ack).toMatchObject({ respond: false, ack: { kind: 'ack', nonce: 'n1' } });
    expect(ack.state.versionAcked).toBe('v1');
    expect(syncState(ack.state)).toBe('SYNCED');
    const s2 = sotwSent(ack.state, 'n2', []);
    expect(syncState(s2)).toBe('STALE');
    const stale = applySotwRequest(s2, req({ resourceNames: ['a', 'b'], responseNonce: 'n1' }));
    expect(stale).toMatchObject({ respond: false, ack: { kind: 'stale', nonce: 'n1' } });
    expect(stale.state).toBe(s2);
  });

  it('a NACK is recorded (ERROR with its message) and not answered', () => {
    const s = sotwSent(applySotwRequest(undefined, req({})).state, 'n1', []);
    const nack = applySotwRequest(
      s,
      req({ responseNonce: 'n1', errorDetail: { code: 3, message: 'bad cluster' } }),
    );
    expect(nack).toMatchObject({
      respond: false,
      ack: { kind: 'nack', nonce: 'n1', message: 'bad cluster' },
    });
    expect(syncState(nack.state)).toBe('ERROR');
    expect(nack.state.lastNack?.message).toBe('bad cluster');
  });

  it('a nonce from another server (no state here) is a reconnect: answered', () => {
    expect(applySotwRequest(undefined, req({ responseNonce: 'x-9' }))).toMatchObject({
      respond: true,
      why: 'reconnect',
    });
  });

  it('targets, change detection and full-state removals (LDS/CDS only)', () => {
    const all = new Map([
      ['a', res(CDS, 'a')],
      ['b', res(CDS, 'b')],
    ]);
    const wild = applySotwRequest(undefined, req({})).state;
    expect(sotwTarget(wild, all).map((r) => r.name)).toEqual(['a', 'b']);
    const sent = sotwSent(wild, 'n1', sotwTarget(wild, all));
    expect(sotwChanged(sent, sotwTarget(sent, all))).toBe(false);
    const fewer = new Map([['a', res(CDS, 'a')]]);
    expect(sotwRemovals(sent, sotwTarget(sent, fewer)).map((r) => r.name)).toEqual(['b']);
    const eds = sotwSent(
      applySotwRequest(undefined, req({ typeUrl: EDS, resourceNames: ['a', 'b'] })).state,
      'n',
      [res(EDS, 'a'), res(EDS, 'b')],
    );
    expect(sotwRemovals(eds, [res(EDS, 'a')])).toEqual([]);
  });
});

describe('Delta rules', () => {
  const dreq = (over: Partial<Parameters<typeof applyDeltaRequest>[1]>) => ({
    typeUrl: CDS,
    subscribe: [],
    unsubscribe: [],
    initialResourceVersions: new Map<string, string>(),
    responseNonce: '',
    errorDetail: undefined,
    ...over,
  });

  it('initial_resource_versions: up-to-date resources are not sent; vanished ones are removed', () => {
    const a = res(CDS, 'a');
    const b = res(CDS, 'b', 'b2');
    const first = applyDeltaRequest(
      undefined,
      dreq({
        initialResourceVersions: new Map([
          ['a', a.version],
          ['b', 'old'],
          ['gone', 'v'],
        ]),
      }),
    );
    expect(first.state.wildcard).toBe(true);
    const diff = deltaDiff(
      first.state,
      new Map([
        ['a', a],
        ['b', b],
      ]),
    );
    expect(diff.upserts.map((r) => r.name)).toEqual(['b']);
    expect(diff.removed).toEqual(['gone']);
  });

  it('subscriptions apply whatever the nonce; unsubscribe forgets; a NACK is recorded, not answered', () => {
    const s0 = applyDeltaRequest(undefined, dreq({ typeUrl: EDS, subscribe: ['a'] }));
    expect(s0.state.wildcard).toBe(false);
    const s1 = deltaSent(s0.state, 'n1', [res(EDS, 'a')], []);
    expect(s1.pending.size).toBe(0);
    const stale = applyDeltaRequest(s1, dreq({ typeUrl: EDS, subscribe: ['b'], responseNonce: 'n0' }));
    expect(stale).toMatchObject({ respond: true, ack: { kind: 'stale', nonce: 'n0' } });
    expect([...stale.state.names].sort()).toEqual(['a', 'b']);
    // Without the wildcard, an unsubscription needs no response [§Unsubscribing from Resources].
    const unsub = applyDeltaRequest(
      stale.state,
      dreq({ typeUrl: EDS, unsubscribe: ['a'], responseNonce: 'n1' }),
    );
    expect(unsub).toMatchObject({ respond: false, ack: { kind: 'ack', nonce: 'n1' } });
    expect(unsub.state.known.has('a')).toBe(false);
    const nack = applyDeltaRequest(
      deltaSent(unsub.state, 'n2', [], []),
      dreq({ typeUrl: EDS, responseNonce: 'n2', errorDetail: { code: 3, message: 'no' } }),
    );
    expect(nack).toMatchObject({ respond: false, ack: { kind: 'nack', message: 'no' } });
    expect(syncState(nack.state)).toBe('ERROR');
  });

  it('a re-subscription of a held, current resource is answered with it (§Subscribing to Resources)', () => {
    const a = res(EDS, 'a');
    const held = deltaSent(
      applyDeltaRequest(undefined, dreq({ typeUrl: EDS, subscribe: ['a'] })).state,
      'n1',
      [a],
      [],
    );
    expect(deltaDiff(held, new Map([['a', a]]))).toEqual({ upserts: [], removed: [], missing: [] });
    const again = applyDeltaRequest(held, dreq({ typeUrl: EDS, subscribe: ['a'], responseNonce: 'n1' }));
    expect(again).toMatchObject({ respond: true, why: 'subscription-changed', ack: { kind: 'ack' } });
    expect(deltaDiff(again.state, new Map([['a', a]])).upserts).toEqual([a]);
    expect(deltaSent(again.state, 'n2', [a], []).pending.size).toBe(0);
    // Held through the wildcard, then named: answered with it too.
    const c = res(CDS, 'c');
    const wild = deltaSent(applyDeltaRequest(undefined, dreq({})).state, 'n1', [c], []);
    const named = applyDeltaRequest(wild, dreq({ subscribe: ['c'], responseNonce: 'n1' }));
    expect(named.respond).toBe(true);
    expect(deltaDiff(named.state, new Map([['c', c]])).upserts).toEqual([c]);
    // `*` again: every resource the wildcard covers.
    const star = applyDeltaRequest(wild, dreq({ subscribe: ['*'], responseNonce: 'n1' }));
    expect(deltaDiff(star.state, new Map([['c', c]])).upserts).toEqual([c]);
  });

  it('a subscribed name that does not exist is reported as removed once (§Knowing When ... Does Not Exist)', () => {
    const first = applyDeltaRequest(undefined, dreq({ typeUrl: EDS, subscribe: ['ghost'] }));
    expect(first.respond).toBe(true);
    expect(deltaDiff(first.state, new Map())).toEqual({ upserts: [], removed: [], missing: ['ghost'] });
    expect(deltaDiff(first.state, undefined).missing).toEqual(['ghost']);
    const sent = deltaSent(first.state, 'n1', [], ['ghost']);
    expect(deltaDiff(sent, new Map())).toEqual({ upserts: [], removed: [], missing: [] });
    // It springs into existence later: sent; later still it goes away: removed.
    const g = res(EDS, 'ghost');
    expect(deltaDiff(sent, new Map([['ghost', g]])).upserts).toEqual([g]);
    // Subscribed again while still absent: reported again.
    const again = applyDeltaRequest(sent, dreq({ typeUrl: EDS, subscribe: ['ghost'], responseNonce: 'n1' }));
    expect(deltaDiff(again.state, new Map()).missing).toEqual(['ghost']);
    // Next to the wildcard too: `*` does not cover a name that does not exist.
    const wild = applyDeltaRequest(undefined, dreq({ subscribe: ['*', 'ghost'] })).state;
    expect(deltaDiff(wild, new Map()).missing).toEqual(['ghost']);
  });

  it('unsubscribing a name the wildcard may cover is answered (§Unsubscribing from Resources)', () => {
    const a = res(CDS, 'a');
    const s0 = applyDeltaRequest(undefined, dreq({ subscribe: ['*', 'a', 'gone'] })).state;
    const s1 = deltaSent(s0, 'n1', [a], ['gone']);
    // Still covered: in resources, though the client holds the current version.
    const unsubA = applyDeltaRequest(s1, dreq({ unsubscribe: ['a'], responseNonce: 'n1' }));
    expect(unsubA).toMatchObject({ respond: true, why: 'subscription-changed' });
    expect(unsubA.state.known.get('a')).toBe(a.version);
    expect(deltaDiff(unsubA.state, new Map([['a', a]]))).toEqual({ upserts: [a], removed: [], missing: [] });
    // Not covered (it does not exist): in removed_resources, whether the client holds it or not.
    expect(deltaDiff(unsubA.state, new Map())).toEqual({ upserts: [], removed: ['a'], missing: [] });
    const unsubGone = applyDeltaRequest(s1, dreq({ unsubscribe: ['gone'], responseNonce: 'n1' }));
    expect(unsubGone.respond).toBe(true);
    expect(deltaDiff(unsubGone.state, new Map([['a', a]]))).toEqual({
      upserts: [],
      removed: [],
      missing: ['gone'],
    });
    // A phantom unsubscription (never named) is ignored: no response, nothing forgotten.
    const phantom = applyDeltaRequest(s1, dreq({ unsubscribe: ['zzz'], responseNonce: 'n1' }));
    expect(phantom.respond).toBe(false);
    expect(phantom.state.known).toBe(s1.known);
    // Unsubscribing the wildcard and the name together: neither wanted, forgotten without a response.
    const both = applyDeltaRequest(s1, dreq({ unsubscribe: ['*', 'a'], responseNonce: 'n1' }));
    expect(both.respond).toBe(false);
    expect(both.state.known.has('a')).toBe(false);
  });

  it('a reconnect owes no answer for subscribed names it holds (initial_resource_versions)', () => {
    const a = res(EDS, 'a');
    const first = applyDeltaRequest(
      undefined,
      dreq({ typeUrl: EDS, subscribe: ['a', 'b'], initialResourceVersions: new Map([['a', a.version]]) }),
    );
    expect([...first.state.pending]).toEqual(['b']);
    expect(deltaDiff(first.state, new Map([['a', a]]))).toEqual({ upserts: [], removed: [], missing: ['b'] });
  });

  it('a resource deleted from the snapshot is sent as removed; `*` unsubscribe ends the wildcard', () => {
    const a = res(CDS, 'a');
    const s = deltaSent(applyDeltaRequest(undefined, dreq({})).state, 'n1', [a], []);
    expect(deltaDiff(s, new Map())).toEqual({ upserts: [], removed: ['a'], missing: [] });
    const off = applyDeltaRequest(s, dreq({ unsubscribe: ['*'], responseNonce: 'n1' })).state;
    expect(off.wildcard).toBe(false);
    expect(deltaDiff(off, new Map([['a', a]])).removed).toEqual(['a']);
  });
});

describe('push pipeline', () => {
  it('orders clusters before endpoints and listeners, listeners before routes', () => {
    expect(PUSH_ORDER).toEqual([
      TypeUrl.Cluster,
      TypeUrl.ClusterLoadAssignment,
      TypeUrl.Listener,
      TypeUrl.RouteConfiguration,
      TypeUrl.Secret,
    ]);
  });

  it('changes merge; a named change affects only watchers of that name or the wildcard', () => {
    const e1: ChangeEvent = {
      full: false,
      types: new Set([EDS]),
      names: new Map([[EDS, new Set(['x'])]]),
      reason: ['ep'],
      at: 5,
    };
    const e2: ChangeEvent = {
      full: false,
      types: new Set([EDS]),
      names: new Map([[EDS, new Set(['y'])]]),
      reason: ['ep'],
      at: 3,
    };
    const m = mergeChanges(e1, e2);
    expect([...(m.names?.get(EDS) ?? [])].sort()).toEqual(['x', 'y']);
    expect(m.at).toBe(3);
    const watchX = applySotwRequest(undefined, req({ typeUrl: EDS, resourceNames: ['x'] })).state;
    const watchZ = applySotwRequest(undefined, req({ typeUrl: EDS, resourceNames: ['z'] })).state;
    expect(changeAffects(e1, watchX)).toBe(true);
    expect(changeAffects(e1, watchZ)).toBe(false);
    expect(mergeChanges(e1, { full: true, reason: ['cfg'], at: 9 }).full).toBe(true);
  });

  it('debounce: fires after the quiet period, or at the maximum delay during a steady stream', () => {
    let now = 0;
    const timers: { at: number; fn: () => void; id: number }[] = [];
    let nextId = 0;
    const timer: Timer = {
      now: () => now,
      setTimeout: (fn, ms) => {
        const t = { at: now + ms, fn, id: nextId++ };
        timers.push(t);
        return t.id;
      },
      clearTimeout: (h) => {
        const i = timers.findIndex((t) => t.id === h);
        if (i >= 0) timers.splice(i, 1);
      },
    };
    const advance = (ms: number) => {
      now += ms;
      for (const t of [...timers].sort((a, b) => a.at - b.at)) {
        if (t.at <= now) {
          timers.splice(timers.indexOf(t), 1);
          t.fn();
        }
      }
    };
    const fired: [ChangeEvent, number][] = [];
    const d = new Debouncer({ quietMs: 100, maxDelayMs: 1000, timer }, (c, n) => fired.push([c, n]));
    const ev = (r: string): ChangeEvent => ({ full: false, types: new Set([CDS]), reason: [r], at: now });
    d.enqueue(ev('a'));
    advance(50);
    d.enqueue(ev('b'));
    advance(99);
    expect(fired).toHaveLength(0);
    advance(1);
    expect(fired).toHaveLength(1);
    expect(fired[0]![1]).toBe(2);
    expect(fired[0]![0].reason).toEqual(['a', 'b']);
    // A change every 50 ms never gets 100 ms of quiet: the maximum delay fires it.
    for (let i = 0; i < 25; i++) {
      d.enqueue(ev(`s${i}`));
      advance(50);
    }
    expect(fired.length).toBeGreaterThanOrEqual(2);
    expect(fired[1]![1]).toBe(20);
  });

  it('the push queue merges repeated pushes to one connection and caps concurrency', async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    const seen: string[][] = [];
    const mk = (id: string) => ({
      id,
      push: async (c: ChangeEvent) => {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        seen.push([id, ...c.reason]);
        await new Promise((r) => setTimeout(r, 5));
        inFlight--;
      },
    });
    const q = new PushQueue<ReturnType<typeof mk>>(2, () => {});
    const conns = ['a', 'b', 'c', 'd'].map(mk);
    const ev = (r: string): ChangeEvent => ({ full: true, reason: [r], at: 0 });
    for (const c of conns) q.enqueue(c, ev('1'));
    q.enqueue(conns[3]!, ev('2'));
    await q.idle();
    expect(maxInFlight).toBe(2);
    expect(seen.filter((s) => s[0] === 'd')).toEqual([['d', '1', '2']]);
  });
});

describe('resource cache', () => {
  it('equal content (keys in any order) gives the same object and version, found by its bytes', () => {
    const cache = new ResourceCache();
    const cla = { cluster_name: 'c', endpoints: [] };
    const r1 = cache.intern(EDS, cla);
    const r2 = cache.intern(EDS, { endpoints: [], cluster_name: 'c' });
    expect(r2).toBe(r1);
    expect(cache.stats()).toEqual({ entries: 1, hits: 1, encodes: 2 });
    expect(new ResourceCache().intern(EDS, cla).version).toBe(r1.version);
  });

  it('rejects a resource with no name, naming the field', () => {
    expect(() => new ResourceCache().intern(EDS, { endpoints: [] })).toThrow(
      `${EDS}: cluster_name is empty; every xDS resource needs a name`,
    );
  });
});
