// AuthorizationPolicy -> RBAC filters with Istio's semantics (pilot/pkg/security/authz/builder,
// grpcgen for proxyless servers; authz.ts): actions and their order, dry-run, policy selection, the
// TCP and proxyless gRPC targets, and the filters' place in the translated inbound chains. Every
// generated filter encodes with Envoy's protos. The rule matchers are authz-rule.test.ts's.
import type { AuthorizationPolicyConfig } from '@meridian/api';
import type { EnvoyJson } from '@meridian/envoy';
import { describe, expect, it } from 'vitest';
import {
  createRegistrySnapshot,
  encodeProxyResources,
  GRPC_RBAC_DENY_FILTER,
  grpcAuthzFindings,
  HTTP_RBAC_FILTER,
  NETWORK_RBAC_FILTER,
  selectAuthorizationPolicies,
  translateProxy,
} from '../src/index.js';
import { ANY_PERMISSION, ANY_PRINCIPAL, ap, build, NAME, policies, ROOT, rulesOf } from './authz-harness.js';
import { configFromYaml, endpoint, proxy, service } from './fixtures.js';

describe('actions, ordering, dry-run', () => {
  it('no policy: no filter (allow all)', () => {
    expect(build('', 'http').filters).toEqual([]);
  });

  it('ALLOW with no rules matches nothing: deny all', () => {
    const out = build(ap('p', 'action: ALLOW'), 'http');
    expect(rulesOf(out.filters[0])).toEqual({
      action: 'ALLOW',
      policies: {
        [NAME]: { permissions: [{ not_rule: { any: true } }], principals: [{ not_id: { any: true } }] },
      },
    });
  });

  it('filters in order AUDIT (LOG), DENY, ALLOW; CUSTOM without a provider becomes DENY', () => {
    const yaml = [
      ap('a-allow', 'rules:\n- {}'),
      ap('b-deny', 'action: DENY\nrules:\n- to:\n  - operation:\n      paths: ["/admin"]'),
      ap('c-audit', 'action: AUDIT\nrules:\n- {}'),
      ap('d-custom', 'action: CUSTOM\nprovider:\n  name: ext\nrules:\n- {}'),
    ].join('');
    const out = build(yaml, 'http');
    expect(out.filters.map((f) => rulesOf(f).action)).toEqual(['LOG', 'DENY', 'ALLOW']);
    expect(Object.keys(rulesOf(out.filters[1]).policies as EnvoyJson)).toEqual([
      'ns[default]-policy[d-custom]-rule[0]',
      'ns[default]-policy[b-deny]-rule[0]',
    ]);
    expect(out.findings.map((f) => f.message)).toEqual([
      'CUSTOM provider "ext" is not configured (no ext_authz extension providers): the requests its rules match are denied',
    ]);
  });

  it('istio.io/dry-run: shadow rules with the dry-run stat prefix, nothing enforced', () => {
    const out = build(ap('p', 'rules:\n- {}', '  annotations:\n    istio.io/dry-run: "true"'), 'http');
    const config = out.filters[0]?.typed_config as EnvoyJson;
    expect(config.rules).toBeUndefined();
    expect(config.shadow_rules).toEqual({
      action: 'ALLOW',
      policies: { [NAME]: { permissions: [ANY_PERMISSION], principals: [ANY_PRINCIPAL] } },
    });
    expect(config.shadow_rules_stat_prefix).toBe('istio_dry_run_allow_');
  });

  it('selector: root namespace is mesh-wide, other namespaces only their own, labels must match', () => {
    const yaml = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mesh, namespace: istio-system}
spec: {}
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: other, namespace: other}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: sel, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: svc, namespace: default}
spec:
  targetRefs: [{kind: Service, name: reviews}]
`;
    const names = (labels: Record<string, string>) =>
      selectAuthorizationPolicies(policies(yaml), { namespace: 'default', labels }, ROOT).allow.map(
        (p) => p.metadata.name,
      );
    expect(names({ app: 'productpage' })).toEqual(['mesh']);
    expect(names({ app: 'reviews' })).toEqual(['sel', 'mesh']);
  });
});

describe('TCP chains (envoy.filters.network.rbac)', () => {
  it('HTTP-only fields: ALLOW rule skipped (allows nothing), DENY field dropped (denies more)', () => {
    const yaml = [
      ap('allow', 'rules:\n- to:\n  - operation:\n      methods: ["GET"]'),
      ap(
        'deny',
        'action: DENY\nrules:\n- from:\n  - source:\n      namespaces: ["x"]\n  to:\n  - operation:\n      paths: ["/a"]',
      ),
    ].join('');
    const out = build(yaml, 'tcp');
    expect(out.filters.map((f) => f.name)).toEqual([NETWORK_RBAC_FILTER, NETWORK_RBAC_FILTER]);
    expect(((out.filters[0]?.typed_config ?? {}) as EnvoyJson).stat_prefix).toBe('tcp.');
    expect(rulesOf(out.filters[0])).toEqual({
      action: 'DENY',
      policies: {
        'ns[default]-policy[deny]-rule[0]': {
          permissions: [ANY_PERMISSION],
          principals: [
            {
              and_ids: {
                ids: [
                  {
                    or_ids: {
                      ids: [{ authenticated: { principal_name: { safe_regex: { regex: '.*/ns/x/.*' } } } }],
                    },
                  },
                ],
              },
            },
          ],
        },
      },
    });
    expect(rulesOf(out.filters[1])).toEqual({ action: 'ALLOW', policies: {} });
    expect(out.findings.map((f) => `${f.policy} ${f.message}`)).toEqual([
      'default/deny "path-matcher" is HTTP only: left out of this DENY rule, which then matches more requests',
      'default/allow ":method" is HTTP only: ALLOW rule skipped, it allows nothing here',
    ]);
  });
});

describe('proxyless gRPC (gRFC A41)', () => {
  it('DENY and ALLOW filters named as Istio grpcgen, path templates as regex', () => {
    const yaml = [
      ap('allow', 'rules:\n- from:\n  - source:\n      principals: ["cluster.local/ns/default/sa/client-a"]'),
      ap('deny', 'action: DENY\nrules:\n- to:\n  - operation:\n      paths: ["/pkg.Svc/{*}"]'),
    ].join('');
    const out = build(yaml, 'grpc');
    expect(out.filters.map((f) => f.name)).toEqual([GRPC_RBAC_DENY_FILTER, HTTP_RBAC_FILTER]);
    expect(rulesOf(out.filters[0])).toEqual({
      action: 'DENY',
      policies: {
        'ns[default]-policy[deny]-rule[0]': {
          permissions: [
            {
              and_rules: {
                rules: [
                  {
                    or_rules: {
                      rules: [{ url_path: { path: { safe_regex: { regex: '/pkg\\.Svc/[^/]+' } } } }],
                    },
                  },
                ],
              },
            },
          ],
          principals: [ANY_PRINCIPAL],
        },
      },
    });
    expect(out.findings).toEqual([]);
  });

  it('metadata matchers and SNI are flagged, never widened: ALLOW rule matches nothing, DENY drops the field', () => {
    const yaml = [
      ap('allow', 'rules:\n- from:\n  - source:\n      notRequestPrincipals: ["*"]'),
      ap('deny', 'action: DENY\nrules:\n- when:\n  - key: connection.sni\n    values: ["a.b"]'),
    ].join('');
    const out = build(yaml, 'grpc');
    expect(rulesOf(out.filters[0])).toEqual({
      action: 'DENY',
      policies: {
        'ns[default]-policy[deny]-rule[0]': { permissions: [ANY_PERMISSION], principals: [ANY_PRINCIPAL] },
      },
    });
    expect(rulesOf(out.filters[1])).toEqual({
      action: 'ALLOW',
      policies: {
        'ns[default]-policy[allow]-rule[0]': {
          permissions: [{ not_rule: { any: true } }],
          principals: [{ not_id: { any: true } }],
        },
      },
    });
    expect(out.findings.map((f) => f.message)).toEqual([
      '"connection.sni" cannot be enforced by proxyless gRPC (gRFC A41: requested_server_name is always empty): left out of this DENY rule, which then matches more requests',
      '"request.auth.principal" cannot be enforced by proxyless gRPC (gRFC A41: a metadata matcher never matches): ALLOW rule skipped, it allows nothing here',
    ]);
    expect(grpcAuthzFindings(policies(yaml)[0] as AuthorizationPolicyConfig)).toHaveLength(1);
  });

  it('AUDIT and dry-run are left out (not enforced) with a finding', () => {
    const yaml = [
      ap('audit', 'action: AUDIT\nrules:\n- {}'),
      ap('dry', 'rules:\n- {}', '  annotations:\n    istio.io/dry-run: "true"'),
    ].join('');
    const out = build(yaml, 'grpc');
    expect(out.filters).toEqual([]);
    expect(out.findings).toHaveLength(2);
  });
});

describe('translation wires RBAC into inbound chains', () => {
  const registry = createRegistrySnapshot(
    1,
    [
      service('productpage', 'default', [
        { name: 'http', port: 9080, protocol: 'HTTP' },
        { name: 'tcp', port: 9090, protocol: 'TCP' },
      ]),
    ],
    {
      'productpage.default.svc.cluster.local': [
        endpoint('10.1.0.1', { http: 9080, tcp: 9090 }, { app: 'productpage' }),
      ],
    },
  );
  const config = configFromYaml(ap('p', 'rules:\n- to:\n  - operation:\n      methods: ["GET"]'));

  it('Envoy: http_filters before the router, network RBAC before tcp_proxy and on the catch-all', () => {
    const out = translateProxy(config, registry, proxy());
    const inbound = out.listeners.find((l) => l.name === 'virtualInbound')?.resource as EnvoyJson;
    const chains = inbound.filter_chains as EnvoyJson[];
    const names = chains.map((c) => (c.filters as EnvoyJson[]).map((f) => f.name));
    expect(names).toEqual([
      ['envoy.filters.network.http_connection_manager'],
      [NETWORK_RBAC_FILTER, 'envoy.filters.network.tcp_proxy'],
      [NETWORK_RBAC_FILTER, 'envoy.filters.network.tcp_proxy'],
    ]);
    const hcm = (((chains[0]?.filters ?? []) as EnvoyJson[])[0]?.typed_config ?? {}) as EnvoyJson;
    expect((hcm.http_filters as EnvoyJson[]).map((f) => f.name)).toEqual([
      HTTP_RBAC_FILTER,
      'envoy.filters.http.router',
    ]);
    expect(out.warnings).toEqual([
      'AuthorizationPolicy default/p rules[0] (tcp): ":method" is HTTP only: ALLOW rule skipped, it allows nothing here',
    ]);
    encodeProxyResources(out);
  });

  it('proxyless gRPC: RBAC filters in every server listener', () => {
    const out = translateProxy(config, registry, proxy({ grpc: true }));
    const servers = out.listeners.filter((l) => l.name.startsWith('xds.istio.io/grpc/lds/inbound/'));
    expect(servers.length).toBeGreaterThan(0);
    for (const l of servers) {
      const chain = (l.resource.filter_chains as EnvoyJson[])[0] as EnvoyJson;
      const hcm = (chain.filters as EnvoyJson[])[0]?.typed_config as EnvoyJson;
      expect((hcm.http_filters as EnvoyJson[]).map((f) => f.name)).toEqual([
        HTTP_RBAC_FILTER,
        'envoy.filters.http.router',
      ]);
    }
    expect(out.warnings).toBeUndefined();
    encodeProxyResources(out);
  });
});
