/**
 * Sidecar semantics (Istio validation.go `ValidateSidecar`): ingress and egress listeners, their
 * `namespace/host` entries, and the outbound traffic policy.
 */
import type { FieldPath, Reporter } from '../path.js';
import {
  isDNS1123Label,
  isIPAddress,
  isTLSProtocol,
  validateFQDN,
  validatePort,
  validatePortName,
  validateProtocol,
  validateUnixAddress,
  validateWildcardDomain,
} from '../rules.js';
import type * as T from '../types.js';
import { checkDestination, checkSelectorLabels, report } from './common.js';
import { checkConnectionPool } from './destination-rule.js';

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
