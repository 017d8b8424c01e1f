import type { EndpointHealth } from '@meridian/translate';
import { InvalidRegistrationError, RegistrationRefusedError } from './errors.js';
import type { WorkloadRegistration } from './types.js';

/** Keyspace-relative prefix of agent registrations: `workloads/<namespace>/<name>`. */
export const WORKLOADS_PREFIX = 'workloads/';

/** The key of one registration. */
export function workloadKey(namespace: string, name: string): string {
  return `${WORKLOADS_PREFIX}${namespace}/${name}`;
}

/** Default registration lease TTL (s), as meridiand's `--registration-ttl` default. */
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

/** Who opened a registration stream, as the server authenticated it. */
export interface RegistrationCaller {
  /** The identity it proved: a SPIFFE id (workload certificate, bootstrap or admin token). */
  readonly subject: string;
  /** The workload identity it holds (mTLS certificate or bootstrap token); absent for operators. */
  readonly workload?: { readonly namespace: string; readonly serviceAccount: string };
  /** May register any identity at any address (role `registrar`: an agent on a gateway host). */
  readonly registrar: boolean;
}

/** `127.0.0.1` from grpc-js peers such as `127.0.0.1:5000`, `[::1]:5000`, `[::ffff:10.0.0.1]:5000`. */
export function peerHost(peer: string): string {
  const m = /^\[([^\]]+)\]:\d+$/.exec(peer) ?? /^([^:]+):\d+$/.exec(peer);
  const host = m ? m[1]! : peer;
  return host.startsWith('::ffff:') && host.includes('.') ? host.slice(7) : host;
}

/**
 * Istio's rule for a workload registering itself: the caller must hold the identity it registers
 * (namespace and service account of its certificate or token), and the address it registers must
 * be the one it connects from. A `registrar` may register any workload anywhere. Pure.
 */
export function checkRegistration(caller: RegistrationCaller, spec: WorkloadSpec, peerAddress: string): void {
  if (caller.registrar) return;
  const id = `${spec.namespace}/${spec.name}`;
  const w = caller.workload;
  if (!w)
    throw new RegistrationRefusedError(
      'PERMISSION_DENIED',
      'forbidden',
      `workload ${id}: ${caller.subject} holds no workload identity and no registrar role`,
    );
  if (w.namespace !== spec.namespace || w.serviceAccount !== (spec.serviceAccount ?? ''))
    throw new RegistrationRefusedError(
      'PERMISSION_DENIED',
      'identity_mismatch',
      `workload ${id}: register.namespace/service_account "${spec.namespace}/${spec.serviceAccount ?? ''}" is not the caller's identity ${caller.subject}`,
    );
  const from = peerHost(peerAddress);
  if (spec.address !== from)
    throw new RegistrationRefusedError(
      'PERMISSION_DENIED',
      'address_mismatch',
      `workload ${id}: register.address "${spec.address}" is not the address the caller connects from (${from}); registering another address needs the registrar role`,
    );
}
