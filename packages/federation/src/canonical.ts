/** Deterministic JSON (object keys sorted) and canonical endpoint order, so equal states compare equal. */
import type { ExportedServiceState, FederatedEndpoint } from './wire.js';

/** JSON with object keys sorted at every level. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

/** Endpoints sorted by (address, ports): the order an exporter writes them in. */
export function sortEndpoints(endpoints: readonly FederatedEndpoint[]): FederatedEndpoint[] {
  const keyed = endpoints.map((e) => ({ e, k: `${e.address}|${canonicalJson(e.ports)}` }));
  keyed.sort((a, b) => (a.k < b.k ? -1 : a.k > b.k ? 1 : 0));
  return keyed.map((x) => x.e);
}

/** A fingerprint of a service state: equal for equal content regardless of endpoint or key order. */
export function stateFingerprint(s: ExportedServiceState): string {
  return canonicalJson({ service: s.service, endpoints: sortEndpoints(s.endpoints) });
}
