import type { KindName } from '@meridian/api';
import { describe, expect, it } from 'vitest';
import { specErrors } from './helpers.js';

interface Case {
  name: string;
  spec: unknown;
  errors: string[];
}

function run(kind: KindName, cases: Case[]): void {
  for (const c of cases) {
    it(c.name, () => {
      expect(specErrors(kind, c.spec)).toEqual(c.errors);
    });
  }
}

const SE = 'ServiceEntry default/t: ';
const WE = 'WorkloadEntry default/t: ';
const SC = 'Sidecar default/t: ';
const PA = 'PeerAuthentication default/t: ';
const AP = 'AuthorizationPolicy default/t: ';

const port = { number: 443, name: 'https', protocol: 'TLS' };

describe('ServiceEntry', () => {
  run('ServiceEntry', [
    {
      name: 'at least one host',
      spec: { ports: [port], resolution: 'DNS' },
      errors: [`${SE}spec.hosts: service entry must have at least one host`],
    },
    {
      name: 'host * is invalid',
      spec: { hosts: ['*'], ports: [port] },
      errors: [`${SE}spec.hosts[0]: invalid host *`],
    },
    {
      name: 'ports are optional (as in Istio)',
      spec: { hosts: ['api.example.com'], resolution: 'DNS' },
      errors: [],
    },
    {
      name: 'port number range and name syntax',
      spec: {
        hosts: ['api.example.com'],
        ports: [{ number: 0, name: 'HTTPS', protocol: 'TLS' }],
        resolution: 'DNS',
      },
      errors: [
        `${SE}spec.ports[0].name: invalid port name: HTTPS`,
        `${SE}spec.ports[0].number: port number 0 must be in the range 1..65535`,
      ],
    },
    {
      name: 'duplicate port names and numbers',
      spec: { hosts: ['api.example.com'], ports: [port, port], resolution: 'DNS' },
      errors: [
        `${SE}spec.ports[1].name: service entry port name "https" already defined`,
        `${SE}spec.ports[1].number: service entry port 443 already defined`,
      ],
    },
    {
      name: 'unknown protocol',
      spec: {
        hosts: ['api.example.com'],
        ports: [{ number: 80, name: 'web', protocol: 'SPDY' }],
        resolution: 'DNS',
      },
      errors: [`${SE}spec.ports[0].protocol: unsupported protocol: SPDY`],
    },
    {
      name: 'resolution enum',
      spec: { hosts: ['api.example.com'], ports: [port], resolution: 'AUTO' },
      errors: [
        `${SE}spec.resolution: invalid value "AUTO", expected one of NONE, STATIC, DNS, DNS_ROUND_ROBIN`,
      ],
    },
    {
      name: 'addresses must be IPs or CIDRs',
      spec: {
        hosts: ['db.internal'],
        addresses: ['10.0.0.300'],
        ports: [{ number: 5432, name: 'pg', protocol: 'TCP' }],
      },
      errors: [`${SE}spec.addresses[0]: 10.0.0.300 is not a valid IP`],
    },
    {
      name: 'CIDR addresses only for NONE/STATIC',
      spec: {
        hosts: ['db.internal'],
        addresses: ['10.0.0.0/24'],
        ports: [{ number: 5432, name: 'pg', protocol: 'TCP' }],
        resolution: 'DNS',
      },
      errors: [`${SE}spec.addresses: CIDR addresses are allowed only for NONE/STATIC resolution types`],
    },
    {
      name: 'NONE resolution takes no endpoints',
      spec: {
        hosts: ['api.example.com'],
        ports: [port],
        resolution: 'NONE',
        endpoints: [{ address: '1.2.3.4' }],
      },
      errors: [`${SE}spec.endpoints: no endpoints should be provided for resolution type none`],
    },
    {
      name: 'STATIC endpoints must be IPs',
      spec: {
        hosts: ['api.example.com'],
        ports: [port],
        resolution: 'STATIC',
        endpoints: [{ address: 'api.example.com' }],
      },
      errors: [
        `${SE}spec.endpoints[0].address: endpoint address "api.example.com" is not a valid IP address`,
      ],
    },
    {
      name: 'endpoint ports must name a service port',
      spec: {
        hosts: ['api.example.com'],
        ports: [port],
        resolution: 'STATIC',
        endpoints: [{ address: '10.0.0.1', ports: { http: 8080 } }],
      },
      errors: [`${SE}spec.endpoints[0].ports[http]: endpoint port http is not defined by the service entry`],
    },
    {
      name: 'DNS without endpoints needs FQDN hosts',
      spec: { hosts: ['*.example.com'], ports: [port], resolution: 'DNS' },
      errors: [`${SE}spec.hosts[0]: hosts must be FQDN if no endpoints are provided for resolution mode DNS`],
    },
    {
      name: 'DNS endpoint address must be FQDN or IP',
      spec: {
        hosts: ['api.example.com'],
        ports: [port],
        resolution: 'DNS',
        endpoints: [{ address: 'bad_host' }],
      },
      errors: [
        `${SE}spec.endpoints[0].address: endpoint address "bad_host" is not a valid FQDN or an IP address`,
      ],
    },
    {
      name: 'DNS_ROUND_ROBIN has at most one endpoint',
      spec: {
        hosts: ['api.example.com'],
        ports: [port],
        resolution: 'DNS_ROUND_ROBIN',
        endpoints: [{ address: 'a.example.com' }, { address: 'b.example.com' }],
      },
      errors: [`${SE}spec.endpoints: there must only be 0 or 1 endpoint for resolution mode DNS_ROUND_ROBIN`],
    },
    {
      name: 'workloadSelector and endpoints are exclusive',
      spec: {
        hosts: ['api.internal'],
        ports: [port],
        resolution: 'STATIC',
        workloadSelector: { labels: { app: 'api' } },
        endpoints: [{ address: '10.0.0.1' }],
      },
      errors: [`${SE}spec: only one of WorkloadSelector or Endpoints is allowed in Service Entry`],
    },
    {
      name: 'multiple hosts with a TCP port',
      spec: {
        hosts: ['a.example.com', 'b.example.com'],
        ports: [{ number: 5432, name: 'pg', protocol: 'TCP' }],
        resolution: 'DNS',
      },
      errors: [`${SE}spec.ports[0].protocol: multiple hosts provided with non-HTTP, non-TLS ports`],
    },
    {
      name: 'exportTo ~ with others',
      spec: { hosts: ['api.example.com'], ports: [port], resolution: 'DNS', exportTo: ['~', 'foo'] },
      errors: [`${SE}spec.exportTo: cannot export service entry to no one (~) and someone`],
    },
  ]);
});

describe('WorkloadEntry', () => {
  run('WorkloadEntry', [
    {
      name: 'address required without network',
      spec: { labels: { app: 'vm' } },
      errors: [`${WE}spec.address: address is required`],
    },
    {
      name: 'address must be IP, FQDN or unix socket',
      spec: { address: 'not an address' },
      errors: [`${WE}spec.address: endpoint address "not an address" is not a valid FQDN or an IP address`],
    },
    {
      name: 'unix address without ports',
      spec: { address: 'unix:///var/run/app.sock', ports: { http: 80 } },
      errors: [`${WE}spec.ports: unix endpoint unix:///var/run/app.sock must not include ports`],
    },
    {
      name: 'port number range',
      spec: { address: '10.0.0.5', ports: { http: 0 } },
      errors: [`${WE}spec.ports[http]: port number 0 must be in the range 1..65535`],
    },
    {
      name: 'port name syntax',
      spec: { address: '10.0.0.5', ports: { HTTP: 80 } },
      errors: [`${WE}spec.ports[HTTP]: invalid port name: HTTP`],
    },
    {
      name: 'label syntax',
      spec: { address: '10.0.0.5', labels: { 'a/b/c': 'x' } },
      errors: [`${WE}spec.labels[a/b/c]: invalid label key: "a/b/c"`],
    },
    {
      name: 'serviceAccount must be a DNS-1123 subdomain',
      spec: { address: '10.0.0.5', serviceAccount: 'Bad SA' },
      errors: [`${WE}spec.serviceAccount: invalid service account name: Bad SA`],
    },
    {
      name: 'locality segments',
      spec: { address: '10.0.0.5', locality: 'us-west/zone1/sub/extra' },
      errors: [
        `${WE}spec.locality: locality us-west/zone1/sub/extra has more than 3 segments (region/zone/subzone)`,
      ],
    },
  ]);
});

describe('Sidecar', () => {
  run('Sidecar', [
    {
      name: 'empty configuration',
      spec: {},
      errors: [`${SC}spec: sidecar: empty configuration provided`],
    },
    {
      name: 'egress hosts must be namespace/host',
      spec: { egress: [{ hosts: ['reviews.default.svc.cluster.local'] }] },
      errors: [`${SC}spec.egress[0].hosts[0]: host must be of form namespace/dnsName`],
    },
    {
      name: 'egress host namespace syntax',
      spec: { egress: [{ hosts: ['Prod/*'] }] },
      errors: [`${SC}spec.egress[0].hosts[0]: invalid namespace value "Prod" in sidecar`],
    },
    {
      name: 'egress listener needs hosts',
      spec: { egress: [{ port: { number: 80, protocol: 'HTTP', name: 'http' } }] },
      errors: [`${SC}spec.egress[0].hosts: sidecar: egress listener must contain at least one host`],
    },
    {
      name: 'catch-all egress listener must be last',
      spec: {
        egress: [
          { hosts: ['./*'] },
          { port: { number: 80, protocol: 'HTTP', name: 'http' }, hosts: ['./*'] },
        ],
      },
      errors: [
        `${SC}spec.egress[0]: sidecar: the egress listener with empty port should be the last listener in the list`,
      ],
    },
    {
      name: 'egress ports unique',
      spec: {
        egress: [
          { port: { number: 80, protocol: 'HTTP', name: 'a' }, hosts: ['./*'] },
          { port: { number: 80, protocol: 'HTTP', name: 'b' }, hosts: ['istio-system/*'] },
        ],
      },
      errors: [`${SC}spec.egress[1].port.number: sidecar: ports on IP bound listeners must be unique`],
    },
    {
      name: 'port 0 needs a unix bind',
      spec: { egress: [{ port: { number: 0, protocol: 'HTTP', name: 'uds' }, hosts: ['./*'] }] },
      errors: [
        `${SC}spec.egress[0].bind: sidecar: ports with 0 value must have a unix domain socket bind address`,
      ],
    },
    {
      name: 'ingress needs a port',
      spec: { ingress: [{ defaultEndpoint: '127.0.0.1:8080' }] },
      errors: [`${SC}spec.ingress[0].port: sidecar: port is required for ingress listeners`],
    },
    {
      name: 'ingress defaultEndpoint form',
      spec: {
        ingress: [
          { port: { number: 9080, protocol: 'HTTP', name: 'http' }, defaultEndpoint: '10.1.1.1:8080' },
        ],
      },
      errors: [
        `${SC}spec.ingress[0].defaultEndpoint: sidecar: defaultEndpoint must be of form 127.0.0.1:<port>,0.0.0.0:<port>,[::1]:port,[::]:port,unix://filepath or unset`,
      ],
    },
    {
      name: 'ingress bind must be an IP',
      spec: { ingress: [{ port: { number: 9080, protocol: 'HTTP', name: 'http' }, bind: 'localhost' }] },
      errors: [`${SC}spec.ingress[0].bind: localhost is not a valid IP`],
    },
    {
      name: 'ingress TLS only on TLS ports',
      spec: {
        ingress: [
          {
            port: { number: 9080, protocol: 'HTTP', name: 'http' },
            tls: { mode: 'SIMPLE', serverCertificate: '/c.pem', privateKey: '/k.pem' },
          },
        ],
      },
      errors: [`${SC}spec.ingress[0].tls: server cannot have TLS settings for non HTTPS/TLS ports`],
    },
    {
      name: 'egressProxy only with ALLOW_ANY',
      spec: {
        outboundTrafficPolicy: {
          mode: 'REGISTRY_ONLY',
          egressProxy: { host: 'proxy.example.com', port: { number: 3128 } },
        },
      },
      errors: [
        `${SC}spec.outboundTrafficPolicy.egressProxy: sidecar: egress_proxy must be set only with ALLOW_ANY outbound_traffic_policy mode`,
      ],
    },
    {
      name: 'workloadSelector without wildcards',
      spec: { workloadSelector: { labels: { app: '*' } }, egress: [{ hosts: ['./*'] }] },
      errors: [`${SC}spec.workloadSelector.labels[app]: wildcard is not supported in selector: "app=*"`],
    },
  ]);
});

describe('PeerAuthentication', () => {
  run('PeerAuthentication', [
    {
      name: 'mtls mode enum',
      spec: { mtls: { mode: 'ON' } },
      errors: [`${PA}spec.mtls.mode: invalid value "ON", expected one of UNSET, DISABLE, PERMISSIVE, STRICT`],
    },
    {
      name: 'portLevelMtls requires a selector',
      spec: { mtls: { mode: 'STRICT' }, portLevelMtls: { '8080': { mode: 'DISABLE' } } },
      errors: [`${PA}spec.portLevelMtls: mesh/namespace peer authentication cannot have port level mTLS`],
    },
    {
      name: 'portLevelMtls port range',
      spec: { selector: { matchLabels: { app: 'x' } }, portLevelMtls: { '0': { mode: 'DISABLE' } } },
      errors: [`${PA}spec.portLevelMtls[0]: port must be in range 1..65535`],
    },
    {
      name: 'portLevelMtls keys are numbers',
      spec: { selector: { matchLabels: { app: 'x' } }, portLevelMtls: { http: { mode: 'DISABLE' } } },
      errors: [`${PA}spec.portLevelMtls[http]: map key "http" must be an unsigned integer`],
    },
    {
      name: 'portLevelMtls, if defined, not empty',
      spec: { selector: { matchLabels: { app: 'x' } }, portLevelMtls: {} },
      errors: [`${PA}spec.portLevelMtls: port level mTLS, if defined, must have at least one element`],
    },
    {
      name: 'selector labels without wildcards',
      spec: { selector: { matchLabels: { 'app*': 'x' } } },
      errors: [`${PA}spec.selector.matchLabels[app*]: wildcard is not supported in selector: "app*=x"`],
    },
  ]);
});

describe('AuthorizationPolicy', () => {
  run('AuthorizationPolicy', [
    {
      name: 'action enum',
      spec: { action: 'PERMIT', rules: [{}] },
      errors: [`${AP}spec.action: invalid value "PERMIT", expected one of ALLOW, DENY, AUDIT, CUSTOM`],
    },
    {
      name: 'DENY without rules',
      spec: { action: 'DENY' },
      errors: [
        `${AP}spec.rules: DENY action without \`rules\` is meaningless as it will never be triggered, add an empty rule \`{}\` if you want it be triggered for every request`,
      ],
    },
    {
      name: 'CUSTOM needs a provider',
      spec: { action: 'CUSTOM', rules: [{}] },
      errors: [`${AP}spec.provider.name: \`provider.name\` must not be empty`],
    },
    {
      name: 'provider only with CUSTOM',
      spec: { action: 'ALLOW', provider: { name: 'ext-authz' }, rules: [{}] },
      errors: [`${AP}spec.provider: \`provider\` must not be with non CUSTOM action, found ALLOW`],
    },
    {
      name: 'selector and targetRef exclusive',
      spec: {
        selector: { matchLabels: { app: 'x' } },
        targetRef: { kind: 'Service', name: 'x' },
        rules: [{}],
      },
      errors: [`${AP}spec: only one of targetRefs or workloadSelector can be set`],
    },
    {
      name: 'targetRef kind',
      spec: { targetRef: { group: 'apps', kind: 'Deployment', name: 'x' }, rules: [{}] },
      errors: [
        `${AP}spec.targetRef: targetRef must be to a Service, ServiceEntry, Gateway or GatewayClass but was apps/Deployment`,
      ],
    },
    {
      name: 'from must not be empty',
      spec: { rules: [{ from: [] }] },
      errors: [`${AP}spec.rules[0].from: \`from\` must not be empty`],
    },
    {
      name: 'from.source must be set',
      spec: { rules: [{ from: [{}] }] },
      errors: [`${AP}spec.rules[0].from[0].source: \`from.source\` must not be nil`],
    },
    {
      name: 'from.source must not be empty',
      spec: { rules: [{ from: [{ source: {} }] }] },
      errors: [`${AP}spec.rules[0].from[0].source: \`from.source\` must not be empty`],
    },
    {
      name: 'ipBlocks syntax',
      spec: { rules: [{ from: [{ source: { ipBlocks: ['10.0.0.0/40'] } }] }] },
      errors: [`${AP}spec.rules[0].from[0].source.ipBlocks[0]: 10.0.0.0/40 is not a valid CIDR block`],
    },
    {
      name: 'empty principal',
      spec: { rules: [{ from: [{ source: { principals: [''] } }] }] },
      errors: [
        `${AP}spec.rules[0].from[0].source.principals[0]: empty value not allowed, found in principals`,
      ],
    },
    {
      name: 'to.operation must be set',
      spec: { rules: [{ to: [{}] }] },
      errors: [`${AP}spec.rules[0].to[0].operation: \`to.operation\` must not be nil`],
    },
    {
      name: 'to.operation must not be empty',
      spec: { rules: [{ to: [{ operation: {} }] }] },
      errors: [`${AP}spec.rules[0].to[0].operation: \`to.operation\` must not be empty`],
    },
    {
      name: 'operation ports',
      spec: { rules: [{ to: [{ operation: { ports: ['http'] } }] }] },
      errors: [`${AP}spec.rules[0].to[0].operation.ports[0]: invalid port: http`],
    },
    {
      name: 'when key required',
      spec: { rules: [{ when: [{ values: ['x'] }] }] },
      errors: [`${AP}spec.rules[0].when[0].key: \`key\` must not be empty`],
    },
    {
      name: 'when key must be a known attribute',
      spec: { rules: [{ when: [{ key: 'request.body', values: ['x'] }] }] },
      errors: [`${AP}spec.rules[0].when[0].key: unknown attribute: request.body`],
    },
    {
      name: 'when needs values or notValues',
      spec: { rules: [{ when: [{ key: 'request.headers[x-token]' }] }] },
      errors: [
        `${AP}spec.rules[0].when[0]: at least one of \`values\` or \`notValues\` must be set for key request.headers[x-token]`,
      ],
    },
    {
      name: 'CUSTOM does not support principals',
      spec: {
        action: 'CUSTOM',
        provider: { name: 'authz' },
        rules: [{ from: [{ source: { principals: ['a'] } }] }],
      },
      errors: [
        `${AP}spec.rules[0].from[0].source.principals: principals is currently not supported with CUSTOM action`,
      ],
    },
  ]);
});

describe('AuthorizationPolicy service accounts and newer fields', () => {
  run('AuthorizationPolicy', [
    {
      name: 'serviceAccounts cannot be combined with principals',
      spec: { rules: [{ from: [{ source: { serviceAccounts: ['ns/sa'], principals: ['p'] } }] }] },
      errors: [`${AP}spec.rules[0].from[0].source: cannot set serviceAccounts with namespaces or principals`],
    },
    {
      // Istio's CheckServiceAccount: `sa` (the policy's namespace) or `namespace/sa`, nothing deeper.
      name: 'serviceAccounts are name or namespace/name',
      spec: { rules: [{ from: [{ source: { serviceAccounts: ['sa', 'ns/sa', 'a/b/c'] } }] }] },
      errors: [
        `${AP}spec.rules[0].from[0].source.serviceAccounts[2]: expected format 'serviceAccount' or 'namespace/serviceAccount', found "a/b/c" in serviceAccounts`,
      ],
    },
  ]);
  run('VirtualService', [
    {
      name: 'retry backoff duration',
      spec: {
        hosts: ['r'],
        http: [{ route: [{ destination: { host: 'r' } }], retries: { attempts: 2, backoff: '0.1ms' } }],
      },
      errors: ['VirtualService default/t: spec.http[0].retries.backoff: duration must be greater than 1ms'],
    },
    {
      name: 'tcp sourceSubnet',
      spec: {
        hosts: ['r'],
        tcp: [{ match: [{ sourceSubnet: 'x' }], route: [{ destination: { host: 'r' } }] }],
      },
      errors: ['VirtualService default/t: spec.tcp[0].match[0].sourceSubnet: x is not a valid IP'],
    },
  ]);
  run('Sidecar', [
    {
      name: 'ingress TLS credentialNames unsupported',
      spec: {
        ingress: [
          {
            port: { number: 8443, protocol: 'HTTPS', name: 'https' },
            tls: { mode: 'SIMPLE', serverCertificate: '/c', privateKey: '/k', credentialNames: ['a'] },
          },
        ],
      },
      errors: [
        `${SC}spec.ingress[0].tls.credentialNames: sidecar: credentialNames is not currently supported`,
      ],
    },
  ]);
});
