// `meridian token create --single-use`: the printed token verifies as single-use (and without the flag
// as multi-use, as before), for the key written by `token keygen`.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { publicJwkOf, TokenVerifier } from '@meridian/ca';
import { run } from '@meridian/cli';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let dir: string;
const out: string[] = [];
const err: string[] = [];
const ctx = { out: (l: string) => out.push(l), err: (l: string) => err.push(l) };
const meridian = async (...args: string[]): Promise<number> => run(args, ctx);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meridian-cli-token-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('meridian token create', () => {
  it('--single-use prints a token that verifies as single-use; without it the token is multi-use', async () => {
    const key = join(dir, 'token-key.pem');
    expect(await meridian('token', 'keygen', '--out', key)).toBe(0);
    const verifier = new TokenVerifier('cluster.local', [await publicJwkOf(await readFile(key, 'utf8'))]);
    const identity = { trustDomain: 'cluster.local', namespace: 'shop', serviceAccount: 'alice' };

    const before = Date.now();
    expect(
      await meridian(
        'token',
        'create',
        '--ns',
        'shop',
        '--sa',
        'alice',
        '--ttl',
        '5m',
        '--key',
        key,
        '--single-use',
      ),
    ).toBe(0);
    const once = await verifier.verifyToken(out.at(-1)!);
    expect(once.identity).toEqual(identity);
    expect(once.singleUse).toBe(true);
    expect(once.jti).toMatch(/^[0-9a-f-]{36}$/);
    expect(once.expiresAt.getTime()).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000 + 300_000);
    expect(once.expiresAt.getTime()).toBeLessThanOrEqual(Date.now() + 300_000);

    expect(await meridian('token', 'create', '--ns', 'shop', '--sa', 'alice', '--key', key)).toBe(0);
    const multi = await verifier.verifyToken(out.at(-1)!);
    expect(multi.identity).toEqual(identity);
    expect(multi.singleUse).toBe(false);
    expect(err).toEqual([]);
  });
});
