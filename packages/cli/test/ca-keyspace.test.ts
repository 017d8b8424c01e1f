// Issue 15, item 4: one mesh-id default (`mesh1`) for `meridian ca install`, `token publish` and
// meridiand, so following the CA README with the defaults gives a replica with its CA; a replica
// whose CA is missing names the keyspace it looked in, `/readyz` says so, and a CA installed later
// is picked up without a restart. Real etcd, replicas in-process.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '@meridian/cli';
import { Replica, resolveOptions } from '@meridian/server';
import { DEFAULT_MESH_ID } from '@meridian/store';
import { type EtcdCluster, eventually, startEtcd } from '@meridian/testkit';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let dir: string;
let etcd: EtcdCluster;
const replicas: Replica[] = [];
const out: string[] = [];
const err: string[] = [];
const ctx = { out: (l: string) => out.push(l), err: (l: string) => err.push(l) };
const meridian = (...args: string[]): Promise<number> => run(args, ctx);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meridian-ca-keyspace-'));
  etcd = await startEtcd();
}, 60_000);
afterAll(async () => {
  await Promise.all(replicas.map((r) => r.stop()));
  await etcd?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function replica(extra: string[]): Promise<Replica> {
  const r = await Replica.start(
    resolveOptions(
      [
        '--etcd-endpoints',
        etcd.endpoints.join(','),
        '--admin-address',
        '127.0.0.1:0',
        '--monitoring-address',
        'off',
        '--ca-address',
        '127.0.0.1:0',
        '--ca-kek-file',
        join(dir, 'kek'),
        ...extra,
      ],
      {},
    ),
    { logger: pino({ level: 'silent' }) },
  );
  replicas.push(r);
  return r;
}

async function readyz(r: Replica): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://${r.adminAddress}/readyz`);
  return { status: res.status, body: (await res.text()).trim() };
}

describe('the CA keyspace', () => {
  it('meridian ca install, token publish and meridiand share the mesh id default', async () => {
    expect(DEFAULT_MESH_ID).toBe('mesh1');
    const root = join(dir, 'root');
    expect(await meridian('ca', 'init', '--out', root, '--key-type', 'ecdsa-p256')).toBe(0);
    expect(await meridian('ca', 'kek', '--out', join(dir, 'kek'))).toBe(0);
    expect(await meridian('token', 'keygen', '--out', join(dir, 'token-key.pem'))).toBe(0);
    expect(
      await meridian(
        'ca',
        'intermediate',
        '--root-dir',
        root,
        '--cluster',
        'cluster1',
        '--key-type',
        'ecdsa-p256',
      ),
    ).toBe(0);
    const etcdArg = etcd.endpoints.join(',');
    // The README's steps, without --mesh.
    expect(
      await meridian(
        'ca',
        'install',
        '--dir',
        join(root, 'clusters', 'cluster1'),
        '--etcd',
        etcdArg,
        '--kek-file',
        join(dir, 'kek'),
      ),
    ).toBe(0);
    expect(out.at(-1)).toBe(
      'installed the CA of cluster cluster1 into /meridian/mesh1/cluster1/ (key sealed with AES-256-GCM)',
    );
    expect(
      await meridian(
        'token',
        'publish',
        '--key',
        join(dir, 'token-key.pem'),
        '--cluster',
        'cluster1',
        '--etcd',
        etcdArg,
      ),
    ).toBe(0);
    expect(out.at(-1)).toMatch(/^verification key \S+ published to \/meridian\/mesh1\/cluster1\/$/);

    // meridiand with its defaults (mesh1, cluster1) finds both.
    const r = await replica(['--replica-id', 'defaults']);
    expect(r.options.meshId).toBe('mesh1');
    expect(r.caAddress).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(await readyz(r)).toEqual({ status: 200, body: 'ok' });
  }, 60_000);

  it('a replica of another mesh id names the keyspace it looked in, is not ready, and picks the CA up once installed', async () => {
    const r = await replica(['--mesh-id', 'prod', '--replica-id', 'prod-1']);
    expect(r.caAddress).toBe('');
    expect(await readyz(r)).toEqual({
      status: 503,
      body: 'not ready: --ca-address is set but the CA is not loaded: no CA installed for cluster "cluster1" in etcd keyspace /meridian/prod/cluster1/ (run: meridian ca install --cluster cluster1 --mesh prod)',
    });
    // The hint, followed.
    expect(
      await meridian(
        'ca',
        'install',
        '--dir',
        join(dir, 'root', 'clusters', 'cluster1'),
        '--etcd',
        etcd.endpoints.join(','),
        '--kek-file',
        join(dir, 'kek'),
        '--mesh',
        'prod',
      ),
    ).toBe(0);
    await eventually('the replica ready', async () => (await readyz(r)).status === 200, 20_000, 200);
    expect(await readyz(r)).toEqual({ status: 200, body: 'ok' });
    expect(r.caAddress).toMatch(/^127\.0\.0\.1:\d+$/);
  }, 60_000);
});
