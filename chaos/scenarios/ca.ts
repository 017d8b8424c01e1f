// Scenarios of the mesh CA: the root rotated (a new root added, intermediates reissued, the old root
// removed) on both clusters under mTLS traffic, and back.
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type ClusterPlan, etcdEndpoints, program } from '../../packages/cli/src/local/plan.js';
import type { Scenario } from '../lib/harness.js';
import { poll, sleep } from '../lib/mesh.js';
import { anchorOf, MtlsTraffic, pemBlocks, SdsWorkload } from '../lib/mtls.js';

/** `meridian <args>` (the CLI from this repository); resolves with its output, rejects with it. */
export function meridian(args: readonly string[]): Promise<string> {
  const [node, ...pre] = [process.execPath, ...program('cli', 'main')];
  return new Promise((resolve, reject) =>
    execFile(node!, [...pre, ...args], { encoding: 'utf8', timeout: 120_000 }, (err, stdout, stderr) => {
      if (err)
        reject(
          new Error(`meridian ${args.slice(0, 3).join(' ')}: ${(stderr || stdout || err.message).trim()}`),
        );
      else resolve(stdout);
    }),
  );
}

/** SHA-256 fingerprints of the certificates of a PEM bundle. */
function fingerprints(pem: string | undefined): string[] {
  return pemBlocks(pem ?? '').map((p) => new X509Certificate(p).fingerprint256);
}

export const caRootRotation: Scenario = {
  name: 'ca-root-rotation',
  title:
    'the mesh root rotated with `meridian ca rotate` on both clusters (add-root, intermediate, remove-root) and back, under mTLS calls between SDS-fed workloads in east and west',
  async run(h) {
    const { mesh } = h;
    const td = mesh.plan.trustDomain;
    const east = mesh.cluster('east');
    const west = mesh.cluster('west');
    // The client in east, the server in west: each call crosses the clusters' CAs.
    const client = new SdsWorkload(mesh, east, 0, 'client', `spiffe://${td}/ns/demo/sa/client`);
    const server = new SdsWorkload(mesh, west, 0, 'echo-v1', `spiffe://${td}/ns/demo/sa/echo`);
    const workloads = [client, server];
    h.cleanups.push(() => {
      for (const w of workloads) w.stop();
    });
    for (const w of workloads) w.start();
    if (!(await poll(async () => client.ready && server.ready, 30_000)))
      throw new Error('the SDS workloads got no default and ROOTCA secrets within 30 s');
    const traffic = new MtlsTraffic(client, server, 100);
    h.cleanups.push(() => traffic.stop());
    h.series.set('mTLS calls', () => traffic.calls);
    await traffic.start();
    await sleep(5000);
    const pre = traffic.count();
    h.figure('mtlsCallsBeforeRotation', pre.ok);
    if (pre.ok === 0 || pre.failed > 0)
      throw new Error(`mTLS calls not steady before the rotation: ${pre.ok} ok, ${traffic.errors()}`);

    // The roots: the mesh's own (root-1, made by `meridian up`) and a new one (root-2, `meridian ca init`).
    const root1Dir = mesh.paths.rootDir;
    const root2Dir = join(mesh.dir, 'root-2');
    await meridian(['ca', 'init', '--out', root2Dir, '--key-type', 'ecdsa-p256', '--trust-domain', td]);
    const roots = new Map<string, string>([
      ['root-1', readFileSync(join(root1Dir, 'root-cert.pem'), 'utf8')],
      ['root-2', readFileSync(join(root2Dir, 'root-cert.pem'), 'utf8')],
    ]);
    const fp = (name: string) => fingerprints(roots.get(name))[0]!;
    const dirOf = { 'root-1': root1Dir, 'root-2': root2Dir } as Record<string, string>;
    for (const c of mesh.plan.clusters)
      writeFileSync(
        join(mesh.paths.caDir(c.name), 'meridian.json'),
        `${JSON.stringify({ clusterId: c.name, trustDomain: td })}\n`,
      );
    const install = (c: ClusterPlan) => [
      ...[
        '--etcd',
        etcdEndpoints(c).join(','),
        '--mesh',
        mesh.plan.mesh,
        '--kek-file',
        mesh.paths.kek(c.name),
      ],
    ];
    const bundleIs = (names: string[]) => () =>
      workloads.every((w) => {
        const have = fingerprints(w.bundlePem).sort();
        return have.length === names.length && names.every((n) => have.includes(fp(n)));
      });
    const chainsTo = (name: string) => () =>
      workloads.every((w) => w.chainPem !== undefined && anchorOf(w.chainPem, roots) === name);
    const steps: { label: string; args: (c: ClusterPlan) => string[]; done: () => boolean }[] = [];
    for (const [from, to] of [
      ['root-1', 'root-2'],
      ['root-2', 'root-1'],
    ] as const)
      steps.push(
        {
          label: `add-root ${to}`,
          args: (c) => [
            'ca',
            'rotate',
            'add-root',
            '--dir',
            mesh.paths.caDir(c.name),
            '--new-root-dir',
            dirOf[to]!,
          ],
          done: bundleIs([from, to]),
        },
        {
          label: `intermediate under ${to}`,
          args: (c) => [
            ...['ca', 'rotate', 'intermediate', '--dir', mesh.paths.caDir(c.name)],
            ...['--new-root-dir', dirOf[to]!, '--key-type', 'ecdsa-p256'],
          ],
          done: chainsTo(to),
        },
        {
          label: `remove-root ${from}`,
          args: (c) => [
            'ca',
            'rotate',
            'remove-root',
            '--dir',
            mesh.paths.caDir(c.name),
            '--old-root-dir',
            dirOf[from]!,
          ],
          done: bundleIs([to]),
        },
      );
    const at = h.mark('rotation starts');
    let observed = 0;
    for (const step of steps) {
      const t = Date.now();
      await Promise.all(mesh.plan.clusters.map((c) => meridian([...step.args(c), ...install(c)])));
      const applied = Date.now();
      const seen = await poll(async () => (step.done() ? Date.now() : undefined), 60_000, 100);
      h.figure(`${step.label}: commandS`, h.secs(applied - t));
      h.figure(`${step.label}: atBothWorkloadsS`, seen === undefined ? null : h.secs(seen - applied));
      if (seen === undefined) {
        h.notes.push(`${step.label}: not seen by both workloads within 60 s`);
        break;
      }
      observed++;
      h.mark(step.label, seen);
      // Calls go on under the new state before the next step.
      await sleep(3000);
    }
    const end = h.mark('rotated back');
    h.fault('root rotation', at, end);
    await sleep(2000);
    const during = traffic.count(at);
    h.figure('mtlsCallsOk', during.ok);
    h.figure('mtlsCallsFailed', during.failed);
    if (during.failed > 0) h.notes.push(`mTLS call errors: ${traffic.errors()}`);
    const issued = workloads.map((w) => w.events.filter((e) => e.name === 'default' && e.at >= at).length);
    h.figure('certificatesPushedClientServer', issued.join('/'));
    const wrongCerts = workloads.reduce(
      (n, w) =>
        n +
        w.events.filter((e) => e.name === 'default' && (e.sans?.length !== 1 || e.sans[0] !== w.spiffeId))
          .length,
      0,
    );
    // Controls: the handshakes really are verified. The client trusting only the root removed last
    // (root-2) is refused by the server's chain; with its own bundle it is served.
    const refused = await traffic.probe(roots.get('root-2')!);
    const served = await traffic.probe(client.bundlePem!);
    h.figure('controlRemovedRootOnly', refused.ok ? 'served' : `refused (${refused.error})`);
    h.invariant('controlRemovedRootOnlyRefused', refused.ok ? 0 : 1, 1);
    h.invariant('controlOwnBundleServed', served.ok ? 1 : 0, 1);
    h.invariant('rotationStepsSeenByBothWorkloads', observed, steps.length);
    h.invariant('mtlsCallsFailed', during.failed);
    h.invariant('wrongIdentityCertificates', wrongCerts + during.wrongIdentity);
    h.invariant('sdsStreamsEnded', workloads.filter((w) => w.ended).length);
    // The demo's own traffic (agents, plaintext between workloads) is not disturbed either.
    h.rpcFigures(['east', 'west'], at, 0);
  },
};
