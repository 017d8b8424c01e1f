// SPIFFE identities as Istio uses them: spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>.
import { InvalidRequestError } from './errors.js';

/** A workload identity: trust domain, Kubernetes-style namespace and service account. */
export interface WorkloadIdentity {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
}

const LABEL = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
const TRUST_DOMAIN = /^[a-z0-9]([-a-z0-9._]*[a-z0-9])?$/;

/** Checks a trust domain (lower-case letters, digits, `-`, `.`, `_`; SPIFFE ID spec 2.1). */
export function validateTrustDomain(td: string, field = 'trustDomain'): string {
  if (!TRUST_DOMAIN.test(td) || td.length > 255) {
    throw new InvalidRequestError(field, `invalid trust domain "${td}"`);
  }
  return td;
}

/** Checks namespace and service-account names (DNS-label-like, at most 253 characters). */
export function validateName(value: string, field: string): string {
  if (!LABEL.test(value) || value.length > 253) {
    throw new InvalidRequestError(field, `invalid name "${value}" (lower-case DNS label expected)`);
  }
  return value;
}

/** `spiffe://<td>/ns/<ns>/sa/<sa>` for an identity. */
export function spiffeId(id: WorkloadIdentity): string {
  return `spiffe://${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
}

/** Parses an Istio-style SPIFFE workload id; returns undefined when it is not one. */
export function parseSpiffeId(uri: string): WorkloadIdentity | undefined {
  const m = /^spiffe:\/\/([^/]+)\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(uri);
  if (!m) return undefined;
  const [, trustDomain, namespace, serviceAccount] = m;
  if (!TRUST_DOMAIN.test(trustDomain!) || !LABEL.test(namespace!) || !LABEL.test(serviceAccount!)) {
    return undefined;
  }
  return { trustDomain: trustDomain!, namespace: namespace!, serviceAccount: serviceAccount! };
}
