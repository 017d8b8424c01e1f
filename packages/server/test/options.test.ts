import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ServerConfigError } from '../src/errors.js';
import { splitAddress } from '../src/listen-address.js';
import { resolveOptions } from '../src/options.js';

const dir = mkdtempSync(join(tmpdir(), 'meridian-options-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('meridiand settings', () => {
  it('takes flags over environment over config file over defaults', () => {
    const file = join(dir, 'meridiand.yaml');
    writeFileSync(
      file,
      'meshId: from-file\nclusterId: file-cluster\nlocality: r/z\netcdEndpoints: [http://e1:2379, http://e2:2379]\n',
    );
    const o = resolveOptions(['--mesh-id', 'from-flag', '--config', file, '--debounce-ms=5'], {
      MERIDIAN_MESH_ID: 'from-env',
      MERIDIAN_CLUSTER_ID: 'env-cluster',
    });
    expect(o.meshId).toBe('from-flag');
    expect(o.clusterId).toBe('env-cluster');
    expect(o.locality).toBe('r/z');
    expect(o.etcdEndpoints).toEqual(['http://e1:2379', 'http://e2:2379']);
    expect(o.debounceMs).toBe(5);
    expect(o.registrationTtlSeconds).toBe(15);
    expect(o.xdsAddress).toBe('0.0.0.0:15010');
  });

  it('names the bad setting', () => {
    expect(() => resolveOptions(['--registration-ttl', '0'], {})).toThrow(
      new ServerConfigError('--registration-ttl', 'expected a whole number >= 1, got "0"'),
    );
    expect(() => resolveOptions([], { MERIDIAN_ETCD_ENDPOINTS: ' , ' })).toThrow(
      new ServerConfigError('MERIDIAN_ETCD_ENDPOINTS', 'needs at least one value'),
    );
    expect(() => splitAddress('localhost', '--xds-address')).toThrow(
      new ServerConfigError('--xds-address', 'expected host:port, got "localhost"'),
    );
  });
});

describe('push pacing and the CA key as settings', () => {
  it('the maximum debounce delay defaults to 10 x the quiet period, at least 100 ms', () => {
    expect(resolveOptions([], {}).maxDebounceMs).toBe(1000);
    expect(resolveOptions(['--debounce-ms', '5'], {}).maxDebounceMs).toBe(100);
    expect(resolveOptions([], { MERIDIAN_DEBOUNCE_MS: '30' }).maxDebounceMs).toBe(300);
    expect(resolveOptions(['--debounce-ms', '30', '--max-debounce-ms', '40'], {}).maxDebounceMs).toBe(40);
    expect(resolveOptions([], { MERIDIAN_MAX_DEBOUNCE_MS: '0' }).maxDebounceMs).toBe(0);
  });

  it('the endpoint-only bound defaults to the quiet period, never past the maximum delay', () => {
    expect(resolveOptions([], {}).endpointDebounceMaxMs).toBe(100);
    expect(resolveOptions(['--debounce-ms', '30'], {}).endpointDebounceMaxMs).toBe(30);
    expect(
      resolveOptions(['--debounce-ms', '300', '--max-debounce-ms', '200'], {}).endpointDebounceMaxMs,
    ).toBe(200);
    expect(resolveOptions([], { MERIDIAN_ENDPOINT_DEBOUNCE_MAX_MS: '500' }).endpointDebounceMaxMs).toBe(500);
  });

  it('push concurrency defaults to 100 and is at least 1', () => {
    expect(resolveOptions([], {}).pushConcurrency).toBe(100);
    expect(resolveOptions(['--push-concurrency=8'], {}).pushConcurrency).toBe(8);
    expect(() => resolveOptions([], { MERIDIAN_PUSH_CONCURRENCY: '0' })).toThrow(
      new ServerConfigError('MERIDIAN_PUSH_CONCURRENCY', 'expected a whole number >= 1, got "0"'),
    );
  });

  it('the key-encryption key comes from the environment only, never a flag or the file', () => {
    expect(resolveOptions([], {}).caKek).toBe('');
    expect(resolveOptions([], { MERIDIAN_CA_KEK: 'k' }).caKek).toBe('k');
    expect(() => resolveOptions(['--ca-kek', 'k'], {})).toThrow(/^--ca-kek: unknown flag/);
    const file = join(dir, 'kek-in-file.yaml');
    writeFileSync(file, 'caKek: k\n');
    expect(() => resolveOptions(['--config', file], {})).toThrow(
      expect.objectContaining({
        message: expect.stringContaining(`${file}: caKek: unknown setting (known: `),
      }),
    );
  });
});
