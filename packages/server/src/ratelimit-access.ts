/**
 * Who may call the global rate-limit service (SECURITY.md). A call spends a limit's budget, so it is
 * authenticated and authorised like the rest of the mesh:
 * - **On the CA's mTLS port** (where proxies are pointed when the replica has the CA: the Envoy
 *   cluster presents the workload certificate, translate's `replicaServiceTransportSocket`), the
 *   caller is the SPIFFE identity of its client certificate, in the CA's trust domain. It may spend
 *   only the limits that can apply to a workload of its own: the RateLimit is in the caller's
 *   namespace or in the root namespace (as `selectRateLimits` selects), and, when the registry
 *   lists workloads running as that identity, the RateLimit's selector matches one of them. A
 *   call naming any other limit is refused whole (PERMISSION_DENIED, naming the limit); the proxy
 *   then applies `failureModeDeny`. A caller the registry does not list (a sidecar that never
 *   registered) is held to its namespace only. Descriptor values (principal, header, path) are the
 *   caller's to choose: they only split its own counters.
 * - **Without a client certificate** (the plaintext xDS port, or TLS without one) calls are refused
 *   (UNAUTHENTICATED) unless `--rate-limit-plaintext on` (development only): then anyone who reaches
 *   the port may spend any limit, and proxies are pointed at the plaintext port only when the
 *   replica has no CA.
 */
import * as grpc from '@grpc/grpc-js';
import { identityFromPeerCertificate } from '@meridian/ca';
import { LIMIT_DESCRIPTOR_KEY, type RegistrySnapshot, selectRateLimits } from '@meridian/translate';
import type { Meter } from '@opentelemetry/api';
import type { DescriptorEntry, GlobalRateLimiter } from './ratelimit-windows.js';

/** A workload identity proven by a client certificate. */
export interface CallerIdentity {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
}

/** Who may call the rate-limit service on one gRPC server (see the module comment). */
export interface RateLimitAccess {
  /** True on the CA's mTLS port: a client certificate is the caller's identity. */
  readonly secure: boolean;
  /** `--rate-limit-plaintext on`: answer callers without a client certificate (development only). */
  readonly plaintext: boolean;
  /** The trust domain client certificates must be of (the CA's). */
  readonly trustDomain?: () => string;
  /** The registry (whose workloads run as the caller's identity, with which labels). */
  readonly registry?: () => RegistrySnapshot | undefined;
  /** The mesh root namespace, whose RateLimits apply in every namespace (default `istio-system`). */
  readonly rootNamespace?: string;
  /** Clock for certificate validity (tests). */
  readonly now?: () => number;
  readonly meter?: Meter;
}

/** A refused call: a gRPC status and why (the `details` the caller sees). */
export class RateLimitRefusedError extends Error {
  override readonly name = 'RateLimitRefusedError';
  constructor(
    readonly code: grpc.status,
    readonly reason: 'unauthenticated' | 'forbidden' | 'internal',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Labels of the registry's workloads by identity `namespace/serviceAccount`, cached per snapshot. */
const workloadLabelsCache = new WeakMap<RegistrySnapshot, Map<string, Readonly<Record<string, string>>[]>>();

function workloadLabels(
  registry: RegistrySnapshot | undefined,
  namespace: string,
  serviceAccount: string,
): readonly Readonly<Record<string, string>>[] {
  if (!registry) return [];
  let index = workloadLabelsCache.get(registry);
  if (!index) {
    index = new Map();
    const namespaces = new Map(registry.services.map((s) => [s.hostname, s.namespace]));
    for (const [host, endpoints] of registry.endpoints)
      for (const e of endpoints) {
        if (!e.serviceAccount) continue;
        const sa = /^spiffe:\/\/[^/]+\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(e.serviceAccount);
        const key = sa
          ? `${sa[1]}/${sa[2]}`
          : `${e.namespace ?? namespaces.get(host) ?? ''}/${e.serviceAccount}`;
        const list = index.get(key) ?? [];
        list.push(e.labels);
        index.set(key, list);
      }
    workloadLabelsCache.set(registry, index);
  }
  return index.get(`${namespace}/${serviceAccount}`) ?? [];
}

/**
 * Why `caller` may not spend the limits `descriptors` name, or undefined when it may (pure; the
 * rules are in the module comment). A descriptor naming no limit of the config spends nothing and
 * is allowed.
 */
export function rateLimitRefusal(
  limiter: Pick<GlobalRateLimiter, 'rateLimitOf'>,
  caller: CallerIdentity,
  descriptors: readonly (readonly DescriptorEntry[])[],
  registry: RegistrySnapshot | undefined,
  rootNamespace = 'istio-system',
): string | undefined {
  const principal = `spiffe://${caller.trustDomain}/ns/${caller.namespace}/sa/${caller.serviceAccount}`;
  for (const entries of descriptors) {
    const id = entries.find((e) => e.key === LIMIT_DESCRIPTOR_KEY)?.value;
    if (id === undefined) continue;
    const found = limiter.rateLimitOf(id);
    if (!found) continue;
    const rl = found.config;
    const name = `${rl.metadata.namespace}/${rl.metadata.name}`;
    const ns = rl.metadata.namespace;
    if (ns !== caller.namespace && ns !== rootNamespace)
      return `${principal} may not use the limit ${id}: RateLimit ${name} is in namespace "${ns}", not the caller's`;
    const labels = workloadLabels(registry, caller.namespace, caller.serviceAccount);
    if (
      labels.length > 0 &&
      !labels.some(
        (l) => selectRateLimits([rl], { namespace: caller.namespace, labels: l }, rootNamespace).length > 0,
      )
    )
      return `${principal} may not use the limit ${id}: RateLimit ${name} selects none of the caller's workloads`;
  }
  return undefined;
}

/**
 * The identity of the caller of `call`, or undefined for an accepted unauthenticated caller
 * (`--rate-limit-plaintext on`); throws RateLimitRefusedError (UNAUTHENTICATED) otherwise.
 */
export function rateLimitCaller(
  call: Pick<grpc.ServerUnaryCall<unknown, unknown>, 'getAuthContext'>,
  access: RateLimitAccess,
): CallerIdentity | undefined {
  const peer = access.secure ? call.getAuthContext?.()?.sslPeerCertificate : undefined;
  if (peer?.raw) {
    let id: CallerIdentity;
    try {
      id = identityFromPeerCertificate(peer.raw, new Date((access.now ?? Date.now)()));
    } catch (error) {
      throw new RateLimitRefusedError(
        grpc.status.UNAUTHENTICATED,
        'unauthenticated',
        `client certificate: ${(error as Error).message}`,
        { cause: error },
      );
    }
    const td = access.trustDomain?.();
    if (td === undefined || id.trustDomain !== td)
      throw new RateLimitRefusedError(
        grpc.status.UNAUTHENTICATED,
        'unauthenticated',
        `client certificate of trust domain "${id.trustDomain}", not "${td ?? '(none)'}"`,
      );
    return id;
  }
  if (access.plaintext) return undefined;
  throw new RateLimitRefusedError(
    grpc.status.UNAUTHENTICATED,
    'unauthenticated',
    access.secure
      ? 'the rate-limit service needs the workload certificate: none was presented'
      : 'the rate-limit service needs the workload certificate (the CA mTLS port); unauthenticated callers are off (--rate-limit-plaintext)',
  );
}
