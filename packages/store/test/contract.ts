// The one contract every Store implementation is held to (run by memory.test.ts and etcd.test.ts).
import { randomBytes } from 'node:crypto';
import {
  Collection,
  ConflictError,
  Election,
  InvalidKeyError,
  Keyspace,
  LeadershipLostError,
  type Lease,
  LeaseLostError,
  MalformedValueError,
  Membership,
  type Store,
  StoreClosedError,
  stringCodec,
  TxnTooLargeError,
} from '@meridian/store';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { bytes, eventually, Recorder, text } from './helpers.js';

/** Opens stores on one shared backend (one etcd, or one MemoryBackend). */
export interface StoreHarness {
  open(keyspace: Keyspace): Promise<Store>;
  close(): Promise<void>;
}

/** Runs the store contract against the implementation `setup` provides. */
export function storeContract(name: string, setup: () => Promise<StoreHarness>): void {
  describe(`Store contract: ${name}`, () => {
    let harness: StoreHarness;
    let store: Store;
    const opened: Store[] = [];
    const cleanups: (() => Promise<unknown>)[] = [];

    const open = async (keyspace = Keyspace.of(`m${randomBytes(4).toString('hex')}`, 'c1')) => {
      const s = await harness.open(keyspace);
      opened.push(s);
      return s;
    };
    const later = (fn: () => Promise<unknown>) => cleanups.push(fn);

    beforeAll(async () => {
      harness = await setup();
    });
    afterAll(async () => {
      await harness?.close();
    });
    afterEach(async () => {
      for (const fn of cleanups.splice(0)) await fn().catch(() => undefined);
      for (const s of opened.splice(0)) await s.close();
    });
    const fresh = async () => {
      store = await open();
      return store;
    };

    it('put and get carry create/mod revisions and versions', async () => {
      const s = await fresh();
      expect(await s.get('config/a')).toBeUndefined();
      const w1 = await s.put('config/a', bytes('one'));
      const kv1 = await s.get('config/a');
      expect(kv1).toMatchObject({
        key: 'config/a',
        createRevision: w1.revision,
        modRevision: w1.revision,
        version: 1,
      });
      expect(text(kv1!.value)).toBe('one');
      expect(kv1!.lease).toBeUndefined();
      const w2 = await s.put('config/a', bytes('two'));
      expect(w2.revision).toBeGreaterThan(w1.revision);
      const kv2 = await s.get('config/a');
      expect(kv2).toMatchObject({ createRevision: w1.revision, modRevision: w2.revision, version: 2 });
      expect(await s.revision()).toBeGreaterThanOrEqual(w2.revision);
    });

    it('list returns one prefix sorted by key at one revision', async () => {
      const s = await fresh();
      await s.put('config/b', bytes('b'));
      await s.put('config/a', bytes('a'));
      await s.put('configx', bytes('not under config/'));
      const last = await s.put('endpoints/e', bytes('e'));
      const res = await s.list('config/');
      expect(res.items.map((kv) => kv.key)).toEqual(['config/a', 'config/b']);
      expect(res.revision).toBeGreaterThanOrEqual(last.revision);
      expect((await s.list('')).items.map((kv) => kv.key)).toEqual([
        'config/a',
        'config/b',
        'configx',
        'endpoints/e',
      ]);
    });

    it('delete and deletePrefix report what they deleted', async () => {
      const s = await fresh();
      await s.put('x/1', bytes('1'));
      await s.put('x/2', bytes('2'));
      await s.put('y/1', bytes('1'));
      expect((await s.delete('y/1')).deleted).toBe(1);
      expect((await s.delete('y/1')).deleted).toBe(0);
      const d = await s.deletePrefix('x/');
      expect(d.deleted).toBe(2);
      expect((await s.list('')).items).toEqual([]);
    });

    it('compare-and-swap on mod revision throws ConflictError with key and revisions', async () => {
      const s = await fresh();
      const created = await s.put('cas', bytes('v1'), { expectModRevision: 0 });
      await expect(s.put('cas', bytes('again'), { expectModRevision: 0 })).rejects.toThrow(
        new ConflictError('cas', 0, created.revision),
      );
      const updated = await s.put('cas', bytes('v2'), { expectModRevision: created.revision });
      const err = await s.put('cas', bytes('stale'), { expectModRevision: created.revision }).catch((e) => e);
      expect(err).toBeInstanceOf(ConflictError);
      expect(err).toMatchObject({
        key: 'cas',
        expected: created.revision,
        actual: updated.revision,
        code: 'CONFLICT',
      });
      expect(err.message).toBe(
        `conflict on key "cas": expected mod revision ${created.revision}, found ${updated.revision}`,
      );
      await expect(s.delete('cas', { expectModRevision: created.revision })).rejects.toBeInstanceOf(
        ConflictError,
      );
      expect((await s.delete('cas', { expectModRevision: updated.revision })).deleted).toBe(1);
      expect(
        text((await s.put('cas', bytes('v3'), { expectModRevision: 0 })) && (await s.get('cas'))!.value),
      ).toBe('v3');
    });

    it('a transaction is all-or-nothing across keys, at one revision', async () => {
      const s = await fresh();
      const a = await s.put('t/a', bytes('a1'));
      const b = await s.put('t/b', bytes('b1'));
      const failed = await s
        .txn({
          expect: [
            { key: 't/a', modRevision: a.revision },
            { key: 't/b', modRevision: a.revision },
          ],
          ops: [
            { op: 'put', key: 't/a', value: bytes('a2') },
            { op: 'put', key: 't/c', value: bytes('c2') },
          ],
        })
        .catch((e) => e);
      expect(failed).toEqual(new ConflictError('t/b', a.revision, b.revision));
      expect(text((await s.get('t/a'))!.value)).toBe('a1');
      expect(await s.get('t/c')).toBeUndefined();
      const ok = await s.txn({
        expect: [
          { key: 't/a', modRevision: a.revision },
          { key: 't/b', modRevision: b.revision },
          { key: 't/c', modRevision: 0 },
        ],
        ops: [
          { op: 'put', key: 't/a', value: bytes('a2') },
          { op: 'delete', key: 't/b' },
          { op: 'put', key: 't/c', value: bytes('c2') },
        ],
      });
      const after = await s.list('t/');
      expect(after.items.map((kv) => [kv.key, text(kv.value), kv.modRevision])).toEqual([
        ['t/a', 'a2', ok.revision],
        ['t/c', 'c2', ok.revision],
      ]);
    });

    it('a transaction past the operations limit (etcd --max-txn-ops, 128 by default) fails with TxnTooLargeError and writes nothing', async () => {
      const s = await fresh();
      const ops = (n: number) =>
        Array.from({ length: n }, (_, i) => ({ op: 'put' as const, key: `big/${i}`, value: bytes('x') }));
      const error = await s.txn({ ops: ops(129) }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(TxnTooLargeError);
      expect((error as TxnTooLargeError).limit).toBe('operations');
      expect((await s.list('big/')).items).toEqual([]);
      await s.txn({ ops: ops(128) });
      expect((await s.list('big/')).items).toHaveLength(128);
    });

    it('rejects a transaction that touches one key twice, and bad keys', async () => {
      const s = await fresh();
      await expect(
        s.txn({
          ops: [
            { op: 'put', key: 'k', value: bytes('1') },
            { op: 'delete', key: 'k' },
          ],
        }),
      ).rejects.toThrow(new InvalidKeyError('k', 'appears twice in one transaction'));
      await expect(s.put('/abs', bytes('x'))).rejects.toThrow(
        'invalid key "/abs": keys are relative to the keyspace and must not start with "/"',
      );
      await expect(s.get('')).rejects.toThrow('invalid key "": a key must not be empty');
    });

    it('watch from a revision replays history then follows live, each change once and in order', async () => {
      const s = await fresh();
      const r1 = await s.put('w/a', bytes('1'));
      await s.put('other/x', bytes('ignored'));
      const r2 = await s.put('w/b', bytes('2'));
      const r3 = (await s.delete('w/a')).revision;
      const rec = Recorder.start(s, 'w/', { fromRevision: r1.revision });
      later(() => rec.watch.close());
      await rec.until('replayed history', (r) => r.events.length >= 3);
      const t = await s.txn({
        ops: [
          { op: 'put', key: 'w/c', value: bytes('3') },
          { op: 'put', key: 'w/d', value: bytes('4') },
        ],
      });
      await rec.until('live txn', (r) => r.events.length >= 5);
      expect(rec.lines).toEqual([
        `put w/a=1@${r1.revision}`,
        `put w/b=2@${r2.revision}`,
        `delete w/a@${r3}`,
        `put w/c=3@${t.revision}`,
        `put w/d=4@${t.revision}`,
      ]);
      const txnBatch = rec.batches.find((b) => b.kind === 'events' && b.revision === t.revision);
      expect(txnBatch?.kind === 'events' && txnBatch.events.length).toBe(2);
      expect(rec.watch.lastRevision).toBe(t.revision);
      expect(rec.errors).toEqual([]);
    });

    it('a throwing watch handler is reported through onError and the watch goes on', async () => {
      const s = await fresh();
      const errors: unknown[] = [];
      const seen: string[] = [];
      const w = s.watchPrefix(
        'h/',
        (b) => {
          if (b.kind !== 'events') return;
          for (const e of b.events) if (e.type === 'put') seen.push(text(e.kv.value));
          if (seen.includes('boom') && seen.length === 1) throw new Error('handler failed');
        },
        { onError: (e) => errors.push(e) },
      );
      later(() => w.close());
      await w.ready;
      await s.put('h/a', bytes('boom'));
      await s.put('h/b', bytes('after'));
      await eventually('event after the failing one', () => seen.length === 2);
      expect(seen).toEqual(['boom', 'after']);
      expect(errors).toEqual([new Error('handler failed')]);
    });

    it('watch without a start revision delivers only later changes', async () => {
      const s = await fresh();
      await s.put('n/old', bytes('old'));
      const rec = Recorder.start(s, 'n/');
      later(() => rec.watch.close());
      const start = await rec.watch.ready;
      expect(start).toBe(await s.revision());
      const w = await s.put('n/new', bytes('new'));
      await rec.until('the new put', (r) => r.events.length >= 1);
      await new Promise((r) => setTimeout(r, 50));
      expect(rec.lines).toEqual([`put n/new=new@${w.revision}`]);
    });

    it('a compacted start revision yields a resync batch with a snapshot, then events', async () => {
      const s = await fresh();
      const first = await s.put('r/a', bytes('1'));
      await s.put('r/a', bytes('2'));
      await s.put('r/b', bytes('3'));
      const cut = await s.put('other', bytes('x'));
      await s.compact(cut.revision);
      const rec = Recorder.start(s, 'r/', { fromRevision: first.revision });
      later(() => rec.watch.close());
      await rec.until('resync', (r) => r.batches.length >= 1);
      const resync = rec.batches[0]!;
      expect(resync.kind).toBe('resync');
      if (resync.kind !== 'resync') return;
      expect(resync.compactRevision).toBe(cut.revision);
      expect(resync.revision).toBeGreaterThanOrEqual(cut.revision);
      expect(resync.items.map((kv) => `${kv.key}=${text(kv.value)}`)).toEqual(['r/a=2', 'r/b=3']);
      const w = await s.put('r/c', bytes('4'));
      await rec.until('event after resync', (r) => r.events.length >= 1);
      expect(rec.lines).toEqual([`put r/c=4@${w.revision}`]);
    });

    it('two keyspaces on one backend do not see each other', async () => {
      const mesh = `m${randomBytes(4).toString('hex')}`;
      const a = await open(Keyspace.of(mesh, 'a'));
      const b = await open(Keyspace.of(`${mesh}x`, 'a'));
      const recB = Recorder.start(b, '');
      later(() => recB.watch.close());
      await recB.watch.ready;
      await a.put('config/k', bytes('from a'));
      await b.put('config/k', bytes('from b'));
      expect(text((await a.get('config/k'))!.value)).toBe('from a');
      expect((await b.list('')).items.map((kv) => `${kv.key}=${text(kv.value)}`)).toEqual([
        'config/k=from b',
      ]);
      await recB.until('b sees its own put', (r) => r.events.length >= 1);
      await new Promise((r) => setTimeout(r, 50));
      expect(recB.lines.map((l) => l.replace(/@\d+$/, ''))).toEqual(['put config/k=from b']);
    });

    it('a lease keeps its keys; revoking deletes them; a lease revoked elsewhere is reported lost', async () => {
      const s = await fresh();
      const lease = await s.grantLease(5);
      later(() => lease.revoke());
      await s.put('l/a', bytes('a'), { lease: lease.id });
      expect((await s.get('l/a'))?.lease).toBe(lease.id);
      const rec = Recorder.start(s, 'l/');
      later(() => rec.watch.close());
      await rec.watch.ready;
      const lost: unknown[] = [];
      lease.onLost((e) => lost.push(e));
      await s.revokeLease(lease.id);
      await rec.until('delete of the leased key', (r) => r.events.some((e) => e.type === 'delete'));
      expect(await s.get('l/a')).toBeUndefined();
      await eventually('lease lost event', () => lost.length === 1);
      expect(lost[0]).toEqual(new LeaseLostError(lease.id, 'expired or revoked'));
      expect(lease.state).toBe('lost');
      expect(await lease.lost).toBe(lost[0]);
      await expect(s.put('l/b', bytes('b'), { lease: lease.id })).rejects.toThrow(
        new LeaseLostError(lease.id, 'not found'),
      );
      await s.revokeLease(lease.id); // revoking a lease that is gone is a no-op
      await lease.revoke();
      expect(lease.state).toBe('lost');
    });

    it('a released lease expires after its TTL and takes its keys', async () => {
      const s = await fresh();
      const lease = await s.grantLease(1);
      await s.put('e/a', bytes('a'), { lease: lease.id });
      const t0 = Date.now();
      lease.release();
      expect(lease.state).toBe('revoked');
      for (;;) {
        if ((await s.get('e/a')) === undefined) break;
        if (Date.now() - t0 > 10_000) throw new Error('leased key still there 10 s after release');
        await new Promise((r) => setTimeout(r, 100));
      }
      console.log(`[${name}] lease with TTL 1 s expired ${Date.now() - t0} ms after its keepalives stopped`);
    });

    it('malformed values are skipped and reported with their key, never stopping a watcher', async () => {
      const s = await fresh();
      const reported: MalformedValueError[] = [];
      const coll = new Collection<{ n: number }>(s, 'json/', undefined, {
        onMalformed: (e) => reported.push(e),
      });
      const received: string[] = [];
      const w = coll.watch((b) => {
        if (b.kind === 'events')
          for (const e of b.events) received.push(e.type === 'put' ? `${e.kv.key}:${e.kv.value.n}` : e.key);
      });
      later(() => w.close());
      await w.ready;
      await coll.put('good1', { n: 1 });
      const bad = await s.put('json/bad', bytes('{not json'));
      await coll.put('good2', { n: 2 });
      await eventually('both good values', () => received.length === 2);
      expect(received).toEqual(['json/good1:1', 'json/good2:2']);
      const listed = await coll.list();
      expect(listed.items.map((kv) => kv.key)).toEqual(['json/good1', 'json/good2']);
      expect(reported.length).toBe(2);
      expect(coll.malformedCount).toBe(2);
      expect(reported[0]).toBeInstanceOf(MalformedValueError);
      expect(reported[0]).toMatchObject({ key: 'json/bad', modRevision: bad.revision, codec: 'json' });
      expect(reported[0]!.message).toMatch(
        new RegExp(`^malformed json value at key "json/bad" \\(mod revision ${bad.revision}\\): `),
      );
      await expect(coll.get('bad')).rejects.toBeInstanceOf(MalformedValueError);
      expect((await coll.get('good2'))?.value).toEqual({ n: 2 });
    });

    it('a mirror keeps the last known state current', async () => {
      const s = await fresh();
      const coll = new Collection<string>(s, 'm/', stringCodec);
      await coll.put('a', 'A');
      const mirror = await coll.mirror();
      later(() => mirror.close());
      expect(mirror.get('a')?.value).toBe('A');
      await coll.put('b', 'B');
      const d = await coll.delete('a');
      await eventually('mirror caught up', () => mirror.revision >= d.revision);
      expect(mirror.list().map((kv) => `${kv.key}=${kv.value}`)).toEqual(['m/b=B']);
      expect(mirror.connected).toBe(true);
    });

    it('leader election: one leader, the next takes over on resign and on lease loss', async () => {
      const s = await fresh();
      const election = new Election(s, 'exporter');
      const seen: (string | undefined)[] = [];
      const observer = await election.observe((l) => seen.push(l?.value));
      later(() => observer.close());
      const leases: Lease[] = [];
      for (let i = 0; i < 3; i++) leases.push(await s.grantLease(5));
      for (const l of leases) later(() => l.revoke());
      const first = await election.campaign(leases[0]!, 'r0');
      expect(first.isLeader).toBe(true);
      let secondLeads = false;
      const second = election.campaign(leases[1]!, 'r1').then((l) => {
        secondLeads = true;
        return l;
      });
      // let r1 enter before r2, so the order of succession is known
      const candidates = async () => (await s.list(s.keyspace.prefix('elections', 'exporter'))).items.length;
      for (let i = 0; (await candidates()) < 2; i++) {
        if (i > 500) throw new Error('r1 never entered the election');
        await new Promise((r) => setTimeout(r, 10));
      }
      const third = election.campaign(leases[2]!, 'r2');
      await eventually('observer sees r0', () => observer.leader?.value === 'r0');
      expect((await election.leader())?.value).toBe('r0');
      await new Promise((r) => setTimeout(r, 100));
      expect(secondLeads).toBe(false);
      await first.resign();
      const l2 = await second;
      expect(l2.isLeader).toBe(true);
      await eventually('observer sees r1', () => observer.leader?.value === 'r1');
      const lost: unknown[] = [];
      l2.onLost((e) => lost.push(e));
      await s.revokeLease(leases[1]!.id);
      const l3 = await third;
      await eventually('r1 told it lost leadership', () => lost.length === 1);
      expect(lost[0]).toBeInstanceOf(LeadershipLostError);
      // whichever the store reports first: the lease's loss or the deletion of the candidate key
      expect((lost[0] as Error).message).toMatch(
        /^leadership of election "exporter" lost: (lease lost|candidate key deleted)$/,
      );
      expect(l2.isLeader).toBe(false);
      expect(l3.isLeader).toBe(true);
      await eventually('observer sees r2', () => observer.leader?.value === 'r2');
      expect(seen.filter((v, i) => i === 0 || v !== seen[i - 1])).toEqual([undefined, 'r0', 'r1', 'r2']);
      await l3.resign();
      await eventually('no leader', () => observer.leader === undefined);
    });

    it('an aborted campaign rejects with the reason and leaves the election', async () => {
      const s = await fresh();
      const election = new Election(s, 'abort');
      const [la, lb] = [await s.grantLease(5), await s.grantLease(5)];
      later(() => la.revoke());
      later(() => lb.revoke());
      const leader = await election.campaign(la, 'a');
      const abort = new AbortController();
      const waiting = election.campaign(lb, 'b', { signal: abort.signal }).catch((e) => e);
      const candidates = async () => (await s.list(s.keyspace.prefix('elections', 'abort'))).items.length;
      for (let i = 0; (await candidates()) < 2; i++) {
        if (i > 500) throw new Error('b never entered the election');
        await new Promise((r) => setTimeout(r, 10));
      }
      abort.abort(new Error('shutting down'));
      expect(await waiting).toEqual(new Error('shutting down'));
      expect(await candidates()).toBe(1);
      expect(leader.isLeader).toBe(true);
      await leader.resign();
      expect(await election.leader()).toBeUndefined();
    });

    it('membership: members live under their leases, one live member per id', async () => {
      const s = await fresh();
      const replicas = new Membership<{ addr: string }>(s, 'replicas');
      const [la, lb] = [await s.grantLease(5), await s.grantLease(5)];
      later(() => la.revoke());
      later(() => lb.revoke());
      await replicas.join('r-a', { addr: '10.0.0.1' }, la);
      await replicas.join('r-b', { addr: '10.0.0.2' }, lb);
      await replicas.join('r-a', { addr: '10.0.0.9' }, la); // same lease: an update
      const mirror = await replicas.mirror();
      later(() => mirror.close());
      expect(mirror.list().map((kv) => [replicas.idOf(kv), kv.value.addr])).toEqual([
        ['r-a', '10.0.0.9'],
        ['r-b', '10.0.0.2'],
      ]);
      const taken = await replicas.join('r-a', { addr: '10.0.0.3' }, lb).catch((e) => e);
      expect(taken).toBeInstanceOf(ConflictError);
      expect(taken.key).toBe('members/replicas/r-a');
      await s.revokeLease(la.id);
      await eventually('r-a gone with its lease', () => mirror.size === 1);
      expect((await replicas.list()).map((kv) => replicas.idOf(kv))).toEqual(['r-b']);
      await replicas.leave('r-b');
      await eventually('r-b left', () => mirror.size === 0);
    });

    it('a closed store refuses calls with StoreClosedError', async () => {
      const s = await open();
      await s.close();
      await expect(s.put('k', bytes('v'))).rejects.toThrow(new StoreClosedError('put k'));
    });
  });
}
