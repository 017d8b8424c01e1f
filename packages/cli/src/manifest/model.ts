// What the parts of the manifest generator share (generate.ts, stores.ts, command.ts): one cluster's
// settings and material, the objects' names and ports, and the object type as written to YAML.
import type { IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import type { IPodAntiAffinity } from 'kubernetes-models/v1/PodAntiAffinity';
import type { IPodSecurityContext } from 'kubernetes-models/v1/PodSecurityContext';

/** The metadata of a namespaced object. */
export type ObjectMeta = NonNullable<IDeployment['metadata']>;

/** One object, checked against its Kubernetes type `T` where it is written. */
export const obj = <T>(o: T): K8sObject => o as unknown as K8sObject;
/** Adds one object, checked against its Kubernetes type `T`, to `list`. */
export const add = <T>(list: K8sObject[], o: T): void => {
  list.push(obj<T>(o));
};

/** A Kubernetes object as written to YAML. */
export interface K8sObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: { readonly name: string; readonly namespace?: string; readonly [k: string]: unknown };
  readonly [k: string]: unknown;
}

/** Ports of meridiand in the pod (the flags' defaults where they have one). */
export const MERIDIAND_PORTS = {
  xds: 15010,
  ca: 15012,
  monitoring: 15014,
  webhook: 15017,
  admin: 15080,
} as const;

/** Container port names (at most 15 characters, IANA_SVC_NAME). */
export const PORT_NAMES = {
  xds: 'grpc-xds',
  ca: 'grpc-ca',
  monitoring: 'http-monitoring',
  webhook: 'https-webhook',
  admin: 'https-admin',
} as const;

/** Ports of NATS (client, cluster routes, gateways, monitoring). */
export const NATS_PORTS = { client: 4222, cluster: 6222, gateway: 7222, monitor: 8222 } as const;
/** Ports of etcd (clients, peers). */
export const ETCD_PORTS = { client: 2379, peer: 2380 } as const;

/** The settings of one cluster's manifests (`meridian manifest generate` flags). */
export interface ManifestSettings {
  readonly cluster: string;
  readonly meshId: string;
  readonly namespace: string;
  readonly trustDomain: string;
  readonly replicas: number;
  /** Zones the replicas are confined to and spread over; empty: spread over whatever zones exist. */
  readonly zones: readonly string[];
  /** Other clusters' NATS gateway URLs (`nats://host:7222`), by cluster id. */
  readonly peers: readonly { readonly cluster: string; readonly url: string }[];
  /** Endpoints of an existing etcd; undefined: a 3-member etcd StatefulSet is generated. */
  readonly etcdEndpoints?: readonly string[];
  readonly image: string;
  readonly etcdImage: string;
  readonly natsImage: string;
  readonly etcdStorage: string;
  readonly natsStorage: string;
  /** Also serve plaintext xDS on 15010 (default: xDS only over mTLS on the CA port). */
  readonly plaintextXds: boolean;
  readonly webhookFailurePolicy: 'Fail' | 'Ignore';
  /** `host:port` this cluster's NATS gateway is reached at from the other clusters, if known. */
  readonly natsGatewayAdvertise?: string;
  /** The federation authorization block (`meridian federation nats-config`); none: NATS without users. */
  readonly natsAuthConf?: string;
}

/** Public material: the mesh root certificate (the webhook's caBundle, the trust anchor). */
export interface PublicMaterial {
  readonly rootCertPem: string;
}

/** Secret material, written only to the secrets file. */
export interface SecretMaterial {
  /** Istio's plug-in CA files: ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem. */
  readonly pluginCa: Readonly<Record<string, string>>;
  /** The key-encryption key (base64), sealing the intermediate's key in etcd. */
  readonly kek: string;
  /** Serving chain and key of the webhook (DNS name of its Service). */
  readonly webhookCertPem: string;
  readonly webhookKeyPem: string;
  /** The cluster's NATS nkey seed, when NATS users are on. */
  readonly natsSeed?: string;
}

/** The generated objects: `manifests` hold no secret, `secrets` only Secrets. */
export interface ManifestSet {
  readonly manifests: readonly K8sObject[];
  readonly secrets: readonly K8sObject[];
}

/** Names of the objects, shared by the generator, the command's messages and the tests. */
export const NAMES = {
  meridiand: 'meridiand',
  adminService: 'meridiand-admin',
  monitoringService: 'meridiand-monitoring',
  webhookService: 'meridiand-webhook',
  nodeReader: 'meridian-node-reader',
  caInstall: 'meridian-ca-install',
  pluginCaSecret: 'meridian-cacerts',
  kekSecret: 'meridian-ca-kek',
  webhookSecret: 'meridian-webhook-tls',
  natsSecret: 'meridian-nats-creds',
  etcd: 'meridian-etcd',
  etcdClient: 'meridian-etcd-client',
  nats: 'meridian-nats',
  natsClient: 'meridian-nats-client',
  natsGateway: 'meridian-nats-gateway',
  natsConfig: 'meridian-nats-config',
  webhookConfig: 'meridian-config-validation',
} as const;

/** The webhook name Kubernetes shows in a denial (`admission webhook "..." denied the request`). */
export const WEBHOOK_NAME = 'validation.meridian.io';

/** DNS name of the webhook Service, the SAN of its serving certificate. */
export function webhookDnsName(namespace: string): string {
  return `${NAMES.webhookService}.${namespace}.svc`;
}

/**
 * The extra names of meridiand's serving certificate (`MERIDIAN_SERVING_NAMES`): its Services' DNS
 * names, so a client that reaches the replicas through a Service (an agent's seed address, `meridian`
 * against the admin Service) can check the name it dialled. Each replica also names its pod IP, which
 * it advertises (`MERIDIAN_ADVERTISE_ADDRESS` from the downward API).
 */
export function meridiandDnsNames(namespace: string): string[] {
  return [NAMES.meridiand, NAMES.adminService].map((service) => `${service}.${namespace}.svc`);
}

/** The etcd client URLs meridiand uses (generated StatefulSet or existing etcd). */
export function etcdEndpointsOf(s: ManifestSettings): string[] {
  if (s.etcdEndpoints) return [...s.etcdEndpoints];
  return [0, 1, 2].map(
    (i) => `http://${NAMES.etcd}-${i}.${NAMES.etcd}.${s.namespace}.svc:${ETCD_PORTS.client}`,
  );
}

/** Base64 of UTF-8 text (a Secret's data). */
export const b64 = (text: string) => Buffer.from(text, 'utf8').toString('base64');

/** Kubernetes' plural resource name of a kind (`AuthorizationPolicy` -> `authorizationpolicies`). */
export function pluralOf(kind: string): string {
  const k = kind.toLowerCase();
  return k.endsWith('y') ? `${k.slice(0, -1)}ies` : `${k}s`;
}

/** The metadata of one of the cluster's objects: name, namespace and the component's labels. */
export type Meta = (name: string, component: string, extra?: Partial<ObjectMeta>) => ObjectMeta;
/** The labels that select one component's pods. */
export type Selector = (component: string) => Record<string, string>;

/**
 * The pod securityContext of Meridian's pods and its stores': never root (uid and gid 10001), the
 * runtime's seccomp profile. Secret files are 0400: readable through the fsGroup the kubelet gives
 * read-only volumes.
 */
export const nonRootPodSecurity = (): IPodSecurityContext => ({
  runAsNonRoot: true,
  runAsUser: 10001,
  fsGroup: 10001,
  seccompProfile: { type: 'RuntimeDefault' },
});

/** Pod anti-affinity that prefers (weight 100) each pod with `labels` on a node of its own. */
export const preferOwnNode = (labels: Record<string, string>): IPodAntiAffinity => ({
  preferredDuringSchedulingIgnoredDuringExecution: [
    {
      weight: 100,
      podAffinityTerm: {
        labelSelector: { matchLabels: labels },
        topologyKey: 'kubernetes.io/hostname',
      },
    },
  ],
});
