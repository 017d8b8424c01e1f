// The last-known-good snapshot file (issue 15, item 3): written atomically with a checksum, read
// back as written; a corrupt, truncated, foreign or unknown-format file is refused with a log line.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ConfigObject } from '@meridian/api';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { DiskSnapshot, describeServing, type SnapshotState, snapshotFile } from '../src/disk-snapshot.js';

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
});
