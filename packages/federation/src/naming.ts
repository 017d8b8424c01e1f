/**
 * Names on the wire: NATS subjects, JetStream KV buckets and keys. Part of the protocol (see
 * PROTOCOL.md): changing them breaks federation between clusters running different versions.
 */
import { InvalidNameError } from './errors.js';

const ID = /^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const HOSTNAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Throws InvalidNameError unless `value` is a mesh or cluster id usable in subjects and bucket names. */
export function checkId(field: 'mesh' | 'cluster', value: string): void {
  if (value.length === 0 || value.length > 63 || !ID.test(value))
    throw new InvalidNameError(
      field,
      value,
      'must be 1-63 letters, digits or "-", not starting or ending with "-"',
    );
}

/** True when `ns` is a DNS label (a Kubernetes namespace). */
export function isNamespace(ns: string): boolean {
  return ns.length > 0 && ns.length <= 63 && DNS_LABEL.test(ns);
}

/** True when `host` is a lower-case DNS name without wildcards (wildcard hosts are never exported). */
export function isExportableHostname(host: string): boolean {
  return host.length > 0 && host.length <= 253 && HOSTNAME.test(host);
}

/** Subject names of one mesh. */
export class Subjects {
  readonly mesh: string;
  constructor(mesh: string) {
    checkId('mesh', mesh);
    this.mesh = mesh;
  }
  /** `meridian.<mesh>.fed`: every federation subject starts with it. */
  get root(): string {
    return `meridian.${this.mesh}.fed`;
  }
  /** `meridian.<mesh>.fed.*.>`: what an importer subscribes to. */
  get all(): string {
    return `${this.root}.*.>`;
  }
  /** `meridian.<mesh>.fed.<cluster>.>`: everything one cluster may publish. */
  clusterAll(cluster: string): string {
    return `${this.root}.${cluster}.>`;
  }
  /** `meridian.<mesh>.fed.<cluster>.hb`: heartbeats. */
  heartbeat(cluster: string): string {
    return `${this.root}.${cluster}.hb`;
  }
  /** `meridian.<mesh>.fed.<cluster>.svc.<namespace>.<hostname>`: incremental service records. */
  service(cluster: string, namespace: string, hostname: string): string {
    return `${this.root}.${cluster}.svc.${namespace}.${hostname}`;
  }
  /** Parses a subject under `root`; undefined when it is not a federation subject of this mesh. */
  parse(
    subject: string,
  ):
    | { kind: 'heartbeat'; cluster: string }
    | { kind: 'service'; cluster: string; namespace: string; hostname: string }
    | undefined {
    const prefix = `${this.root}.`;
    if (!subject.startsWith(prefix)) return undefined;
    const tokens = subject.slice(prefix.length).split('.');
    const [cluster, kind, namespace, ...host] = tokens;
    if (!cluster) return undefined;
    if (kind === 'hb' && tokens.length === 2) return { kind: 'heartbeat', cluster };
    if (kind === 'svc' && namespace && host.length > 0)
      return { kind: 'service', cluster, namespace, hostname: host.join('.') };
    return undefined;
  }
  /** JetStream KV bucket holding the full current state of one cluster: `meridian_fed_<mesh>_<cluster>`. */
  bucket(cluster: string): string {
    return `meridian_fed_${this.mesh}_${cluster}`;
  }
  /** Stream backing `bucket(cluster)` (`KV_` + bucket). */
  stream(cluster: string): string {
    return `KV_${this.bucket(cluster)}`;
  }
  /** Cluster id of a bucket name of this mesh, or undefined. */
  clusterOfBucket(bucket: string): string | undefined {
    const prefix = `meridian_fed_${this.mesh}_`;
    if (!bucket.startsWith(prefix)) return undefined;
    const cluster = bucket.slice(prefix.length);
    return ID.test(cluster) ? cluster : undefined;
  }
}

/** KV key of a service record: `svc.<namespace>.<hostname>`. */
export function serviceKey(namespace: string, hostname: string): string {
  return `svc.${namespace}.${hostname}`;
}

/** KV key of the exporter's epoch marker (fencing). */
export const META_KEY = 'meta';

/** Parses `svc.<namespace>.<hostname>`; undefined for other keys. */
export function parseServiceKey(key: string): { namespace: string; hostname: string } | undefined {
  const [svc, namespace, ...host] = key.split('.');
  if (svc !== 'svc' || !namespace || host.length === 0) return undefined;
  return { namespace, hostname: host.join('.') };
}

/** Identity of one imported service: `<cluster>/<namespace>/<hostname>`. */
export function serviceId(cluster: string, namespace: string, hostname: string): string {
  return `${cluster}/${namespace}/${hostname}`;
}
