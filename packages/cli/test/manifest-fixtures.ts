/**
 * Shared by the manifest-* tests of `meridian manifest generate`: running the CLI with its output
 * captured, a work directory holding a fresh mesh root, reading a generated directory back, and
 * validating objects against the Kubernetes API schemas (kubernetes-models).
 */
import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '@meridian/cli';
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
import { expect } from 'vitest';
import { parseAllDocuments } from 'yaml';
import type { K8sObject } from '../src/manifest/model.js';

// biome-ignore lint/suspicious/noExplicitAny: walking untyped YAML
export type Any = Record<string, any>;

/** The repository root (deploy/kubernetes holds the committed example). */
export const REPO = fileURLToPath(new URL('../../../', import.meta.url));

/** The `meridian` CLI run in process, its stdout and stderr lines collected in `out` and `err`. */
export function cliCapture(): {
  out: string[];
  err: string[];
  meridian: (...args: string[]) => Promise<number>;
} {
  const out: string[] = [];
  const err: string[] = [];
  const ctx = { out: (l: string) => out.push(l), err: (l: string) => err.push(l) };
  return { out, err, meridian: (...args: string[]): Promise<number> => run(args, ctx) };
}

/** A fresh temporary directory whose `root` holds a new ECDSA P-256 mesh root (`meridian ca init`). */
export async function workDirWithRoot(meridian: (...args: string[]) => Promise<number>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'meridian-manifest-test-'));
  expect(await meridian('ca', 'init', '--out', join(dir, 'root'), '--key-type', 'ecdsa-p256')).toBe(0);
  return dir;
}

/** The objects of a multi-document YAML text. */
export const parse = (text: string): K8sObject[] =>
  parseAllDocuments(text)
    .map((d) => d.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null);

/** The objects of a generated directory: secrets.yaml apart from the other files. */
export async function readDir(d: string): Promise<{ manifests: K8sObject[]; secrets: K8sObject[] }> {
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
export async function validate(o: K8sObject): Promise<void> {
  const Model = MODELS[`${o.apiVersion}/${o.kind}`];
  if (!Model) throw new Error(`no model for ${o.apiVersion} ${o.kind}`);
  try {
    new Model(o as never).validate();
  } catch (error) {
    throw new Error(`${o.kind}/${o.metadata.name}: ${(error as Error).message}`);
  }
}

/** The object of `kind` named `name`; throws when it was not generated. */
export const find = (objs: readonly K8sObject[], kind: string, name: string): Any => {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  if (!o) throw new Error(`${kind}/${name} not generated`);
  return o as Any;
};

/** The decoded value of `key` in the Secret `name`. */
export const secretData = (objs: readonly K8sObject[], name: string, key: string): string =>
  Buffer.from(find(objs, 'Secret', name).data[key], 'base64').toString('utf8');
