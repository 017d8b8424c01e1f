import { type KindName, ValidationError, validateConfig } from '@meridian/api';

const GROUP: Record<KindName, string> = {
  VirtualService: 'networking.istio.io/v1',
  DestinationRule: 'networking.istio.io/v1',
  ServiceEntry: 'networking.istio.io/v1',
  WorkloadEntry: 'networking.istio.io/v1',
  Sidecar: 'networking.istio.io/v1',
  PeerAuthentication: 'security.istio.io/v1',
  AuthorizationPolicy: 'security.istio.io/v1',
  RequestAuthentication: 'security.istio.io/v1',
  RateLimit: 'policy.meridian.io/v1alpha1',
  Telemetry: 'telemetry.istio.io/v1',
};

/** A whole object of `kind` named `t` in namespace `default` with the given spec. */
export function obj(kind: KindName, spec: unknown, name = 't'): Record<string, unknown> {
  return { apiVersion: GROUP[kind], kind, metadata: { name, namespace: 'default' }, spec };
}

/**
 * Validates and returns the error lines (without positions); [] when valid. Asserts that an invalid
 * result carries a ValidationError whose message is exactly those lines.
 */
export function errorsOf(input: unknown): string[] {
  const r = validateConfig(input);
  if (r.ok) return [];
  if (!(r.error instanceof ValidationError)) throw new Error('expected ValidationError');
  if (r.error.name !== 'ValidationError' || r.error.code !== 'INVALID_CONFIG')
    throw new Error('bad error identity');
  return r.error.lines();
}

/** Error lines of a spec of `kind`. */
export function specErrors(kind: KindName, spec: unknown): string[] {
  return errorsOf(obj(kind, spec));
}

/** A minimal valid VirtualService spec with one HTTP route to `reviews`, merged with `route`. */
export function vsWithRoute(route: Record<string, unknown>): unknown {
  return { hosts: ['reviews'], http: [{ route: [{ destination: { host: 'reviews' } }], ...route }] };
}

/** A minimal valid DestinationRule spec for `reviews` with the given traffic policy. */
export function drWithPolicy(trafficPolicy: unknown): unknown {
  return { host: 'reviews', trafficPolicy };
}
