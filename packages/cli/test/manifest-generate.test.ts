// `meridian manifest generate` (issue 14, items 5 and 6) for one cluster with the default layout: no
// Kubernetes cluster runs here, so every generated object is validated against the Kubernetes API
// schemas (kubernetes-models), the objects are checked to fit together (manifest-fit.ts), meridiand's
// environment is read by meridiand's own settings table, the locality init container runs against a
// stand-in API server, etcd's flags and nats.conf are checked by their binaries, and the webhook's
// Secret and caBundle by a real TLS handshake with the admission webhook. Shared helpers:
// manifest-fixtures.ts; generator flags: manifest-flags.test.ts; the committed example:
// manifest-example.test.ts.
import { execFile, execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer as createHttpsServer, request } from 'node:https';
import { join } from 'node:path';
import { ALL_KINDS } from '@meridian/api';
import {
  CaAudit,
  createIntermediateCa,
  createRootCa,
  SigningCa,
  WorkloadCertificateIssuer,
} from '@meridian/ca';
import { resolveOptions, reviewAdmission, startAdmissionWebhook, usage } from '@meridian/server';
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
import {
  type Any,
  cliCapture,
  find,
  parse,
  readDir,
  secretData,
  validate,
  workDirWithRoot,
} from './manifest-fixtures.js';

const { out, err, meridian } = cliCapture();
let dir: string;

beforeAll(async () => {
  dir = await workDirWithRoot(meridian);
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
});
