/**
 * ServiceEntry and WorkloadEntry semantics (Istio validation.go `ValidateServiceEntry`,
 * `ValidateWorkloadEntry`): hosts, addresses, ports, resolution modes and endpoints.
 */
import type { FieldPath, Reporter } from '../path.js';
import {
  isDNS1123Subdomain,
  isHTTPProtocol,
  isIPAddress,
  isTLSProtocol,
  validateFQDN,
  validateIPSubnet,
  validatePort,
  validatePortName,
  validateProtocol,
  validateUnixAddress,
  validateWildcardDomain,
} from '../rules.js';
import type * as T from '../types.js';
import { checkExportTo, checkLabels, checkLocality, checkSelectorLabels, report } from './common.js';

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
