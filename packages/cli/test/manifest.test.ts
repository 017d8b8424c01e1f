// `meridian manifest generate` (issue 14, items 5 and 6): no Kubernetes cluster runs here, so every
// generated object is validated against the Kubernetes API schemas (kubernetes-models), the objects
// are checked to fit together (manifest-fit.ts), meridiand's environment is read by meridiand's own
// settings table, nats.conf by nats-server, and the webhook's Secret and caBundle by a real TLS
// handshake with the admission webhook. The committed two-cluster example is checked the same way.
import { execFile, execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer as createHttpsServer, request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ALL_KINDS } from '@meridian/api';
import {
  CaAudit,
  createIntermediateCa,
  createRootCa,
  SigningCa,
  WorkloadCertificateIssuer,
} from '@meridian/ca';
import { run } from '@meridian/cli';
import { resolveOptions, reviewAdmission, startAdmissionWebhook, usage } from '@meridian/server';
import { ValidatingWebhookConfiguration } from 'kubernetes-models/admissionregistration.k8s.io/v1/ValidatingWebhookConfiguration';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { Job } from 'kubernetes-models/batch/v1/Job';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import { ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { LOCALITY_FILE } from '../src/manifest/locality.js';
import {
  type K8sObject,
  MERIDIAND_PORTS,
  pluralOf,
  WEBHOOK_NAME,
  webhookDnsName,
} from '../src/manifest/model.js';
import { fitProblems } from './manifest-fit.js';

// biome-ignore lint/suspicious/noExplicitAny: walking untyped YAML
type Any = Record<string, any>;

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
let dir: string;
const out: string[] = [];
const err: string[] = [];
const ctx = { out: (l: string) => out.push(l), err: (l: string) => err.push(l) };
const meridian = (...args: string[]): Promise<number> => run(args, ctx);

const parse = (text: string): K8sObject[] =>
  parseAllDocuments(text)
    .map((d) => d.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null);

async function readDir(d: string): Promise<{ manifests: K8sObject[]; secrets: K8sObject[] }> {
  const files = (await readdir(d)).filter((f) => f.endsWith('.yaml')).sort();
  const manifests: K8sObject[] = [];
  let secrets: K8sObject[] = [];
  for (const f of files) {
    const objs = parse(await readFile(join(d, f), 'utf8'));
    if (f === 'secrets.yaml') secrets = objs;
    else manifests.push(...objs);
  }
  return { manifests, secrets };
}

/** The API schema models of the kinds generated, by `apiVersion/kind`. */
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'v1/Namespace': Namespace,
  'v1/ServiceAccount': ServiceAccount,
  'v1/Service': Service,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'apps/v1/Deployment': Deployment,
  'apps/v1/StatefulSet': StatefulSet,
  'batch/v1/Job': Job,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'rbac.authorization.k8s.io/v1/ClusterRole': ClusterRole,
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ClusterRoleBinding,
  'admissionregistration.k8s.io/v1/ValidatingWebhookConfiguration': ValidatingWebhookConfiguration,
};

/** Validates one object against the Kubernetes API schema of its apiVersion and kind. */
async function validate(o: K8sObject): Promise<void> {
  const Model = MODELS[`${o.apiVersion}/${o.kind}`];
  if (!Model) throw new Error(`no model for ${o.apiVersion} ${o.kind}`);
  try {
    new Model(o as never).validate();
  } catch (error) {
    throw new Error(`${o.kind}/${o.metadata.name}: ${(error as Error).message}`);
  }
}

const find = (objs: readonly K8sObject[], kind: string, name: string): Any => {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  if (!o) throw new Error(`${kind}/${name} not generated`);
  return o as Any;
};

const secretData = (objs: readonly K8sObject[], name: string, key: string): string =>
  Buffer.from(find(objs, 'Secret', name).data[key], 'base64').toString('utf8');

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meridian-manifest-test-'));
  expect(await meridian('ca', 'init', '--out', join(dir, 'root'), '--key-type', 'ecdsa-p256')).toBe(0);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('meridian manifest generate', () => {
  let east: { manifests: K8sObject[]; secrets: K8sObject[] };

  beforeAll(async () => {
    const code = await meridian(
      ...['manifest', 'generate', '--cluster', 'east', '--mesh-id', 'prod', '--replicas', '3'],
      ...['--zones', 'eu-1a,eu-1b,eu-1c', '--peer', 'west=nats://nats-gw.west.example.net:7222'],
      ...['--root-dir', join(dir, 'root'), '-o', join(dir, 'east')],
    );
    expect(code, err.join('\n')).toBe(0);
    east = await readDir(join(dir, 'east'));
  });

  it('writes objects that validate against the Kubernetes API schemas and fit together', async () => {
    const kinds = new Set(east.manifests.map((o) => o.kind));
    for (const k of [
      'Namespace',
      'ServiceAccount',
      'ClusterRole',
      'ClusterRoleBinding',
      'Deployment',
      'PodDisruptionBudget',
      'Service',
      'StatefulSet',
      'ConfigMap',
      'Job',
      'ValidatingWebhookConfiguration',
      'NetworkPolicy',
    ])
      expect(kinds, k).toContain(k);
    for (const o of [...east.manifests, ...east.secrets]) await validate(o);
    expect(fitProblems([...east.manifests, ...east.secrets])).toEqual([]);
    expect(east.manifests.some((o) => o.kind === 'Secret')).toBe(false);
    expect(east.secrets.map((s) => s.metadata.name).sort()).toEqual([
      'meridian-ca-kek',
      'meridian-cacerts',
      'meridian-webhook-tls',
    ]);
  });

  it('reads the same as YAML 1.1 (kubectl) and 1.2: `off`, `on` and the like stay strings', async () => {
    for (const f of await readdir(join(dir, 'east'))) {
      const text = await readFile(join(dir, 'east', f), 'utf8');
      const as11 = parseAllDocuments(text, { version: '1.1' }).map((d) => d.toJS());
      expect(as11, f).toEqual(parse(text));
      expect(text, f).not.toMatch(/[&*]a\d/);
    }
    const env = find(east.manifests, 'Deployment', 'meridiand').spec.template.spec.containers[0].env as Any[];
    expect(env.find((e) => e.name === 'MERIDIAN_XDS_ADDRESS')?.value).toBe('off');
  });

  it('the checks are not vacuous: a schema error and broken references are reported', async () => {
    const d = structuredClone(find(east.manifests, 'Deployment', 'meridiand'));
    d.spec.template.spec.containers[0].ports[0].containerPort = 'fifteen';
    await expect(validate(d as K8sObject)).rejects.toThrow(/containerPort must be integer/);
    const broken = structuredClone([...east.manifests, ...east.secrets]) as Any[];
    const svc = broken.find((o) => o.kind === 'Service' && o.metadata.name === 'meridiand-admin')!;
    svc.spec.ports[0].targetPort = 'http-admin';
    const pdb = broken.find((o) => o.kind === 'PodDisruptionBudget' && o.metadata.name === 'meridiand')!;
    pdb.spec.selector.matchLabels['app.kubernetes.io/name'] = 'meridian';
    const dep = broken.find((o) => o.kind === 'Deployment')!;
    dep.spec.template.spec.containers[0].readinessProbe.httpGet.port = 'monitoring';
    const np = broken.find((o) => o.kind === 'NetworkPolicy' && o.metadata.name === 'meridian-etcd')!;
    np.spec.ingress[0].ports[0].port = 2390;
    expect(fitProblems(broken as K8sObject[])).toEqual([
      'Deployment/meridiand: container meridiand readinessProbe port monitoring is not a container port',
      'Service/meridiand-admin: port https-admin targets http-admin, not a port of Deployment/meridiand',
      'PodDisruptionBudget/meridiand: selects 0 workloads (expected 1)',
      'NetworkPolicy/meridian-etcd: port 2390 is not a port of StatefulSet/meridian-etcd',
    ]);
  });

  it("meridiand's environment is read by meridiand's own settings, and every address is a container port", () => {
    const dep = find(east.manifests, 'Deployment', 'meridiand');
    const container = dep.spec.template.spec.containers[0];
    const known = new Set([...usage().matchAll(/\[(MERIDIAN_[A-Z_]+)\]/g)].map((m) => m[1]));
    const env: Record<string, string> = {};
    for (const e of container.env as { name: string; value?: string }[]) {
      expect(known, e.name).toContain(e.name);
      // MERIDIAN_CONFIG names the file the locality init container writes (tested below).
      if (e.value !== undefined && e.name !== 'MERIDIAN_CONFIG') env[e.name] = e.value;
    }
    const o = resolveOptions([], env);
    expect([o.meshId, o.clusterId, o.adminTls, o.xdsAddress]).toEqual(['prod', 'east', 'on', 'off']);
    expect(o.etcdEndpoints).toEqual(
      [0, 1, 2].map((i) => `http://meridian-etcd-${i}.meridian-etcd.meridian-system.svc:2379`),
    );
    const ports = (container.ports as { containerPort: number }[]).map((p) => p.containerPort).sort();
    const bound = [o.caAddress, o.adminAddress, o.monitoringAddress, o.webhookAddress].map((a) =>
      Number(a.split(':')[1]),
    );
    expect(bound.sort()).toEqual(ports);
    expect(ports).toEqual(
      [MERIDIAND_PORTS.ca, MERIDIAND_PORTS.monitoring, MERIDIAND_PORTS.webhook, MERIDIAND_PORTS.admin].sort(),
    );
    // Files named by settings are in the mounted Secrets, under the key the setting reads.
    const mounts = container.volumeMounts as { name: string; mountPath: string }[];
    const volumes = dep.spec.template.spec.volumes as Any[];
    const fileIn = (file: string) => {
      const m = mounts.find((x) => file.startsWith(`${x.mountPath}/`))!;
      const v = volumes.find((x) => x.name === m.name)!;
      return { secret: v.secret.secretName as string, key: file.slice(m.mountPath.length + 1) };
    };
    for (const f of [o.caKekFile, o.webhookCertFile, o.webhookKeyFile]) {
      const { secret, key } = fileIn(f);
      expect(Object.keys(find(east.secrets, 'Secret', secret).data), f).toContain(key);
    }
    // Spread across the given zones, confined to them.
    const pod = dep.spec.template.spec;
    expect(pod.topologySpreadConstraints[0]).toMatchObject({
      topologyKey: 'topology.kubernetes.io/zone',
      whenUnsatisfiable: 'DoNotSchedule',
      maxSkew: 1,
    });
    expect(
      pod.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]
        .matchExpressions[0].values,
    ).toEqual(['eu-1a', 'eu-1b', 'eu-1c']);
    expect(container.readinessProbe.httpGet.path).toBe('/readyz');
    expect(container.livenessProbe.httpGet.path).toBe('/healthz');
  });

  it("the locality init container reads its Node's region and zone from the API into meridiand's settings file", async () => {
    const dep = find(east.manifests, 'Deployment', 'meridiand');
    const init = dep.spec.template.spec.initContainers[0];
    const script = init.command[2] as string;
    expect(init.command.slice(0, 2)).toEqual(['node', '-e']);
    const configEnv = (dep.spec.template.spec.containers[0].env as Any[]).find(
      (e) => e.name === 'MERIDIAN_CONFIG',
    );
    expect(configEnv?.value).toBe(LOCALITY_FILE);
    // A stand-in for the API server: HTTPS, bearer token, GET /api/v1/nodes/<name>.
    const root = createRootCa({ trustDomain: 'cluster.local', keyType: 'ecdsa-p256' });
    const ca = createIntermediateCa({
      root,
      clusterId: 'k8s',
      trustDomain: 'cluster.local',
      keyType: 'ecdsa-p256',
    });
    const serving = new WorkloadCertificateIssuer(SigningCa.fromMaterial(ca), {
      audit: CaAudit.silent(),
    }).issueServingCertificate(['127.0.0.1'], 600);
    const tokenDir = join(dir, 'sa');
    await mkdir(tokenDir, { recursive: true });
    await writeFile(join(tokenDir, 'ca.crt'), root.certPem);
    await writeFile(join(tokenDir, 'token'), 'sa-token-1\n');
    const asked: string[] = [];
    let labels: Record<string, string> = {
      'topology.kubernetes.io/region': 'eu-west',
      'topology.kubernetes.io/zone': 'eu-west-1b',
    };
    const api = createHttpsServer(
      { cert: serving.certChain.slice(0, -1).join(''), key: serving.keyPem },
      (req, res) => {
        asked.push(`${req.method} ${req.url} ${req.headers.authorization}`);
        if (req.headers.authorization !== 'Bearer sa-token-1') {
          res.writeHead(401).end();
          return;
        }
        res
          .writeHead(200, { 'content-type': 'application/json' })
          .end(JSON.stringify({ kind: 'Node', metadata: { name: 'node-1', labels } }));
      },
    );
    await new Promise<void>((r) => api.listen(0, '127.0.0.1', () => r()));
    try {
      const port = (api.address() as { port: number }).port;
      const file = join(dir, 'locality.yaml');
      const runInit = () =>
        new Promise<string>((resolve, reject) =>
          execFile(
            process.execPath,
            ['-e', script],
            {
              env: {
                KUBERNETES_SERVICE_HOST: '127.0.0.1',
                KUBERNETES_SERVICE_PORT: String(port),
                NODE_NAME: 'node-1',
                TOKEN_DIR: tokenDir,
                LOCALITY_FILE: file,
              },
            },
            (error, stdout) => (error ? reject(error) : resolve(stdout)),
          ),
        );
      expect(await runInit()).toBe('locality: eu-west/eu-west-1b\n');
      expect(asked).toEqual(['GET /api/v1/nodes/node-1 Bearer sa-token-1']);
      expect(resolveOptions([], { MERIDIAN_CONFIG: file }).locality).toBe('eu-west/eu-west-1b');
      // A Node without topology labels: no locality, and meridiand still starts with the file.
      labels = {};
      expect(await runInit()).toBe('locality: (none)\n');
      expect(resolveOptions([], { MERIDIAN_CONFIG: file }).locality).toBe('');
    } finally {
      await new Promise<void>((r) => api.close(() => r()));
    }
  });

  it('etcd is started with flags the etcd binary knows, one member per pod, all three in the initial cluster', () => {
    const sts = find(east.manifests, 'StatefulSet', 'meridian-etcd');
    const c = sts.spec.template.spec.containers[0];
    expect(c.command).toEqual(['etcd']);
    const help = execFileSync(process.env.MERIDIAN_ETCD_BIN ?? 'etcd', ['--help'], { encoding: 'utf8' });
    for (const a of c.args as string[]) expect(help, a).toContain(`${a.split('=')[0]} `);
    const flag = (name: string) =>
      (c.args as string[])
        .find((a) => a.startsWith(`${name}=`))
        ?.split('=')
        .slice(1)
        .join('=');
    expect(flag('--initial-cluster')?.split(',')).toEqual(
      [0, 1, 2].map(
        (i) => `meridian-etcd-${i}=http://meridian-etcd-${i}.meridian-etcd.meridian-system.svc:2380`,
      ),
    );
    expect(flag('--name')).toBe('$(POD_NAME)');
    expect(c.env).toEqual([{ name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }]);
  });

  it('nats.conf is accepted by nats-server and has the cluster routes and the gateways to every cluster', async () => {
    const conf = find(east.manifests, 'ConfigMap', 'meridian-nats-config').data['nats.conf'] as string;
    const file = join(dir, 'nats.conf');
    await writeFile(file, conf);
    const bin = process.env.MERIDIAN_NATS_BIN ?? 'nats-server';
    const checked = execFileSync(bin, ['-c', file, '-t'], {
      env: { ...process.env, POD_NAME: 'meridian-nats-0' },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    expect(checked).toBe('');
    expect(conf).toContain('name: "east"');
    expect(conf).toMatch(/\{ name: "west", urls: \["nats:\/\/nats-gw\.west\.example\.net:7222"\] \}/);
    expect(conf).toMatch(
      /\{ name: "east", urls: \["nats:\/\/meridian-nats-0\.meridian-nats\.meridian-system\.svc:7222"/,
    );
  });

  it("the webhook Secret and the configuration's caBundle work with the admission webhook over TLS", async () => {
    const cert = secretData(east.secrets, 'meridian-webhook-tls', 'tls.crt');
    const key = secretData(east.secrets, 'meridian-webhook-tls', 'tls.key');
    const vwc = east.manifests.find((o) => o.kind === 'ValidatingWebhookConfiguration') as Any;
    const hook = vwc.webhooks[0];
    expect([hook.name, hook.sideEffects, hook.failurePolicy, hook.admissionReviewVersions]).toEqual([
      WEBHOOK_NAME,
      'None',
      'Fail',
      ['v1'],
    ]);
    // Rules cover every kind apply validates, in every version it accepts.
    for (const k of ALL_KINDS) {
      const rule = hook.rules.find((r: Any) => r.apiGroups.includes(k.group));
      expect(rule.resources, k.kind).toContain(pluralOf(k.kind));
      for (const v of k.versions) expect(rule.apiVersions).toContain(v);
      expect(rule.operations).toEqual(['CREATE', 'UPDATE']);
    }
    const caBundle = Buffer.from(hook.clientConfig.caBundle, 'base64').toString('utf8');
    expect(new X509Certificate(caBundle).ca).toBe(true);
    expect(caBundle).toBe(await readFile(join(dir, 'root', 'root-cert.pem'), 'utf8'));
    await writeFile(join(dir, 'tls.crt'), cert);
    await writeFile(join(dir, 'tls.key'), key, { mode: 0o600 });
    const server = await startAdmissionWebhook(
      { host: '127.0.0.1', port: 0, certFile: join(dir, 'tls.crt'), keyFile: join(dir, 'tls.key') },
      { log: pino({ level: 'silent' }) },
    );
    try {
      const body = JSON.stringify({
        apiVersion: 'admission.k8s.io/v1',
        kind: 'AdmissionReview',
        request: {
          uid: 'k8s-1',
          operation: 'CREATE',
          namespace: 'shop',
          kind: { group: 'networking.istio.io', version: 'v1', kind: 'DestinationRule' },
          object: {
            metadata: { name: 'r' },
            spec: { host: 'reviews', subsets: [{ name: 'v1' }, { name: 'v1' }] },
          },
        },
      });
      // As the API server calls it: the Service's DNS name, verified against caBundle alone.
      const answer = await new Promise<Any>((resolve, reject) => {
        const req = request(
          {
            host: '127.0.0.1',
            port: server.port,
            path: hook.clientConfig.service.path,
            method: 'POST',
            servername: webhookDnsName('meridian-system'),
            ca: caBundle,
            headers: { 'content-type': 'application/json' },
          },
          (res) => {
            let text = '';
            res.on('data', (c: Buffer) => {
              text += c;
            });
            res.on('end', () => resolve(JSON.parse(text)));
          },
        );
        req.on('error', reject);
        req.end(body);
      });
      expect(answer).toEqual(reviewAdmission(JSON.parse(body)));
      expect(answer.response.uid).toBe('k8s-1');
      expect(answer.response.allowed).toBe(false);
      expect(answer.response.status.message).toMatch(/^DestinationRule shop\/r: spec\.subsets\[1\]\.name: /);
    } finally {
      await new Promise<void>((resolve) => server.server.close(() => resolve()));
    }
  });

  it('writes Secrets only to secrets.yaml (mode 0600), never to the terminal, and keeps existing keys', async () => {
    expect((await stat(join(dir, 'east', 'secrets.yaml'))).mode & 0o777).toBe(0o600);
    out.length = 0;
    err.length = 0;
    expect(await meridian('manifest', 'generate', '--cluster', 'east', '--root-dir', join(dir, 'root'))).toBe(
      0,
    );
    const printed = out.join('\n');
    expect(parse(printed).length).toBe(east.manifests.length);
    expect(printed).not.toMatch(/PRIVATE KEY|kind: Secret/);
    expect(err.join('\n')).toMatch(/Secrets not written/);
    expect(
      await meridian(
        'manifest',
        'generate',
        '--cluster',
        'east',
        '--root-dir',
        join(dir, 'root'),
        '-o',
        join(dir, 'east'),
      ),
    ).toBe(1);
    expect(err.at(-1)).toBe(
      `error: ${join(dir, 'east', 'secrets.yaml')} exists; refusing to overwrite this cluster's keys (use --force)`,
    );
  });

  it('with --etcd-endpoints, generates no etcd and points meridiand and the CA Job at the given one', async () => {
    const d = join(dir, 'ext');
    expect(
      await meridian(
        ...[
          'manifest',
          'generate',
          '--cluster',
          'west',
          '--root-dir',
          join(dir, 'root'),
          '--layout',
          'single',
        ],
        ...['--etcd-endpoints', 'https://etcd-a.example.net:2379,https://etcd-b.example.net:2379', '-o', d],
      ),
    ).toBe(0);
    const { manifests, secrets } = await readDir(d);
    expect((await readdir(d)).sort()).toEqual(['secrets.yaml', 'west.yaml']);
    for (const o of [...manifests, ...secrets]) await validate(o);
    expect(fitProblems([...manifests, ...secrets])).toEqual([]);
    expect(manifests.filter((o) => o.metadata.name.startsWith('meridian-etcd'))).toEqual([]);
    const env = find(manifests, 'Deployment', 'meridiand').spec.template.spec.containers[0].env as Any[];
    expect(env.find((e) => e.name === 'MERIDIAN_ETCD_ENDPOINTS')?.value).toBe(
      'https://etcd-a.example.net:2379,https://etcd-b.example.net:2379',
    );
    const job = find(manifests, 'Job', 'meridian-ca-install').spec.template.spec.containers[0]
      .command as string[];
    expect(job[job.indexOf('--etcd') + 1]).toBe(
      'https://etcd-a.example.net:2379,https://etcd-b.example.net:2379',
    );
  });

  it('with --nats-auth-dir, NATS users are on and the cluster seed is a Secret (nats-server accepts the config)', async () => {
    const auth = join(dir, 'nats-auth');
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
        auth,
      ),
    ).toBe(0);
    const d = join(dir, 'east-auth');
    expect(
      await meridian(
        ...[
          'manifest',
          'generate',
          '--cluster',
          'east',
          '--mesh-id',
          'prod',
          '--root-dir',
          join(dir, 'root'),
        ],
        ...['--nats-auth-dir', auth, '-o', d],
      ),
    ).toBe(0);
    const { manifests, secrets } = await readDir(d);
    expect(fitProblems([...manifests, ...secrets])).toEqual([]);
    expect(secretData(secrets, 'meridian-nats-creds', 'east.nk')).toBe(
      (await readFile(join(auth, 'east.nk'), 'utf8')).trim(),
    );
    const cm = find(manifests, 'ConfigMap', 'meridian-nats-config').data as Record<string, string>;
    const confDir = join(dir, 'nats-conf');
    await rm(confDir, { recursive: true, force: true });
    await mkdir(confDir);
    for (const [k, v] of Object.entries(cm)) await writeFile(join(confDir, k), v);
    execFileSync(process.env.MERIDIAN_NATS_BIN ?? 'nats-server', ['-c', join(confDir, 'nats.conf'), '-t'], {
      env: { ...process.env, POD_NAME: 'meridian-nats-1' },
      stdio: 'pipe',
    });
    const env = find(manifests, 'Deployment', 'meridiand').spec.template.spec.containers[0].env as Any[];
    expect(env.find((e) => e.name === 'MERIDIAN_NATS_CREDS')?.value).toBe('/etc/meridian/nats/east.nk');
  });

  it('with --ca-dir and --kek-file, uses the cluster CA and key-encryption key as they are', async () => {
    const caDir = join(dir, 'ca-west');
    expect(
      await meridian(
        'ca',
        'intermediate',
        '--root-dir',
        join(dir, 'root'),
        '--cluster',
        'west',
        '--out',
        caDir,
        '--key-type',
        'ecdsa-p256',
      ),
    ).toBe(0);
    expect(await meridian('ca', 'kek', '--out', join(dir, 'west.kek'))).toBe(0);
    const d = join(dir, 'west-ca-dir');
    expect(
      await meridian(
        'manifest',
        'generate',
        '--cluster',
        'west',
        '--ca-dir',
        caDir,
        '--kek-file',
        join(dir, 'west.kek'),
        '-o',
        d,
      ),
    ).toBe(0);
    const { manifests, secrets } = await readDir(d);
    for (const f of ['ca-cert.pem', 'ca-key.pem', 'root-cert.pem', 'cert-chain.pem'])
      expect(secretData(secrets, 'meridian-cacerts', f), f).toBe(await readFile(join(caDir, f), 'utf8'));
    expect(secretData(secrets, 'meridian-ca-kek', 'kek').trim()).toBe(
      (await readFile(join(dir, 'west.kek'), 'utf8')).trim(),
    );
    // The webhook certificate chains to the root through this intermediate.
    const leaf = new X509Certificate(secretData(secrets, 'meridian-webhook-tls', 'tls.crt'));
    expect(leaf.verify(new X509Certificate(await readFile(join(caDir, 'ca-cert.pem'))).publicKey)).toBe(true);
    expect(leaf.checkHost('meridiand-webhook.meridian-system.svc')).toBe(
      'meridiand-webhook.meridian-system.svc',
    );
    expect(fitProblems([...manifests, ...secrets])).toEqual([]);
    // A CA directory of another cluster is refused, naming it.
    err.length = 0;
    expect(await meridian('manifest', 'generate', '--cluster', 'east', '--ca-dir', caDir)).toBe(2);
    expect(err).toEqual([`error: --ca-dir ${caDir}: holds the CA of cluster "west", not "east"`]);
  });

  it('refuses bad flags with one line naming the flag (exit 2)', async () => {
    const root = ['--root-dir', join(dir, 'root')];
    const cases: [string[], RegExp][] = [
      [['--cluster', 'east', '--peer', 'west'], /--peer: expected <cluster>=nats:\/\/host:port, got "west"/],
      [['--cluster', 'east', '--peer', 'west=http://x:1'], /--peer west: expected nats:\/\/host:port/],
      [['--cluster', 'east', '--peer', 'east=nats://x:7222'], /--peer east: that is this cluster/],
      [['--cluster', 'Bad_Id'], /--cluster: invalid cluster id "Bad_Id"/],
      [['--cluster', 'east', '--replicas', '0'], /--replicas: expected a whole number >= 1, got "0"/],
      [
        ['--cluster', 'east', '--etcd-endpoints', 'etcd:2379'],
        /--etcd-endpoints: "etcd:2379"|--etcd-endpoints: expected/,
      ],
      [
        ['--cluster', 'east', '--etcd-endpoints', 'http://e:2379', '--etcd-statefulset'],
        /cannot be used with/,
      ],
      [['--cluster', 'east', '--namespace', 'Meridian'], /--namespace: "Meridian" is not a DNS-1123 label/],
    ];
    for (const [args, message] of cases) {
      err.length = 0;
      expect(await meridian('manifest', 'generate', ...args, ...root), args.join(' ')).toBe(2);
      expect(err.join('\n'), args.join(' ')).toMatch(message);
    }
  });
});

describe('deploy/kubernetes: the committed two-cluster example', () => {
  for (const cluster of ['east', 'west']) {
    it(`${cluster}: validates, fits with the Secrets the README's command writes, and matches the generator`, async () => {
      const committed = await readDir(join(REPO, 'deploy', 'kubernetes', cluster));
      expect(committed.secrets).toEqual([]);
      for (const o of committed.manifests) await validate(o);
      // The same command as deploy/kubernetes/generate.sh, with a fresh root: identical but for caBundle.
      const peer = cluster === 'east' ? 'west' : 'east';
      const d = join(dir, `example-${cluster}`);
      expect(
        await meridian(
          ...[
            'manifest',
            'generate',
            '--cluster',
            cluster,
            '--mesh-id',
            'demo',
            '--root-dir',
            join(dir, 'root'),
          ],
          ...['--zones', `${cluster}-a,${cluster}-b,${cluster}-c`],
          ...['--peer', `${peer}=nats://nats-gateway.${peer}.meridian.example:7222`],
          ...['--nats-gateway-advertise', `nats-gateway.${cluster}.meridian.example:7222`],
          ...['--image', 'meridian:0.1.0', '-o', d],
        ),
      ).toBe(0);
      const fresh = await readDir(d);
      const withoutCaBundle = (objs: K8sObject[]) =>
        objs.map((o) =>
          o.kind === 'ValidatingWebhookConfiguration'
            ? {
                ...o,
                webhooks: (o as Any).webhooks.map((h: Any) => ({
                  ...h,
                  clientConfig: { ...h.clientConfig, caBundle: '' },
                })),
              }
            : o,
        );
      expect(
        withoutCaBundle(committed.manifests),
        'deploy/kubernetes is stale: regenerate it with deploy/kubernetes/generate.sh <a throwaway root> (then delete the secrets.yaml files)',
      ).toEqual(withoutCaBundle(fresh.manifests));
      expect(fitProblems([...committed.manifests, ...fresh.secrets])).toEqual([]);
    });
  }
});
