// One AuthorizationPolicy rule -> RBAC policy with Istio's semantics (pilot/pkg/security/authz/model
// and matcher; authz-rule.ts): one table row per matcher semantic, asserting the RBAC JSON and that
// every generated filter encodes with Envoy's protos.
import type { EnvoyJson } from '@meridian/envoy';
import { describe, expect, it } from 'vitest';
import { HTTP_RBAC_FILTER } from '../src/index.js';
import { ANY_PERMISSION, ANY_PRINCIPAL, ap, build, NAME, rulesOf } from './authz-harness.js';

describe('AuthorizationPolicy -> RBAC policy (http target)', () => {
  const cases: { name: string; spec: string; policy: EnvoyJson }[] = [
    {
      name: 'principals: exact, with spiffe:// prefix; * is any non-empty; suffix as regex',
      spec: `rules:
- from:
  - source:
      principals: ["cluster.local/ns/default/sa/client-a", "*", "*/sa/x"]`,
      policy: {
        permissions: [ANY_PERMISSION],
        principals: [
          {
            and_ids: {
              ids: [
                {
                  or_ids: {
                    ids: [
                      {
                        authenticated: {
                          principal_name: { exact: 'spiffe://cluster.local/ns/default/sa/client-a' },
                        },
                      },
                      { authenticated: { principal_name: { safe_regex: { regex: '.+' } } } },
                      { authenticated: { principal_name: { safe_regex: { regex: 'spiffe://.*/sa/x' } } } },
                    ],
                  },
                },
              ],
            },
          },
        ],
      },
    },
    {
      name: 'namespaces become a regex on the principal; notNamespaces a not_id',
      spec: `rules:
- from:
  - source:
      namespaces: ["foo"]
      notNamespaces: ["ba*"]`,
      policy: {
        permissions: [ANY_PERMISSION],
        principals: [
          {
            and_ids: {
              ids: [
                {
                  or_ids: {
                    ids: [{ authenticated: { principal_name: { safe_regex: { regex: '.*/ns/foo/.*' } } } }],
                  },
                },
                {
                  not_id: {
                    or_ids: {
                      ids: [
                        { authenticated: { principal_name: { safe_regex: { regex: '.*/ns/ba.*/.*' } } } },
                      ],
                    },
                  },
                },
              ],
            },
          },
        ],
      },
    },
    {
      name: 'ipBlocks -> direct_remote_ip, remoteIpBlocks -> remote_ip, notIpBlocks',
      spec: `rules:
- from:
  - source:
      ipBlocks: ["10.0.0.0/16", "1.2.3.4"]
      remoteIpBlocks: ["192.168.0.0/24"]
      notIpBlocks: ["10.0.1.0/24"]`,
      policy: {
        permissions: [ANY_PERMISSION],
        principals: [
          {
            and_ids: {
              ids: [
                { or_ids: { ids: [{ remote_ip: { address_prefix: '192.168.0.0', prefix_len: 24 } }] } },
                {
                  or_ids: {
                    ids: [
                      { direct_remote_ip: { address_prefix: '10.0.0.0', prefix_len: 16 } },
                      { direct_remote_ip: { address_prefix: '1.2.3.4', prefix_len: 32 } },
                    ],
                  },
                },
                {
                  not_id: {
                    or_ids: { ids: [{ direct_remote_ip: { address_prefix: '10.0.1.0', prefix_len: 24 } }] },
                  },
                },
              ],
            },
          },
        ],
      },
    },
    {
      name: 'requestPrincipals -> jwt_authn metadata iss/sub',
      spec: `rules:
- from:
  - source:
      requestPrincipals: ["https://issuer/sub1"]`,
      policy: {
        permissions: [ANY_PERMISSION],
        principals: [
          {
            and_ids: {
              ids: [
                {
                  and_ids: {
                    ids: [
                      {
                        metadata: {
                          filter: 'envoy.filters.http.jwt_authn',
                          path: [{ key: 'payload' }, { key: 'iss' }],
                          value: { string_match: { exact: 'https://issuer' } },
                        },
                      },
                      {
                        metadata: {
                          filter: 'envoy.filters.http.jwt_authn',
                          path: [{ key: 'payload' }, { key: 'sub' }],
                          value: { string_match: { exact: 'sub1' } },
                        },
                      },
                    ],
                  },
                },
              ],
            },
          },
        ],
      },
    },
    {
      name: 'operations: hosts (ignore case), methods, paths (prefix, template), ports, notPaths',
      spec: `rules:
- to:
  - operation:
      hosts: ["*.example.com"]
      methods: ["GET"]
      paths: ["/api/*", "/v1/{*}/items/{**}"]
      notPaths: ["/admin"]
      ports: ["8080"]`,
      policy: {
        permissions: [
          {
            and_rules: {
              rules: [
                {
                  or_rules: {
                    rules: [
                      {
                        header: {
                          name: ':authority',
                          string_match: { suffix: '.example.com', ignore_case: true },
                        },
                      },
                    ],
                  },
                },
                { or_rules: { rules: [{ header: { name: ':method', string_match: { exact: 'GET' } } }] } },
                {
                  or_rules: {
                    rules: [
                      { url_path: { path: { prefix: '/api/' } } },
                      {
                        uri_template: {
                          name: 'uri-template',
                          typed_config: {
                            '@type':
                              'type.googleapis.com/envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig',
                            path_template: '/v1/*/items/**',
                          },
                        },
                      },
                    ],
                  },
                },
                { not_rule: { or_rules: { rules: [{ url_path: { path: { exact: '/admin' } } }] } } },
                { or_rules: { rules: [{ destination_port: 8080 }] } },
              ],
            },
          },
        ],
        principals: [ANY_PRINCIPAL],
      },
    },
    {
      name: 'when: request.headers, source.namespace, destination.port, connection.sni',
      spec: `rules:
- when:
  - key: request.headers[x-user]
    values: ["admin*"]
  - key: source.namespace
    notValues: ["test"]
  - key: destination.port
    values: ["9000"]
  - key: connection.sni
    values: ["*.local"]`,
      policy: {
        permissions: [
          {
            and_rules: {
              rules: [
                { or_rules: { rules: [{ destination_port: 9000 }] } },
                { or_rules: { rules: [{ requested_server_name: { suffix: '.local' } }] } },
              ],
            },
          },
        ],
        principals: [
          {
            and_ids: {
              ids: [
                { or_ids: { ids: [{ header: { name: 'x-user', string_match: { prefix: 'admin' } } }] } },
                {
                  not_id: {
                    or_ids: {
                      ids: [
                        { authenticated: { principal_name: { safe_regex: { regex: '.*/ns/test/.*' } } } },
                      ],
                    },
                  },
                },
              ],
            },
          },
        ],
      },
    },
    {
      name: 'empty rule {} matches everything',
      spec: `rules:
- {}`,
      policy: { permissions: [ANY_PERMISSION], principals: [ANY_PRINCIPAL] },
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const out = build(ap('p', c.spec), 'http');
      expect(out.filters).toHaveLength(1);
      expect(out.filters[0]?.name).toBe(HTTP_RBAC_FILTER);
      expect(rulesOf(out.filters[0])).toEqual({ action: 'ALLOW', policies: { [NAME]: c.policy } });
    });
  }
});
