/**
 * PeerAuthentication and AuthorizationPolicy semantics (Istio validation.go
 * `ValidatePeerAuthentication`, `ValidateAuthorizationPolicy` and pkg/config/security): selectors,
 * target references, rules, principals, condition keys and values.
 */
import type { FieldPath, Reporter } from '../path.js';
import { validateIPSubnet } from '../rules.js';
import type * as T from '../types.js';
import { checkSelectorLabels, report } from './common.js';

/** Validates a PeerAuthentication spec. */
export function checkPeerAuthentication(pa: T.PeerAuthentication, p: FieldPath, r: Reporter): void {
  const labels = pa.selector?.matchLabels ?? {};
  const emptySelector = Object.keys(labels).length === 0;
  const plm = pa.portLevelMtls;
  if (emptySelector && plm !== undefined && Object.keys(plm).length > 0) {
    r.add(p.field('portLevelMtls'), 'mesh/namespace peer authentication cannot have port level mTLS');
  }
  if (plm !== undefined && Object.keys(plm).length === 0) {
    r.add(p.field('portLevelMtls'), 'port level mTLS, if defined, must have at least one element');
  }
  for (const port of Object.keys(plm ?? {})) {
    const n = Number(port);
    if (!(n >= 1 && n <= 65535)) r.add(p.field('portLevelMtls').key(port), 'port must be in range 1..65535');
  }
  if (pa.selector !== undefined) checkSelectorLabels(labels, p.field('selector').field('matchLabels'), r);
}

const AUTHZ_KEYS_EXACT = new Set([
  'source.ip',
  'remote.ip',
  'source.namespace',
  'source.principal',
  'source.serviceAccount',
  'source.trustDomain',
  'request.auth.principal',
  'request.auth.audiences',
  'request.auth.presenter',
  'destination.ip',
  'destination.port',
  'connection.sni',
]);

function validateConditionKey(key: string): string | undefined {
  if (AUTHZ_KEYS_EXACT.has(key)) return undefined;
  if (/^request\.headers\[[^\]]+\]$/.test(key)) return undefined;
  if (/^request\.auth\.claims\[.+\]$/.test(key)) return undefined;
  if (/^request\.experimental\.|^experimental\.envoy\.filters\./.test(key)) return undefined;
  return `unknown attribute: ${key}`;
}

/**
 * Istio `security.CheckServiceAccount`: at most 16 values, each `serviceAccount` (the policy's
 * namespace) or `namespace/serviceAccount`, no wildcard, at most 320 characters.
 */
function checkServiceAccounts(list: string[] | undefined, name: string, p: FieldPath, r: Reporter): void {
  if (list === undefined) return;
  if (list.length > 16) r.add(p, 'may not have more than 16 values');
  const format = "expected format 'serviceAccount' or 'namespace/serviceAccount'";
  list.forEach((v, i) => {
    const at = p.index(i);
    if (v === '') r.add(at, `empty value not allowed, found in ${name}`);
    else if (v.includes('*')) r.add(at, `wildcard not allowed, found in ${name}`);
    else if ((v.match(/\//g) ?? []).length > 1) r.add(at, `${format}, found "${v}" in ${name}`);
    else if (v.length > 320) r.add(at, `value cannot exceed 320 characters, found "${v}" in ${name}`);
    else if (v.startsWith('/')) r.add(at, `${format}, found empty namespace "${v}" in ${name}`);
    else if (v.endsWith('/')) r.add(at, `${format}, found empty serviceAccount "${v}" in ${name}`);
  });
}

/** Istio `security.CheckWildcardValues`: non-empty, one `*` at most, only at the start or end. */
function wildcardValueError(v: string, name: string): string | undefined {
  if (v === '') return `empty value not allowed, found in ${name}`;
  const count = (v.match(/\*/g) ?? []).length;
  if (count > 1) return `at most one wildcard is allowed, found in ${name}: "${v}"`;
  if (count === 1 && v !== '*' && !v.startsWith('*') && !v.endsWith('*'))
    return `wildcard is only allowed at the start or end, found in ${name}: "${v}"`;
  return undefined;
}

function checkIPBlocks(list: string[] | undefined, p: FieldPath, r: Reporter): void {
  (list ?? []).forEach((v, i) => {
    report(r, p.index(i), validateIPSubnet(v));
  });
}

function checkNonEmptyValues(list: string[] | undefined, name: string, p: FieldPath, r: Reporter): void {
  (list ?? []).forEach((v, i) => {
    if (v === '') r.add(p.index(i), `empty value not allowed, found in ${name}`);
  });
}

function checkPorts(list: string[] | undefined, p: FieldPath, r: Reporter): void {
  (list ?? []).forEach((v, i) => {
    const ok = /^\d+$/.test(v) && Number(v) >= 1 && Number(v) <= 65535;
    if (!ok) r.add(p.index(i), `invalid port: ${v}`);
  });
}

/** A source's lists of principals and namespaces (each value must not be empty). */
const SOURCE_VALUE_FIELDS = [
  'principals',
  'notPrincipals',
  'requestPrincipals',
  'notRequestPrincipals',
  'namespaces',
  'notNamespaces',
] as const;

/**
 * A rule's `from` (each a `source`) or `to` (each an `operation`): the list not empty when given,
 * each clause's `inner` set and with at least one non-empty list; `check` then looks at the inner
 * object at its path.
 */
function checkClauses<C, K extends keyof C & string>(
  clauses: readonly C[] | undefined,
  name: string,
  inner: K,
  rp: FieldPath,
  r: Reporter,
  check: (value: NonNullable<C[K]>, p: FieldPath) => void,
): void {
  if (clauses !== undefined && clauses.length === 0) r.add(rp.field(name), `\`${name}\` must not be empty`);
  clauses?.forEach((c, j) => {
    const cp = rp.field(name).index(j);
    const value = c[inner];
    if (value === undefined) {
      r.add(cp.field(inner), `\`${name}.${inner}\` must not be nil`);
      return;
    }
    const ip = cp.field(inner);
    const lists = Object.values(value as object).filter((v) => Array.isArray(v) && v.length > 0);
    if (lists.length === 0) r.add(ip, `\`${name}.${inner}\` must not be empty`);
    check(value as NonNullable<C[K]>, ip);
  });
}

/** Validates an AuthorizationPolicy spec. */
export function checkAuthorizationPolicy(ap: T.AuthorizationPolicy, p: FieldPath, r: Reporter): void {
  const selectorKinds = [
    ap.selector !== undefined,
    ap.targetRef !== undefined,
    (ap.targetRefs ?? []).length > 0,
  ];
  if (selectorKinds.filter(Boolean).length > 1)
    r.add(p, 'only one of targetRefs or workloadSelector can be set');
  if (ap.selector !== undefined)
    checkSelectorLabels(ap.selector.matchLabels, p.field('selector').field('matchLabels'), r);
  const refs: Array<[T.PolicyTargetReference, FieldPath]> = [];
  if (ap.targetRef !== undefined) refs.push([ap.targetRef, p.field('targetRef')]);
  (ap.targetRefs ?? []).forEach((t, i) => {
    refs.push([t, p.field('targetRefs').index(i)]);
  });
  for (const [ref, rp] of refs) {
    if (!ref.name) r.add(rp.field('name'), 'targetRef name must be set');
    if (ref.namespace)
      r.add(
        rp.field('namespace'),
        'targetRef namespace must not be set; cross namespace referencing is not supported',
      );
    const group = ref.group || 'core';
    const allowed = [
      ['core', 'Service'],
      ['networking.istio.io', 'ServiceEntry'],
      ['gateway.networking.k8s.io', 'Gateway'],
      ['gateway.networking.k8s.io', 'GatewayClass'],
    ].some(([g, k]) => g === group && k === ref.kind);
    if (!allowed) {
      r.add(
        rp,
        `targetRef must be to a Service, ServiceEntry, Gateway or GatewayClass but was ${ref.group ?? ''}/${ref.kind ?? ''}`,
      );
    }
  }
  const action = ap.action ?? 'ALLOW';
  if (action === 'CUSTOM') {
    if (ap.rules === undefined) {
      r.add(
        p.field('rules'),
        'CUSTOM action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request',
      );
    } else if (!ap.provider?.name) {
      r.add(p.field('provider').field('name'), '`provider.name` must not be empty');
    }
  }
  if (ap.provider !== undefined && action !== 'CUSTOM') {
    r.add(p.field('provider'), `\`provider\` must not be with non CUSTOM action, found ${action}`);
  }
  if (action === 'DENY' && ap.rules === undefined) {
    r.add(
      p.field('rules'),
      'DENY action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request',
    );
  }
  (ap.rules ?? []).forEach((rule, i) => {
    const rp = p.field('rules').index(i);
    checkClauses(rule.from, 'from', 'source', rp, r, (src, sp) => {
      const identities = [src.principals, src.notPrincipals, src.namespaces, src.notNamespaces].some(
        (l) => (l ?? []).length > 0,
      );
      const accounts = [src.serviceAccounts, src.notServiceAccounts].some((l) => (l ?? []).length > 0);
      if (identities && accounts) r.add(sp, 'cannot set serviceAccounts with namespaces or principals');
      for (const k of ['serviceAccounts', 'notServiceAccounts'] as const)
        checkServiceAccounts(src[k], k, sp.field(k), r);
      for (const k of ['trustDomains', 'notTrustDomains'] as const) {
        (src[k] ?? []).forEach((v, n) => {
          report(r, sp.field(k).index(n), wildcardValueError(v, k));
          if (v.includes('/'))
            r.add(sp.field(k).index(n), `trust domain must not contain '/', found in ${k}: "${v}"`);
        });
      }
      checkIPBlocks(src.ipBlocks, sp.field('ipBlocks'), r);
      checkIPBlocks(src.notIpBlocks, sp.field('notIpBlocks'), r);
      checkIPBlocks(src.remoteIpBlocks, sp.field('remoteIpBlocks'), r);
      checkIPBlocks(src.notRemoteIpBlocks, sp.field('notRemoteIpBlocks'), r);
      for (const k of SOURCE_VALUE_FIELDS) {
        checkNonEmptyValues(src[k], k, sp.field(k), r);
      }
      if (action === 'CUSTOM') {
        for (const k of [
          ...SOURCE_VALUE_FIELDS,
          'serviceAccounts',
          'notServiceAccounts',
          'trustDomains',
          'notTrustDomains',
        ] as const) {
          if ((src[k] ?? []).length > 0)
            r.add(sp.field(k), `${k} is currently not supported with CUSTOM action`);
        }
      }
    });
    checkClauses(rule.to, 'to', 'operation', rp, r, (op, opp) => {
      checkPorts(op.ports, opp.field('ports'), r);
      checkPorts(op.notPorts, opp.field('notPorts'), r);
      for (const k of ['hosts', 'notHosts', 'methods', 'notMethods', 'paths', 'notPaths'] as const) {
        checkNonEmptyValues(op[k], k, opp.field(k), r);
      }
    });
    (rule.when ?? []).forEach((c, j) => {
      const cp = rp.field('when').index(j);
      const key = c.key ?? '';
      if (key === '') {
        r.add(cp.field('key'), '`key` must not be empty');
        return;
      }
      report(r, cp.field('key'), validateConditionKey(key));
      if ((c.values ?? []).length === 0 && (c.notValues ?? []).length === 0) {
        r.add(cp, `at least one of \`values\` or \`notValues\` must be set for key ${key}`);
      }
      if (key === 'source.ip' || key === 'remote.ip' || key === 'destination.ip') {
        checkIPBlocks(c.values, cp.field('values'), r);
        checkIPBlocks(c.notValues, cp.field('notValues'), r);
      }
      if (key === 'source.serviceAccount') {
        checkServiceAccounts(c.values, 'values', cp.field('values'), r);
        checkServiceAccounts(c.notValues, 'notValues', cp.field('notValues'), r);
      }
      if (key === 'source.trustDomain') {
        for (const k of ['values', 'notValues'] as const)
          (c[k] ?? []).forEach((v, n) => {
            report(r, cp.field(k).index(n), wildcardValueError(v, key));
          });
      }
      if (key === 'destination.port') {
        checkPorts(c.values, cp.field('values'), r);
        checkPorts(c.notValues, cp.field('notValues'), r);
      }
      if (
        action === 'CUSTOM' &&
        (['source.namespace', 'source.principal', 'source.serviceAccount', 'source.trustDomain'].includes(
          key,
        ) ||
          key.startsWith('request.auth.'))
      ) {
        r.add(cp.field('key'), `${key} is currently not supported with CUSTOM action`);
      }
    });
  });
}
