// The Kubernetes manifests bind meridiand to 0.0.0.0 (issue 16): each replica must advertise an
// address proxies reach it at (its pod IP, from the downward API), which its serving certificate
// names, or proxies get no rate-limit or access-log address. The committed example and the generator
// both set it, and meridiand's own settings read it as meant.
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { resolveOptions } from '@meridian/server';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { meridiandDnsNames, NAMES } from '../src/manifest/model.js';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { fieldRef?: { fieldPath: string } };
}

describe('deploy/kubernetes: what a replica advertises', () => {
  for (const cluster of ['east', 'west']) {
    it(`${cluster}: the pod IP (downward API) and the Services' DNS names as extra SANs`, async () => {
      const dir = `${REPO}deploy/kubernetes/${cluster}`;
      const deployment = parse(await readFile(`${dir}/19-deployment-meridiand.yaml`, 'utf8'));
      const env = deployment.spec.template.spec.containers[0].env as EnvVar[];
      expect(env.find((e) => e.name === 'MERIDIAN_ADVERTISE_ADDRESS')).toEqual({
        name: 'MERIDIAN_ADVERTISE_ADDRESS',
        valueFrom: { fieldRef: { fieldPath: 'status.podIP' } },
      });
      const names = env.find((e) => e.name === 'MERIDIAN_SERVING_NAMES')?.value;
      expect(names).toBe('meridiand.meridian-system.svc,meridiand-admin.meridian-system.svc');
      expect(names?.split(',')).toEqual(meridiandDnsNames('meridian-system'));
      // Those are the Services in front of the replicas.
      for (const [file, service] of [
        ['21-service-meridiand.yaml', NAMES.meridiand],
        ['22-service-meridiand-admin.yaml', NAMES.adminService],
      ] as const) {
        const s = parse(await readFile(`${dir}/${file}`, 'utf8'));
        expect(`${s.metadata.name}.${s.metadata.namespace}.svc`).toBe(`${service}.meridian-system.svc`);
      }
      // meridiand reads them as meant, with the kubelet's value for the pod IP (IPv4 or IPv6).
      const plain = Object.fromEntries(
        env
          .filter((e) => e.value !== undefined && e.name !== 'MERIDIAN_CONFIG')
          .map((e) => [e.name, e.value]),
      );
      for (const podIp of ['10.244.1.7', 'fd00:10:244::7']) {
        const o = resolveOptions([], { ...plain, MERIDIAN_ADVERTISE_ADDRESS: podIp });
        expect(o.caAddress).toBe('0.0.0.0:15012');
        expect(o.advertiseAddress).toBe(podIp);
        expect(o.servingNames).toEqual(meridiandDnsNames('meridian-system'));
      }
    });
  }
});
