// `meridian ca ...`: mesh root, per-cluster intermediates (Istio plug-in CA layout), installation into
// a cluster's etcd with the key sealed under a key-encryption key, and the root rotation steps.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  addRootToBundle,
  type ClusterCaMaterial,
  caStoreFrom,
  createIntermediateCa,
  createRootCa,
  generateKek,
  installClusterCa,
  KEK_ENV,
  loadKek,
  publicJwkOf,
  publishTokenKey,
  type RootKeyType,
  readPluginCa,
  readRootCa,
  reissueIntermediate,
  removeRootFromBundle,
  SigningCa,
  writePluginCa,
  writeRootCa,
} from '@meridian/ca';
import { DEFAULT_MESH_ID, EtcdStore, Keyspace } from '@meridian/store';
import { type Command, Option } from 'commander';
import { type CliContext, parseDuration, parseList, readFlagFile } from '../context.js';

const ROOT_KEY_TYPES = ['rsa4096', 'ecdsa-p384', 'ecdsa-p256'] as const;
const INTERMEDIATE_KEY_TYPES = ['rsa2048', 'rsa3072', 'rsa4096', 'ecdsa-p256', 'ecdsa-p384'] as const;
type IntermediateKeyType = (typeof INTERMEDIATE_KEY_TYPES)[number];

/** Cluster id and trust domain of a plug-in directory, kept next to Istio's files. */
const IDS_FILE = 'meridian.json';

async function clusterIds(
  dir: string,
  flags: { cluster?: string; trustDomain?: string },
): Promise<{ clusterId: string; trustDomain: string }> {
  let saved: { clusterId?: string; trustDomain?: string } = {};
  try {
    saved = JSON.parse(await readFile(join(dir, IDS_FILE), 'utf8'));
  } catch {
    // An Istio plug-in directory has no meridian.json: the flags must say it.
  }
  const clusterId = flags.cluster ?? saved.clusterId;
  const trustDomain = flags.trustDomain ?? saved.trustDomain;
  if (!clusterId) throw new Error(`${dir}: no ${IDS_FILE}; give --cluster`);
  if (!trustDomain) throw new Error(`${dir}: no ${IDS_FILE}; give --trust-domain`);
  return { clusterId, trustDomain };
}

async function writeCluster(dir: string, m: ClusterCaMaterial): Promise<void> {
  await writePluginCa(dir, m);
  await writeFile(
    join(dir, IDS_FILE),
    `${JSON.stringify({ clusterId: m.clusterId, trustDomain: m.trustDomain }, null, 2)}\n`,
  );
}

interface InstallFlags {
  etcd?: string[];
  mesh?: string;
  kekFile?: string;
  tokenKey?: string;
}

function addInstallOptions(cmd: Command, required: boolean): Command {
  const etcd = new Option('--etcd <urls>', 'etcd client URLs of the cluster, comma-separated').argParser(
    parseList,
  );
  if (required) etcd.makeOptionMandatory();
  return cmd
    .addOption(etcd)
    .option(
      '--mesh <id>',
      "mesh id: meridiand's --mesh-id (etcd keyspace /meridian/<mesh>/<cluster>/)",
      DEFAULT_MESH_ID,
    )
    .option('--kek-file <file>', 'key-encryption key file (default: $MERIDIAN_CA_KEK)');
}

async function install(ctx: CliContext, m: ClusterCaMaterial, flags: InstallFlags): Promise<void> {
  if (!flags.etcd) return;
  const kek = await loadKek({ file: flags.kekFile, value: process.env[KEK_ENV] });
  const store = await EtcdStore.connect({
    endpoints: flags.etcd,
    keyspace: Keyspace.of(flags.mesh ?? DEFAULT_MESH_ID, m.clusterId),
  });
  try {
    await installClusterCa(caStoreFrom(store), m, kek);
    if (flags.tokenKey) {
      await publishTokenKey(
        caStoreFrom(store),
        await publicJwkOf(await readFlagFile('--token-key', flags.tokenKey)),
      );
    }
    ctx.out(
      `installed the CA of cluster ${m.clusterId} into ${store.keyspace.root} (key sealed with AES-256-GCM)`,
    );
  } finally {
    await store.close();
  }
}

/** Registers `meridian ca` and its subcommands. */
export function registerCaCommands(program: Command, ctx: CliContext): void {
  const ca = program.command('ca').description('mesh root CA, cluster intermediate CAs, rotation');

  ca.command('init')
    .description('create the mesh root CA (key and self-signed certificate) in a directory kept offline')
    .requiredOption('--out <dir>', 'directory for root-cert.pem, root-key.pem, mesh.json')
    .addOption(new Option('--key-type <type>', 'root key type').choices(ROOT_KEY_TYPES).default('ecdsa-p384'))
    .option('--validity <duration>', 'root validity', parseDuration, parseDuration('87600h'))
    .option('--trust-domain <domain>', 'SPIFFE trust domain of the mesh', 'cluster.local')
    .option('--force', 'overwrite an existing root')
    .action(
      async (o: {
        out: string;
        keyType: RootKeyType;
        validity: number;
        trustDomain: string;
        force?: boolean;
      }) => {
        if (!o.force) {
          const exists = await readFile(join(o.out, 'root-key.pem')).then(
            () => true,
            () => false,
          );
          if (exists)
            throw new Error(`${join(o.out, 'root-key.pem')} exists; refusing to overwrite it (use --force)`);
        }
        const root = createRootCa({ trustDomain: o.trustDomain, keyType: o.keyType, validityMs: o.validity });
        await writeRootCa(o.out, root);
        ctx.out(`root CA for trust domain ${root.trustDomain} written to ${o.out} (${o.keyType})`);
      },
    );

  addInstallOptions(
    ca
      .command('intermediate')
      .description("issue a cluster's intermediate CA under the root, in Istio's plug-in CA layout")
      .requiredOption('--root-dir <dir>', 'directory written by `ca init`')
      .requiredOption('--cluster <id>', 'cluster id (goes into the subject)')
      .option('--name-constraint', 'restrict the intermediate to URIs of the trust domain')
      .option('--out <dir>', 'output directory (default: <root-dir>/clusters/<cluster>)')
      .addOption(
        new Option('--key-type <type>', 'intermediate key type')
          .choices(INTERMEDIATE_KEY_TYPES)
          .default('rsa2048'),
      )
      .option('--validity <duration>', 'intermediate validity', parseDuration, parseDuration('8760h')),
    false,
  ).action(
    async (
      o: {
        rootDir: string;
        cluster: string;
        nameConstraint?: boolean;
        out?: string;
        keyType: IntermediateKeyType;
        validity: number;
      } & InstallFlags,
    ) => {
      const root = await readRootCa(o.rootDir);
      const m = createIntermediateCa({
        root,
        clusterId: o.cluster,
        trustDomain: root.trustDomain,
        nameConstraint: o.nameConstraint,
        keyType: o.keyType,
        validityMs: o.validity,
      });
      const out = o.out ?? join(o.rootDir, 'clusters', o.cluster);
      await writeCluster(out, m);
      ctx.out(
        `intermediate CA for cluster ${o.cluster} written to ${out} (root-cert.pem, ca-cert.pem, ca-key.pem, cert-chain.pem)`,
      );
      await install(ctx, m, o);
    },
  );

  addInstallOptions(
    ca
      .command('install')
      .description("install a plug-in CA directory (ours or Istio's) into the cluster's etcd, key sealed")
      .requiredOption('--dir <dir>', 'directory with root-cert.pem, ca-cert.pem, ca-key.pem, cert-chain.pem')
      .option('--cluster <id>', 'cluster id (default: from meridian.json)')
      .option('--trust-domain <domain>', 'trust domain (default: from meridian.json)')
      .option('--token-key <file>', 'also publish the verification key of this token signing key'),
    true,
  ).action(async (o: { dir: string; cluster?: string; trustDomain?: string } & InstallFlags) => {
    const m = await readPluginCa(o.dir, await clusterIds(o.dir, o));
    await install(ctx, m, o);
  });

  ca.command('kek')
    .description('create a random key-encryption key file (32 bytes, base64; keep it out of etcd)')
    .requiredOption('--out <file>', 'file to write (mode 0600)')
    .action(async (o: { out: string }) => {
      await writeFile(o.out, `${generateKek()}\n`, { mode: 0o600, flag: 'wx' });
      ctx.out(`key-encryption key written to ${o.out}`);
    });

  const rotate = ca
    .command('rotate')
    .description(
      'root rotation, one step at a time, on every cluster: add-root, intermediate, (workloads renew), remove-root',
    );

  addInstallOptions(
    rotate
      .command('add-root')
      .description("step 1: add the new root to a cluster's trust bundle")
      .requiredOption('--dir <dir>', "the cluster's plug-in CA directory")
      .requiredOption('--new-root-dir <dir>', 'directory of the new root (`ca init`)'),
    false,
  ).action(async (o: { dir: string; newRootDir: string } & InstallFlags) => {
    const m = await readPluginCa(o.dir, await clusterIds(o.dir, {}));
    const next = addRootToBundle(m, (await readRootCa(o.newRootDir)).certPem);
    await writeCluster(o.dir, next);
    ctx.out(
      `${m.clusterId}: trust bundle now holds ${SigningCa.fromMaterial(next).trustBundle.roots.length} roots`,
    );
    await install(ctx, next, o);
  });

  addInstallOptions(
    rotate
      .command('intermediate')
      .description("step 2: re-issue a cluster's intermediate under the new root (after add-root everywhere)")
      .requiredOption('--dir <dir>', "the cluster's plug-in CA directory")
      .requiredOption('--new-root-dir <dir>', 'directory of the new root (`ca init`)')
      .option('--name-constraint', 'restrict the intermediate to URIs of the trust domain')
      .addOption(
        new Option('--key-type <type>', 'intermediate key type')
          .choices(INTERMEDIATE_KEY_TYPES)
          .default('rsa2048'),
      ),
    false,
  ).action(
    async (
      o: {
        dir: string;
        newRootDir: string;
        nameConstraint?: boolean;
        keyType: IntermediateKeyType;
      } & InstallFlags,
    ) => {
      const m = await readPluginCa(o.dir, await clusterIds(o.dir, {}));
      const next = reissueIntermediate(m, await readRootCa(o.newRootDir), {
        nameConstraint: o.nameConstraint,
        keyType: o.keyType,
      });
      await writeCluster(o.dir, next);
      ctx.out(`${m.clusterId}: intermediate re-issued under the new root`);
      await install(ctx, next, o);
    },
  );

  addInstallOptions(
    rotate
      .command('remove-root')
      .description('step 4: remove the old root from the bundle (after every workload renewed)')
      .requiredOption('--dir <dir>', "the cluster's plug-in CA directory")
      .requiredOption('--old-root-dir <dir>', 'directory of the old root'),
    false,
  ).action(async (o: { dir: string; oldRootDir: string } & InstallFlags) => {
    const m = await readPluginCa(o.dir, await clusterIds(o.dir, {}));
    const next = removeRootFromBundle(m, (await readRootCa(o.oldRootDir)).certPem);
    await writeCluster(o.dir, next);
    ctx.out(
      `${m.clusterId}: old root removed; trust bundle holds ${SigningCa.fromMaterial(next).trustBundle.roots.length} root(s)`,
    );
    await install(ctx, next, o);
  });
}
