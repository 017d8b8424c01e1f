/**
 * Agreement with Istio on valid and invalid documents of the security kinds (AuthorizationPolicy,
 * PeerAuthentication); how the cases are run: istio-crds-cases.ts.
 */
import { describe, expect, it } from 'vitest';
import { type Case, describeAgreementWithIstio, one, policy } from './istio-crds-cases.js';

const CASES: Record<'AuthorizationPolicy' | 'PeerAuthentication', readonly Case[]> = {
  AuthorizationPolicy: [
    {
      name: 'source identities: exact, prefix*, *suffix and * in every field and its negation',
      yaml: `spec:
  selector: {matchLabels: {app: checkout}}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: [cluster.local/ns/shop/sa/cart, "cluster.local/ns/shop/*", "*/sa/cart", "*"]
        notPrincipals: [cluster.local/ns/ops/sa/debug, "ops-*", "*-debug", "*"]
        requestPrincipals: [https://idp.shop.test/alice, "https://idp.shop.test/*", "*/bob", "*"]
        notRequestPrincipals: [https://idp.evil.test/mallory, "evil-*", "*-mallory", "*"]
        namespaces: [shop, "shop-*", "*-staging", "*"]
        notNamespaces: [sandbox, "sandbox-*", "*-scratch", "*"]
        ipBlocks: [198.51.100.7, 203.0.113.0/24]
        notIpBlocks: [198.51.100.8, 192.0.2.0/28]
        remoteIpBlocks: [100.64.1.1, 100.64.0.0/10]
        notRemoteIpBlocks: [100.64.9.9, 172.16.0.0/12]
`,
    },
    {
      name: 'source trustDomains and notTrustDomains: exact, prefix*, *suffix and *; serviceAccounts with and without namespace next to principals and namespaces in sibling sources',
      yaml: `spec:
  rules:
  - from:
    - source: {trustDomains: [shop.test, "shop-*", "*-partner.test", "*"], notTrustDomains: [evil.test, "evil-*", "*-legacy", "*"]}
    - source: {serviceAccounts: [cart, payments/ledger]}
    - source: {principals: [cluster.local/ns/payments/sa/ledger]}
    - source: {namespaces: [payments]}
`,
    },
    {
      name: 'operation: methods, hosts, ports and paths (wildcards, {*} and {**} templates) and their negations',
      yaml: `spec:
  rules:
  - to:
    - operation:
        methods: [GET, "PU*", "*CH", "*"]
        notMethods: [DELETE, "TRA*", "*NECT", "*"]
        hosts: [store.shop.test, "*.shop.test", "store.*", "*"]
        notHosts: [admin.shop.test, "*.internal.test", "admin.*", "*"]
        ports: ["8080", "8443"]
        notPorts: ["15000", "15090"]
        paths: [/cart, "/cart/*", "*/items", "*", "/orders/{*}/lines", "/{**}/receipt"]
        notPaths: [/admin, "/admin/*", "*/debug", "*", "/users/{*}/secrets", "/{**}/internal"]
`,
    },
    {
      name: 'when: every condition key Istio knows, with values and notValues',
      yaml: `spec:
  rules:
  - when:
    - {key: "request.headers[x-shop-tier]", values: [gold, "gold-*", "*-plus", "*"], notValues: [banned, "trial-*", "*-expired", "*"]}
    - {key: source.ip, values: [198.51.100.7, 203.0.113.0/24], notValues: [198.51.100.8, 192.0.2.0/28]}
    - {key: remote.ip, values: [100.64.1.1, 100.64.0.0/10], notValues: [100.64.9.9, 172.16.0.0/12]}
    - {key: source.namespace, values: [shop, "shop-*", "*-staging", "*"], notValues: [sandbox, "sb-*", "*-tmp", "*"]}
    - {key: source.principal, values: [cluster.local/ns/shop/sa/cart, "cluster.local/*", "*/sa/cart", "*"], notValues: [x, "x-*", "*-x", "*"]}
    - {key: request.auth.principal, values: [https://idp.shop.test/alice, "https://idp.shop.test/*", "*/bob", "*"], notValues: [m, "m-*", "*-m", "*"]}
    - {key: request.auth.audiences, values: [shop-web, "shop-*", "*-app", "*"], notValues: [legacy, "old-*", "*-v0", "*"]}
    - {key: request.auth.presenter, values: [web-client, "web-*", "*-client", "*"], notValues: [cli, "cli-*", "*-cli", "*"]}
    - {key: "request.auth.claims[groups]", values: [buyers, "buy-*", "*-ers", "*"], notValues: [bots, "bot-*", "*-bots", "*"]}
    - {key: "request.auth.claims[org][team]", values: [checkout, "check-*", "*-out", "*"], notValues: [ops, "ops-*", "*-ops", "*"]}
    - {key: destination.ip, values: [10.8.0.5, 10.8.0.0/16], notValues: [10.9.0.5, 10.9.0.0/16]}
    - {key: destination.port, values: ["8080", "8443"], notValues: ["15000", "15090"]}
    - {key: connection.sni, values: [store.shop.test, "*.shop.test", "store.*", "*"], notValues: [admin.shop.test, "*.internal.test", "admin.*", "*"]}
    - {key: source.trustDomain, values: [shop.test, "shop-*", "*-partner.test", "*"], notValues: [evil.test, "evil-*", "*-legacy", "*"]}
    - {key: "experimental.envoy.filters.http.jwt_authn[payload]", values: [ok, "ok-*", "*-ok", "*"], notValues: [no, "no-*", "*-no", "*"]}
`,
    },
    {
      name: 'serviceAccounts together with namespaces in one source',
      yaml: `spec:
  rules:
  - from:
    - source: {namespaces: [payments], serviceAccounts: [payments/ledger]}
`,
      refused: 'from[0].source: cannot set serviceAccounts with namespaces or principals',
    },
    {
      name: 'serviceAccounts together with principals in one source',
      yaml: `spec:
  rules:
  - from:
    - source: {principals: [cluster.local/ns/payments/sa/ledger], serviceAccounts: [ledger]}
`,
      refused: 'from[0].source: cannot set serviceAccounts with namespaces or principals',
    },
    {
      name: 'a serviceAccount of three segments',
      yaml: `spec:
  rules:
  - from:
    - source: {serviceAccounts: [payments/ledger/extra]}
`,
      refused: "source.serviceAccounts[0]: expected format 'serviceAccount' or 'namespace/serviceAccount'",
    },
    {
      name: 'a trust domain with a wildcard in the middle',
      yaml: `spec:
  rules:
  - from:
    - source: {trustDomains: ["shop*test"]}
`,
      refused: 'source.trustDomains[0]: wildcard is only allowed at the start or end',
    },
  ],

  PeerAuthentication: [
    {
      name: 'selector, mtls mode and a port-level mode',
      yaml: `spec:
  selector: {matchLabels: {app: ledger}}
  mtls: {mode: STRICT}
  portLevelMtls:
    "9090": {mode: DISABLE}
    "9443": {mode: PERMISSIVE}
`,
    },
    {
      name: 'an empty selector',
      yaml: `spec:
  selector: {}
  mtls: {mode: PERMISSIVE}
`,
    },
    {
      name: 'an unknown mtls mode',
      yaml: `spec:
  mtls: {mode: OPTIONAL}
`,
      refused: 'spec.mtls.mode: invalid value "OPTIONAL"',
    },
    {
      name: 'a portLevelMtls key that is not a number',
      yaml: `spec:
  selector: {matchLabels: {app: ledger}}
  portLevelMtls:
    metrics: {mode: DISABLE}
`,
      refused: 'spec.portLevelMtls[metrics]: map key "metrics" must be an unsigned integer',
    },
    {
      name: 'portLevelMtls without a selector',
      yaml: `spec:
  mtls: {mode: STRICT}
  portLevelMtls:
    "9090": {mode: DISABLE}
`,
      refused: 'spec.portLevelMtls: mesh/namespace peer authentication cannot have port level mTLS',
    },
    {
      name: 'an empty portLevelMtls',
      yaml: `spec:
  selector: {matchLabels: {app: ledger}}
  portLevelMtls: {}
`,
      refused: 'spec.portLevelMtls: port level mTLS, if defined, must have at least one element',
    },
    {
      name: 'port 0 in portLevelMtls',
      yaml: `spec:
  selector: {matchLabels: {app: ledger}}
  portLevelMtls:
    "0": {mode: STRICT}
`,
      refused: 'spec.portLevelMtls[0]: port must be in range 1..65535',
    },
    {
      name: 'a port above 65535 in portLevelMtls',
      yaml: `spec:
  selector: {matchLabels: {app: ledger}}
  portLevelMtls:
    "70000": {mode: STRICT}
`,
      refused: 'spec.portLevelMtls[70000]: port must be in range 1..65535',
    },
  ],
};

describeAgreementWithIstio(CASES);

describe('beyond accept or refuse: values read and errors reported as Istio does', () => {
  it('AuthorizationPolicy: serviceAccounts as Istio checks them; trustDomains and notTrustDomains', () => {
    expect(one(policy('{serviceAccounts: [sa, ns/sa]}')).ok).toBe(true);
    expect(one(policy('{serviceAccounts: [a/b/c]}'))).toEqual({
      ok: false,
      message:
        "AuthorizationPolicy ns/p: spec.rules[0].from[0].source.serviceAccounts[0]: expected format 'serviceAccount' or 'namespace/serviceAccount', found \"a/b/c\" in serviceAccounts (at line 7, document 0)",
    });
    expect(one(policy('{serviceAccounts: ["ns/*"]}'))).toMatchObject({ ok: false });
    expect(one(policy('{trustDomains: [td, "*.td", "td-*"], notTrustDomains: ["*"]}')).ok).toBe(true);
    expect(one(policy('{trustDomains: ["a*b"]}'))).toMatchObject({
      ok: false,
      message: expect.stringContaining(
        'wildcard is only allowed at the start or end, found in trustDomains: "a*b"',
      ),
    });
    expect(one(policy('{trustDomains: ["td/x"]}'))).toMatchObject({
      ok: false,
      message: expect.stringContaining("trust domain must not contain '/'"),
    });
  });
});
