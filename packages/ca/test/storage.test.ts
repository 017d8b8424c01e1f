import {
  addRootToBundle,
  CA_KEYS,
  CaConfigError,
  caStoreFrom,
  createCsr,
  createRootCa,
  generateKek,
  installClusterCa,
  loadClusterCa,
  loadKek,
  MemoryCaStore,
  openPrivateKey,
  parseKek,
  type SigningCa,
  sealPrivateKey,
  WorkloadCertificateIssuer,
  watchClusterCa,
} from '@meridian/ca';
import { EtcdStore, Keyspace } from '@meridian/store';
import { type EtcdCluster, eventually, startEtcd } from '@meridian/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ecKey, id, makeMesh, opensslVerify, quietAudit, uri } from './helpers.js';

const mesh = makeMesh(['east', 'west']);
const kek = parseKek(generateKek(), 'test');

async function expectConfigError(p: Promise<unknown> | (() => unknown), message: string): Promise<void> {
  let err: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(CaConfigError);
  expect((err as Error).message).toBe(message);
}

describe('private key encryption at rest (AES-256-GCM, cluster id as associated data)', () => {
  const keyPem = mesh.clusters.east!.caKeyPem;
  const sealed = sealPrivateKey(keyPem, kek, 'east');

  it('round-trips and never stores the key in clear', () => {
    expect(JSON.stringify(sealed)).not.toContain('PRIVATE KEY');
    expect(openPrivateKey(sealed, kek, 'east')).toBe(keyPem);
  });

  it('refuses the wrong KEK, the wrong cluster id and altered data', async () => {
    const msg =
      'cannot decrypt the CA key of cluster "east": wrong key-encryption key, wrong cluster, or altered data';
    await expectConfigError(() => openPrivateKey(sealed, parseKek(generateKek(), 'other'), 'east'), msg);
    await expectConfigError(
      () => openPrivateKey(sealed, kek, 'west'),
      'cannot decrypt the CA key of cluster "west": wrong key-encryption key, wrong cluster, or altered data',
    );
    const ct = Buffer.from(sealed.ciphertext, 'base64');
    ct[10] = ct[10]! ^ 1;
    await expectConfigError(
      () => openPrivateKey({ ...sealed, ciphertext: ct.toString('base64') }, kek, 'east'),
      msg,
    );
  });

  it('refuses a KEK of the wrong size', async () => {
    await expectConfigError(
      () => parseKek(Buffer.alloc(16).toString('base64'), 'MERIDIAN_CA_KEK'),
      'MERIDIAN_CA_KEK: the key-encryption key must be 32 bytes (base64 or hex)',
    );
  });

  it('loads the KEK from the text its caller read (no environment read here), else names the source', async () => {
    const text = generateKek();
    expect((await loadKek({ value: text })).equals(parseKek(text, 'test'))).toBe(true);
    await expectConfigError(
      () => loadKek({}),
      'no key-encryption key: set MERIDIAN_CA_KEK or give a key file',
    );
    await expectConfigError(
      () => loadKek({ value: Buffer.alloc(16).toString('base64'), source: 'KEK_X' }),
      'KEK_X: the key-encryption key must be 32 bytes (base64 or hex)',
    );
  });

  it('a record installed for one cluster does not load in another', async () => {
    const store = new MemoryCaStore();
    await installClusterCa(store, mesh.clusters.east!, kek);
    await expectConfigError(
      loadClusterCa(store, { clusterId: 'west', kek }),
      'ca/intermediate: record is for cluster "east", this replica is in "west"',
    );
    await expectConfigError(
      loadClusterCa(new MemoryCaStore(), { clusterId: 'west', kek }),
      'no CA installed for cluster "west" (run: meridian ca install --cluster west)',
    );
  });
});

describe('installation into a real etcd, loaded by every replica', () => {
  let etcd: EtcdCluster;
  const stores: EtcdStore[] = [];

  beforeAll(async () => {
    etcd = await startEtcd();
  });
  afterAll(async () => {
    for (const s of stores) await s.close();
    await etcd?.stop();
  });

  const connect = async () => {
    const s = await EtcdStore.connect({ endpoints: etcd.endpoints, keyspace: Keyspace.of('mesh1', 'east') });
    stores.push(s);
    return s;
  };

  it('installs once; two replicas load it, sign with it, and follow a rotation step', async () => {
    const installer = await connect();
    await installClusterCa(caStoreFrom(installer), mesh.clusters.east!, kek);

    const raw = await installer.get(CA_KEYS.intermediate);
    const text = new TextDecoder().decode(raw!.value);
    expect(text).toContain('BEGIN CERTIFICATE');
    expect(text).not.toContain('PRIVATE KEY');

    const replicas: SigningCa[][] = [[], []];
    const loaded = await Promise.all(
      [0, 1].map(async (i) => {
        const { ca, watch } = await watchClusterCa(await connect(), { clusterId: 'east', kek }, (c) =>
          replicas[i]!.push(c),
        );
        return { ca, watch };
      }),
    );
    try {
      for (const { ca } of loaded) {
        const issuer = new WorkloadCertificateIssuer(ca, { audit: quietAudit() });
        const alice = id('shop', 'alice');
        const out = issuer.issue({
          identity: alice,
          csrPem: createCsr({ key: ecKey(), uris: [uri(alice)] }),
        });
        expect(opensslVerify(out.certChain[2]!, out.certChain[1]!, out.certChain[0]!)).toContain('OK');
      }

      // Rotation step 1 written once; every replica reloads the CA with both roots in its bundle.
      const newRoot = createRootCa({ trustDomain: 'cluster.local', keyType: 'ecdsa-p256' });
      await installClusterCa(
        caStoreFrom(installer),
        addRootToBundle(mesh.clusters.east!, newRoot.certPem),
        kek,
      );
      await eventually('every replica reloaded', () => replicas.every((r) => r.length > 0), 10_000, 20);
      for (const r of replicas) expect(r.at(-1)!.trustBundle.roots).toHaveLength(2);
    } finally {
      for (const { watch } of loaded) await watch.close();
    }
  });
});
