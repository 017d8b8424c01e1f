/**
 * DestinationRule semantics (Istio validation.go `ValidateDestinationRule`): traffic policies,
 * connection pools, outlier detection, load balancers (consistent hash, locality), client TLS,
 * port-level settings, subsets and tunnels.
 */
import type { FieldPath, Reporter } from '../path.js';
import {
  isDNS1123Label,
  isIPAddress,
  validateFQDN,
  validateLabelKey,
  validatePercent,
  validatePort,
  validateWildcardDomain,
} from '../rules.js';
import type * as T from '../types.js';
import {
  checkDuration,
  checkExportTo,
  checkLabels,
  checkLocality,
  checkSelectorLabels,
  report,
} from './common.js';

/** Validates connection-pool settings (also used by Sidecar inbound listeners). */
export function checkConnectionPool(
  cp: T.ConnectionPoolSettings | undefined,
  p: FieldPath,
  r: Reporter,
): void {
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
