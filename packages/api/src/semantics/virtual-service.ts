/**
 * VirtualService semantics (Istio virtualservice.go and validation.go `ValidateVirtualService`): HTTP,
 * TLS and TCP routes, matches, weights, fault injection, retries, mirrors, delegates, and the
 * unreachable-rule warnings of Istio's analyzers.
 */
import type { FieldPath, Reporter } from '../path.js';
import {
  GRPC_STATUS_NAMES,
  HTTP_METHODS,
  hostSubsetOf,
  hostsMatch,
  isDNS1123Label,
  isIPAddress,
  RETRY_ON_POLICIES,
  validateDuration,
  validateFQDN,
  validateIPSubnet,
  validatePercent,
  validatePercentage,
  validatePort,
  validateRegex,
  validateWildcardDomain,
} from '../rules.js';
import type * as T from '../types.js';
import { checkDestination, checkDuration, checkExportTo, checkLabels, report } from './common.js';

function checkStringMatch(sm: T.StringMatch | undefined, where: string, p: FieldPath, r: Reporter): void {
  if (sm === undefined) return;
  if (sm.prefix !== undefined && sm.prefix === '')
    r.add(p, `"${where}": prefix string match should not be empty`);
  if (sm.regex !== undefined) report(r, p.field('regex'), validateRegex(sm.regex, where));
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
