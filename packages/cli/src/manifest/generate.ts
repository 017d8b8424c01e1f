// One Meridian cluster as Kubernetes objects: a pure function of the settings and of the public and
// secret material the command made (generate.ts never creates keys; command.ts does, with
// @meridian/ca). The objects are plain JSON as the API server takes them; tests validate each one
// against the Kubernetes API schemas (kubernetes-models) and check that they fit together.
//
// This module generates meridiand's objects (identities, the CA install Job, the Deployment, its
// Services, network policies, the webhook) and the Secrets; the settings, names and ports are
// model.ts's, etcd and NATS stores.ts's, the locality init container's program locality.ts's.
import { ALL_KINDS } from '@meridian/api';
import type { IValidatingWebhookConfiguration } from 'kubernetes-models/admissionregistration.k8s.io/v1/ValidatingWebhookConfiguration';
import type { IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import type { IJob } from 'kubernetes-models/batch/v1/Job';
import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import type { IPodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
// Type-only (erased at run time): object literals are checked against the Kubernetes API types at
// compile time, which catches a misspelt field (the schema validation in the tests does not).
import type { IClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import type { IClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding';
import type { IContainerPort } from 'kubernetes-models/v1/ContainerPort';
import type { IEnvVar } from 'kubernetes-models/v1/EnvVar';
import type { INamespace } from 'kubernetes-models/v1/Namespace';
import type { ISecret } from 'kubernetes-models/v1/Secret';
import type { ISecurityContext } from 'kubernetes-models/v1/SecurityContext';
import type { IService } from 'kubernetes-models/v1/Service';
import type { IServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import type { IServicePort } from 'kubernetes-models/v1/ServicePort';
import type { ITopologySpreadConstraint } from 'kubernetes-models/v1/TopologySpreadConstraint';
import { LOCALITY_FILE, LOCALITY_SCRIPT } from './locality.js';
import {
  add,
  b64,
  etcdEndpointsOf,
  type K8sObject,
  type ManifestSet,
  type ManifestSettings,
  MERIDIAND_PORTS,
  type Meta,
  meridiandDnsNames,
  NAMES,
  NATS_PORTS,
  nonRootPodSecurity,
  type ObjectMeta,
  obj,
  PORT_NAMES,
  type PublicMaterial,
  pluralOf,
  preferOwnNode,
  type SecretMaterial,
  WEBHOOK_NAME,
} from './model.js';
import { etcdObjects, natsObjects } from './stores.js';

/** Generates one cluster's objects. Pure: the same inputs give the same objects. */
export function generateManifests(
  s: ManifestSettings,
  pub: PublicMaterial,
  secret?: SecretMaterial,
): ManifestSet {
  const ns = s.namespace;
  const part = (component: string) => ({
    'app.kubernetes.io/name': component,
    'app.kubernetes.io/part-of': 'meridian',
    'meridian.io/cluster': s.cluster,
  });
  const meta = (name: string, component: string, extra: Partial<ObjectMeta> = {}): ObjectMeta => ({
    name,
    namespace: ns,
    labels: part(component),
    ...extra,
  });
  const selector = (component: string): Record<string, string> => ({
    'app.kubernetes.io/name': component,
    'meridian.io/cluster': s.cluster,
  });
  const restricted: ISecurityContext = {
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    runAsNonRoot: true,
    capabilities: { drop: ['ALL'] },
    seccompProfile: { type: 'RuntimeDefault' },
  };
  const etcdEndpoints = etcdEndpointsOf(s);
  const natsUrl = `nats://${NAMES.natsClient}.${ns}.svc:${NATS_PORTS.client}`;
  const out: K8sObject[] = [];

  add<INamespace>(out, {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: {
      name: ns,
      labels: { 'app.kubernetes.io/part-of': 'meridian', 'pod-security.kubernetes.io/enforce': 'restricted' },
    },
  });

  // --- identities and RBAC ----------------------------------------------------------------------
  // meridiand calls no Kubernetes API; only its locality init container reads its own Node's
  // topology labels (region, zone), with a token mounted into that container alone.
  const accounts: [string, string][] = [
    [NAMES.meridiand, 'meridiand'],
    [NAMES.caInstall, 'meridian-ca-install'],
    ...(s.etcdEndpoints ? [] : [[NAMES.etcd, 'etcd'] as [string, string]]),
    [NAMES.nats, 'nats'],
  ];
  for (const [name, component] of accounts)
    add<IServiceAccount>(out, {
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: meta(name, component),
      automountServiceAccountToken: false,
    });
  const nodeReader = `${NAMES.nodeReader}-${s.cluster}`;
  add<IClusterRole>(out, {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRole',
    metadata: { name: nodeReader, labels: part('meridiand') },
    rules: [{ apiGroups: [''], resources: ['nodes'], verbs: ['get'] }],
  });
  add<IClusterRoleBinding>(out, {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRoleBinding',
    metadata: { name: nodeReader, labels: part('meridiand') },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: nodeReader },
    subjects: [{ kind: 'ServiceAccount', name: NAMES.meridiand, namespace: ns }],
  });
  // --- etcd ----------------------------------------------------------------------------------------
  if (!s.etcdEndpoints) out.push(...etcdObjects(s, meta, selector, restricted));
  // etcd speaks plain HTTP without users (SECURITY.md): only meridiand, the CA Job and the members
  // themselves may reach it (kubectl port-forward, used for `meridian auth bootstrap`, is not subject
  // to network policies).
  if (!s.etcdEndpoints)
    add<INetworkPolicy>(out, {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: meta(NAMES.etcd, 'etcd'),
      spec: {
        podSelector: { matchLabels: selector('etcd') },
        policyTypes: ['Ingress'],
        ingress: [
          {
            from: [
              { podSelector: { matchLabels: selector('meridiand') } },
              { podSelector: { matchLabels: selector('meridian-ca-install') } },
              { podSelector: { matchLabels: selector('etcd') } },
            ],
            ports: [{ port: 'client', protocol: 'TCP' }],
          },
          {
            from: [{ podSelector: { matchLabels: selector('etcd') } }],
            ports: [{ port: 'peer', protocol: 'TCP' }],
          },
          { ports: [{ port: 'metrics', protocol: 'TCP' }] },
        ],
      },
    });

  // --- NATS ----------------------------------------------------------------------------------------
  out.push(...natsObjects(s, meta, selector, restricted));
  // NATS clients are this cluster's replicas; routes come from its own servers; the gateway port
  // takes the other clusters' servers (through the load balancer) and monitoring is open.
  add<INetworkPolicy>(out, {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: meta(NAMES.nats, 'nats'),
    spec: {
      podSelector: { matchLabels: selector('nats') },
      policyTypes: ['Ingress'],
      ingress: [
        {
          from: [{ podSelector: { matchLabels: selector('meridiand') } }],
          ports: [{ port: 'client', protocol: 'TCP' }],
        },
        {
          from: [{ podSelector: { matchLabels: selector('nats') } }],
          ports: [{ port: 'cluster', protocol: 'TCP' }],
        },
        {
          ports: [
            { port: 'gateway', protocol: 'TCP' },
            { port: 'monitor', protocol: 'TCP' },
          ],
        },
      ],
    },
  });

  // --- meridiand -----------------------------------------------------------------------------------
  const labels = selector('meridiand');
  const env: IEnvVar[] = [
    { name: 'MERIDIAN_CONFIG', value: LOCALITY_FILE },
    { name: 'MERIDIAN_MESH_ID', value: s.meshId },
    { name: 'MERIDIAN_CLUSTER_ID', value: s.cluster },
    { name: 'MERIDIAN_TRUST_DOMAIN', value: s.trustDomain },
    { name: 'MERIDIAN_REPLICA_ID', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
    { name: 'MERIDIAN_ETCD_ENDPOINTS', value: etcdEndpoints.join(',') },
    { name: 'MERIDIAN_XDS_ADDRESS', value: s.plaintextXds ? `0.0.0.0:${MERIDIAND_PORTS.xds}` : 'off' },
    { name: 'MERIDIAN_CA_ADDRESS', value: `0.0.0.0:${MERIDIAND_PORTS.ca}` },
    // The replicas bind 0.0.0.0: each advertises its pod IP (in its membership record and its serving
    // certificate), where proxies' rate-limit and access-log clusters reach it and check its SAN.
    { name: 'MERIDIAN_ADVERTISE_ADDRESS', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
    { name: 'MERIDIAN_SERVING_NAMES', value: meridiandDnsNames(ns).join(',') },
    { name: 'MERIDIAN_CA_KEK_FILE', value: '/etc/meridian/kek/kek' },
    { name: 'MERIDIAN_ADMIN_ADDRESS', value: `0.0.0.0:${MERIDIAND_PORTS.admin}` },
    { name: 'MERIDIAN_ADMIN_TLS', value: 'on' },
    { name: 'MERIDIAN_MONITORING_ADDRESS', value: `0.0.0.0:${MERIDIAND_PORTS.monitoring}` },
    { name: 'MERIDIAN_WEBHOOK_ADDRESS', value: `0.0.0.0:${MERIDIAND_PORTS.webhook}` },
    { name: 'MERIDIAN_WEBHOOK_CERT_FILE', value: '/etc/meridian/webhook/tls.crt' },
    { name: 'MERIDIAN_WEBHOOK_KEY_FILE', value: '/etc/meridian/webhook/tls.key' },
    { name: 'MERIDIAN_SNAPSHOT_DIR', value: '/var/lib/meridian' },
    { name: 'MERIDIAN_NATS_URL', value: natsUrl },
    ...(s.natsAuthConf ? [{ name: 'MERIDIAN_NATS_CREDS', value: `/etc/meridian/nats/${s.cluster}.nk` }] : []),
  ];
  const ports: IContainerPort[] = (Object.keys(PORT_NAMES) as (keyof typeof PORT_NAMES)[])
    .filter((k) => k !== 'xds' || s.plaintextXds)
    .map((k) => ({ name: PORT_NAMES[k], containerPort: MERIDIAND_PORTS[k], protocol: 'TCP' }));
  const zoneKey = 'topology.kubernetes.io/zone';
  const spread: Omit<ITopologySpreadConstraint, 'topologyKey'> = {
    labelSelector: { matchLabels: labels },
    maxSkew: 1,
    whenUnsatisfiable: s.zones.length > 0 ? 'DoNotSchedule' : 'ScheduleAnyway',
  };
  add<IDeployment>(out, {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: meta(NAMES.meridiand, 'meridiand'),
    spec: {
      replicas: s.replicas,
      selector: { matchLabels: labels },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1, maxSurge: 1 } },
      template: {
        metadata: { labels: { ...part('meridiand'), ...labels } },
        spec: {
          serviceAccountName: NAMES.meridiand,
          automountServiceAccountToken: false,
          securityContext: nonRootPodSecurity(),
          terminationGracePeriodSeconds: 30,
          topologySpreadConstraints: [
            { ...spread, topologyKey: zoneKey },
            { ...spread, topologyKey: 'kubernetes.io/hostname', whenUnsatisfiable: 'ScheduleAnyway' },
          ],
          affinity: {
            podAntiAffinity: preferOwnNode(labels),
            ...(s.zones.length > 0
              ? {
                  nodeAffinity: {
                    requiredDuringSchedulingIgnoredDuringExecution: {
                      nodeSelectorTerms: [
                        { matchExpressions: [{ key: zoneKey, operator: 'In', values: [...s.zones] }] },
                      ],
                    },
                  },
                }
              : {}),
          },
          initContainers: [
            {
              // Reads region and zone of the pod's Node (not offered by the downward API) into
              // meridiand's settings file (MERIDIAN_CONFIG, below the environment in precedence).
              name: 'locality',
              image: s.image,
              command: ['node', '-e', LOCALITY_SCRIPT],
              env: [{ name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } }],
              securityContext: restricted,
              resources: { requests: { cpu: '10m', memory: '32Mi' }, limits: { memory: '64Mi' } },
              volumeMounts: [
                { name: 'locality', mountPath: '/var/run/meridian' },
                {
                  name: 'kube-api-token',
                  mountPath: '/var/run/secrets/kubernetes.io/serviceaccount',
                  readOnly: true,
                },
              ],
            },
          ],
          containers: [
            {
              name: 'meridiand',
              image: s.image,
              command: ['meridiand'],
              env,
              ports,
              readinessProbe: {
                httpGet: { path: '/readyz', port: PORT_NAMES.monitoring },
                periodSeconds: 5,
                failureThreshold: 3,
              },
              livenessProbe: {
                httpGet: { path: '/healthz', port: PORT_NAMES.monitoring },
                initialDelaySeconds: 10,
                periodSeconds: 10,
                failureThreshold: 6,
              },
              startupProbe: {
                httpGet: { path: '/healthz', port: PORT_NAMES.monitoring },
                periodSeconds: 2,
                failureThreshold: 60,
              },
              resources: { requests: { cpu: '500m', memory: '512Mi' }, limits: { memory: '2Gi' } },
              securityContext: restricted,
              volumeMounts: [
                { name: 'kek', mountPath: '/etc/meridian/kek', readOnly: true },
                { name: 'webhook-tls', mountPath: '/etc/meridian/webhook', readOnly: true },
                ...(s.natsAuthConf
                  ? [{ name: 'nats-creds', mountPath: '/etc/meridian/nats', readOnly: true }]
                  : []),
                { name: 'snapshot', mountPath: '/var/lib/meridian' },
                { name: 'locality', mountPath: '/var/run/meridian', readOnly: true },
              ],
            },
          ],
          volumes: [
            { name: 'kek', secret: { secretName: NAMES.kekSecret, defaultMode: 0o400 } },
            { name: 'webhook-tls', secret: { secretName: NAMES.webhookSecret, defaultMode: 0o400 } },
            ...(s.natsAuthConf
              ? [{ name: 'nats-creds', secret: { secretName: NAMES.natsSecret, defaultMode: 0o400 } }]
              : []),
            { name: 'snapshot', emptyDir: {} },
            { name: 'locality', emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } },
            {
              name: 'kube-api-token',
              projected: {
                defaultMode: 0o444,
                sources: [
                  { serviceAccountToken: { path: 'token', expirationSeconds: 600 } },
                  { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
                ],
              },
            },
          ],
        },
      },
    },
  });
  add<IPodDisruptionBudget>(out, {
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: meta(NAMES.meridiand, 'meridiand'),
    spec: { maxUnavailable: 1, selector: { matchLabels: labels } },
  });

  const service = (name: string, ports: IServicePort[], extra: Partial<ObjectMeta> = {}) =>
    add<IService>(out, {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: meta(name, 'meridiand', extra),
      spec: { type: 'ClusterIP', selector: labels, ports },
    });
  const xdsPort: IServicePort = {
    name: PORT_NAMES.xds,
    port: MERIDIAND_PORTS.xds,
    targetPort: PORT_NAMES.xds,
    protocol: 'TCP',
    appProtocol: 'grpc',
  };
  // xDS (over mTLS on the CA port, plus plaintext if asked) and CreateCertificate: what workloads call.
  service(NAMES.meridiand, [
    ...(s.plaintextXds ? [xdsPort] : []),
    {
      name: PORT_NAMES.ca,
      port: MERIDIAND_PORTS.ca,
      targetPort: PORT_NAMES.ca,
      protocol: 'TCP',
      appProtocol: 'grpc',
    },
  ]);
  service(NAMES.adminService, [
    {
      name: PORT_NAMES.admin,
      port: MERIDIAND_PORTS.admin,
      targetPort: PORT_NAMES.admin,
      protocol: 'TCP',
      appProtocol: 'https',
    },
  ]);
  service(
    NAMES.monitoringService,
    [
      {
        name: PORT_NAMES.monitoring,
        port: MERIDIAND_PORTS.monitoring,
        targetPort: PORT_NAMES.monitoring,
        protocol: 'TCP',
        appProtocol: 'http',
      },
    ],
    {
      annotations: {
        'prometheus.io/scrape': 'true',
        'prometheus.io/port': String(MERIDIAND_PORTS.monitoring),
        'prometheus.io/path': '/metrics',
      },
    },
  );
  service(NAMES.webhookService, [
    {
      name: PORT_NAMES.webhook,
      port: 443,
      targetPort: PORT_NAMES.webhook,
      protocol: 'TCP',
      appProtocol: 'https',
    },
  ]);

  // --- the CA into etcd ------------------------------------------------------------------------------
  // meridiand loads the intermediate from etcd (sealed with the KEK) and retries until it is there.
  add<IJob>(out, {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: meta(NAMES.caInstall, 'meridian-ca-install'),
    spec: {
      backoffLimit: 20,
      ttlSecondsAfterFinished: 86400,
      template: {
        metadata: { labels: selector('meridian-ca-install') },
        spec: {
          serviceAccountName: NAMES.caInstall,
          automountServiceAccountToken: false,
          restartPolicy: 'OnFailure',
          securityContext: nonRootPodSecurity(),
          containers: [
            {
              name: 'ca-install',
              image: s.image,
              command: [
                'meridian',
                'ca',
                'install',
                '--dir',
                '/etc/meridian/cacerts',
                '--cluster',
                s.cluster,
                '--trust-domain',
                s.trustDomain,
                '--mesh',
                s.meshId,
                '--etcd',
                etcdEndpoints.join(','),
                '--kek-file',
                '/etc/meridian/kek/kek',
              ],
              securityContext: restricted,
              resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '256Mi' } },
              volumeMounts: [
                { name: 'cacerts', mountPath: '/etc/meridian/cacerts', readOnly: true },
                { name: 'kek', mountPath: '/etc/meridian/kek', readOnly: true },
              ],
            },
          ],
          volumes: [
            { name: 'cacerts', secret: { secretName: NAMES.pluginCaSecret, defaultMode: 0o400 } },
            { name: 'kek', secret: { secretName: NAMES.kekSecret, defaultMode: 0o400 } },
          ],
        },
      },
    },
  });

  // --- the admission webhook -------------------------------------------------------------------------
  const groups = new Map<string, { versions: Set<string>; resources: Set<string> }>();
  for (const k of ALL_KINDS) {
    const g = groups.get(k.group) ?? { versions: new Set<string>(), resources: new Set<string>() };
    for (const v of k.versions) g.versions.add(v);
    g.resources.add(pluralOf(k.kind));
    groups.set(k.group, g);
  }
  add<IValidatingWebhookConfiguration>(out, {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'ValidatingWebhookConfiguration',
    metadata: { name: `${NAMES.webhookConfig}-${s.cluster}`, labels: part('meridiand') },
    webhooks: [
      {
        name: WEBHOOK_NAME,
        admissionReviewVersions: ['v1'],
        sideEffects: 'None',
        failurePolicy: s.webhookFailurePolicy,
        matchPolicy: 'Equivalent',
        timeoutSeconds: 10,
        clientConfig: {
          service: { name: NAMES.webhookService, namespace: ns, path: '/validate', port: 443 },
          caBundle: b64(pub.rootCertPem),
        },
        rules: [...groups].map(([group, g]) => ({
          operations: ['CREATE', 'UPDATE'],
          apiGroups: [group],
          apiVersions: [...g.versions],
          resources: [...g.resources],
          scope: 'Namespaced',
        })),
      },
    ],
  });

  return { manifests: out, secrets: secret ? secrets(s, meta, secret) : [] };
}

function secrets(s: ManifestSettings, meta: Meta, m: SecretMaterial): K8sObject[] {
  const secret = (name: string, data: Record<string, string>, type = 'Opaque'): K8sObject =>
    obj<ISecret>({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: meta(name, 'meridiand'),
      type,
      data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, b64(v)])),
    });
  return [
    secret(NAMES.pluginCaSecret, { ...m.pluginCa }),
    secret(NAMES.kekSecret, { kek: `${m.kek}\n` }),
    secret(
      NAMES.webhookSecret,
      { 'tls.crt': m.webhookCertPem, 'tls.key': m.webhookKeyPem },
      'kubernetes.io/tls',
    ),
    ...(m.natsSeed ? [secret(NAMES.natsSecret, { [`${s.cluster}.nk`]: m.natsSeed })] : []),
  ];
}
