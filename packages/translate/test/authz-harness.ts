// What the AuthorizationPolicy tests share (authz-rule.test.ts, authz.test.ts): policies from YAML,
// building the filters of one workload's policies for a target and proving they encode with Envoy's
// protos, and the RBAC JSON every test expects somewhere.
import type { AuthorizationPolicyConfig } from '@meridian/api';
import { decodeResource, type EnvoyJson, encodeResource, TypeUrl } from '@meridian/envoy';
import { expect } from 'vitest';
import { type AuthzTarget, buildAuthzFilters, selectAuthorizationPolicies } from '../src/index.js';
import { configFromYaml } from './fixtures.js';

/** The root namespace the policies are selected with. */
export const ROOT = 'istio-system';

/** The AuthorizationPolicies of a YAML document, as a config snapshot holds them. */
export function policies(yaml: string): AuthorizationPolicyConfig[] {
  return [...configFromYaml(yaml).authorizationPolicies];
}

/** An AuthorizationPolicy `name` in namespace `default` with `spec` (YAML), `extra` metadata lines. */
export function ap(name: string, spec: string, extra = ''): string {
  return `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ${name}
  namespace: default
${extra}
spec:
${spec
  .trim()
  .split('\n')
  .map((l) => `  ${l}`)
  .join('\n')}
`;
}

/** Wraps filters in a listener and encodes it: proves the filters have no unknown field. */
function encodes(filters: readonly EnvoyJson[], target: AuthzTarget): void {
  const chain =
    target === 'tcp'
      ? {
          filters: [
            ...filters,
            {
              name: 'envoy.filters.network.tcp_proxy',
              typed_config: {
                '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
                stat_prefix: 'x',
                cluster: 'x',
              },
            },
          ],
        }
      : {
          filters: [
            {
              name: 'envoy.filters.network.http_connection_manager',
              typed_config: {
                '@type':
                  'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
                stat_prefix: 'x',
                route_config: { name: 'x' },
                http_filters: [
                  ...filters,
                  {
                    name: 'envoy.filters.http.router',
                    typed_config: {
                      '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router',
                    },
                  },
                ],
              },
            },
          ],
        };
  const listener = {
    name: 'l',
    address: { socket_address: { address: '0.0.0.0', port_value: 1 } },
    filter_chains: [chain],
  } as EnvoyJson;
  const bytes = encodeResource(TypeUrl.Listener, listener);
  // An empty `policies` map (an ALLOW set that allows nothing) is absent on the wire.
  const wire = JSON.parse(
    JSON.stringify(listener, (k, v) => (k === 'policies' && Object.keys(v).length === 0 ? undefined : v)),
  );
  expect(decodeResource(TypeUrl.Listener, bytes)).toEqual(wire);
}

/** The filters of the policies of `yaml` that select a `default` workload with `labels`, for
 * `target`; checks they encode. */
export function build(yaml: string, target: AuthzTarget, labels = { app: 'productpage' }) {
  const selected = selectAuthorizationPolicies(policies(yaml), { namespace: 'default', labels }, ROOT);
  const out = buildAuthzFilters(selected, target);
  encodes(out.filters, target);
  return out;
}

/** The `rules` of an RBAC filter's typed config. */
export function rulesOf(filter: EnvoyJson | undefined): EnvoyJson {
  return ((filter?.typed_config ?? {}) as EnvoyJson).rules as EnvoyJson;
}

/** The principal of a rule without `from`: any peer. */
export const ANY_PRINCIPAL = { and_ids: { ids: [{ any: true }] } };
/** The permission of a rule without `to`: any request. */
export const ANY_PERMISSION = { and_rules: { rules: [{ any: true }] } };
/** The RBAC policy name of rule 0 of policy `default/p`. */
export const NAME = 'ns[default]-policy[p]-rule[0]';
