import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '@meridian/cli';
import { publicKeyOfSeed } from '@meridian/federation';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let dir: string;
const out: string[] = [];
const err: string[] = [];
const ctx = { out: (l: string) => out.push(l), err: (l: string) => err.push(l) };
const meridian = async (...args: string[]): Promise<number> => run(args, ctx);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meridian-cli-fed-test-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('meridian federation', () => {
  it('nats-config writes an authorization block nats-server accepts, and one 0600 seed per cluster', async () => {
    const outDir = join(dir, 'nats');
    expect(
      await meridian(
        'federation',
        'nats-config',
        '--mesh',
        'prod',
        '--cluster',
        'east',
        '--cluster',
        'west',
        '--out-dir',
        outDir,
      ),
    ).toBe(0);
    const auth = await readFile(join(outDir, 'meridian-federation-auth.conf'), 'utf8');
    for (const c of ['east', 'west']) {
      const file = join(outDir, `${c}.nk`);
      expect((await stat(file)).mode & 0o777).toBe(0o600);
      const seed = (await readFile(file, 'utf8')).trim();
      expect(auth).toContain(`nkey: "${publicKeyOfSeed(seed)}"`);
      expect(auth).not.toContain(seed);
      expect(auth).toContain(`publish: { allow: ["meridian.prod.fed.${c}.>", "$KV.meridian_fed_prod_${c}.>"`);
    }
    const conf = join(outDir, 'server.conf');
    await writeFile(
      conf,
      `listen: "127.0.0.1:-1"\njetstream { store_dir: "${join(outDir, 'js')}" }\ninclude "meridian-federation-auth.conf"\n`,
    );
    const check = spawnSync('nats-server', ['-c', conf, '-t'], { encoding: 'utf8' });
    expect(check.status).toBe(0);
    expect(check.stderr + check.stdout).toContain(`configuration file ${conf} is valid`);

    // Re-running refuses to overwrite a seed.
    expect(
      await meridian('federation', 'nats-config', '--mesh', 'prod', '--cluster', 'east', '--out-dir', outDir),
    ).toBe(1);
    expect(err.at(-1)).toMatch(/^error: EEXIST: file already exists/);
  });

  it('nats-config with existing keys prints the block; without keys or --out-dir it refuses', async () => {
    const eastSeed = join(dir, 'nats', 'east.nk');
    const westPub = publicKeyOfSeed(await readFile(join(dir, 'nats', 'west.nk'), 'utf8'));
    out.length = 0;
    expect(
      await meridian(
        'federation',
        'nats-config',
        '--mesh',
        'prod',
        '--cluster',
        'east',
        '--cluster',
        'west',
        '--seed-file',
        `east=${eastSeed}`,
        '--public-key',
        `west=${westPub}`,
      ),
    ).toBe(0);
    expect(out.join('\n')).toContain(`nkey: "${westPub}"`);
    expect(out.join('\n')).toContain(`nkey: "${publicKeyOfSeed(await readFile(eastSeed, 'utf8'))}"`);

    expect(await meridian('federation', 'nats-config', '--mesh', 'prod', '--cluster', 'east')).toBe(1);
    expect(err.at(-1)).toBe(
      'error: cluster "east" has no --public-key or --seed-file: pass --out-dir to generate its key',
    );
    expect(
      await meridian(
        'federation',
        'nats-config',
        '--mesh',
        'prod',
        '--cluster',
        'east',
        '--public-key',
        'west=UX',
      ),
    ).toBe(1);
    expect(err.at(-1)).toBe('error: key given for cluster "west", which is not in --cluster');
    expect(
      await meridian(
        'federation',
        'nats-config',
        '--mesh',
        'prod',
        '--cluster',
        'east',
        '--public-key',
        'east=nope',
      ),
    ).toBe(1);
    expect(err.at(-1)).toBe('error: public key of cluster "east" is not a user nkey: "nope"');
  });

  it('creds prints a public key matching the seed it writes; permissions prints JSON', async () => {
    out.length = 0;
    const file = join(dir, 'north.nk');
    expect(await meridian('federation', 'creds', '--cluster', 'north', '--out', file)).toBe(0);
    expect(out).toEqual([publicKeyOfSeed(await readFile(file, 'utf8'))]);
    out.length = 0;
    expect(await meridian('federation', 'permissions', '--mesh', 'prod', '--cluster', 'north')).toBe(0);
    const p = JSON.parse(out.join('\n')) as { publish: { allow: string[] } };
    expect(p.publish.allow[0]).toBe('meridian.prod.fed.north.>');
  });
});
