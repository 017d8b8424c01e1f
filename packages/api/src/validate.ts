import { decodeMessage, isObject, typeName } from './decode.js';
import { type FieldError, sortFieldErrors, ValidationError } from './errors.js';
import { ALL_KINDS, type ConfigObject, type KindName, lookupKind } from './kinds.js';
import { normalize } from './normalize.js';
import { FieldPath, Reporter } from './path.js';
import { isDNS1123Label, isDNS1123Subdomain, validateLabelKey, validateLabelValue } from './rules.js';
import {
  checkAuthorizationPolicy,
  checkDestinationRule,
  checkPeerAuthentication,
  checkRateLimitSpec,
  checkRequestAuthenticationSpec,
  checkServiceEntry,
  checkSidecar,
  checkTelemetrySpec,
  checkVirtualService,
  checkWorkloadEntrySpec,
} from './semantics/index.js';
import { SPEC_SCHEMAS } from './spec-schemas.js';
import type * as T from './types.js';

/** Outcome of validating one object: the canonical object, or every problem found. Never both. */
export type ValidateResult =
  | {
      ok: true;
      config: ConfigObject;
      /** Notes that do not make the object invalid (deprecated fields, selectors without labels). */
      warnings: FieldError[];
    }
  | { ok: false; error: ValidationError };

/** Where an object came from, so errors can carry positions. Filled in by `parseConfigDocuments`. */
export interface ValidateOptions {
  /** 0-based index of the document in its multi-document input. */
  document?: number;
  /** Name of the input (file name). */
  source?: string;
  /** Returns the 1-based line of a field given its path segments, when known. */
  lineOf?: (segments: readonly (string | number)[]) => number | undefined;
}

const TOP_LEVEL = new Set(['apiVersion', 'kind', 'metadata', 'spec', 'status']);
const META_KEPT = new Set([
  'name',
  'namespace',
  'labels',
  'annotations',
  'resourceVersion',
  'generation',
  'uid',
  'creationTimestamp',
]);
/** Server-populated ObjectMeta fields found in `kubectl get -o yaml` output; accepted and dropped. */
const META_DROPPED = new Set([
  'managedFields',
  'ownerReferences',
  'finalizers',
  'selfLink',
  'deletionTimestamp',
  'deletionGracePeriodSeconds',
  'generateName',
]);

function checkMetadata(raw: unknown, p: FieldPath, r: Reporter): T.StringMap | undefined {
  if (raw === undefined || raw === null) {
    r.add(p, 'metadata is required');
    return undefined;
  }
  if (!isObject(raw)) {
    r.add(p, `expected object, got ${typeName(raw)}`);
    return undefined;
  }
  for (const [k, v] of Object.entries(raw)) {
    const fp = p.field(k);
    if (META_DROPPED.has(k) || v === null || v === undefined) continue;
    if (!META_KEPT.has(k)) {
      r.add(fp, `unknown field "${k}" in ObjectMeta`);
      continue;
    }
    if (k === 'labels' || k === 'annotations') {
      if (!isObject(v)) {
        r.add(fp, `expected map, got ${typeName(v)}`);
        continue;
      }
      for (const [lk, lv] of Object.entries(v)) {
        const lp = fp.key(lk);
        if (typeof lv !== 'string') r.add(lp, `expected string, got ${typeName(lv)}`);
        else if (k === 'labels') {
          const e = validateLabelKey(lk) ?? validateLabelValue(lv);
          if (e !== undefined) r.add(lp, e);
        } else {
          const e = validateLabelKey(lk);
          if (e !== undefined) r.add(lp, e.replace('label key', 'annotation key'));
        }
      }
    } else if (k === 'generation') {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) r.add(fp, 'expected non-negative integer');
    } else if (typeof v !== 'string') {
      r.add(fp, `expected string, got ${typeName(v)}`);
    }
  }
  const name = raw.name;
  if (name === undefined || name === null || name === '') r.add(p.field('name'), 'name is required');
  else if (typeof name === 'string' && !isDNS1123Subdomain(name)) {
    r.add(
      p.field('name'),
      `invalid name "${name}": must be a DNS-1123 subdomain (lower-case alphanumerics, '-', '.')`,
    );
  }
  const ns = raw.namespace;
  if (typeof ns === 'string' && ns !== '' && !isDNS1123Label(ns)) {
    r.add(p.field('namespace'), `invalid namespace "${ns}": must be a DNS-1123 label`);
  }
  return undefined;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/**
 * Validates one config object given as plain JSON data (for example from `JSON.parse`), with Istio's
 * rules. Returns the canonical object (see `normalize`) or a `ValidationError` listing every problem,
 * each naming the object, the field path and the reason. Never throws, whatever the input.
 */
export function validateConfig(input: unknown, options: ValidateOptions = {}): ValidateResult {
  const r = new Reporter();
  let kindName: KindName | undefined;
  let objectId = '?/default/?';
  try {
    kindName = validateInto(input, r);
    const meta = isObject(input) && isObject(input.metadata) ? input.metadata : {};
    const kindText =
      isObject(input) && typeof input.kind === 'string' && input.kind !== '' ? input.kind : '?';
    const name = str(meta.name);
    objectId =
      kindText === '?' && name === undefined && options.document !== undefined
        ? `document ${options.document}`
        : `${kindText}/${str(meta.namespace) ?? 'default'}/${name ?? '?'}`;
  } catch (cause) {
    // Defensive: validation is written not to throw; if it ever does, report rather than crash.
    const e = toFieldErrors(
      objectId,
      [{ path: FieldPath.root, message: `internal validation failure: ${String(cause)}` }],
      options,
    );
    return { ok: false, error: new ValidationError(e, { cause }) };
  }
  if (r.errors.length > 0 || kindName === undefined || !isObject(input)) {
    const errs = r.errors.length > 0 ? r.errors : [{ path: FieldPath.root, message: 'invalid object' }];
    return { ok: false, error: new ValidationError(toFieldErrors(objectId, errs, options)) };
  }
  const meta = input.metadata as Record<string, unknown>;
  const metadata: Record<string, unknown> = {};
  for (const k of META_KEPT) if (meta[k] !== undefined && meta[k] !== null) metadata[k] = meta[k];
  metadata.namespace = str(meta.namespace) ?? 'default';
  const spec = decodeMessage(
    input.spec ?? {},
    SPEC_SCHEMAS[kindName],
    FieldPath.root.field('spec'),
    new Reporter(),
  );
  const config = normalize({
    apiVersion: '',
    kind: kindName,
    metadata: metadata as unknown as T.StringMap & { name: string; namespace: string },
    spec: spec ?? {},
  } as ConfigObject);
  return { ok: true, config, warnings: sortFieldErrors(toFieldErrors(objectId, r.warnings, options)) };
}

function toFieldErrors(
  object: string,
  raw: ReadonlyArray<{ path: FieldPath; message: string }>,
  options: ValidateOptions,
): FieldError[] {
  return raw.map((e) => {
    let line: number | undefined;
    if (options.lineOf !== undefined) {
      for (let n = e.path.segments.length; n >= 0 && line === undefined; n--) {
        line = options.lineOf(e.path.segments.slice(0, n));
      }
    }
    return {
      object,
      path: e.path.text,
      message: e.message,
      ...(line !== undefined ? { line } : {}),
      ...(options.document !== undefined ? { document: options.document } : {}),
      ...(options.source !== undefined ? { source: options.source } : {}),
    };
  });
}

function checkSpec(
  kind: KindName,
  spec: Record<string, unknown>,
  namespace: string,
  sp: FieldPath,
  r: Reporter,
): void {
  switch (kind) {
    case 'VirtualService':
      checkVirtualService(spec as T.VirtualService, namespace, sp, r);
      break;
    case 'DestinationRule':
      checkDestinationRule(spec as T.DestinationRule, namespace, sp, r);
      break;
    case 'ServiceEntry':
      checkServiceEntry(spec as T.ServiceEntry, namespace, sp, r);
      break;
    case 'WorkloadEntry':
      checkWorkloadEntrySpec(spec as T.WorkloadEntry, sp, r);
      break;
    case 'Sidecar':
      checkSidecar(spec as T.Sidecar, sp, r);
      break;
    case 'PeerAuthentication':
      checkPeerAuthentication(spec as T.PeerAuthentication, sp, r);
      break;
    case 'AuthorizationPolicy':
      checkAuthorizationPolicy(spec as T.AuthorizationPolicy, sp, r);
      break;
    case 'RequestAuthentication':
      checkRequestAuthenticationSpec(spec, sp, r);
      break;
    case 'RateLimit':
      checkRateLimitSpec(spec, sp, r);
      break;
    case 'Telemetry':
      checkTelemetrySpec(spec, sp, r);
      break;
  }
}

function validateInto(input: unknown, r: Reporter): KindName | undefined {
  const root = FieldPath.root;
  if (!isObject(input)) {
    r.add(root, `expected a config object, got ${typeName(input)}`);
    return undefined;
  }
  for (const k of Object.keys(input)) if (!TOP_LEVEL.has(k)) r.add(root.field(k), `unknown field "${k}"`);
  const apiVersion = input.apiVersion;
  const kind = input.kind;
  let info: ReturnType<typeof lookupKind>;
  if (typeof kind !== 'string' || kind === '') r.add(root.field('kind'), 'kind is required');
  if (typeof apiVersion !== 'string' || apiVersion === '')
    r.add(root.field('apiVersion'), 'apiVersion is required');
  if (typeof kind === 'string' && kind !== '' && typeof apiVersion === 'string' && apiVersion !== '') {
    info = lookupKind(apiVersion, kind);
    if (info === undefined) {
      const known = ALL_KINDS.find((k) => k.kind === kind);
      if (known === undefined) {
        r.add(
          root.field('kind'),
          `unsupported kind "${kind}", expected one of ${ALL_KINDS.map((k) => k.kind).join(', ')}`,
        );
      } else {
        r.add(
          root.field('apiVersion'),
          `unsupported apiVersion "${apiVersion}" for ${kind}, expected one of ${known.versions
            .map((v) => `${known.group}/${v}`)
            .join(', ')}`,
        );
      }
    }
  }
  checkMetadata(input.metadata, root.field('metadata'), r);
  if (info === undefined) return undefined;
  const namespace = isObject(input.metadata) ? (str(input.metadata.namespace) ?? 'default') : 'default';
  const sp = root.field('spec');
  // As in Istio (and Kubernetes), a missing spec is an empty one: `allow-nothing` policies rely on it.
  const rawSpec = input.spec === undefined || input.spec === null ? {} : input.spec;
  const structural = new Reporter();
  const spec = decodeMessage(rawSpec, SPEC_SCHEMAS[info.kind], sp, structural);
  r.errors.push(...structural.errors);
  if (spec === undefined) return info.kind;
  const semantic = new Reporter();
  checkSpec(info.kind, spec, namespace, sp, semantic);
  // A structural error (wrong type, unknown field, bad list element) explains what the semantic checks
  // then see on the same branch ("must have at least one field", checks on a placeholder): keep
  // semantic errors only off the branches of structural errors, so the root cause is reported.
  const onBranch = (a: readonly (string | number)[], b: readonly (string | number)[]): boolean => {
    const n = Math.min(a.length, b.length);
    for (let i = 0; i < n; i++) if (a[i] !== b[i]) return false;
    return true;
  };
  for (const e of semantic.errors) {
    if (!structural.errors.some((s) => onBranch(s.path.segments, e.path.segments))) r.errors.push(e);
  }
  r.warnings.push(...semantic.warnings);
  return info.kind;
}
