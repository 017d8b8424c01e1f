// The cluster's own stores, when the manifests include them: a 3-member etcd (unless existing
// endpoints are given) and NATS with JetStream and gateways to the other clusters (nats.ts renders
// its configuration).

import type { IStatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import type { IPodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import type { IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import type { IContainerPort } from 'kubernetes-models/v1/ContainerPort';
import type { IPodSpec } from 'kubernetes-models/v1/PodSpec';
import type { ISecurityContext } from 'kubernetes-models/v1/SecurityContext';
import type { IService } from 'kubernetes-models/v1/Service';
import type { IServicePort } from 'kubernetes-models/v1/ServicePort';
import type { ITopologySpreadConstraint } from 'kubernetes-models/v1/TopologySpreadConstraint';
import {
  ETCD_PORTS,
  type K8sObject,
  type ManifestSettings,
  type Meta,
  NAMES,
  NATS_PORTS,
  nonRootPodSecurity,
  type ObjectMeta,
  obj,
  preferOwnNode,
  type Selector,
} from './model.js';
import { renderNatsConf } from './nats.js';

/** Spreads a store's members over the zones (maxSkew 1, scheduled anyway where it cannot). */
const spreadOverZones = (labels: Record<string, string>): ITopologySpreadConstraint[] => [
  {
    labelSelector: { matchLabels: labels },
    maxSkew: 1,
    topologyKey: 'topology.kubernetes.io/zone',
    whenUnsatisfiable: 'ScheduleAnyway',
  },
];

/** The headless Service of a store's members (their DNS names, also while not ready): `ports` between them. */
const peerService = (
  metadata: ObjectMeta,
  labels: Record<string, string>,
  ports: IServicePort[],
): K8sObject =>
  obj<IService>({
    apiVersion: 'v1',
    kind: 'Service',
    metadata,
    spec: { clusterIP: 'None', publishNotReadyAddresses: true, selector: labels, ports },
  });

/**
 * A store's 3 members: a StatefulSet started in parallel, non-root, spread over the zones, each with a
 * `data` volume claim of `storage`; `pod` is the rest of the pod spec (containers, volumes, affinity).
 */
const storeStatefulSet = (
  metadata: ObjectMeta,
  name: string,
  labels: Record<string, string>,
  storage: string,
  pod: IPodSpec,
): K8sObject =>
  obj<IStatefulSet>({
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata,
    spec: {
      serviceName: name,
      replicas: 3,
      podManagementPolicy: 'Parallel',
      selector: { matchLabels: labels },
      template: {
        metadata: { labels },
        spec: {
          serviceAccountName: name,
          automountServiceAccountToken: false,
          securityContext: nonRootPodSecurity(),
          topologySpreadConstraints: spreadOverZones(labels),
          ...pod,
        },
      },
      volumeClaimTemplates: [
        {
          metadata: { name: 'data' },
          spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage } } },
        },
      ],
    },
  });

/** The ClusterIP Service clients of a store connect to: its `client` port. */
const clientService = (metadata: ObjectMeta, labels: Record<string, string>, port: number): K8sObject =>
  obj<IService>({
    apiVersion: 'v1',
    kind: 'Service',
    metadata,
    spec: {
      type: 'ClusterIP',
      selector: labels,
      ports: [{ name: 'client', port, targetPort: 'client', protocol: 'TCP' }],
    },
  });

/** The PodDisruptionBudget of a 3-member store: at most one member down at a time. */
const oneDownAtATime = (metadata: ObjectMeta, labels: Record<string, string>): K8sObject =>
  obj<IPodDisruptionBudget>({
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata,
    spec: { maxUnavailable: 1, selector: { matchLabels: labels } },
  });

/** A 3-member etcd: StatefulSet with a PVC each, a headless Service for peers and a client Service. */
export function etcdObjects(
  s: ManifestSettings,
  meta: Meta,
  selector: Selector,
  restricted: ISecurityContext,
): K8sObject[] {
  const ns = s.namespace;
  const labels = selector('etcd');
  const peer = (i: number) =>
    `${NAMES.etcd}-${i}=http://${NAMES.etcd}-${i}.${NAMES.etcd}.${ns}.svc:${ETCD_PORTS.peer}`;
  // etcd's images have no shell: the kubelet expands $(POD_NAME) in args.
  const self = `$(POD_NAME).${NAMES.etcd}.${ns}.svc`;
  const args = [
    '--name=$(POD_NAME)',
    '--data-dir=/var/lib/etcd',
    `--listen-client-urls=http://0.0.0.0:${ETCD_PORTS.client}`,
    `--advertise-client-urls=http://${self}:${ETCD_PORTS.client}`,
    `--listen-peer-urls=http://0.0.0.0:${ETCD_PORTS.peer}`,
    `--initial-advertise-peer-urls=http://${self}:${ETCD_PORTS.peer}`,
    `--initial-cluster=${[0, 1, 2].map(peer).join(',')}`,
    `--initial-cluster-token=meridian-${s.meshId}-${s.cluster}`,
    '--initial-cluster-state=new',
    '--listen-metrics-urls=http://0.0.0.0:2381',
    '--auto-compaction-retention=1',
  ];
  const ports: IContainerPort[] = [
    { name: 'client', containerPort: ETCD_PORTS.client, protocol: 'TCP' },
    { name: 'peer', containerPort: ETCD_PORTS.peer, protocol: 'TCP' },
    { name: 'metrics', containerPort: 2381, protocol: 'TCP' },
  ];
  return [
    peerService(meta(NAMES.etcd, 'etcd'), labels, [
      { name: 'client', port: ETCD_PORTS.client, targetPort: 'client', protocol: 'TCP' },
      { name: 'peer', port: ETCD_PORTS.peer, targetPort: 'peer', protocol: 'TCP' },
    ]),
    clientService(meta(NAMES.etcdClient, 'etcd'), labels, ETCD_PORTS.client),
    storeStatefulSet(meta(NAMES.etcd, 'etcd'), NAMES.etcd, labels, s.etcdStorage, {
      affinity: {
        podAntiAffinity: preferOwnNode(labels),
      },
      containers: [
        {
          name: 'etcd',
          image: s.etcdImage,
          command: ['etcd'],
          args,
          env: [{ name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }],
          ports,
          readinessProbe: { httpGet: { path: '/readyz', port: 'metrics' }, periodSeconds: 5 },
          livenessProbe: {
            httpGet: { path: '/livez', port: 'metrics' },
            initialDelaySeconds: 15,
            periodSeconds: 10,
          },
          resources: { requests: { cpu: '250m', memory: '512Mi' }, limits: { memory: '2Gi' } },
          securityContext: restricted,
          volumeMounts: [{ name: 'data', mountPath: '/var/lib/etcd' }],
        },
      ],
    }),
    oneDownAtATime(meta(NAMES.etcd, 'etcd'), labels),
  ];
}

/** NATS: ConfigMap (nats.conf: cluster routes, gateways to the peers, JetStream), StatefulSet, Services. */
export function natsObjects(
  s: ManifestSettings,
  meta: Meta,
  selector: Selector,
  restricted: ISecurityContext,
): K8sObject[] {
  const ns = s.namespace;
  const labels = selector('nats');
  const host = (i: number) => `${NAMES.nats}-${i}.${NAMES.nats}.${ns}.svc`;
  const conf = renderNatsConf({
    cluster: s.cluster,
    routes: [0, 1, 2].map((i) => `nats-route://${host(i)}:${NATS_PORTS.cluster}`),
    ownGateways: [0, 1, 2].map((i) => `nats://${host(i)}:${NATS_PORTS.gateway}`),
    peers: s.peers,
    ports: NATS_PORTS,
    ...(s.natsGatewayAdvertise ? { gatewayAdvertise: s.natsGatewayAdvertise } : {}),
    auth: s.natsAuthConf !== undefined,
  });
  const ports: IContainerPort[] = [
    { name: 'client', containerPort: NATS_PORTS.client, protocol: 'TCP' },
    { name: 'cluster', containerPort: NATS_PORTS.cluster, protocol: 'TCP' },
    { name: 'gateway', containerPort: NATS_PORTS.gateway, protocol: 'TCP' },
    { name: 'monitor', containerPort: NATS_PORTS.monitor, protocol: 'TCP' },
  ];
  return [
    obj<IConfigMap>({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: meta(NAMES.natsConfig, 'nats'),
      data: {
        'nats.conf': conf,
        ...(s.natsAuthConf ? { 'meridian-federation-auth.conf': s.natsAuthConf } : {}),
      },
    }),
    peerService(meta(NAMES.nats, 'nats'), labels, [
      { name: 'cluster', port: NATS_PORTS.cluster, targetPort: 'cluster', protocol: 'TCP' },
      { name: 'gateway', port: NATS_PORTS.gateway, targetPort: 'gateway', protocol: 'TCP' },
    ]),
    clientService(meta(NAMES.natsClient, 'nats'), labels, NATS_PORTS.client),
    obj<IService>({
      // The other clusters' NATS servers connect here (their --peer <this cluster>=nats://<address>:7222).
      apiVersion: 'v1',
      kind: 'Service',
      metadata: meta(NAMES.natsGateway, 'nats'),
      spec: {
        type: 'LoadBalancer',
        selector: labels,
        ports: [{ name: 'gateway', port: NATS_PORTS.gateway, targetPort: 'gateway', protocol: 'TCP' }],
      },
    }),
    storeStatefulSet(meta(NAMES.nats, 'nats'), NAMES.nats, labels, s.natsStorage, {
      containers: [
        {
          name: 'nats',
          image: s.natsImage,
          command: ['nats-server', '--config', '/etc/nats/nats.conf'],
          env: [{ name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }],
          ports,
          readinessProbe: {
            httpGet: { path: '/healthz?js-enabled-only=true', port: 'monitor' },
            periodSeconds: 5,
          },
          livenessProbe: {
            httpGet: { path: '/healthz?js-enabled-only=true', port: 'monitor' },
            initialDelaySeconds: 10,
            periodSeconds: 10,
          },
          resources: { requests: { cpu: '100m', memory: '256Mi' }, limits: { memory: '1Gi' } },
          securityContext: restricted,
          volumeMounts: [
            { name: 'config', mountPath: '/etc/nats', readOnly: true },
            { name: 'data', mountPath: '/data' },
          ],
        },
      ],
      volumes: [{ name: 'config', configMap: { name: NAMES.natsConfig } }],
    }),
    oneDownAtATime(meta(NAMES.nats, 'nats'), labels),
  ];
}
