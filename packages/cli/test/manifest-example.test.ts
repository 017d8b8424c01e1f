// deploy/kubernetes (issue 14, items 5 and 6): the committed two-cluster example validates against
// the Kubernetes API schemas, fits with the Secrets its README's command writes, and is what the
// generator writes today. Shared helpers: manifest-fixtures.ts.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { K8sObject } from '../src/manifest/model.js';
import { fitProblems } from './manifest-fit.js';
import { type Any, cliCapture, REPO, readDir, validate, workDirWithRoot } from './manifest-fixtures.js';

const { meridian } = cliCapture();
let dir: string;

beforeAll(async () => {
  dir = await workDirWithRoot(meridian);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
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
