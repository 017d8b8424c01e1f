/**
 * Builders of the input snapshots: sort, freeze and share structure, so producers (the registry,
 * the replica's config watch, tests, benchmarks) all hand translation the same normal form.
 */
import type {
  AuthorizationPolicyConfig,
  ConfigObject,
  DestinationRuleConfig,
  PeerAuthenticationConfig,
  RateLimitConfig,
  RequestAuthenticationConfig,
  SidecarConfig,
  TelemetryConfig,
  VirtualServiceConfig,
} from '@meridian/api';
import type { ConfigSnapshot, Endpoint, PolicyInputs, RegistrySnapshot, Service } from './types.js';
import { compareStrings } from './util.js';

function byNamespaceName(
  a: { metadata: { namespace: string; name: string } },
  b: { metadata: { namespace: string; name: string } },
): number {
  return (
    compareStrings(a.metadata.namespace, b.metadata.namespace) ||
    compareStrings(a.metadata.name, b.metadata.name)
  );
}

/**
 * A ConfigSnapshot from validated objects (`@meridian/api`'s normalised form) at a store revision.
 * Kinds translation does not read (ServiceEntry, WorkloadEntry: the registry's input) are ignored;
 * PeerAuthentications are kept for a Translator with `mtls` (others ignore them). `policyInputs` carries what the replica
 * resolved for RequestAuthentication and RateLimit (JWKS, the rate-limit service's address).
 */
export function createConfigSnapshot(
  revision: number,
  objects: readonly ConfigObject[],
  policyInputs?: PolicyInputs,
): ConfigSnapshot {
  const virtualServices: VirtualServiceConfig[] = [];
  const destinationRules: DestinationRuleConfig[] = [];
  const sidecars: SidecarConfig[] = [];
  const authorizationPolicies: AuthorizationPolicyConfig[] = [];
  const requestAuthentications: RequestAuthenticationConfig[] = [];
  const rateLimits: RateLimitConfig[] = [];
  const telemetries: TelemetryConfig[] = [];
  const peerAuthentications: PeerAuthenticationConfig[] = [];
  for (const o of objects) {
    if (o.kind === 'VirtualService') virtualServices.push(o);
    else if (o.kind === 'DestinationRule') destinationRules.push(o);
    else if (o.kind === 'Sidecar') sidecars.push(o);
    else if (o.kind === 'AuthorizationPolicy') authorizationPolicies.push(o);
    else if (o.kind === 'RequestAuthentication') requestAuthentications.push(o);
    else if (o.kind === 'RateLimit') rateLimits.push(o);
    else if (o.kind === 'Telemetry') telemetries.push(o);
    else if (o.kind === 'PeerAuthentication') peerAuthentications.push(o);
  }
  return Object.freeze({
    revision,
    virtualServices: Object.freeze(virtualServices.sort(byNamespaceName)),
    destinationRules: Object.freeze(destinationRules.sort(byNamespaceName)),
    sidecars: Object.freeze(sidecars.sort(byNamespaceName)),
    authorizationPolicies: Object.freeze(authorizationPolicies.sort(byNamespaceName)),
    requestAuthentications: Object.freeze(requestAuthentications.sort(byNamespaceName)),
    rateLimits: Object.freeze(rateLimits.sort(byNamespaceName)),
    telemetries: Object.freeze(telemetries.sort(byNamespaceName)),
    peerAuthentications: Object.freeze(peerAuthentications.sort(byNamespaceName)),
    ...(policyInputs !== undefined ? { policyInputs } : {}),
  });
}

function sortedPairs(record: Readonly<Record<string, string | number>>): string {
  return Object.keys(record)
    .sort(compareStrings)
    .map((k) => `${k}=${record[k]}`)
    .join(',');
}

/** A total order over endpoints: (address, ports), then every other field, so ties never depend
 * on input order. */
function endpointKey(e: Endpoint): string {
  const l = e.locality;
  return [
    e.address,
    sortedPairs(e.ports),
    sortedPairs(e.labels),
    `${l.region}/${l.zone}/${l.subZone}`,
    e.network,
    e.clusterId,
    e.health,
    e.serviceAccount,
    String(e.weight),
    e.namespace ?? '',
  ].join('\u0000');
}

/** Sorts an endpoint list by (address, ports, then every other field) and freezes it. */
export function sortEndpoints(endpoints: readonly Endpoint[]): readonly Endpoint[] {
  const keyed = endpoints.map((e) => ({ e, k: endpointKey(e) }));
  keyed.sort((a, b) => compareStrings(a.k, b.k));
  return Object.freeze(keyed.map((x) => x.e));
}

/**
 * A RegistrySnapshot: services sorted by hostname (for a hostname defined twice, the first by
 * namespace wins), endpoint lists sorted and frozen. Services without endpoints get none.
 */
export function createRegistrySnapshot(
  revision: number,
  services: readonly Service[],
  endpoints: ReadonlyMap<string, readonly Endpoint[]> | Readonly<Record<string, readonly Endpoint[]>>,
): RegistrySnapshot {
  const sorted = [...services].sort(
    (a, b) => compareStrings(a.hostname, b.hostname) || compareStrings(a.namespace, b.namespace),
  );
  const unique: Service[] = [];
  for (const s of sorted) if (unique[unique.length - 1]?.hostname !== s.hostname) unique.push(s);
  const entries: [string, readonly Endpoint[]][] =
    endpoints instanceof Map
      ? [...endpoints.entries()]
      : Object.entries(endpoints as Record<string, readonly Endpoint[]>);
  const map = new Map<string, readonly Endpoint[]>();
  for (const [host, list] of entries.sort((a, b) => compareStrings(a[0], b[0])))
    map.set(host, sortEndpoints(list));
  return Object.freeze({ revision, services: Object.freeze(unique), endpoints: map });
}

/**
 * A new RegistrySnapshot where only `hostname`'s endpoints differ: every other endpoint list and the
 * service list keep their identity, so a {@link Translator} rebuilds only that service's
 * ClusterLoadAssignments.
 */
export function withEndpoints(
  snapshot: RegistrySnapshot,
  revision: number,
  hostname: string,
  endpoints: readonly Endpoint[],
): RegistrySnapshot {
  const map = new Map(snapshot.endpoints);
  map.set(hostname, sortEndpoints(endpoints));
  return Object.freeze({ revision, services: snapshot.services, endpoints: map });
}
