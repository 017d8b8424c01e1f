/**
 * Helpers shared by the per-kind semantic checks: reporting a rule's verdict, labels and workload
 * selectors, durations, exportTo, route destinations and localities. Ported from istio/istio
 * pkg/config/validation (validation.go); messages follow Istio's wording unless noted.
 */
import type { FieldPath, Reporter } from '../path.js';
import {
  isDNS1123Label,
  validateDuration,
  validateLabelKey,
  validateLabelValue,
  validatePort,
  validateWildcardDomain,
} from '../rules.js';
import type * as T from '../types.js';

/** A rule's verdict: an error message, or undefined when the value is valid. */
export type Check = string | undefined;

/** Reports `msg` at `p` when a rule returned one. */
export function report(r: Reporter, p: FieldPath, msg: Check): void {
  if (msg !== undefined) r.add(p, msg);
}

/** Validates a label map (keys and values), reporting at each entry. */
export function checkLabels(labels: T.StringMap | undefined, p: FieldPath, r: Reporter): void {
  for (const [k, v] of Object.entries(labels ?? {})) {
    const e = p.key(k);
    report(r, e, validateLabelKey(k));
    report(r, e, validateLabelValue(v));
  }
}

/** Istio `validateWorkloadSelector` / `ValidateAlphaWorkloadSelector`: no empty keys, no wildcards. */
export function checkSelectorLabels(labels: T.StringMap | undefined, p: FieldPath, r: Reporter): void {
  if (labels === undefined || Object.keys(labels).length === 0) {
    r.warn(p, 'workload selector specified without labels');
  }
  for (const [k, v] of Object.entries(labels ?? {})) {
    const e = p.key(k);
    if (k === '') r.add(e, `empty key is not supported in selector: "${k}=${v}"`);
    if (k.includes('*') || v.includes('*')) r.add(e, `wildcard is not supported in selector: "${k}=${v}"`);
    else if (k !== '') {
      report(r, e, validateLabelKey(k));
      report(r, e, validateLabelValue(v));
    }
  }
}

/** Validates an optional duration string (`1.5s`, `100ms`). */
export function checkDuration(v: string | undefined, p: FieldPath, r: Reporter): void {
  if (v !== undefined) report(r, p, validateDuration(v));
}

/** Istio `validateExportTo`. */
export function checkExportTo(
  exportTo: string[] | undefined,
  namespace: string,
  isServiceEntry: boolean,
  p: FieldPath,
  r: Reporter,
): void {
  if (exportTo === undefined || exportTo.length === 0) return;
  const seen = new Set<string>();
  exportTo.forEach((e, i) => {
    const ep = p.index(i);
    const key = e === '.' ? namespace : e;
    if (seen.has(key)) {
      r.add(
        ep,
        key !== e
          ? `duplicate entries in exportTo: . and current namespace ${namespace}`
          : `duplicate entries in exportTo for entry ${e}`,
      );
      return;
    }
    const valid = e === '~' ? isServiceEntry : key === '*' || isDNS1123Label(key);
    if (!valid) {
      r.add(ep, `only . or * or a valid namespace is allowed in exportTo, got ${e}`);
      return;
    }
    seen.add(key);
  });
  if (seen.has('*') && exportTo.length > 1) {
    r.add(p, 'cannot have both public (*) and non-public exportTo values for a resource');
  }
  if (seen.has('~') && exportTo.length > 1) r.add(p, 'cannot export service entry to no one (~) and someone');
}

/** Validates a route destination: host (no bare `*`), subset name and port. */
export function checkDestination(d: T.Destination | undefined, p: FieldPath, r: Reporter): void {
  if (d === undefined) return;
  const host = d.host ?? '';
  if (host === '*') r.add(p.field('host'), `invalid destination host ${host}`);
  else report(r, p.field('host'), validateWildcardDomain(host));
  if (d.subset !== undefined) {
    if (d.subset === '') r.add(p.field('subset'), 'subset name cannot be empty');
    else if (!isDNS1123Label(d.subset)) r.add(p.field('subset'), `subset name is invalid: ${d.subset}`);
  }
  if (d.port !== undefined) report(r, p.field('port').field('number'), validatePort(d.port.number ?? 0));
}

/** Splits `region/zone/subzone`, checking that `*` appears only as a whole last segment. */
export function checkLocality(loc: string, p: FieldPath, r: Reporter): void {
  if (loc === '') {
    r.add(p, 'empty locality');
    return;
  }
  const parts = loc.split('/');
  if (parts.length > 3) r.add(p, `locality ${loc} has more than 3 segments (region/zone/subzone)`);
  parts.forEach((seg, i) => {
    if (seg.includes('*') && (seg !== '*' || i !== parts.length - 1)) {
      r.add(p, `locality ${loc} wildcard '*' must be the whole last segment`);
    } else if (seg === '') r.add(p, `locality ${loc} has an empty segment`);
  });
}
