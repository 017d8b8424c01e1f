// Federation settings of meridiand (issue 7): NATS URLs, credentials, grace period, export selection.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateClusterCredentials } from '@meridian/federation';
import { afterAll, describe, expect, it } from 'vitest';
import { ServerConfigError } from '../src/errors.js';
import { exportSelection, natsAuthenticator } from '../src/federation.js';
import { resolveOptions } from '../src/options.js';

const dir = mkdtempSync(join(tmpdir(), 'meridian-fed-options-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('federation settings', () => {
  it('single-cluster by default; 30 s grace; export all', () => {
    const o = resolveOptions([], {});
    expect(o.natsUrls).toEqual([]);
    expect(o.natsCreds).toBe('');
    expect(o.federationGraceSeconds).toBe(30);
    expect(o.federationExport).toBe('all');
  });

  it('takes several NATS URLs, repeated or comma-separated, and the environment', () => {
    expect(
      resolveOptions(['--nats-url', 'nats://a:4222', '--nats-url=nats://b:4222,nats://c:4222'], {}).natsUrls,
    ).toEqual(['nats://a:4222', 'nats://b:4222', 'nats://c:4222']);
    const o = resolveOptions([], {
      MERIDIAN_NATS_URL: 'nats://x:4222',
      MERIDIAN_FEDERATION_GRACE: '5',
      MERIDIAN_FEDERATION_EXPORT: 'marked',
    });
    expect([o.natsUrls, o.federationGraceSeconds, o.federationExport]).toEqual([
      ['nats://x:4222'],
      5,
      'marked',
    ]);
  });

  it('names the bad setting', () => {
    expect(() => resolveOptions(['--federation-grace', '0'], {})).toThrow(
      new ServerConfigError('--federation-grace', 'expected a whole number >= 1, got "0"'),
    );
    expect(() => exportSelection('some')).toThrow(
      new ServerConfigError('--federation-export', 'expected "all" or "marked", got "some"'),
    );
    expect(exportSelection('marked')).toEqual({ mode: 'marked' });
  });

  it('reads an nkey seed file or a .creds file; rejects anything else, naming the file', () => {
    const creds = generateClusterCredentials('east');
    const seed = join(dir, 'east.nk');
    writeFileSync(seed, `${creds.seed}\n`);
    expect(typeof natsAuthenticator(seed)).toBe('function');
    expect(natsAuthenticator('')).toBeUndefined();
    const bad = join(dir, 'bad.nk');
    writeFileSync(bad, 'not a seed');
    expect(() => natsAuthenticator(bad)).toThrow(
      new ServerConfigError('--nats-creds', `${bad} is neither a NATS .creds file nor an nkey user seed`),
    );
    const missing = join(dir, 'missing.nk');
    expect(() => natsAuthenticator(missing)).toThrow(ServerConfigError);
    expect(() => natsAuthenticator(missing)).toThrow(`cannot read ${missing}`);
  });
});
