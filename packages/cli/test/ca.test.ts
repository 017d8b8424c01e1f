import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CA_KEYS, caStoreFrom, loadClusterCa, parseKek, readTokenKeys, TokenVerifier } from '@meridian/ca';
import { run } from '@meridian/cli';
import { EtcdStore, Keyspace } from '@meridian/store';
import { type EtcdCluster, startEtcd } from '@meridian/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let dir: string;
const out: string[] = [];
const err: string[] = [];
const ctx = { out: (l: string) => out.push(l), err: (l: string) => err.push(l) };
const meridian = async (...args: string[]): Promise<number> => run(args, ctx);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meridian-cli-test-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const verify = (root: string, untrusted: string, leaf: string) =>
  execFileSync('openssl', ['verify', '-CAfile', root, '-untrusted', untrusted, leaf], { encoding: 'utf8' });

describe('meridian ca', () => {
  it('init, intermediate (plug-in layout, name constraint), rotate steps', async () => {
    const root = join(dir, 'root');
    expect(
      await meridian('ca', 'init', '--out', root, '--key-type', 'ecdsa-p256', '--validity', '8760h'),
    ).toBe(0);
    const rootCert = new X509Certificate(await readFile(join(root, 'root-cert.pem')));
    expect(rootCert.ca).toBe(true);
    expect(new Date(rootCert.validTo).getTime() - Date.now()).toBeGreaterThan(8759 * 3600_000);

    expect(await meridian('ca', 'init', '--out', root)).toBe(1);
    expect(err.at(-1)).toBe(
      `error: ${join(root, 'root-key.pem')} exists; refusing to overwrite it (use --force)`,
    );

    expect(
      await meridian('ca', 'intermediate', '--root-dir', root, '--cluster', 'east', '--name-constraint'),
    ).toBe(0);
    const east = join(root, 'clusters', 'east');
    for (const f of ['root-cert.pem', 'ca-cert.pem', 'ca-key.pem', 'cert-chain.pem']) {
      expect((await readFile(join(east, f), 'utf8')).length).toBeGreaterThan(0);
    }
    expect(
      verify(join(east, 'root-cert.pem'), join(east, 'root-cert.pem'), join(east, 'ca-cert.pem')),
    ).toContain('OK');
    const text = execFileSync('openssl', ['x509', '-noout', '-text', '-in', join(east, 'ca-cert.pem')], {
      encoding: 'utf8',
    });
    expect(text).toContain('OU = east');
    expect(text).toMatch(/Name Constraints: critical\s+Permitted:\s+URI:cluster.local/);

    // Rotation on the directory: add-root, intermediate, remove-root.
    const root2 = join(dir, 'root2');
    expect(await meridian('ca', 'init', '--out', root2, '--key-type', 'ecdsa-p256')).toBe(0);
    expect(await meridian('ca', 'rotate', 'remove-root', '--dir', east, '--old-root-dir', root)).toBe(1);
    expect(err.at(-1)).toBe(
      'error: cluster "east" still chains to the root being removed: re-issue its intermediate first (ca rotate intermediate)',
    );
    expect(await meridian('ca', 'rotate', 'add-root', '--dir', east, '--new-root-dir', root2)).toBe(0);
    expect(out.at(-1)).toBe('east: trust bundle now holds 2 roots');
    expect(await meridian('ca', 'rotate', 'intermediate', '--dir', east, '--new-root-dir', root2)).toBe(0);
    expect(
      verify(join(root2, 'root-cert.pem'), join(root2, 'root-cert.pem'), join(east, 'ca-cert.pem')),
    ).toContain('OK');
    expect(await meridian('ca', 'rotate', 'remove-root', '--dir', east, '--old-root-dir', root)).toBe(0);
    expect(await readFile(join(east, 'root-cert.pem'), 'utf8')).toBe(
      await readFile(join(root2, 'root-cert.pem'), 'utf8'),
    );
  });

  it('rejects bad flags with a clear message', async () => {
    expect(await meridian('ca', 'init', '--out', join(dir, 'x'), '--key-type', 'rsa1024')).toBe(2);
    expect(err.at(-1)).toBe(
      "error: option '--key-type <type>' argument 'rsa1024' is invalid. Allowed choices are rsa4096, ecdsa-p384, ecdsa-p256.",
    );
    expect(await meridian('ca', 'init', '--out', join(dir, 'x'), '--validity', '-5h')).toBe(2);
    expect(err.at(-1)).toBe(
      `error: option '--validity <duration>' argument '-5h' is invalid. "-5h" is not a duration (examples: 87600h, 24h, 30m, 90d)`,
    );
  });
});

describe('meridian token and ca install (real etcd)', () => {
  let etcd: EtcdCluster;
  beforeAll(async () => {
    etcd = await startEtcd();
  });
  afterAll(async () => {
    await etcd?.stop();
  });

  it('installs the sealed CA and the token key; tokens made by the CLI verify', async () => {
    const root = join(dir, 'root3');
    const kekFile = join(dir, 'kek');
    const tokenKey = join(dir, 'token-key.pem');
    expect(await meridian('ca', 'init', '--out', root, '--key-type', 'ecdsa-p256')).toBe(0);
    expect(await meridian('ca', 'kek', '--out', kekFile)).toBe(0);
    expect(await meridian('token', 'keygen', '--out', tokenKey)).toBe(0);
    expect(
      await meridian(
        'ca',
        'intermediate',
        '--root-dir',
        root,
        '--cluster',
        'west',
        '--key-type',
        'ecdsa-p256',
      ),
    ).toBe(0);
    const etcdArg = etcd.endpoints.join(',');
    const west = join(root, 'clusters', 'west');
    expect(
      await meridian(
        'ca',
        'install',
        '--dir',
        west,
        '--etcd',
        etcdArg,
        '--mesh',
        'm1',
        '--kek-file',
        kekFile,
        '--token-key',
        tokenKey,
      ),
    ).toBe(0);
    expect(out.at(-1)).toBe(
      'installed the CA of cluster west into /meridian/m1/west/ (key sealed with AES-256-GCM)',
    );

    const store = await EtcdStore.connect({ endpoints: etcd.endpoints, keyspace: Keyspace.of('m1', 'west') });
    try {
      const raw = new TextDecoder().decode((await store.get(CA_KEYS.intermediate))!.value);
      expect(raw).not.toContain('PRIVATE KEY');
      const kek = parseKek(await readFile(kekFile, 'utf8'), kekFile);
      const ca = await loadClusterCa(caStoreFrom(store), { clusterId: 'west', kek });
      expect(ca.cert.pem).toBe(await readFile(join(west, 'ca-cert.pem'), 'utf8'));

      expect(
        await meridian('token', 'create', '--ns', 'shop', '--sa', 'alice', '--ttl', '10m', '--key', tokenKey),
      ).toBe(0);
      const token = out.at(-1)!;
      const verifier = new TokenVerifier('cluster.local', await readTokenKeys(caStoreFrom(store)));
      expect(await verifier.verify(token)).toEqual({
        trustDomain: 'cluster.local',
        namespace: 'shop',
        serviceAccount: 'alice',
      });
    } finally {
      await store.close();
    }
  });
});
