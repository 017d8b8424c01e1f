// `meridian manifest generate`: one cluster's Kubernetes manifests. The public manifests go to
// stdout or to files; the Secrets (intermediate CA, key-encryption key, webhook key, NATS seed) only
// to `<out>/secrets.yaml` (mode 0600), never to the terminal.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  CaAudit,
  type ClusterCaMaterial,
  createIntermediateCa,
  generateKek,
  parseKek,
  readPluginCa,
  readRootCa,
  SigningCa,
  validateClusterId,
  WorkloadCertificateIssuer,
} from '@meridian/ca';
import { publicKeyOfSeed } from '@meridian/federation';
import { DEFAULT_MESH_ID } from '@meridian/store';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { stringify } from 'yaml';
import { type CliContext, parseList, readFlagFile, UsageError } from '../context.js';
import { generateManifests } from './generate.js';
import {
  type K8sObject,
  type ManifestSettings,
  NAMES,
  type SecretMaterial,
  webhookDnsName,
} from './model.js';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const QUANTITY = /^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$/;

const positiveInt = (flag: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1)
    throw new InvalidArgumentError(`${flag}: expected a whole number >= 1, got "${v}"`);
  return n;
};

function checkUrl(flag: string, value: string, schemes: readonly string[]): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InvalidArgumentError(
      `${flag}: "${value}" is not a URL (${schemes.map((s) => `${s}://host:port`).join(' or ')})`,
    );
  }
  if (!schemes.includes(url.protocol.slice(0, -1)) || !url.hostname || !url.port)
    throw new InvalidArgumentError(
      `${flag}: expected ${schemes.map((s) => `${s}://host:port`).join(' or ')}, got "${value}"`,
    );
  return value;
}

/** `--peer west=nats://host:7222`, repeated. */
function collectPeer(value: string, previous: { cluster: string; url: string }[] = []) {
  const eq = value.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError(`--peer: expected <cluster>=nats://host:port, got "${value}"`);
  const cluster = value.slice(0, eq);
  if (!DNS_LABEL.test(cluster)) throw new InvalidArgumentError(`--peer: invalid cluster id "${cluster}"`);
  if (previous.some((p) => p.cluster === cluster))
    throw new InvalidArgumentError(`--peer: cluster "${cluster}" given twice`);
  return [...previous, { cluster, url: checkUrl(`--peer ${cluster}`, value.slice(eq + 1), ['nats']) }];
}

interface GenerateFlags {
  cluster: string;
  meshId: string;
  namespace: string;
  trustDomain?: string;
  replicas: number;
  zones: string[];
  peer: { cluster: string; url: string }[];
  etcdEndpoints?: string[];
  etcdStatefulset?: boolean;
  image: string;
  etcdImage: string;
  natsImage: string;
  etcdStorage: string;
  natsStorage: string;
  rootDir?: string;
  caDir?: string;
  kekFile?: string;
  natsAuthDir?: string;
  natsGatewayAdvertise?: string;
  plaintextXds?: boolean;
  webhookFailurePolicy: 'Fail' | 'Ignore';
  webhookValidity: number;
  out?: string;
  layout: 'files' | 'single';
  force?: boolean;
}

function isClusterId(id: string): boolean {
  try {
    validateClusterId(id);
    return true;
  } catch {
    return false;
  }
}

/**
 * A multi-document YAML text of `objects`, written as YAML 1.1 (what kubectl reads): strings such
 * as `off`, `on`, `yes` or `0755` are quoted so they stay strings; no anchors, no folded lines.
 */
export function toYaml(objects: readonly K8sObject[]): string {
  const options = { lineWidth: 0, aliasDuplicateObjects: false, version: '1.1' } as const;
  return objects.map((o) => `---\n${stringify(o, options)}`).join('');
}

/** The file name of one object in the `files` layout: `NN-kind-name.yaml` (kubectl applies in order). */
export function fileNameOf(index: number, o: K8sObject): string {
  return `${String(index).padStart(2, '0')}-${o.kind.toLowerCase()}-${o.metadata.name}.yaml`;
}

async function exists(path: string): Promise<boolean> {
  return readFile(path).then(
    () => true,
    () => false,
  );
}

/** Makes or reads this cluster's CA material, the KEK, the webhook certificate and the NATS seed. */
async function material(o: GenerateFlags, trustDomainFlag: string | undefined) {
  let root: { certPem: string; trustDomain: string } | undefined;
  let ca: ClusterCaMaterial;
  if (o.caDir) {
    const ids = await readFile(join(o.caDir, 'meridian.json'), 'utf8').then(
      (t) => JSON.parse(t) as { clusterId?: string; trustDomain?: string },
      () => ({}) as { clusterId?: string; trustDomain?: string },
    );
    if (ids.clusterId !== undefined && ids.clusterId !== o.cluster)
      throw new UsageError(
        `--ca-dir ${o.caDir}: holds the CA of cluster "${ids.clusterId}", not "${o.cluster}"`,
      );
    const trustDomain = trustDomainFlag ?? ids.trustDomain;
    if (!trustDomain) throw new Error(`--ca-dir ${o.caDir}: no meridian.json; give --trust-domain`);
    ca = await readPluginCa(o.caDir, { clusterId: o.cluster, trustDomain });
  } else if (o.rootDir) {
    const r = await readRootCa(o.rootDir);
    if (trustDomainFlag && trustDomainFlag !== r.trustDomain)
      throw new Error(
        `--trust-domain ${trustDomainFlag}: the root in ${o.rootDir} is for "${r.trustDomain}"`,
      );
    root = r;
    ca = createIntermediateCa({ root: r, clusterId: o.cluster, trustDomain: r.trustDomain });
  } else
    throw new UsageError(
      "give --root-dir (the mesh root, `meridian ca init`) or --ca-dir (this cluster's plug-in CA)",
    );
  const kek = o.kekFile ? (await readFlagFile('--kek-file', o.kekFile)).trim() : generateKek();
  parseKek(kek, '--kek-file');
  const issuer = new WorkloadCertificateIssuer(SigningCa.fromMaterial(ca), {
    audit: CaAudit.silent(),
    maxTtlSeconds: Math.ceil(o.webhookValidity / 1000),
  });
  const serving = issuer.issueServingCertificate(
    [webhookDnsName(o.namespace)],
    Math.floor(o.webhookValidity / 1000),
  );
  let natsSeed: string | undefined;
  let natsAuthConf: string | undefined;
  if (o.natsAuthDir) {
    natsAuthConf = await readFlagFile(
      '--nats-auth-dir',
      join(o.natsAuthDir, 'meridian-federation-auth.conf'),
    );
    natsSeed = (await readFlagFile('--nats-auth-dir', join(o.natsAuthDir, `${o.cluster}.nk`))).trim();
    const publicKey = publicKeyOfSeed(natsSeed);
    if (!natsAuthConf.includes(publicKey))
      throw new Error(
        `--nats-auth-dir ${o.natsAuthDir}: ${o.cluster}.nk is not a user of meridian-federation-auth.conf (re-run meridian federation nats-config)`,
      );
  }
  const secret: SecretMaterial = {
    pluginCa: {
      'ca-cert.pem': ca.caCertPem,
      'ca-key.pem': ca.caKeyPem,
      'root-cert.pem': ca.rootCertPem,
      'cert-chain.pem': ca.certChainPem,
    },
    kek,
    webhookCertPem: serving.certChain.slice(0, -1).join(''),
    webhookKeyPem: serving.keyPem,
    ...(natsSeed ? { natsSeed } : {}),
  };
  return {
    trustDomain: ca.trustDomain,
    rootCertPem: ca.rootCertPem,
    secret,
    natsAuthConf,
    fresh: root !== undefined,
  };
}

/** Registers `meridian manifest` and its subcommands. */
export function registerManifestCommands(program: Command, ctx: CliContext): void {
  const manifest = program.command('manifest').description('Kubernetes manifests of one Meridian cluster');
  manifest
    .command('generate')
    .description(
      "one cluster's manifests: namespace, RBAC, meridiand (Deployment, PDB, Services), etcd, NATS, the CA and webhook Secrets, the ValidatingWebhookConfiguration",
    )
    .requiredOption('--cluster <id>', 'cluster id (meridiand --cluster-id)')
    .option('--mesh-id <id>', 'mesh id (meridiand --mesh-id)', DEFAULT_MESH_ID)
    .option('--namespace <ns>', 'namespace of the control plane', 'meridian-system')
    .option('--trust-domain <domain>', "trust domain (default: the root's)")
    .option('--replicas <n>', 'meridiand replicas', positiveInt('--replicas'), 3)
    .addOption(
      new Option('--zones <a,b,c>', 'zones the replicas are confined to and spread over')
        .argParser(parseList)
        .default([], 'any zone, spread'),
    )
    .addOption(
      new Option(
        '--peer <cluster=url>',
        "another cluster's NATS gateway (nats://host:7222); repeat per cluster",
      )
        .argParser(collectPeer)
        .default([], 'none'),
    )
    .addOption(
      new Option(
        '--etcd-endpoints <urls>',
        'client URLs of an existing etcd, comma-separated (no etcd is generated)',
      )
        .argParser(parseList)
        .conflicts('etcdStatefulset'),
    )
    .option('--etcd-statefulset', 'generate a 3-member etcd StatefulSet (the default)')
    .option('--image <ref>', 'meridian image (node 20, meridiand and meridian on PATH)', 'meridian:0.1.0')
    .option('--etcd-image <ref>', 'etcd image', 'quay.io/coreos/etcd:v3.5.17')
    .option('--nats-image <ref>', 'NATS server image', 'nats:2.10-alpine')
    .option('--etcd-storage <size>', 'volume size per etcd member', '10Gi')
    .option('--nats-storage <size>', 'JetStream volume size per NATS server', '10Gi')
    .option(
      '--root-dir <dir>',
      'mesh root (`meridian ca init`): a new intermediate is issued for this cluster',
    )
    .option(
      '--ca-dir <dir>',
      "this cluster's plug-in CA directory (`meridian ca intermediate`), used as it is",
    )
    .option('--kek-file <file>', 'key-encryption key to reuse (default: a new one)')
    .option(
      '--nats-auth-dir <dir>',
      "`meridian federation nats-config` output: NATS users on, this cluster's seed as a Secret",
    )
    .option(
      '--nats-gateway-advertise <host:port>',
      "address the other clusters reach this cluster's NATS gateway at",
    )
    .option('--plaintext-xds', 'also serve plaintext xDS on 15010 (default: xDS over mTLS on 15012 only)')
    .addOption(
      new Option('--webhook-failure-policy <policy>', 'when the webhook cannot be reached')
        .choices(['Fail', 'Ignore'])
        .default('Fail'),
    )
    .option(
      '--webhook-validity <days>',
      'validity of the webhook serving certificate (days)',
      positiveInt('--webhook-validity'),
      365,
    )
    .option(
      '-o, --out <dir>',
      'write one file per object and secrets.yaml (mode 0600) here (default: stdout, no Secrets)',
    )
    .addOption(
      new Option('--layout <layout>', 'files: one per object; single: <cluster>.yaml')
        .choices(['files', 'single'])
        .default('files'),
    )
    .option('--force', 'overwrite an existing secrets.yaml')
    .action(async (raw: GenerateFlags & { webhookValidity: number }) => {
      const o: GenerateFlags = { ...raw, webhookValidity: raw.webhookValidity * 86_400_000 };
      // The id goes into object names and labels too: a DNS-1123 label, and a valid Meridian cluster id.
      if (!DNS_LABEL.test(o.cluster) || !isClusterId(o.cluster))
        throw new UsageError(
          `--cluster: invalid cluster id "${o.cluster}" (lower-case letters, digits and "-", as a Kubernetes name)`,
        );
      if (!DNS_LABEL.test(o.namespace))
        throw new UsageError(`--namespace: "${o.namespace}" is not a DNS-1123 label`);
      if (o.rootDir && o.caDir) throw new UsageError('give --root-dir or --ca-dir, not both');
      for (const p of o.peer)
        if (p.cluster === o.cluster) throw new UsageError(`--peer ${p.cluster}: that is this cluster`);
      try {
        for (const e of o.etcdEndpoints ?? []) checkUrl('--etcd-endpoints', e, ['http', 'https']);
      } catch (error) {
        throw new UsageError((error as Error).message);
      }
      for (const [flag, v] of [
        ['--etcd-storage', o.etcdStorage],
        ['--nats-storage', o.natsStorage],
      ] as const)
        if (!QUANTITY.test(v))
          throw new UsageError(`${flag}: "${v}" is not a Kubernetes quantity (e.g. 10Gi)`);
      if (o.natsGatewayAdvertise && !/^[^\s:]+:\d+$/.test(o.natsGatewayAdvertise))
        throw new UsageError(`--nats-gateway-advertise: expected host:port, got "${o.natsGatewayAdvertise}"`);
      const secretsFile = o.out ? join(o.out, 'secrets.yaml') : undefined;
      if (secretsFile && !o.force && (await exists(secretsFile)))
        throw new Error(`${secretsFile} exists; refusing to overwrite this cluster's keys (use --force)`);

      const m = await material(o, o.trustDomain);
      const settings: ManifestSettings = {
        cluster: o.cluster,
        meshId: o.meshId,
        namespace: o.namespace,
        trustDomain: m.trustDomain,
        replicas: o.replicas,
        zones: o.zones,
        peers: o.peer,
        ...(o.etcdEndpoints ? { etcdEndpoints: o.etcdEndpoints } : {}),
        image: o.image,
        etcdImage: o.etcdImage,
        natsImage: o.natsImage,
        etcdStorage: o.etcdStorage,
        natsStorage: o.natsStorage,
        plaintextXds: o.plaintextXds === true,
        webhookFailurePolicy: o.webhookFailurePolicy,
        ...(o.natsGatewayAdvertise ? { natsGatewayAdvertise: o.natsGatewayAdvertise } : {}),
        ...(m.natsAuthConf ? { natsAuthConf: m.natsAuthConf } : {}),
      };
      const set = generateManifests(settings, { rootCertPem: m.rootCertPem }, m.secret);
      if (!o.out) {
        ctx.out(toYaml(set.manifests).trimEnd());
        ctx.err(`# Secrets not written (they hold private keys): give -o DIR to write ${'secrets.yaml'}`);
        return;
      }
      await mkdir(o.out, { recursive: true });
      if (o.layout === 'single') await writeFile(join(o.out, `${o.cluster}.yaml`), toYaml(set.manifests));
      else
        await Promise.all(
          set.manifests.map((obj, i) => writeFile(join(o.out!, fileNameOf(i, obj)), toYaml([obj]))),
        );
      await writeFile(secretsFile!, toYaml(set.secrets), { mode: 0o600 });
      ctx.out(
        `${set.manifests.length} objects for cluster ${o.cluster} written to ${o.out}${o.layout === 'single' ? `/${o.cluster}.yaml` : ''}; ` +
          `${set.secrets.length} Secrets (${set.secrets.map((s) => s.metadata.name).join(', ')}) to ${secretsFile} (mode 0600, keep it out of git)`,
      );
      ctx.out(
        m.fresh
          ? `a new intermediate CA for ${o.cluster} was issued under the root; the ${NAMES.caInstall} Job installs it into etcd`
          : `the plug-in CA of ${o.caDir} is used; the ${NAMES.caInstall} Job installs it into etcd`,
      );
    });
}
