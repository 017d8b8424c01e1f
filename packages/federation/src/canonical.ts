/** Deterministic JSON (object keys sorted) and canonical endpoint order, so equal states compare equal. */
import type { ExportedServiceState, FederatedEndpoint } from './wire.js';

/** JSON with object keys sorted at every level (`undefined` members omitted, as JSON.stringify does). */
export function canonicalJson(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null';
  if (Array.isArray(v)) {
    let out = '[';
    for (let i = 0; i < v.length; i++) out += (i ? ',' : '') + canonicalJson(v[i]);
    return `${out}]`;
  }
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o).sort();
  let out = '{';
  let first = true;
  for (const k of keys) {
    const x = o[k];
    if (x === undefined) continue;
    out += `${first ? '' : ','}${JSON.stringify(k)}:${canonicalJson(x)}`;
    first = false;
  }
  return `${out}}`;
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
