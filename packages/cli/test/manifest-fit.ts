// Structural checks of a set of Kubernetes objects that schema validation cannot make: selectors
// select the pods they are meant for, Service target ports and probes name real container ports,
// volumes name Secrets and ConfigMaps that exist, a PDB selects one workload, the webhook points at a
// real Service port. Returns one line per problem (empty: the objects fit together).
import type { K8sObject } from '../src/manifest/model.js';

// biome-ignore lint/suspicious/noExplicitAny: walking untyped YAML
type Any = Record<string, any>;

interface Workload {
  readonly obj: K8sObject;
  readonly labels: Record<string, string>;
  readonly pod: Any;
  readonly replicas: number;
}

const selects = (selector: Record<string, string> | undefined, labels: Record<string, string>) =>
  selector !== undefined &&
  Object.keys(selector).length > 0 &&
  Object.entries(selector).every(([k, v]) => labels[k] === v);

const id = (o: K8sObject) => `${o.kind}/${o.metadata.name}`;

/** Problems of `objects` (manifests and Secrets together). */
export function fitProblems(objects: readonly K8sObject[]): string[] {
  const problems: string[] = [];
  const of = (kind: string) => objects.filter((o) => o.kind === kind) as (K8sObject & Any)[];
  const namespaces = of('Namespace').map((o) => o.metadata.name);
  for (const o of objects)
    if (o.metadata.namespace !== undefined && !namespaces.includes(o.metadata.namespace))
      problems.push(`${id(o)}: namespace ${o.metadata.namespace} is not created`);

  const workloads: Workload[] = [...of('Deployment'), ...of('StatefulSet'), ...of('Job')].map((o) => ({
    obj: o,
    labels: o.spec.template.metadata?.labels ?? {},
    pod: o.spec.template.spec,
    replicas: o.spec.replicas ?? 1,
  }));
  const secrets = new Map(of('Secret').map((s) => [s.metadata.name, Object.keys(s.data ?? {})]));
  const configMaps = new Map(of('ConfigMap').map((c) => [c.metadata.name, Object.keys(c.data ?? {})]));
  const accounts = new Set(of('ServiceAccount').map((s) => s.metadata.name));

  for (const w of workloads) {
    const name = id(w.obj);
    const sel = (w.obj as Any).spec.selector?.matchLabels;
    if (w.obj.kind !== 'Job' && !selects(sel, w.labels))
      problems.push(`${name}: selector does not match its pod labels`);
    if (w.pod.serviceAccountName && !accounts.has(w.pod.serviceAccountName))
      problems.push(`${name}: service account ${w.pod.serviceAccountName} not created`);
    for (const c of w.pod.topologySpreadConstraints ?? [])
      if (!selects(c.labelSelector?.matchLabels, w.labels))
        problems.push(`${name}: a topology spread selects other pods`);
    for (const t of w.pod.affinity?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution ?? [])
      if (!selects(t.podAffinityTerm.labelSelector?.matchLabels, w.labels))
        problems.push(`${name}: pod anti-affinity selects other pods`);
    const volumes = new Map<string, Any>((w.pod.volumes ?? []).map((v: Any) => [v.name, v]));
    for (const v of volumes.values()) {
      if (v.secret) {
        const keys = secrets.get(v.secret.secretName);
        if (!keys) problems.push(`${name}: volume ${v.name}: Secret ${v.secret.secretName} not generated`);
      }
      if (v.configMap && !configMaps.has(v.configMap.name))
        problems.push(`${name}: volume ${v.name}: ConfigMap ${v.configMap.name} not generated`);
      for (const src of v.projected?.sources ?? [])
        if (src.configMap && src.configMap.name !== 'kube-root-ca.crt' && !configMaps.has(src.configMap.name))
          problems.push(`${name}: volume ${v.name}: ConfigMap ${src.configMap.name} not generated`);
    }
    const claims = new Set(((w.obj as Any).spec.volumeClaimTemplates ?? []).map((c: Any) => c.metadata.name));
    for (const c of [...(w.pod.initContainers ?? []), ...w.pod.containers]) {
      const ports: Any[] = c.ports ?? [];
      for (const m of c.volumeMounts ?? [])
        if (!volumes.has(m.name) && !claims.has(m.name))
          problems.push(`${name}: container ${c.name} mounts undeclared volume ${m.name}`);
      for (const kind of ['readinessProbe', 'livenessProbe', 'startupProbe']) {
        const port = c[kind]?.httpGet?.port;
        if (port === undefined) continue;
        if (!ports.some((p) => p.name === port || p.containerPort === port))
          problems.push(`${name}: container ${c.name} ${kind} port ${port} is not a container port`);
      }
    }
    if (w.obj.kind === 'StatefulSet') {
      const svc = of('Service').find((s) => s.metadata.name === (w.obj as Any).spec.serviceName);
      const headless =
        svc !== undefined && svc.spec.clusterIP === 'None' && selects(svc.spec.selector, w.labels);
      if (!headless) problems.push(`${name}: serviceName is not a headless Service selecting its pods`);
    }
  }

  for (const svc of of('Service')) {
    const selected = workloads.filter((w) => w.obj.kind !== 'Job' && selects(svc.spec.selector, w.labels));
    if (selected.length !== 1) {
      problems.push(`${id(svc)}: selects ${selected.length} workloads' pods (expected 1)`);
      continue;
    }
    const ports: Any[] = selected[0]!.pod.containers.flatMap((c: Any) => c.ports ?? []);
    for (const p of svc.spec.ports) {
      const target = p.targetPort ?? p.port;
      if (!ports.some((c) => c.name === target || c.containerPort === target))
        problems.push(`${id(svc)}: port ${p.name} targets ${target}, not a port of ${id(selected[0]!.obj)}`);
    }
  }

  for (const pdb of of('PodDisruptionBudget')) {
    const selected = workloads.filter(
      (w) => w.obj.kind !== 'Job' && selects(pdb.spec.selector?.matchLabels, w.labels),
    );
    if (selected.length !== 1) problems.push(`${id(pdb)}: selects ${selected.length} workloads (expected 1)`);
    else if (selected[0]!.replicas > 1 && !(pdb.spec.maxUnavailable < selected[0]!.replicas))
      problems.push(`${id(pdb)}: allows every pod of ${id(selected[0]!.obj)} down at once`);
  }

  for (const np of of('NetworkPolicy')) {
    const selected = workloads.filter(
      (w) => w.obj.kind !== 'Job' && selects(np.spec.podSelector?.matchLabels, w.labels),
    );
    if (selected.length !== 1) {
      problems.push(`${id(np)}: applies to ${selected.length} workloads (expected 1)`);
      continue;
    }
    const ports: Any[] = selected[0]!.pod.containers.flatMap((c: Any) => c.ports ?? []);
    for (const rule of np.spec.ingress ?? []) {
      for (const p of rule.ports ?? [])
        if (!ports.some((c) => c.name === p.port || c.containerPort === p.port))
          problems.push(`${id(np)}: port ${p.port} is not a port of ${id(selected[0]!.obj)}`);
      for (const peer of rule.from ?? [])
        if (peer.podSelector && !workloads.some((w) => selects(peer.podSelector.matchLabels, w.labels)))
          problems.push(`${id(np)}: a rule admits pods of no generated workload`);
    }
  }

  for (const b of [...of('ClusterRoleBinding'), ...of('RoleBinding')]) {
    const roles = of(b.roleRef.kind).map((r) => r.metadata.name);
    if (!roles.includes(b.roleRef.name))
      problems.push(`${id(b)}: ${b.roleRef.kind} ${b.roleRef.name} not generated`);
    for (const s of b.subjects ?? [])
      if (s.kind === 'ServiceAccount' && !accounts.has(s.name))
        problems.push(`${id(b)}: service account ${s.name} not generated`);
  }

  for (const v of of('ValidatingWebhookConfiguration'))
    for (const hook of v.webhooks) {
      const ref = hook.clientConfig.service;
      const svc = of('Service').find(
        (s) => s.metadata.name === ref?.name && s.metadata.namespace === ref?.namespace,
      );
      if (!svc)
        problems.push(`${id(v)}: webhook ${hook.name}: Service ${ref?.namespace}/${ref?.name} not generated`);
      else if (!svc.spec.ports.some((p: Any) => p.port === (ref.port ?? 443)))
        problems.push(`${id(v)}: webhook ${hook.name}: port ${ref.port} is not a port of ${id(svc)}`);
    }
  return problems;
}
