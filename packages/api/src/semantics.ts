/**
 * Istio's semantic rules per kind, ported from istio/istio pkg/config/validation (validation.go,
 * virtualservice.go, agent/validation.go). They run on the structurally decoded spec, so every field
 * present has the right JSON type. Messages follow Istio's wording unless noted.
 */
import type { FieldPath, Reporter } from './path.js';
import { checkRateLimit, type RateLimit } from './rate-limit.js';
import { checkRequestAuthentication, type RequestAuthentication } from './request-authn.js';
import {
  GRPC_STATUS_NAMES,
  HTTP_METHODS,
  hostSubsetOf,
  hostsMatch,
  isDNS1123Label,
  isDNS1123Subdomain,
  isHTTPProtocol,
  isIPAddress,
  isTLSProtocol,
  RETRY_ON_POLICIES,
  validateDuration,
  validateFQDN,
  validateIPSubnet,
  validateLabelKey,
  validateLabelValue,
  validatePercent,
  validatePercentage,
  validatePort,
  validatePortName,
  validateProtocol,
  validateRegex,
  validateUnixAddress,
  validateWildcardDomain,
} from './rules.js';
import { checkTelemetry, type Telemetry } from './telemetry-kind.js';
import type * as T from './types.js';

type Check = string | undefined;

function report(r: Reporter, p: FieldPath, msg: Check): void {
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
function checkSelectorLabels(labels: T.StringMap | undefined, p: FieldPath, r: Reporter): void {
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

function checkDuration(v: string | undefined, p: FieldPath, r: Reporter): void {
  if (v !== undefined) report(r, p, validateDuration(v));
}

/** Istio `validateExportTo`. */
function checkExportTo(
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

// ---------------------------------------------------------------- VirtualService

function checkStringMatch(sm: T.StringMatch | undefined, where: string, p: FieldPath, r: Reporter): void {
  if (sm === undefined) return;
  if (sm.prefix !== undefined && sm.prefix === '')
    r.add(p, `"${where}": prefix string match should not be empty`);
  if (sm.regex !== undefined) report(r, p.field('regex'), validateRegex(sm.regex, where));
}

function checkDestination(d: T.Destination | undefined, p: FieldPath, r: Reporter): void {
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

function checkHeaderOps(h: T.Headers | undefined, p: FieldPath, r: Reporter): void {
  for (const dir of ['request', 'response'] as const) {
    const ops = h?.[dir];
    if (ops === undefined) continue;
    const dp = p.field(dir);
    for (const op of ['set', 'add'] as const) {
      for (const name of Object.keys(ops[op] ?? {})) {
        const np = dp.field(op).key(name);
        if (name === '') r.add(np, 'invalid header name: empty string');
        else if (name.startsWith(':') || name.toLowerCase() === 'host') {
          if (!(dir === 'request' && isAuthority(name))) r.add(np, `invalid header name: "${name}"`);
        }
      }
    }
    (ops.remove ?? []).forEach((name, i) => {
      if (name === '' || name.startsWith(':') || name.toLowerCase() === 'host') {
        r.add(dp.field('remove').index(i), `invalid header name: "${name}"`);
      }
    });
  }
}

function isAuthority(name: string): boolean {
  const n = name.toLowerCase();
  return n === ':authority' || n === 'host';
}

function checkRouteWeights(
  routes: ReadonlyArray<{ weight?: number; destination?: T.Destination }>,
  p: FieldPath,
  r: Reporter,
): void {
  let total = 0;
  routes.forEach((rd, i) => {
    const rp = p.index(i);
    if (rd.destination === undefined) r.add(rp.field('destination'), 'destination is required');
    checkDestination(rd.destination, rp.field('destination'), r);
    if (rd.weight !== undefined) {
      const e = validatePercent(rd.weight);
      if (e !== undefined) r.add(rp.field('weight'), `weight ${rd.weight} must be in range 0..100`);
      total += rd.weight;
    }
  });
  // Meridian keeps Istio's original rule (route weights sum to 100); a single destination may omit it.
  if (routes.length > 1 && total !== 100) {
    r.add(p.index(routes.length - 1).field('weight'), `weights must sum to 100, got ${total}`);
  }
}

function checkGatewayNames(names: string[] | undefined, p: FieldPath, r: Reporter): void {
  (names ?? []).forEach((g, i) => {
    const gp = p.index(i);
    if (g === 'mesh') return;
    const slash = g.indexOf('/');
    if (slash < 0) {
      report(r, gp, validateFQDN(g));
      return;
    }
    const ns = g.slice(0, slash);
    const name = g.slice(slash + 1);
    if (ns === '' || name === '') r.add(gp, 'config namespace and gateway name cannot be empty');
    else {
      if (!isDNS1123Label(ns)) r.add(gp, `invalid value for namespace: "${ns}"`);
      if (!isDNS1123Label(name)) r.add(gp, `invalid value for gateway name: "${name}"`);
    }
  });
}

function checkHTTPMatch(m: T.HTTPMatchRequest, p: FieldPath, r: Reporter): void {
  checkStringMatch(m.uri, 'uri', p.field('uri'), r);
  checkStringMatch(m.scheme, 'scheme', p.field('scheme'), r);
  checkStringMatch(m.method, 'method', p.field('method'), r);
  checkStringMatch(m.authority, 'authority', p.field('authority'), r);
  for (const field of ['headers', 'withoutHeaders', 'queryParams'] as const) {
    for (const [name, sm] of Object.entries(m[field] ?? {})) {
      const np = p.field(field).key(name);
      if (name === '')
        r.add(
          np,
          field === 'queryParams' ? 'query param name cannot be empty' : 'header name cannot be empty',
        );
      checkStringMatch(sm, field, np, r);
    }
  }
  if (m.port !== undefined && m.port !== 0) report(r, p.field('port'), validatePort(m.port));
  checkLabels(m.sourceLabels, p.field('sourceLabels'), r);
  checkGatewayNames(m.gateways, p.field('gateways'), r);
  if (m.sourceNamespace !== undefined && m.sourceNamespace !== '' && !isDNS1123Label(m.sourceNamespace)) {
    r.add(p.field('sourceNamespace'), `sourceNamespace match ${m.sourceNamespace} is invalid`);
  }
}

function checkHTTPRoute(h: T.HTTPRoute, delegate: boolean, p: FieldPath, r: Reporter): void {
  const actions = (['route', 'redirect', 'directResponse', 'delegate'] as const).filter((k) =>
    k === 'route' ? (h.route?.length ?? 0) > 0 : h[k] !== undefined,
  );
  if (actions.length > 1) {
    r.add(
      p,
      `HTTP route must have exactly one of route, redirect, directResponse, delegate; got ${actions.join(', ')}`,
    );
  } else if (actions.length === 0) {
    r.add(p, 'HTTP route, redirect, directResponse or delegate is required');
  }
  if (delegate && h.delegate !== undefined)
    r.add(p.field('delegate'), 'delegate HTTP route cannot contain delegate');
  if (h.delegate !== undefined) {
    if (!h.delegate.name) r.add(p.field('delegate').field('name'), 'delegate name is required');
    else if (!isDNS1123Label(h.delegate.name)) {
      r.add(p.field('delegate').field('name'), `delegate name "${h.delegate.name}" is invalid`);
    }
    if (h.delegate.namespace && !isDNS1123Label(h.delegate.namespace)) {
      r.add(
        p.field('delegate').field('namespace'),
        `delegate namespace "${h.delegate.namespace}" is invalid`,
      );
    }
  }
  if (h.redirect !== undefined) {
    if (h.fault !== undefined) r.add(p, 'HTTP route cannot contain both fault and redirect');
    if (h.rewrite !== undefined) r.add(p, 'HTTP route rule cannot contain both rewrite and redirect');
    const rd = h.redirect;
    const rp = p.field('redirect');
    if (!rd.uri && !rd.authority && rd.port === undefined && rd.derivePort === undefined && !rd.scheme) {
      r.add(rp, 'redirect must specify URI, authority, scheme, or port');
    }
    if (
      rd.redirectCode !== undefined &&
      rd.redirectCode !== 0 &&
      (rd.redirectCode < 300 || rd.redirectCode > 399)
    ) {
      r.add(rp.field('redirectCode'), `${rd.redirectCode} is not a valid redirect code, must be 3xx`);
    }
    if (rd.scheme && rd.scheme !== 'http' && rd.scheme !== 'https') {
      r.add(rp.field('scheme'), 'invalid redirect scheme, must be "http" or "https"');
    }
    if (rd.port !== undefined && rd.port > 0) report(r, rp.field('port'), validatePort(rd.port));
  }
  if (h.directResponse !== undefined) {
    const s = h.directResponse.status ?? 0;
    if (s < 200 || s > 599)
      r.add(p.field('directResponse').field('status'), `HTTP status ${s} is not in range 200-599`);
    const body = h.directResponse.body;
    const size = body?.string?.length ?? body?.bytes?.length ?? 0;
    if (size > 1024 * 1024) {
      r.add(
        p.field('directResponse').field('body'),
        'large direct_responses may impact control plane performance, must be less than 1MB',
      );
    }
  }
  (h.match ?? []).forEach((m, i) => {
    checkHTTPMatch(m, p.field('match').index(i), r);
  });
  checkHeaderOps(h.headers, p.field('headers'), r);
  if (h.corsPolicy !== undefined) {
    const cp = p.field('corsPolicy');
    (h.corsPolicy.allowOrigins ?? []).forEach((o, i) => {
      const op = cp.field('allowOrigins').index(i);
      const v = o.exact ?? o.prefix ?? o.regex ?? '';
      if (v === '') r.add(op, `'' is not a valid match type for CORS allow origins`);
      else if (o.regex !== undefined)
        report(r, op.field('regex'), validateRegex(o.regex, 'corsPolicy.allowOrigins'));
    });
    (h.corsPolicy.allowMethods ?? []).forEach((m, i) => {
      if (!HTTP_METHODS.has(m))
        r.add(cp.field('allowMethods').index(i), `"${m}" is not a supported HTTP method`);
    });
    if (h.corsPolicy.maxAge !== undefined) {
      const e = validateDuration(h.corsPolicy.maxAge);
      if (e !== undefined) r.add(cp.field('maxAge'), e);
      else if (!/^\d+(s|m|h)$/.test(h.corsPolicy.maxAge) && !/^\d+h\d+m\d+s$/.test(h.corsPolicy.maxAge)) {
        if (/\./.test(h.corsPolicy.maxAge) || /ms|us|ns/.test(h.corsPolicy.maxAge)) {
          r.add(cp.field('maxAge'), 'max_age duration is accurate only to seconds precision');
        }
      }
    }
  }
  if (h.fault !== undefined) {
    const fp = p.field('fault');
    const { delay, abort } = h.fault;
    if (delay === undefined && abort === undefined)
      r.add(fp, 'HTTP fault injection must have an abort and/or a delay');
    if (delay !== undefined) {
      const dp = fp.field('delay');
      if (delay.percentage?.value !== undefined) {
        report(r, dp.field('percentage').field('value'), validatePercentage(delay.percentage.value));
      }
      if (delay.percent !== undefined) report(r, dp.field('percent'), validatePercent(delay.percent));
      if (delay.fixedDelay !== undefined) checkDuration(delay.fixedDelay, dp.field('fixedDelay'), r);
      else if (delay.exponentialDelay !== undefined)
        r.add(dp.field('exponentialDelay'), 'exponentialDelay not supported yet');
      else r.add(dp, 'delay must set fixedDelay');
    }
    if (abort !== undefined) {
      const ap = fp.field('abort');
      if (abort.percentage?.value !== undefined) {
        report(r, ap.field('percentage').field('value'), validatePercentage(abort.percentage.value));
      }
      if (abort.httpStatus !== undefined) {
        if (abort.httpStatus < 200 || abort.httpStatus > 599) {
          r.add(ap.field('httpStatus'), `HTTP status ${abort.httpStatus} is not in range 200-599`);
        }
      } else if (abort.grpcStatus !== undefined) {
        if (!GRPC_STATUS_NAMES.has(abort.grpcStatus)) {
          r.add(ap.field('grpcStatus'), `gRPC status "${abort.grpcStatus}" is not supported`);
        }
      } else if (abort.http2Error !== undefined) {
        r.add(ap.field('http2Error'), 'HTTP/2 abort fault injection not supported yet');
      } else {
        r.add(ap, 'abort must set one of httpStatus, grpcStatus');
      }
    }
  }
  if (h.mirrorPercentage?.value !== undefined) {
    const v = h.mirrorPercentage.value;
    const mp = p.field('mirrorPercentage').field('value');
    if (v > 100) r.add(mp, `mirror_percentage must have a max value of 100 (it has ${v})`);
    if (v < 0) r.add(mp, `mirror_percentage must have a min value of 0 (it has ${v})`);
  }
  if (h.mirrorPercent !== undefined) {
    if (h.mirrorPercent > 100) {
      r.add(
        p.field('mirrorPercent'),
        `mirror_percent must have a max value of 100 (it has ${h.mirrorPercent})`,
      );
    }
    r.warn(
      p.field('mirrorPercent'),
      'using deprecated setting "mirrorPercent", use "mirrorPercentage" instead',
    );
  }
  if (h.mirror !== undefined && h.mirrors !== undefined && h.mirrors.length > 0) {
    r.add(p, 'HTTP route cannot contain both mirror and mirrors');
  }
  checkDestination(h.mirror, p.field('mirror'), r);
  (h.mirrors ?? []).forEach((m, i) => {
    const mp = p.field('mirrors').index(i);
    if (m.destination === undefined) r.add(mp.field('destination'), 'destination is required for mirrors');
    checkDestination(m.destination, mp.field('destination'), r);
    const v = m.percentage?.value;
    if (v !== undefined && v > 100)
      r.add(
        mp.field('percentage').field('value'),
        `mirror percentage must have a max value of 100 (it has ${v})`,
      );
    if (v !== undefined && v < 0)
      r.add(
        mp.field('percentage').field('value'),
        `mirror percentage must have a min value of 0 (it has ${v})`,
      );
  });
  if (h.retries !== undefined) {
    const rp = p.field('retries');
    const rt = h.retries;
    const attempts = rt.attempts ?? 0;
    if (attempts < 0) r.add(rp.field('attempts'), 'attempts cannot be negative');
    if (
      attempts === 0 &&
      (rt.perTryTimeout !== undefined || rt.retryOn || rt.retryRemoteLocalities !== undefined)
    ) {
      r.add(rp, 'http retry policy configured when attempts are set to 0 (disabled)');
    }
    checkDuration(rt.perTryTimeout, rp.field('perTryTimeout'), r);
    checkDuration(rt.backoff, rp.field('backoff'), r);
    if (rt.retryOn) {
      for (const policy of rt.retryOn.split(',')) {
        const code = /^\d+$/.test(policy) ? Number(policy) : Number.NaN;
        if (!(code >= 100 && code <= 599) && !RETRY_ON_POLICIES.has(policy)) {
          r.add(rp.field('retryOn'), `"${policy}" is not a valid retryOn policy`);
        }
      }
    }
  }
  if (h.rewrite !== undefined) {
    const rw = h.rewrite;
    const wp = p.field('rewrite');
    if (rw.uri && rw.uriRegexRewrite !== undefined)
      r.add(wp, 'rewrite may only contain one of URI or UriRegexRewrite');
    if (!rw.uri && rw.uriRegexRewrite === undefined && !rw.authority) {
      r.add(wp, 'rewrite must specify at least one of URI, UriRegexRewrite, or authority');
    }
    if (rw.uriRegexRewrite !== undefined) {
      const rr = rw.uriRegexRewrite;
      if (!rr.match || !rr.rewrite) {
        r.add(
          wp.field('uriRegexRewrite'),
          'UriRegexRewrite requires both Rewrite and Match fields to be specified',
        );
      } else {
        report(
          r,
          wp.field('uriRegexRewrite').field('match'),
          validateRegex(rr.match, 'HTTPRewrite.UriRegexRewrite.Match'),
        );
      }
    }
  }
  // Authority may be rewritten in one place only.
  const authoritySetters = [
    ...(h.rewrite?.authority ? ['rewrite.authority'] : []),
    ...Object.keys(h.headers?.request?.set ?? {}).filter(isAuthority),
    ...Object.keys(h.headers?.request?.add ?? {}).filter(isAuthority),
  ];
  if (authoritySetters.length > 1) r.add(p, 'authority header cannot be set multiple times');
  checkDuration(h.timeout, p.field('timeout'), r);
  if (h.route !== undefined) {
    checkRouteWeights(h.route, p.field('route'), r);
    h.route.forEach((rd, i) => {
      checkHeaderOps(rd.headers, p.field('route').index(i).field('headers'), r);
    });
  }
}

/** Validates a VirtualService spec. */
export function checkVirtualService(
  vs: T.VirtualService,
  namespace: string,
  p: FieldPath,
  r: Reporter,
): void {
  const hosts = vs.hosts ?? [];
  const isDelegate = hosts.length === 0;
  if (isDelegate) {
    if ((vs.gateways ?? []).length > 0)
      r.add(p.field('gateways'), 'delegate virtual service must have no gateways specified');
    if ((vs.tls ?? []).length > 0)
      r.add(p.field('tls'), 'delegate virtual service must have no tls route specified');
    if ((vs.tcp ?? []).length > 0)
      r.add(p.field('tcp'), 'delegate virtual service must have no tcp route specified');
  }
  const gateways = vs.gateways ?? [];
  checkGatewayNames(gateways, p.field('gateways'), r);
  const appliesToMesh = gateways.length === 0 || gateways.includes('mesh');
  let allHostsValid = true;
  hosts.forEach((h, i) => {
    const hp = p.field('hosts').index(i);
    const e = validateWildcardDomain(h);
    if (e !== undefined) {
      if (!isIPAddress(h)) {
        r.add(hp, e);
        allHostsValid = false;
      }
    } else if (appliesToMesh && h === '*') {
      r.add(hp, 'wildcard host * is not allowed for virtual services bound to the mesh gateway');
      allHostsValid = false;
    }
  });
  if (allHostsValid) {
    for (let i = 0; i < hosts.length; i++) {
      for (let j = i + 1; j < hosts.length; j++) {
        const a = hosts[i] as string;
        const b = hosts[j] as string;
        if (hostsMatch(a, b))
          r.add(p.field('hosts').index(j), `duplicate hosts in virtual service: ${a} & ${b}`);
      }
    }
  }
  if ((vs.http ?? []).length === 0 && (vs.tcp ?? []).length === 0 && (vs.tls ?? []).length === 0) {
    r.add(p, 'http, tcp or tls must be provided in virtual service');
  }
  (vs.http ?? []).forEach((h, i) => {
    checkHTTPRoute(h, isDelegate, p.field('http').index(i), r);
  });
  (vs.tls ?? []).forEach((t, i) => {
    const tp = p.field('tls').index(i);
    if ((t.match ?? []).length === 0)
      r.add(tp.field('match'), 'TLS route must have at least one match condition');
    (t.match ?? []).forEach((m, j) => {
      const mp = tp.field('match').index(j);
      if ((m.sniHosts ?? []).length === 0)
        r.add(mp.field('sniHosts'), 'TLS match must have at least one SNI host');
      (m.sniHosts ?? []).forEach((sni, k) => {
        const sp = mp.field('sniHosts').index(k);
        const e = validateWildcardDomain(sni);
        if (e !== undefined) {
          if (!isIPAddress(sni)) r.add(sp, e);
        } else if (!hosts.some((h) => hostSubsetOf(sni, h))) {
          r.add(
            sp,
            `SNI host "${sni}" is not a compatible subset of any of the virtual service hosts: [${hosts.join(', ')}]`,
          );
        }
      });
      checkL4Match(m, mp, r);
    });
    if ((t.route ?? []).length === 0) r.add(tp.field('route'), 'TLS route is required');
    checkRouteWeights(t.route ?? [], tp.field('route'), r);
  });
  (vs.tcp ?? []).forEach((t, i) => {
    const tp = p.field('tcp').index(i);
    (t.match ?? []).forEach((m, j) => {
      checkL4Match(m, tp.field('match').index(j), r);
    });
    if ((t.route ?? []).length === 0) r.add(tp.field('route'), 'TCP route is required');
    checkRouteWeights(t.route ?? [], tp.field('route'), r);
  });
  checkExportTo(vs.exportTo, namespace, false, p.field('exportTo'), r);
  for (const proto of ['http', 'tcp', 'tls'] as const) {
    warnUnreachableRules(vs[proto] ?? [], proto === 'http', p.field(proto), r);
  }
}

/** Canonical JSON of a match without its name, to compare matches (Istio `asJSON`). */
function matchKey(m: object): string {
  const sort = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(sort)
      : typeof v === 'object' && v !== null
        ? Object.fromEntries(
            Object.keys(v)
              .filter((k) => k !== 'name')
              .sort()
              .map((k) => [k, sort((v as Record<string, unknown>)[k])]),
          )
        : v;
  return JSON.stringify(sort(m));
}

/**
 * Istio's `analyzeUnreachable*Rules` (VirtualServiceUnreachableRule / VirtualServiceIneffectiveMatch,
 * as validation warnings): rules after a catch-all rule, and matches repeated from earlier rules.
 */
function warnUnreachableRules(
  routes: ReadonlyArray<{ name?: string; match?: object[] }>,
  named: boolean,
  p: FieldPath,
  r: Reporter,
): void {
  const seen = new Map<string, number>();
  let catchAll = -1;
  const ruleName = (i: number): string => {
    const n = named ? routes[i]?.name : undefined;
    return n ? JSON.stringify(n) : `#${i}`;
  };
  routes.forEach((route, i) => {
    const matches = route.match ?? [];
    if (matches.length === 0) {
      if (catchAll >= 0)
        r.warn(
          p.index(i),
          `virtualService rule ${ruleName(i)} not used (only the last rule can have no matches)`,
        );
      catchAll = i;
      return;
    }
    let duplicates = 0;
    matches.forEach((m, j) => {
      if (catchAll >= 0) {
        r.warn(
          p.index(i),
          `virtualService rule ${ruleName(i)} not used (route without matches defined before)`,
        );
        return;
      }
      const key = matchKey(m);
      const prev = seen.get(key);
      if (prev !== undefined) {
        const mname =
          named && (m as { name?: string }).name ? JSON.stringify((m as { name?: string }).name) : `#${j}`;
        r.warn(
          p.index(i).field('match').index(j),
          `virtualService rule ${ruleName(i)} match ${mname} is not used (duplicate/overlapping match in rule ${ruleName(prev)})`,
        );
        duplicates++;
      } else seen.set(key, i);
    });
    if (catchAll < 0 && duplicates === matches.length) {
      r.warn(p.index(i), `virtualService rule ${ruleName(i)} not used (all matches used by prior rules)`);
    }
  });
}

function checkL4Match(m: T.L4MatchAttributes, p: FieldPath, r: Reporter): void {
  (m.destinationSubnets ?? []).forEach((s, i) => {
    report(r, p.field('destinationSubnets').index(i), validateIPSubnet(s));
  });
  if (m.port !== undefined && m.port !== 0) report(r, p.field('port'), validatePort(m.port));
  if ('sourceSubnet' in m && m.sourceSubnet)
    report(r, p.field('sourceSubnet'), validateIPSubnet(m.sourceSubnet));
  checkLabels(m.sourceLabels, p.field('sourceLabels'), r);
  checkGatewayNames(m.gateways, p.field('gateways'), r);
  if (m.sourceNamespace && !isDNS1123Label(m.sourceNamespace)) {
    r.add(p.field('sourceNamespace'), `sourceNamespace match ${m.sourceNamespace} is invalid`);
  }
}

// ---------------------------------------------------------------- DestinationRule

function checkConnectionPool(cp: T.ConnectionPoolSettings | undefined, p: FieldPath, r: Reporter): void {
  if (cp === undefined) return;
  if (cp.http === undefined && cp.tcp === undefined) {
    r.add(p, 'connection pool must have at least one field');
    return;
  }
  const h = cp.http;
  if (h !== undefined) {
    const hp = p.field('http');
    const nonNeg: Array<[keyof T.HTTPSettings, string]> = [
      ['http1MaxPendingRequests', 'http1 max pending requests must be non-negative'],
      ['http2MaxRequests', 'http2 max requests must be non-negative'],
      ['maxRequestsPerConnection', 'max requests per connection must be non-negative'],
      ['maxRetries', 'max retries must be non-negative'],
      ['maxConcurrentStreams', 'max concurrent streams must be non-negative'],
    ];
    for (const [f, msg] of nonNeg) {
      const v = h[f];
      if (typeof v === 'number' && v < 0) r.add(hp.field(f), msg);
    }
    checkDuration(h.idleTimeout, hp.field('idleTimeout'), r);
    const ka = h.http2KeepAlive;
    if (ka !== undefined) {
      // Istio validateConnectionPool: both are required.
      const kp = hp.field('http2KeepAlive');
      if (ka.interval === undefined) r.add(kp.field('interval'), 'http2 keepalive interval is required');
      else checkDuration(ka.interval, kp.field('interval'), r);
      if (ka.timeout === undefined) r.add(kp.field('timeout'), 'http2 keepalive timeout is required');
      else checkDuration(ka.timeout, kp.field('timeout'), r);
    }
    if (h.h2UpgradePolicy === 'UPGRADE' && h.useClientProtocol) {
      r.add(
        hp.field('useClientProtocol'),
        'use client protocol must not be true when H2UpgradePolicy is UPGRADE',
      );
    }
  }
  const t = cp.tcp;
  if (t !== undefined) {
    const tp = p.field('tcp');
    if ((t.maxConnections ?? 0) < 0)
      r.add(tp.field('maxConnections'), 'max connections must be non-negative');
    checkDuration(t.connectTimeout, tp.field('connectTimeout'), r);
    checkDuration(t.maxConnectionDuration, tp.field('maxConnectionDuration'), r);
    // 0s disables the idle timeout.
    if (t.idleTimeout !== undefined && !/^[+-]?0+(\.0*)?[a-zµμ]*$/.test(t.idleTimeout)) {
      checkDuration(t.idleTimeout, tp.field('idleTimeout'), r);
    }
    checkDuration(t.tcpKeepalive?.time, tp.field('tcpKeepalive').field('time'), r);
    checkDuration(t.tcpKeepalive?.interval, tp.field('tcpKeepalive').field('interval'), r);
  }
}

function checkOutlierDetection(o: T.OutlierDetection | undefined, p: FieldPath, r: Reporter): void {
  if (o === undefined) return;
  checkDuration(o.baseEjectionTime, p.field('baseEjectionTime'), r);
  checkDuration(o.interval, p.field('interval'), r);
  if (o.consecutiveErrors !== undefined && o.consecutiveErrors !== 0) {
    r.warn(
      p.field('consecutiveErrors'),
      'outlier detection consecutive errors is deprecated, use consecutiveGatewayErrors or consecutive5xxErrors instead',
    );
  }
  if (!o.splitExternalLocalOriginErrors && (o.consecutiveLocalOriginFailures ?? 0) > 0) {
    r.add(
      p.field('consecutiveLocalOriginFailures'),
      'outlier detection consecutive local origin failures is specified, but split external local origin errors is set to false',
    );
  }
  if (o.maxEjectionPercent !== undefined)
    report(r, p.field('maxEjectionPercent'), validatePercent(o.maxEjectionPercent));
  if (o.minHealthPercent !== undefined)
    report(r, p.field('minHealthPercent'), validatePercent(o.minHealthPercent));
}

function isPrime(x: number): boolean {
  if (x !== 0 && x < 4) return true;
  if (x % 2 === 0) return false;
  const limit = Math.floor(Math.sqrt(x));
  for (let f = 3; f <= limit; f += 2) if (x % f === 0) return false;
  return true;
}

/** Splits `region/zone/subzone`, checking that `*` appears only as a whole last segment. */
function checkLocality(loc: string, p: FieldPath, r: Reporter): void {
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

function checkLocalityLb(
  lb: T.LocalityLoadBalancerSetting | undefined,
  outlier: T.OutlierDetection | undefined,
  p: FieldPath,
  r: Reporter,
): void {
  if (lb === undefined) return;
  const distribute = lb.distribute ?? [];
  const failover = lb.failover ?? [];
  if (distribute.length > 0 && failover.length > 0) {
    r.add(p, "can not simultaneously specify 'distribute' and 'failover'");
  }
  if (distribute.length > 0 && (lb.failoverPriority ?? []).length > 0) {
    r.add(p, "can not simultaneously specify 'distribute' and 'failoverPriority'");
  }
  const froms = new Set<string>();
  distribute.forEach((d, i) => {
    const dp = p.field('distribute').index(i);
    const from = d.from ?? '';
    checkLocality(from, dp.field('from'), r);
    if (froms.has(from))
      r.add(dp.field('from'), `locality ${from} overlaps with a previous distribute entry`);
    froms.add(from);
    let total = 0;
    const to = d.to ?? {};
    if (Object.keys(to).length === 0)
      r.add(dp.field('to'), 'distribute must have at least one destination locality');
    for (const [loc, w] of Object.entries(to)) {
      const tp = dp.field('to').key(loc);
      checkLocality(loc, tp, r);
      if (w <= 0 || w > 100) r.add(tp, 'locality weight must be in range [1, 100]');
      total += w;
    }
    if (Object.keys(to).length > 0 && total !== 100) {
      r.add(dp.field('to'), `locality weights must sum to 100, got ${total}`);
    }
  });
  failover.forEach((f, i) => {
    const fp = p.field('failover').index(i);
    const from = f.from ?? '';
    const to = f.to ?? '';
    if (from === '' || to === '') r.add(fp, 'locality lb failover must specify both from and to regions');
    else if (from === to) r.add(fp, 'locality lb failover settings must specify different regions');
    if (from.includes('/') || to.includes('/')) r.add(fp, 'locality lb failover only specify region');
    if (from.includes('*') || to.includes('*'))
      r.add(fp, "locality lb failover region should not contain '*' wildcard");
  });
  const prio = new Set<string>();
  (lb.failoverPriority ?? []).forEach((label, i) => {
    const lp = p.field('failoverPriority').index(i);
    const key = label.split('=')[0] ?? '';
    if (prio.has(key)) r.add(lp, `duplicate failoverPriority label ${key}`);
    prio.add(key);
    report(r, lp, validateLabelKey(key));
  });
  if ((failover.length > 0 || prio.size > 0) && outlier === undefined) {
    r.add(p, 'outlier detection policy must be provided for failover');
  }
}

function checkLoadBalancer(
  lb: T.LoadBalancerSettings | undefined,
  outlier: T.OutlierDetection | undefined,
  p: FieldPath,
  r: Reporter,
): void {
  if (lb === undefined) return;
  const ch = lb.consistentHash;
  if (ch !== undefined) {
    const cp = p.field('consistentHash');
    const keys = (['httpHeaderName', 'httpCookie', 'useSourceIp', 'httpQueryParameterName'] as const).filter(
      (k) => ch[k] !== undefined,
    );
    if (keys.length === 0) {
      r.add(
        cp,
        'consistent hash must set one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName',
      );
    }
    if (ch.httpHeaderName !== undefined && ch.httpHeaderName === '')
      r.add(cp.field('httpHeaderName'), 'header name cannot be empty');
    if (ch.httpQueryParameterName !== undefined && ch.httpQueryParameterName === '') {
      r.add(cp.field('httpQueryParameterName'), 'query parameter name cannot be empty');
    }
    if (ch.httpCookie !== undefined) {
      if (!ch.httpCookie.name) r.add(cp.field('httpCookie').field('name'), 'name required for HttpCookie');
      if (ch.httpCookie.ttl !== undefined && !/^[+]?0+(\.0*)?[a-zµμ]*$/.test(ch.httpCookie.ttl)) {
        checkDuration(ch.httpCookie.ttl, cp.field('httpCookie').field('ttl'), r);
      }
    }
    if (ch.minimumRingSize !== undefined && ch.minimumRingSize !== 0) {
      r.warn(
        cp.field('minimumRingSize'),
        "consistent hash MinimumRingSize is deprecated, use ConsistentHashLB's RingHash configuration instead",
      );
    }
    if (ch.minimumRingSize !== undefined && (ch.ringHash !== undefined || ch.maglev !== undefined)) {
      r.add(cp, 'only one of MinimumRingSize or Maglev/Ringhash can be specified');
    }
    if (ch.maglev !== undefined) {
      const ts = ch.maglev.tableSize ?? 0;
      const tp = cp.field('maglev').field('tableSize');
      if (ts === 0) r.add(tp, 'tableSize must be set for maglev');
      else if (ts >= 5000011) r.add(tp, 'tableSize must be less than 5000011 for maglev');
      else if (!isPrime(ts)) r.add(tp, 'tableSize must be a prime number for maglev');
    }
  }
  checkLocalityLb(lb.localityLbSetting, outlier, p.field('localityLbSetting'), r);
  if (lb.warmupDurationSecs !== undefined && lb.warmup !== undefined) {
    r.add(p, 'only one of warmupDurationSecs or warmup may be set');
  }
  checkDuration(lb.warmupDurationSecs, p.field('warmupDurationSecs'), r);
  if (lb.warmup !== undefined) {
    const wp = p.field('warmup');
    if (lb.warmup.duration === undefined) r.add(wp.field('duration'), 'duration is required');
    else checkDuration(lb.warmup.duration, wp.field('duration'), r);
    const mp = lb.warmup.minimumPercent;
    if (mp !== undefined && (mp > 100 || mp < 0))
      r.add(wp.field('minimumPercent'), 'minimumPercent value should be in range 0..100');
    if (lb.warmup.aggression !== undefined && lb.warmup.aggression < 1) {
      r.add(wp.field('aggression'), 'aggression should be greater than or equal to 1');
    }
  }
}

function checkClientTLS(tls: T.ClientTLSSettings | undefined, p: FieldPath, r: Reporter): void {
  if (tls === undefined) return;
  const mode = tls.mode ?? 'DISABLE';
  if (mode === 'ISTIO_MUTUAL' || mode === 'DISABLE') {
    // Istio accepts and ignores these; say so rather than reject.
    const extra = (
      ['clientCertificate', 'privateKey', 'caCertificates', 'credentialName', 'caCrl'] as const
    ).filter((k) => tls[k]);
    for (const k of extra) r.warn(p.field(k), `${k} is ignored when mode is ${mode}`);
    return;
  }
  if (tls.insecureSkipVerify && (tls.subjectAltNames ?? []).length > 0) {
    r.add(p.field('subjectAltNames'), 'cannot specify SubjectAltNames when InsecureSkipVerify is set');
  }
  if (tls.credentialName) {
    if (tls.clientCertificate || tls.caCertificates || tls.privateKey || tls.caCrl) {
      r.add(p, 'cannot specify client certificates or CA certificate or CA CRL If credentialName is set');
    }
    return;
  }
  if (mode === 'MUTUAL') {
    if (!tls.clientCertificate) r.add(p, 'client certificate required for mutual tls');
    if (!tls.privateKey) r.add(p, 'private key required for mutual tls');
  }
}

function checkTrafficPolicy(tp: T.TrafficPolicy | undefined, p: FieldPath, r: Reporter): void {
  if (tp === undefined) return;
  const fields = Object.keys(tp).filter(
    (k) => k !== 'portLevelSettings' || (tp.portLevelSettings ?? []).length > 0,
  );
  if (fields.length === 0) {
    r.add(p, 'traffic policy must have at least one field');
    return;
  }
  if (tp.tunnel !== undefined && tp.proxyProtocol !== undefined) {
    r.add(p, 'tunnel and proxyProtocol must not be set together');
  }
  checkOutlierDetection(tp.outlierDetection, p.field('outlierDetection'), r);
  checkConnectionPool(tp.connectionPool, p.field('connectionPool'), r);
  checkLoadBalancer(tp.loadBalancer, tp.outlierDetection, p.field('loadBalancer'), r);
  checkClientTLS(tp.tls, p.field('tls'), r);
  const seenPorts = new Set<number>();
  (tp.portLevelSettings ?? []).forEach((pl, i) => {
    const pp = p.field('portLevelSettings').index(i);
    if (pl.port === undefined) r.add(pp.field('port'), 'portTrafficPolicy must have valid port');
    else {
      const n = pl.port.number ?? 0;
      report(r, pp.field('port').field('number'), validatePort(n));
      if (seenPorts.has(n))
        r.add(pp.field('port').field('number'), `duplicate port traffic policy for port ${n}`);
      seenPorts.add(n);
    }
    if (
      pl.outlierDetection === undefined &&
      pl.connectionPool === undefined &&
      pl.loadBalancer === undefined &&
      pl.tls === undefined
    ) {
      r.add(pp, 'port traffic policy must have at least one field');
      return;
    }
    checkOutlierDetection(pl.outlierDetection, pp.field('outlierDetection'), r);
    checkConnectionPool(pl.connectionPool, pp.field('connectionPool'), r);
    checkLoadBalancer(pl.loadBalancer, pl.outlierDetection, pp.field('loadBalancer'), r);
    checkClientTLS(pl.tls, pp.field('tls'), r);
  });
  if (tp.tunnel !== undefined) {
    const tn = p.field('tunnel');
    const proto = tp.tunnel.protocol ?? '';
    if (proto !== '' && proto !== 'CONNECT' && proto !== 'POST')
      r.add(tn.field('protocol'), 'tunnel protocol must be "CONNECT" or "POST"');
    const th = tp.tunnel.targetHost ?? '';
    if (validateFQDN(th) !== undefined && !isIPAddress(th)) {
      r.add(tn.field('targetHost'), `tunnel target host must be valid FQDN or IP address: ${th}`);
    }
    const e = validatePort(tp.tunnel.targetPort ?? 0);
    if (e !== undefined) r.add(tn.field('targetPort'), `tunnel target port is invalid: ${e}`);
  }
}

/** Validates a DestinationRule spec. */
export function checkDestinationRule(
  dr: T.DestinationRule,
  namespace: string,
  p: FieldPath,
  r: Reporter,
): void {
  report(r, p.field('host'), validateWildcardDomain(dr.host ?? ''));
  checkTrafficPolicy(dr.trafficPolicy, p.field('trafficPolicy'), r);
  const names = new Set<string>();
  (dr.subsets ?? []).forEach((s, i) => {
    const sp = p.field('subsets').index(i);
    const name = s.name ?? '';
    if (name === '') r.add(sp.field('name'), 'subset name cannot be empty');
    else if (!isDNS1123Label(name)) r.add(sp.field('name'), `subset name is invalid: ${name}`);
    if (names.has(name)) r.add(sp.field('name'), `duplicate subset names: ${name}`);
    names.add(name);
    checkLabels(s.labels, sp.field('labels'), r);
    checkTrafficPolicy(s.trafficPolicy, sp.field('trafficPolicy'), r);
  });
  checkExportTo(dr.exportTo, namespace, false, p.field('exportTo'), r);
  if (dr.workloadSelector !== undefined) {
    checkSelectorLabels(dr.workloadSelector.matchLabels, p.field('workloadSelector').field('matchLabels'), r);
    const ex = (dr.exportTo ?? []).map((e) => (e === '.' ? namespace : e));
    if (ex.length > 0 && (ex.length > 1 || ex[0] !== namespace)) {
      r.add(
        p.field('exportTo'),
        'destination rule with workload selector cannot have exportTo beyond current namespace',
      );
    }
  }
}

// ---------------------------------------------------------------- ServiceEntry / WorkloadEntry

function checkEndpointPorts(
  ports: Record<string, number> | undefined,
  servicePorts: ReadonlySet<string> | undefined,
  p: FieldPath,
  r: Reporter,
): void {
  for (const [name, port] of Object.entries(ports ?? {})) {
    const pp = p.key(name);
    if (servicePorts !== undefined && !servicePorts.has(name)) {
      r.add(pp, `endpoint port ${name} is not defined by the service entry`);
    }
    report(r, pp, validatePortName(name));
    report(r, pp, validatePort(port));
  }
}

/** Istio `validateWorkloadEntry`. `allowFQDN` is false for STATIC ServiceEntry endpoints. */
function checkWorkloadEntry(
  we: T.WorkloadEntry,
  servicePorts: ReadonlySet<string> | undefined,
  allowFQDN: boolean,
  p: FieldPath,
  r: Reporter,
): void {
  const addr = we.address ?? '';
  if (addr === '') {
    if (!we.network) r.add(p.field('address'), 'address is required');
  } else if (addr.startsWith('unix://')) {
    report(r, p.field('address'), validateUnixAddress(addr.slice('unix://'.length)));
    if (Object.keys(we.ports ?? {}).length > 0)
      r.add(p.field('ports'), `unix endpoint ${addr} must not include ports`);
    if (servicePorts !== undefined && servicePorts.size !== 1) {
      r.add(p.field('address'), 'exactly 1 service port required for unix endpoints');
    }
  } else if (!isIPAddress(addr)) {
    if (!allowFQDN) r.add(p.field('address'), `endpoint address "${addr}" is not a valid IP address`);
    else if (validateFQDN(addr) !== undefined) {
      r.add(p.field('address'), `endpoint address "${addr}" is not a valid FQDN or an IP address`);
    }
  }
  checkEndpointPorts(we.ports, servicePorts, p.field('ports'), r);
  checkLabels(we.labels, p.field('labels'), r);
  if (we.locality) checkLocality(we.locality, p.field('locality'), r);
  if (we.serviceAccount && !isDNS1123Subdomain(we.serviceAccount)) {
    r.add(p.field('serviceAccount'), `invalid service account name: ${we.serviceAccount}`);
  }
}

/** Validates a WorkloadEntry spec. */
export function checkWorkloadEntrySpec(we: T.WorkloadEntry, p: FieldPath, r: Reporter): void {
  checkWorkloadEntry(we, undefined, true, p, r);
}

/** Validates a ServiceEntry spec. */
export function checkServiceEntry(se: T.ServiceEntry, namespace: string, p: FieldPath, r: Reporter): void {
  const hosts = se.hosts ?? [];
  const resolution = se.resolution ?? 'NONE';
  if (se.workloadSelector !== undefined) {
    checkSelectorLabels(se.workloadSelector.labels, p.field('workloadSelector').field('labels'), r);
    if (se.endpoints !== undefined)
      r.add(p, 'only one of WorkloadSelector or Endpoints is allowed in Service Entry');
  }
  if (hosts.length === 0) r.add(p.field('hosts'), 'service entry must have at least one host');
  hosts.forEach((h, i) => {
    const hp = p.field('hosts').index(i);
    if (h === '*') r.add(hp, `invalid host ${h}`);
    else report(r, hp, validateWildcardDomain(h));
  });
  let cidr = false;
  (se.addresses ?? []).forEach((a, i) => {
    cidr ||= a.includes('/');
    report(r, p.field('addresses').index(i), validateIPSubnet(a));
  });
  if (cidr && resolution !== 'NONE' && resolution !== 'STATIC') {
    r.add(p.field('addresses'), 'CIDR addresses are allowed only for NONE/STATIC resolution types');
  }
  const portNames = new Set<string>();
  const portNumbers = new Set<number>();
  (se.ports ?? []).forEach((port, i) => {
    const pp = p.field('ports').index(i);
    const name = port.name ?? '';
    const num = port.number ?? 0;
    if (portNames.has(name)) r.add(pp.field('name'), `service entry port name "${name}" already defined`);
    portNames.add(name);
    if (portNumbers.has(num)) r.add(pp.field('number'), `service entry port ${num} already defined`);
    portNumbers.add(num);
    report(r, pp.field('name'), validatePortName(name));
    report(r, pp.field('protocol'), validateProtocol(port.protocol ?? ''));
    report(r, pp.field('number'), validatePort(num));
    if (port.targetPort !== undefined && port.targetPort !== 0)
      report(r, pp.field('targetPort'), validatePort(port.targetPort));
  });
  const endpoints = se.endpoints ?? [];
  switch (resolution) {
    case 'NONE':
      if (endpoints.length > 0)
        r.add(p.field('endpoints'), 'no endpoints should be provided for resolution type none');
      break;
    case 'STATIC':
      endpoints.forEach((ep, i) => {
        checkWorkloadEntry(ep, portNames, false, p.field('endpoints').index(i), r);
      });
      break;
    case 'DNS':
    case 'DNS_ROUND_ROBIN':
      if (endpoints.length === 0) {
        hosts.forEach((h, i) => {
          if (validateFQDN(h) !== undefined) {
            r.add(
              p.field('hosts').index(i),
              `hosts must be FQDN if no endpoints are provided for resolution mode ${resolution}`,
            );
          }
        });
      }
      if (resolution === 'DNS_ROUND_ROBIN' && endpoints.length > 1) {
        r.add(p.field('endpoints'), `there must only be 0 or 1 endpoint for resolution mode ${resolution}`);
      }
      endpoints.forEach((ep, i) => {
        const epp = p.field('endpoints').index(i);
        const addr = ep.address ?? '';
        if (!isIPAddress(addr) && validateFQDN(addr) !== undefined) {
          r.add(epp.field('address'), `endpoint address "${addr}" is not a valid FQDN or an IP address`);
        }
        checkLabels(ep.labels, epp.field('labels'), r);
        checkEndpointPorts(ep.ports, portNames, epp.field('ports'), r);
      });
      break;
  }
  if (resolution !== 'NONE' && hosts.length > 1) {
    const bad = (se.ports ?? []).findIndex((port) => {
      const proto = port.protocol ?? '';
      return !isHTTPProtocol(proto) && !isTLSProtocol(proto);
    });
    if (bad >= 0)
      r.add(
        p.field('ports').index(bad).field('protocol'),
        'multiple hosts provided with non-HTTP, non-TLS ports',
      );
  }
  (se.subjectAltNames ?? []).forEach((s, i) => {
    if (s === '') r.add(p.field('subjectAltNames').index(i), 'subjectAltNames entries must not be empty');
  });
  checkExportTo(se.exportTo, namespace, true, p.field('exportTo'), r);
}

// ---------------------------------------------------------------- Sidecar

/** Istio `ValidateNamespaceSlashWildcardHostname` for Sidecar egress hosts: `ns/host`. */
function checkNamespaceSlashHost(h: string, p: FieldPath, r: Reporter): void {
  const slash = h.indexOf('/');
  if (slash < 0) {
    r.add(p, 'host must be of form namespace/dnsName');
    return;
  }
  const ns = h.slice(0, slash);
  const dns = h.slice(slash + 1);
  if (ns === '' || dns === '') {
    r.add(p, 'config namespace and dnsName in host entry cannot be empty');
    return;
  }
  // `~/...` (no namespace) is accepted, as Istio does for sidecars.
  if (ns !== '*' && ns !== '.' && ns !== '~' && !isDNS1123Label(ns)) {
    r.add(p, `invalid namespace value "${ns}" in sidecar`);
  }
  if (dns !== '*') report(r, p, validateWildcardDomain(dns));
}

function checkSidecarPort(port: T.SidecarPort, p: FieldPath, r: Reporter, allowZero: boolean): void {
  if (port.name) report(r, p.field('name'), validatePortName(port.name));
  report(r, p.field('protocol'), validateProtocol(port.protocol ?? ''));
  if (!(allowZero && (port.number ?? 0) === 0)) report(r, p.field('number'), validatePort(port.number ?? 0));
  if (port.targetPort !== undefined && port.targetPort > 0)
    r.add(p.field('targetPort'), 'targetPort has no impact on Sidecars');
}

/** Validates a Sidecar spec. */
export function checkSidecar(sc: T.Sidecar, p: FieldPath, r: Reporter): void {
  if (sc.workloadSelector !== undefined) {
    checkSelectorLabels(sc.workloadSelector.labels, p.field('workloadSelector').field('labels'), r);
  }
  if (
    (sc.egress ?? []).length === 0 &&
    (sc.ingress ?? []).length === 0 &&
    sc.outboundTrafficPolicy === undefined &&
    sc.inboundConnectionPool === undefined
  ) {
    r.add(p, 'sidecar: empty configuration provided');
  }
  const ingressPorts = new Set<number>();
  (sc.ingress ?? []).forEach((ing, i) => {
    const ip = p.field('ingress').index(i);
    if (ing.port === undefined) {
      r.add(ip.field('port'), 'sidecar: port is required for ingress listeners');
      return;
    }
    checkSidecarPort(ing.port, ip.field('port'), r, false);
    if (ing.bind)
      report(r, ip.field('bind'), isIPAddress(ing.bind) ? undefined : `${ing.bind} is not a valid IP`);
    const n = ing.port.number ?? 0;
    if (ingressPorts.has(n))
      r.add(ip.field('port').field('number'), 'sidecar: ports on IP bound listeners must be unique');
    ingressPorts.add(n);
    const de = ing.defaultEndpoint;
    if (de) {
      const dp = ip.field('defaultEndpoint');
      if (de.startsWith('unix://')) report(r, dp, validateUnixAddress(de.slice('unix://'.length)));
      else {
        const m = /^(?:\[([^\]]*)\]|([^:[\]]*)):(.*)$/.exec(de);
        const host = m?.[1] ?? m?.[2];
        const portText = m?.[3] ?? '';
        if (m === null || (host !== '' && !['127.0.0.1', '0.0.0.0', '::1', '::'].includes(host ?? ''))) {
          r.add(
            dp,
            'sidecar: defaultEndpoint must be of form 127.0.0.1:<port>,0.0.0.0:<port>,[::1]:port,[::]:port,unix://filepath or unset',
          );
        } else if (!/^\d+$/.test(portText)) {
          r.add(dp, `sidecar: defaultEndpoint port (${portText}) is not a number`);
        } else report(r, dp, validatePort(Number(portText)));
      }
    }
    if (ing.tls !== undefined) {
      const tp = ip.field('tls');
      if ((ing.tls.subjectAltNames ?? []).length > 0)
        r.add(tp.field('subjectAltNames'), 'sidecar: subjectAltNames is not supported in ingress tls');
      if (ing.tls.httpsRedirect) r.add(tp.field('httpsRedirect'), 'sidecar: httpsRedirect is not supported');
      if (ing.tls.credentialName) {
        r.add(tp.field('credentialName'), 'sidecar: credentialName is not currently supported');
      }
      if ((ing.tls.credentialNames ?? []).length > 0) {
        r.add(tp.field('credentialNames'), 'sidecar: credentialNames is not currently supported');
      }
      if ((ing.tls.tlsCertificates ?? []).length > 0) {
        r.add(tp.field('tlsCertificates'), 'sidecar: tls_certificates is not currently supported');
      }
      if (ing.tls.mode === 'ISTIO_MUTUAL' || ing.tls.mode === 'AUTO_PASSTHROUGH') {
        r.add(tp.field('mode'), `cannot set mode to ${ing.tls.mode} in sidecar ingress tls`);
      }
      if (!isTLSProtocol(ing.port.protocol ?? ''))
        r.add(tp, 'server cannot have TLS settings for non HTTPS/TLS ports');
      if (ing.tls.mode === 'SIMPLE' || ing.tls.mode === 'MUTUAL' || ing.tls.mode === 'OPTIONAL_MUTUAL') {
        const prefix = ing.tls.mode === 'SIMPLE' ? 'SIMPLE TLS' : 'MUTUAL TLS';
        if (!ing.tls.serverCertificate) r.add(tp, `${prefix} requires a server certificate`);
        if (!ing.tls.privateKey) r.add(tp, `${prefix} requires a private key`);
        if (prefix === 'MUTUAL TLS' && !ing.tls.caCertificates)
          r.add(tp, `${prefix} requires a client CA bundle`);
      }
    }
    checkConnectionPool(ing.connectionPool, ip.field('connectionPool'), r);
  });
  checkConnectionPool(sc.inboundConnectionPool, p.field('inboundConnectionPool'), r);
  const egressPorts = new Set<number>();
  const egress = sc.egress ?? [];
  egress.forEach((eg, i) => {
    const ep = p.field('egress').index(i);
    if (eg.port === undefined) {
      // Only the last listener may omit its port, so there is at most one such listener.
      if (i !== egress.length - 1) {
        r.add(ep, 'sidecar: the egress listener with empty port should be the last listener in the list');
      }
    } else {
      const n = eg.port.number ?? 0;
      checkSidecarPort(eg.port, ep.field('port'), r, true);
      if (n === 0) {
        if (!(eg.bind ?? '').startsWith('unix://')) {
          r.add(ep.field('bind'), 'sidecar: ports with 0 value must have a unix domain socket bind address');
        } else report(r, ep.field('bind'), validateUnixAddress((eg.bind ?? '').slice('unix://'.length)));
        if (eg.captureMode === 'IPTABLES') {
          r.add(
            ep.field('captureMode'),
            'sidecar: captureMode must be DEFAULT/NONE for unix domain socket listeners',
          );
        }
      } else {
        if (eg.bind)
          report(r, ep.field('bind'), isIPAddress(eg.bind) ? undefined : `${eg.bind} is not a valid IP`);
        if (egressPorts.has(n))
          r.add(ep.field('port').field('number'), 'sidecar: ports on IP bound listeners must be unique');
        egressPorts.add(n);
      }
    }
    if ((eg.hosts ?? []).length === 0)
      r.add(ep.field('hosts'), 'sidecar: egress listener must contain at least one host');
    (eg.hosts ?? []).forEach((h, j) => {
      checkNamespaceSlashHost(h, ep.field('hosts').index(j), r);
    });
  });
  const otp = sc.outboundTrafficPolicy;
  if (otp?.egressProxy !== undefined) {
    const op = p.field('outboundTrafficPolicy').field('egressProxy');
    if ((otp.mode ?? 'REGISTRY_ONLY') !== 'ALLOW_ANY') {
      r.add(op, 'sidecar: egress_proxy must be set only with ALLOW_ANY outbound_traffic_policy mode');
    } else if (otp.egressProxy.port === undefined) {
      r.add(op.field('port'), 'sidecar: egress_proxy port must be non-nil');
    } else {
      report(r, op.field('host'), validateFQDN(otp.egressProxy.host ?? ''));
      checkDestination(otp.egressProxy, op, r);
    }
  }
}

// ---------------------------------------------------------------- security

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
    if (rule.from !== undefined && rule.from.length === 0)
      r.add(rp.field('from'), '`from` must not be empty');
    (rule.from ?? []).forEach((f, j) => {
      const fp = rp.field('from').index(j);
      if (f.source === undefined) {
        r.add(fp.field('source'), '`from.source` must not be nil');
        return;
      }
      const src = f.source;
      const sp = fp.field('source');
      const lists = Object.values(src).filter((v) => Array.isArray(v) && v.length > 0);
      if (lists.length === 0) r.add(sp, '`from.source` must not be empty');
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
      for (const k of [
        'principals',
        'notPrincipals',
        'requestPrincipals',
        'notRequestPrincipals',
        'namespaces',
        'notNamespaces',
      ] as const) {
        checkNonEmptyValues(src[k], k, sp.field(k), r);
      }
      if (action === 'CUSTOM') {
        for (const k of [
          'principals',
          'notPrincipals',
          'requestPrincipals',
          'notRequestPrincipals',
          'namespaces',
          'notNamespaces',
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
    if (rule.to !== undefined && rule.to.length === 0) r.add(rp.field('to'), '`to` must not be empty');
    (rule.to ?? []).forEach((t, j) => {
      const tp = rp.field('to').index(j);
      if (t.operation === undefined) {
        r.add(tp.field('operation'), '`to.operation` must not be nil');
        return;
      }
      const op = t.operation;
      const opp = tp.field('operation');
      const lists = Object.values(op).filter((v) => Array.isArray(v) && v.length > 0);
      if (lists.length === 0) r.add(opp, '`to.operation` must not be empty');
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

// ---------------------------------------------------------------- RequestAuthentication, RateLimit

/** Validates a RequestAuthentication spec (request-authn.ts). */
export function checkRequestAuthenticationSpec(ra: RequestAuthentication, p: FieldPath, r: Reporter): void {
  checkRequestAuthentication(ra, p, r, checkSelectorLabels);
}

/** Validates a RateLimit spec (rate-limit.ts). */
export function checkRateLimitSpec(rl: RateLimit, p: FieldPath, r: Reporter): void {
  checkRateLimit(rl, p, r, checkSelectorLabels);
}

/** Validates a Telemetry spec (telemetry-kind.ts). */
export function checkTelemetrySpec(t: Telemetry, p: FieldPath, r: Reporter): void {
  checkTelemetry(t, p, r, checkSelectorLabels);
}
