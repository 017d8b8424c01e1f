// `meridian manifest generate` with its flags (issue 14, items 5 and 6): an external etcd, NATS
// users from `federation nats-config` (nats.conf checked by nats-server), a cluster CA and
// key-encryption key given as they are, and bad flags refused naming the flag. Shared helpers:
// manifest-fixtures.ts; the default layout: manifest-generate.test.ts.
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fitProblems } from './manifest-fit.js';
import {
  type Any,
  cliCapture,
  find,
  readDir,
  secretData,
  validate,
  workDirWithRoot,
} from './manifest-fixtures.js';

const { err, meridian } = cliCapture();
let dir: string;

beforeAll(async () => {
  dir = await workDirWithRoot(meridian);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('meridian manifest generate', () => {
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
