// The last-known-good snapshot file (issue 15, item 3): written atomically with a checksum, read
// back as written; a corrupt, truncated, foreign or unknown-format file is refused with a log line.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ConfigObject } from '@meridian/api';
import pino from 'pino';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import {
  DiskSnapshot,
  describeServing,
  MIN_WRITE_INTERVAL_MS,
  type SnapshotState,
  snapshotFile,
  WRITE_DELAY_MS,
} from '../src/disk-snapshot.js';

const dir = mkdtempSync(join(tmpdir(), 'meridian-lkg-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const ETCD = ['http://127.0.0.1:2379'];
const state: SnapshotState = {
  revision: 42,
  watchedRevision: 45,
  configs: [
    [
      'config/ServiceEntry/shop/echo',
      42,
      {
        apiVersion: 'networking.istio.io/v1',
        kind: 'ServiceEntry',
        metadata: { name: 'echo', namespace: 'shop' },
        spec: { hosts: ['echo.shop'], resolution: 'NONE' },
      } as unknown as ConfigObject,
    ],
  ],
  registrations: [],
};

function recorder(): { log: pino.Logger; lines: { msg: string; reason?: string }[] } {
  const lines: { msg: string; reason?: string }[] = [];
  const log = pino(
    { level: 'debug' },
    { write: (s: string) => lines.push(JSON.parse(s) as { msg: string; reason?: string }) },
  );
  return { log, lines };
}

describe('the snapshot on disk', () => {
  it('is read back as written, with its revision and time', async () => {
    const { log } = recorder();
    const disk = new DiskSnapshot(join(dir, 'ok'), 'm1', 'c1', ETCD, log);
    disk.schedule(() => state);
    await disk.flush();
    const loaded = await new DiskSnapshot(join(dir, 'ok'), 'm1', 'c1', ETCD, log).load();
    expect(loaded).toMatchObject({
      revision: 42,
      watchedRevision: 45,
      configs: state.configs,
      registrations: [],
      file: join(dir, 'ok', 'm1.c1.lkg'),
    });
    expect(Date.now() - loaded!.writtenAt.getTime()).toBeLessThan(10_000);
    expect(describeServing({ ...loaded!, writtenAt: new Date(Date.now() - 65_000) })).toBe(
      'degraded: store unreachable, serving revision 42 from disk (age 1m5s)',
    );
  });

  it('refuses a corrupt, truncated, foreign or unknown file with a log line', async () => {
    const { log } = recorder();
    const writer = new DiskSnapshot(join(dir, 'bad'), 'm1', 'c1', ETCD, log);
    writer.schedule(() => state);
    await writer.flush();
    const good = readFileSync(writer.file, 'utf8');
    const other = ['http://10.0.0.9:2379'];
    const cases: [reason: string, text: string, mesh: string, endpoints: string[]][] = [
      ['corrupt (checksum mismatch)', good.replace('echo.shop', 'echo.shoq'), 'm1', ETCD],
      ['corrupt (checksum mismatch)', good.slice(0, good.length - 20), 'm1', ETCD],
      ['corrupt (no header line)', '{"format"', 'm1', ETCD],
      ['unknown format "other/1"', good.replace('meridian-lkg/1', 'other/1'), 'm1', ETCD],
      [
        'foreign: written for mesh "m1" cluster "c1", this replica is mesh "m2" cluster "c1"',
        good,
        'm2',
        ETCD,
      ],
      [
        'foreign: written for etcd at ["http://127.0.0.1:2379"], this replica uses http://10.0.0.9:2379',
        good,
        'm1',
        other,
      ],
    ];
    for (const [reason, text, mesh, endpoints] of cases) {
      const r = recorder();
      writeFileSync(snapshotFile(join(dir, 'bad'), mesh, 'c1'), text);
      const reader = new DiskSnapshot(join(dir, 'bad'), mesh, 'c1', endpoints, r.log);
      expect(await reader.load(), reason).toBeUndefined();
      expect(r.lines.map((l) => l.msg)).toEqual([`snapshot on disk refused: ${reason}`]);
    }
  });

  it('is not written past its size bound (the previous one stays)', async () => {
    const { log, lines } = recorder();
    const disk = new DiskSnapshot(join(dir, 'big'), 'm1', 'c1', ETCD, log, 200);
    disk.schedule(() => ({ ...state, configs: [] }));
    await disk.flush();
    disk.schedule(() => state);
    await disk.flush();
    expect((await disk.load())?.configs).toEqual([]);
    expect(lines.map((l) => l.msg)).toContain(
      'snapshot larger than its bound: not written (the previous one stays)',
    );
  });

  describe('under steady changes', () => {
    afterEach(() => {
      vi.useRealTimers();
    });

    it('writes at most once per MIN_WRITE_INTERVAL_MS, and then the latest state', async () => {
      vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
      const { log, lines } = recorder();
      const disk = new DiskSnapshot(join(dir, 'steady'), 'm1', 'c1', ETCD, log);
      const written = () =>
        lines
          .filter((l) => l.msg === 'snapshot written to disk')
          .map((l) => (l as { revision?: number }).revision);
      /** Waits for the file writes of a fired timer to finish (real I/O, not faked). */
      const writtenCount = async (n: number) => {
        for (let i = 0; i < 100_000 && written().length < n; i++) await new Promise((r) => setImmediate(r));
        return written();
      };
      disk.schedule(() => ({ ...state, revision: 1 }));
      await vi.advanceTimersByTimeAsync(WRITE_DELAY_MS);
      expect(await writtenCount(1)).toEqual([1]);
      // Changes keep coming: revision 2, then 3 within the interval; the next write waits for it.
      disk.schedule(() => ({ ...state, revision: 2 }));
      await vi.advanceTimersByTimeAsync(WRITE_DELAY_MS);
      disk.schedule(() => ({ ...state, revision: 3 }));
      await vi.advanceTimersByTimeAsync(WRITE_DELAY_MS);
      expect(vi.getTimerCount()).toBe(1);
      expect(written()).toEqual([1]);
      await vi.advanceTimersByTimeAsync(MIN_WRITE_INTERVAL_MS - 2 * WRITE_DELAY_MS);
      expect(vi.getTimerCount()).toBe(0);
      expect(await writtenCount(2)).toEqual([1, 3]);
      await disk.flush();
    });
  });
});
