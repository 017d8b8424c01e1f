// `meridian auth ...` and the admin-API commands against a real replica on a real etcd: bootstrap
// writes a credential (mode 0600) that apply/get then use; a view token is refused writes with the
// server's reason; no credential gets kubectl's "must be logged in"; role bindings list and delete.
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '@meridian/cli';
import { Replica, resolveOptions } from '@meridian/server';
import { type EtcdCluster, startEtcd } from '@meridian/testkit';
import pino from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';

let dir: string;
let etcd: EtcdCluster;
let replica: Replica;
let out: string[] = [];
let err: string[] = [];
const ctx = { out: (l: string) => out.push(l), err: (l: string) => err.push(l) };
const env = process.env;
const meridian = (...args: string[]): Promise<number> => run(args, ctx);

const SE = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.8.0.1}]
`;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meridian-cli-auth-'));
  etcd = await startEtcd();
  replica = await Replica.start(
    resolveOptions(
      [
        ...['--mesh-id', 'mesh1', '--cluster-id', 'c9', '--replica-id', 'cli-1'],
        ...['--etcd-endpoints', etcd.endpoints.join(',')],
        ...['--xds-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0', '--monitoring-address', 'off'],
      ],
      {},
    ),
    { logger: pino({ level: 'silent' }) },
  );
  await writeFile(join(dir, 'se.yaml'), SE);
  process.env = { ...env, MERIDIAN_CREDENTIALS: join(dir, 'credentials.yaml') };
  delete process.env.MERIDIAN_TOKEN;
  delete process.env.MERIDIAN_SERVER;
});
afterAll(async () => {
  process.env = env;
  await replica?.stop();
  await etcd?.stop();
  await rm(dir, { recursive: true, force: true });
});
beforeEach(() => {
  out = [];
  err = [];
});

describe('meridian auth', () => {
  it('without a credential, apply says to log in and changes nothing', async () => {
    expect(await meridian('apply', '-f', join(dir, 'se.yaml'), '--server', replica.adminAddress)).toBe(1);
    expect(err.join('\n')).toContain('You must be logged in to the server (Unauthorized)');
    expect(err.join('\n')).toContain('meridian auth bootstrap');
  });

  it('bootstrap saves a credential that apply, get and whoami use', async () => {
    const server = `http://${replica.adminAddress}`;
    const code = await meridian(
      'auth',
      'bootstrap',
      '--etcd',
      etcd.endpoints.join(','),
      '--cluster',
      'c9',
      '--user',
      'ops',
      '--server',
      server,
    );
    expect(code, err.join('\n')).toBe(0);
    expect(out[0]).toContain('spiffe://cluster.local/ns/meridian-system/sa/ops bound to role admin');
    expect((await stat(join(dir, 'credentials.yaml'))).mode & 0o777).toBe(0o600);
    out = [];
    expect(await meridian('apply', '-f', join(dir, 'se.yaml')), err.join('\n')).toBe(0);
    expect(out).toEqual(['serviceentry.networking.istio.io/reviews created']);
    out = [];
    expect(await meridian('get', 'se', '-o', 'json')).toBe(0);
    expect(JSON.parse(out.join('\n')).items[0].metadata.name).toBe('reviews');
    out = [];
    expect(await meridian('auth', 'whoami')).toBe(0);
    expect(out).toEqual(['spiffe://cluster.local/ns/meridian-system/sa/ops (token): admin']);
  });

  it('a view token reads but may not write; deleting its binding takes reading away too', async () => {
    expect(await meridian('auth', 'token', '--user', 'alice', '--role', 'view', '--ttl', '10m')).toBe(0);
    const alice = out.at(-1)!;
    expect(alice.split('.')).toHaveLength(3);
    out = [];
    expect(await meridian('get', 'se', '--token', alice)).toBe(0);
    expect(out.join('\n')).toContain('reviews');
    expect(await meridian('delete', 'se', 'reviews', '--token', alice)).toBe(1);
    expect(err.at(-1)).toBe(
      'Error from server (Forbidden): spiffe://cluster.local/ns/meridian-system/sa/alice (role view) may not delete ServiceEntry: needs role edit',
    );
    out = [];
    expect(await meridian('auth', 'rolebinding', 'list')).toBe(0);
    expect(out[0]).toMatch(/^NAME\s+ROLE\s+SUBJECT$/);
    expect(
      out.some((l) => /^alice\s+view\s+spiffe:\/\/cluster.local\/ns\/meridian-system\/sa\/alice$/.test(l)),
    ).toBe(true);
    expect(await meridian('auth', 'rolebinding', 'delete', 'alice')).toBe(0);
    // The replica's watch removes the role within moments.
    let code = 0;
    for (let i = 0; i < 50 && code === 0; i++) {
      code = await meridian('get', 'se', '--token', alice);
      if (code === 0) await new Promise((r) => setTimeout(r, 100));
    }
    expect(code).toBe(1);
    expect(err.at(-1)).toContain('(no role) may not list ServiceEntry: needs role view');
  });

  it('a bad role name is refused by the CLI before anything is sent', async () => {
    expect(
      await meridian(
        'auth',
        'rolebinding',
        'set',
        'x',
        '--subject',
        'spiffe://cluster.local/ns/a/sa/b',
        '--role',
        'root',
      ),
    ).not.toBe(0);
    expect(err.join('\n')).toContain('"root" is not a role (view, edit, registrar, admin)');
  });
});
