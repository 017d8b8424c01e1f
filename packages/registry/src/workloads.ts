import type { EndpointHealth } from '@meridian/translate';
import { InvalidRegistrationError } from './errors.js';
import type { WorkloadRegistration } from './types.js';

/** Keyspace-relative prefix of agent registrations: `workloads/<namespace>/<name>`. */
export const WORKLOADS_PREFIX = 'workloads/';

/** The key of one registration. */
export function workloadKey(namespace: string, name: string): string {
  return `${WORKLOADS_PREFIX}${namespace}/${name}`;
}

/** Default registration lease TTL (issue 5). */
export const DEFAULT_REGISTRATION_TTL_S = 15;

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const HEALTH = new Set<EndpointHealth>(['HEALTHY', 'UNHEALTHY', 'DRAINING']);

/** What an agent sends to register (before the replica stamps it). */
export interface WorkloadSpec {
  readonly name: string;
  readonly namespace: string;
  readonly address: string;
  readonly ports?: Readonly<Record<string, number>>;
  readonly labels?: Readonly<Record<string, string>>;
  readonly serviceAccount?: string;
  readonly locality?: string;
  readonly network?: string;
  readonly health?: EndpointHealth;
  readonly weight?: number;
}

/** Checks a workload spec; throws {@link InvalidRegistrationError} naming the first bad field. */
export function validateWorkload(spec: WorkloadSpec): void {
  const id = `${spec.namespace || '?'}/${spec.name || '?'}`;
  const bad = (field: string, reason: string) => new InvalidRegistrationError(id, field, reason);
  if (!spec.name) throw bad('name', 'is required');
  if (spec.name.length > 63 || !DNS_LABEL.test(spec.name))
    throw bad('name', `"${spec.name}" is not a DNS-1123 label`);
  if (!spec.namespace) throw bad('namespace', 'is required');
  if (spec.namespace.length > 63 || !DNS_LABEL.test(spec.namespace))
    throw bad('namespace', `"${spec.namespace}" is not a DNS-1123 label`);
  if (!spec.address) throw bad('address', 'is required');
  if (/\s|\//.test(spec.address)) throw bad('address', `"${spec.address}" is not an address`);
  for (const [name, port] of Object.entries(spec.ports ?? {})) {
    if (!Number.isInteger(port) || port < 1 || port > 65535)
      throw bad(`ports.${name}`, `port must be 1..65535, got ${port}`);
  }
  if (spec.health !== undefined && !HEALTH.has(spec.health))
    throw bad('health', `must be HEALTHY, UNHEALTHY or DRAINING, got ${String(spec.health)}`);
}

/** The stored registration of a validated spec. */
export function toRegistration(spec: WorkloadSpec, replicaId: string, at: Date): WorkloadRegistration {
  return {
    name: spec.name,
    namespace: spec.namespace,
    address: spec.address,
    ports: { ...(spec.ports ?? {}) },
    labels: { ...(spec.labels ?? {}) },
    serviceAccount: spec.serviceAccount ?? '',
    locality: spec.locality ?? '',
    network: spec.network ?? '',
    health: spec.health ?? 'HEALTHY',
    weight: Math.max(1, spec.weight ?? 1),
    replicaId,
    registeredAt: at.toISOString(),
  };
}
