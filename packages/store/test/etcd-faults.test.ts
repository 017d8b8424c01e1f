// Fault tests against a real 3-member etcd cluster (fast election settings): leader SIGKILL during
// writes and watches, loss of quorum, election failover across processes, unreachable etcd.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import {
  Collection,
  Election,
  EtcdStore,
  jsonCodec,
  Keyspace,
  LeadershipLostError,
  type MalformedValueError,
  type Store,
  StoreUnavailableError,
  stringCodec,
  type WatchBatch,
} from '@meridian/store';
import { type EtcdCluster, freePorts, startEtcdCluster, tcpProxy } from '@meridian/testkit';
import { ConnectionPool } from 'etcd3/lib/connection-pool.js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { bytes, describeEvent, eventually } from './helpers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A watch that records each batch with its arrival time. */
function record(store: Store, prefix: string, fromRevision: number) {
  const batches: { at: number; batch: WatchBatch }[] = [];
  const statuses: { at: number; status: string }[] = [];
  const watch = store.watchPrefix(prefix, (batch) => void batches.push({ at: Date.now(), batch }), {
    fromRevision,
    onStatus: (status) => statuses.push({ at: Date.now(), status }),
  });
  const lines = () =>
    batches.flatMap(({ batch }) => (batch.kind === 'events' ? batch.events.map(describeEvent) : ['RESYNC']));
  return { watch, batches, statuses, lines };
}

describe('EtcdStore against a 3-member etcd cluster (faults)', () => {
  let cluster: EtcdCluster;
  const stores: Store[] = [];
  const children: ChildProcess[] = [];
  const connect = async (endpoints: string[], mesh: string, requestTimeoutMs = 5000) => {
    const s = await EtcdStore.connect({ endpoints, keyspace: Keyspace.of(mesh, 'c1'), requestTimeoutMs });
    stores.push(s);
    return s;
  };
  const restoreAll = async () => {
    await Promise.all(cluster.members.filter((m) => !m.running).map((m) => m.restart()));
    await cluster.waitHealthy();
  };

  beforeAll(async () => {
    cluster = await startEtcdCluster({ size: 3, fastElection: true, tmpfs: true });
  });
  afterEach(async () => {
    ConnectionPool.deterministicOrder = false;
    for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    for (const s of stores.splice(0)) await s.close();
    if (cluster) await restoreAll();
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('an unreachable etcd at start-up gives one clear error naming the endpoints, within the bound', async () => {
    const ports = await freePorts(2);
    const endpoints = ports.map((p) => `http://127.0.0.1:${p}`);
    const t0 = Date.now();
    const error = await EtcdStore.connect({
      endpoints,
      keyspace: Keyspace.of('m', 'c'),
      connectTimeoutMs: 1500,
    }).catch((e) => e);
    const elapsed = Date.now() - t0;
    console.log(`unreachable etcd reported after ${elapsed} ms (bound 1500 ms): ${error.message}`);
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect(error).toMatchObject({
      operation: 'connect',
      endpoints,
      timeoutMs: 1500,
      code: 'STORE_UNAVAILABLE',
    });
    expect(
      error.message.startsWith(
        `etcd unavailable at ${endpoints.join(', ')}: connect did not complete within 1500 ms`,
      ),
    ).toBe(true);
    expect(elapsed).toBeLessThan(1500 + 3000);
  });

  it('SIGKILL of the leader during writes and watches: no acked write lost, no event missed or duplicated', async () => {
    const mesh = `f${randomBytes(4).toString('hex')}`;
    const leader = await cluster.leader();
    const followers = cluster.members.filter((m) => m !== leader).map((m) => m.clientUrl);
    // etcd3 then tries hosts from the end of the list: one watcher sits on the leader, one on a follower.
    ConnectionPool.deterministicOrder = true;
    const onLeader = await connect([...followers, leader.clientUrl], mesh);
    const onFollower = await connect([leader.clientUrl, followers[0]!], mesh);
    const start = (await onLeader.revision()) + 1;
    const watchers = [record(onLeader, 'stream/', start), record(onFollower, 'stream/', start)];
    await Promise.all(watchers.map((w) => w.watch.ready));
    ConnectionPool.deterministicOrder = false;
    const writer = await connect(cluster.endpoints, mesh);

    const acked: { key: string; value: string; revision: number; sentAt: number; at: number }[] = [];
    let failures = 0;
    let stop = false;
    let killAt = 0;
    const writing = (async () => {
      for (let i = 0; !stop; i++) {
        const key = `stream/k${i % 20}`;
        const value = `v${i}`;
        for (;;) {
          const sentAt = Date.now();
          try {
            const { revision } = await writer.put(key, bytes(value));
            acked.push({ key, value, revision, sentAt, at: Date.now() });
            break;
          } catch (error) {
            expect(error).toBeInstanceOf(StoreUnavailableError);
            failures++;
            await sleep(10);
          }
        }
      }
    })();
    await sleep(700);
    killAt = Date.now();
    await leader.kill('SIGKILL');
    const newLeader = await cluster.leader({ timeoutMs: 10_000 });
    const electedAfter = Date.now() - killAt;
    await sleep(1500);
    stop = true;
    await writing;
    const last = acked.at(-1)!.revision;
    for (const w of watchers) {
      await eventually('watcher caught up', () => w.watch.lastRevision >= last, 15_000);
    }

    // The reference history: a fresh watch replaying from the start revision.
    const reference = record(writer, 'stream/', start);
    await eventually('reference replay', () => reference.watch.lastRevision >= last, 15_000);
    const expected = reference.lines().filter((l) => Number(l.split('@')[1]) <= last);
    for (const w of watchers) {
      expect(w.lines().filter((l) => Number(l.split('@')[1]) <= last)).toEqual(expected);
    }
    const history = new Set(expected);
    const lostWrites = acked.filter((a) => !history.has(`put ${a.key}=${a.value}@${a.revision}`));
    expect(lostWrites).toEqual([]);
    const revisions = watchers[0]!.lines().map((l) => Number(l.split('@')[1]));
    expect(revisions).toEqual([...revisions].sort((a, b) => a - b));
    expect(new Set(revisions).size).toBe(revisions.length);

    const firstAckAfterKill = acked.find((a) => a.sentAt >= killAt);
    const writeGap = (firstAckAfterKill?.at ?? Number.NaN) - killAt;
    // the first write issued after the kill: when does each watcher deliver it?
    const firstRevAfterKill = firstAckAfterKill?.revision ?? Number.POSITIVE_INFINITY;
    const resume = watchers.map(
      (w) => (w.batches.find((b) => b.batch.revision >= firstRevAfterKill)?.at ?? Number.NaN) - killAt,
    );
    const reattached =
      (watchers[0]!.statuses.find((s) => s.status === 'connected' && s.at >= killAt)?.at ?? Number.NaN) -
      killAt;
    console.log(
      `leader ${leader.name} SIGKILLed: new leader ${newLeader.name} reported after ${electedAfter} ms; ` +
        `writes available again after ${writeGap} ms (${failures} failed calls, ${acked.length} acked writes); ` +
        `watch on the killed leader re-attached to another member after ${reattached} ms ` +
        `(${watchers[0]!.watch.reconnects} reconnects) and delivered the first post-kill write after ${resume[0]} ms; ` +
        `watch on a follower delivered it after ${resume[1]} ms (${watchers[1]!.watch.reconnects} reconnects)`,
    );
    expect(watchers[0]!.watch.reconnects).toBeGreaterThanOrEqual(1);
    expect(newLeader).not.toBe(leader);
    await Promise.all([...watchers, reference].map((w) => w.watch.close()));
  });

  it('a watch whose connection goes silent (blackholed) resumes on another member by itself', async () => {
    const mesh = `b${randomBytes(4).toString('hex')}`;
    const [first, ...rest] = cluster.members;
    const proxy = await tcpProxy({
      target: { host: '127.0.0.1', port: Number(new URL(first!.clientUrl).port) },
    });
    try {
      // etcd3 tries hosts from the end of the list: the watch goes through the proxy.
      ConnectionPool.deterministicOrder = true;
      const reader = await EtcdStore.connect({
        endpoints: [...rest.map((m) => m.clientUrl), `http://${proxy.address}`],
        keyspace: Keyspace.of(mesh, 'c1'),
        watchLivenessMs: 1000,
      });
      stores.push(reader);
      const start = (await reader.revision()) + 1;
      const watcher = record(reader, 'bh/', start);
      await watcher.watch.ready;
      ConnectionPool.deterministicOrder = false;
      expect(proxy.connections).toBeGreaterThanOrEqual(1);
      const writer = await connect(
        rest.map((m) => m.clientUrl),
        mesh,
      );
      let last = 0;
      for (let i = 0; i < 5; i++) last = (await writer.put(`bh/k${i}`, bytes(`v${i}`))).revision;
      await eventually('events before the blackhole', () => watcher.watch.lastRevision >= last);
      proxy.blackhole(true);
      const t0 = Date.now();
      for (let i = 5; i < 10; i++) last = (await writer.put(`bh/k${i}`, bytes(`v${i}`))).revision;
      // liveness bound 1 s plus a generous margin; without it only gRPC keepalive (10 s + 5 s) would notice
      await eventually('events after the blackhole', () => watcher.watch.lastRevision >= last, 8_000);
      const resumedAfter = Date.now() - t0;
      expect(watcher.watch.reconnects).toBeGreaterThanOrEqual(1);
      const reference = record(writer, 'bh/', start);
      await eventually('reference replay', () => reference.watch.lastRevision >= last);
      expect(watcher.lines()).toEqual(reference.lines());
      expect(watcher.lines()).toHaveLength(10);
      console.log(
        `blackholed watch connection: all events delivered ${resumedAfter} ms after the blackhole ` +
          `(liveness bound 1000 ms, ${watcher.watch.reconnects} reconnects)`,
      );
      await Promise.all([watcher.watch.close(), reference.watch.close()]);
    } finally {
      await proxy.close();
    }
  });

  it('loss of quorum: writes fail within the bound, mirrors serve the last known state, all recovers', async () => {
    const mesh = `q${randomBytes(4).toString('hex')}`;
    const store = await connect(cluster.endpoints, mesh, 2000);
    const coll = new Collection(store, 'config/', stringCodec);
    await coll.put('a', 'A1');
    await coll.put('b', 'B1');
    const mirror = await coll.mirror();
    const lease = await store.grantLease(2);
    const leadership = await new Election(store, 'quorum').campaign(lease, 'me');
    let steppedDownAt = 0;
    leadership.onLost(() => {
      steppedDownAt = Date.now();
    });
    const [survivor, ...victims] = cluster.members;
    const killedAt = Date.now();
    await Promise.all(victims.map((m) => m.kill('SIGKILL')));

    const t0 = Date.now();
    const error = await coll.put('a', 'A2').catch((e) => e);
    const elapsed = Date.now() - t0;
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect(error).toMatchObject({ operation: 'put config/a', endpoints: cluster.endpoints, timeoutMs: 2000 });
    expect(
      error.message.startsWith(
        `etcd unavailable at ${cluster.endpoints.join(', ')}: put config/a did not complete within 2000 ms`,
      ),
    ).toBe(true);
    expect(elapsed).toBeLessThan(2000 + 3000);
    const readError = await coll.get('a').catch((e) => e);
    expect(readError).toBeInstanceOf(StoreUnavailableError);
    // Last known state from the mirror, while quorum is lost.
    expect(mirror.get('a')?.value).toBe('A1');
    expect(mirror.list().map((kv) => kv.value)).toEqual(['A1', 'B1']);
    await eventually(
      'mirror reports it is disconnected',
      () => mirror.disconnectedSince !== undefined,
      10_000,
    );
    // The leader cannot renew its lease without quorum: it must step down by itself, within the TTL.
    const lostLeadership = await leadership.lost;
    const stepDown = steppedDownAt - killedAt;
    expect(lostLeadership).toEqual(new LeadershipLostError('quorum', 'lease lost'));
    expect(leadership.isLeader).toBe(false);
    expect(stepDown).toBeLessThan(2000 + 3000);
    console.log(
      `quorum lost: the elected leader (2 s lease) stepped down ${stepDown} ms after quorum was lost`,
    );
    console.log(
      `quorum lost (only ${survivor!.name} left): write failed after ${elapsed} ms (bound 2000 ms): ${error.message}`,
    );

    const t1 = Date.now();
    await Promise.all(victims.map((m) => m.restart()));
    let recovered: number | undefined;
    while (recovered === undefined) {
      try {
        recovered = (await coll.put('a', 'A3')).revision;
      } catch (e) {
        expect(e).toBeInstanceOf(StoreUnavailableError);
        if (Date.now() - t1 > 30_000) throw e;
      }
    }
    await eventually('mirror caught up after recovery', () => mirror.revision >= recovered!, 15_000);
    expect(mirror.get('a')?.value).toBe('A3');
    expect(mirror.connected).toBe(true);
    expect((await coll.get('a'))?.value).toBe('A3');
    console.log(`quorum restored: writes accepted ${Date.now() - t1} ms after the members were restarted`);
    await mirror.close();
  });

  it('a mirror away across a compaction catches up (resync); a malformed value is skipped and reported', async () => {
    const mesh = `r${randomBytes(4).toString('hex')}`;
    const [pinned, ...others] = cluster.members;
    const reader = await connect([pinned!.clientUrl], mesh);
    const writer = await connect(
      others.map((m) => m.clientUrl),
      mesh,
    );
    const reported: MalformedValueError[] = [];
    const coll = new Collection<{ n: number }>(reader, 'cfg/', jsonCodec(), {
      onMalformed: (e) => reported.push(e),
    });
    await writer.put('cfg/a', bytes('{"n":1}'));
    const batches: string[] = [];
    const mirror = await coll.mirror({ onChange: (_, b) => batches.push(b.kind) });
    expect(mirror.list().map((kv) => kv.value)).toEqual([{ n: 1 }]);

    await pinned!.kill('SIGKILL');
    await writer.put('cfg/b', bytes('{"n":2}'));
    const bad = await writer.put('cfg/bad', bytes('{oops'));
    await writer.delete('cfg/a');
    const last = await writer.put('elsewhere', bytes('x'));
    await writer.compact(last.revision);
    await pinned!.restart();

    await eventually(
      'mirror caught up after the member returned',
      () => mirror.revision >= last.revision,
      20_000,
    );
    expect(mirror.list().map((kv) => `${kv.key}=${JSON.stringify(kv.value)}`)).toEqual(['cfg/b={"n":2}']);
    expect(reported.map((e) => [e.key, e.modRevision])).toEqual([['cfg/bad', bad.revision]]);
    expect(reported[0]!.message).toMatch(/^malformed json value at key "cfg\/bad" \(mod revision \d+\): /);
    expect(coll.malformedCount).toBe(1);
    // The member usually comes back with the compaction applied (resync); if the watch re-attached
    // before that, it replayed the events instead. Either way nothing was lost.
    console.log(
      `mirror away across a compaction: caught up via ${batches.includes('resync') ? 'resync' : 'replay'}`,
    );
    await mirror.close();
  });

  it('election across processes: one leader at a time, a new one within 2 s of the leader being killed', async () => {
    const mesh = `e${randomBytes(4).toString('hex')}`;
    const observerStore = await connect(cluster.endpoints, mesh);
    const election = new Election(observerStore, 'failover');
    const observed: { at: number; value: string | undefined }[] = [];
    const observer = await election.observe((l) => observed.push({ at: Date.now(), value: l?.value }));
    const events: { event: string; name: string; at: number }[] = [];
    const script = fileURLToPath(new URL('./fixtures/candidate.ts', import.meta.url));
    const byName = new Map<string, ChildProcess>();
    for (const name of ['c0', 'c1', 'c2']) {
      const child = spawn(
        process.execPath,
        ['--conditions=@meridian/source', '--import', 'tsx', script, cluster.endpoints.join(','), mesh, name],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      children.push(child);
      byName.set(name, child);
      createInterface({ input: child.stdout! }).on('line', (line) => events.push(JSON.parse(line)));
      // enter one after the other so the order of succession is known
      await eventually(
        `${name} campaigning`,
        () => events.some((e) => e.name === name && e.event !== 'error'),
        20_000,
      );
      expect(events.filter((e) => e.event === 'error')).toEqual([]);
    }
    const leaders = () => events.filter((e) => e.event === 'leader');
    await eventually('first leader', () => leaders().length === 1, 10_000).catch((error: unknown) => {
      console.log(`candidate events: ${JSON.stringify(events)}`);
      throw error;
    });
    expect(leaders()[0]!.name).toBe('c0');
    const failovers: number[] = [];
    for (const [old, next] of [
      ['c0', 'c1'],
      ['c1', 'c2'],
    ] as const) {
      const killAt = Date.now();
      byName.get(old)!.kill('SIGKILL');
      await eventually(`${next} leads`, () => leaders().some((e) => e.name === next), 10_000);
      const at = leaders().find((e) => e.name === next)!.at;
      failovers.push(at - killAt);
      expect(at).toBeGreaterThanOrEqual(killAt); // never two leaders: the next one starts after the old died
      await eventually(`observer sees ${next}`, () => observer.leader?.value === next, 5_000);
    }
    console.log(
      `election failover after the leader process was SIGKILLed (lease TTL 1 s): ${failovers.join(' ms, ')} ms`,
    );
    // Exactly one leader at any time: the observed succession has no overlap and no skipped candidate.
    expect(observed.map((o) => o.value).filter((v, i, a) => i === 0 || v !== a[i - 1])).toEqual([
      undefined,
      'c0',
      'c1',
      'c2',
    ]);
    expect(leaders().map((e) => e.name)).toEqual(['c0', 'c1', 'c2']);
    for (const f of failovers) expect(f).toBeLessThan(2000 + 1000); // issue bound 2 s, with a CI margin
    await observer.close();
  });
});
