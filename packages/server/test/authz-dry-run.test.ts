// Dry-run AuthorizationPolicies counted on the replica (issue 16, item 2): translate's RBAC filter
// for a dry-run policy names the shadow prefix Envoy writes its verdict under; access-log entries
// encoded with Envoy's protos carrying that dynamic metadata (as Envoy's gRPC access logger copies
// it) reach the replica's receiver, and `meridian_authz_dry_run_denied_total` counts what the
// dry-run policies would have denied, per workload and policy; allowed verdicts and entries
// without RBAC metadata count nothing.
import { type AuthorizationPolicyConfig, parseConfigDocuments } from '@meridian/api';
import type { EnvoyJson } from '@meridian/envoy';
import { buildAuthzFilters, type RegistrySnapshot, selectAuthorizationPolicies } from '@meridian/translate';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { AuthzDryRunMetrics, dryRunVerdicts, parsePolicyId } from '../src/authz-dry-run.js';
import { TelemetryIngest } from '../src/telemetry-ingest.js';
import { encodeAccessLogs, httpEntry, sidecarNodeId, tcpEntry } from './access-log-client.js';

const PAYMENTS = '10.2.0.7';
const registry: RegistrySnapshot = {
  revision: 1,
  services: [
    {
      hostname: 'payments.pay.svc.cluster.local',
      namespace: 'pay',
      ports: [{ name: 'http', port: 8080, protocol: 'HTTP' }],
      labels: {},
      exportTo: [],
      resolution: 'EDS',
    },
  ],
  endpoints: new Map([
    [
      'payments.pay.svc.cluster.local',
      [
        {
          address: PAYMENTS,
          ports: { http: 8080 },
          labels: { app: 'payments' },
          locality: { region: '', zone: '', subZone: '' },
          network: '',
          clusterId: 'c1',
          health: 'HEALTHY' as const,
          serviceAccount: 'payments',
          weight: 1,
        },
      ],
    ],
  ]),
};

/** The shadow stat prefixes translate gives dry-run ALLOW and DENY policies of payments. */
function shadowPrefixes(): { allow: string; deny: string } {
  const r = parseConfigDocuments(
    `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: block-admin, namespace: pay, annotations: {istio.io/dry-run: "true"}}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: [/admin]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-frontend, namespace: pay, annotations: {istio.io/dry-run: "true"}}
spec:
  rules: [{from: [{source: {namespaces: [shop]}}]}]
`,
    { source: 't.yaml' },
  );
  if (!r.ok) throw new Error(r.error.message);
  const policies = selectAuthorizationPolicies(
    r.configs as AuthorizationPolicyConfig[],
    { namespace: 'pay', labels: { app: 'payments' } },
    'istio-system',
  );
  const filters = buildAuthzFilters(policies, 'http').filters as EnvoyJson[];
  const prefixes = filters.map((f) => (f.typed_config as EnvoyJson).shadow_rules_stat_prefix as string);
  const deny = prefixes.find((p) => p?.includes('deny'));
  const allow = prefixes.find((p) => p?.includes('allow'));
  if (!deny || !allow) throw new Error(`no shadow prefixes in ${JSON.stringify(filters)}`);
  return { allow, deny };
}

/** `common_properties.metadata` as Envoy's RBAC filter leaves it (Struct string values). */
function rbacMetadata(fields: Record<string, string>, filter = 'envoy.filters.http.rbac') {
  return {
    filter_metadata: {
      [filter]: {
        fields: Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, { stringValue: v }])),
      },
    },
  };
}

function inbound(metadata?: ReturnType<typeof rbacMetadata>) {
  const e = httpEntry({
    direction: 'inbound',
    downstream: '10.1.0.5:41000',
    downstreamLocal: `${PAYMENTS}:8080`,
    upstream: '127.0.0.1:8080',
    upstreamCluster: 'inbound|8080||',
  });
  if (metadata) (e.common_properties as Record<string, unknown>).metadata = metadata;
  return e;
}

describe('dry-run AuthorizationPolicies as metrics', () => {
  it("counts the denials the sidecar logs under translate's shadow prefixes, per workload and policy", () => {
    const { allow, deny } = shadowPrefixes();
    expect([allow, deny]).toEqual(['istio_dry_run_allow_', 'istio_dry_run_deny_']);
    const ingest = new TelemetryIngest({
      clusterId: 'c1',
      replicaId: 'r1',
      trustDomain: 'cluster.local',
      plaintext: true,
      log: pino({ level: 'silent' }),
    });
    ingest.setRegistry(registry, new Map([[PAYMENTS, 'payments-v2']]));
    const stream = ingest.openStream({ namespace: 'pay', serviceAccount: 'payments' });
    const wouldDeny = rbacMetadata({
      [`${deny}shadow_engine_result`]: 'denied',
      [`${deny}shadow_effective_policy_id`]: 'ns[pay]-policy[block-admin]-rule[0]',
      [`${allow}shadow_engine_result`]: 'denied',
    });
    const allowed = rbacMetadata({
      [`${deny}shadow_engine_result`]: 'allowed',
      [`${allow}shadow_engine_result`]: 'allowed',
      [`${allow}shadow_effective_policy_id`]: 'ns[pay]-policy[only-frontend]-rule[0]',
    });
    const tcpDenied = tcpEntry({
      direction: 'inbound',
      downstream: '10.1.0.5:41001',
      downstreamLocal: `${PAYMENTS}:9000`,
      upstream: '127.0.0.1:9000',
      upstreamCluster: 'inbound|9000||',
      sent: 1,
      received: 1,
    });
    (tcpDenied.common_properties as Record<string, unknown>).metadata = rbacMetadata(
      {
        [`${deny}shadow_engine_result`]: 'denied',
        [`${deny}shadow_effective_policy_id`]: 'ns[pay]-policy[block-admin]-rule[0]',
      },
      'envoy.filters.network.rbac',
    );
    ingest.ingestAccessLogs(
      stream,
      encodeAccessLogs(
        { http: [inbound(wouldDeny), inbound(wouldDeny), inbound(allowed), inbound()], tcp: [tcpDenied] },
        sidecarNodeId(PAYMENTS, 'payments-v2', 'pay'),
      ),
    );
    expect(ingest.dryRun.serialize()).toBe(
      [
        '# HELP meridian_authz_dry_run_denied_total Requests and connections dry-run AuthorizationPolicies would have denied (sidecar access logs).',
        '# TYPE meridian_authz_dry_run_denied_total counter',
        'meridian_authz_dry_run_denied_total{reporter_namespace="pay",reporter_workload="payments-v2",action="ALLOW",policy_namespace="",policy="",rule=""} 2',
        'meridian_authz_dry_run_denied_total{reporter_namespace="pay",reporter_workload="payments-v2",action="DENY",policy_namespace="pay",policy="block-admin",rule="0"} 3',
        '',
      ].join('\n'),
    );
  });

  it('reads Envoy-encoded verdicts; nothing without RBAC metadata; policy ids parsed', () => {
    expect(dryRunVerdicts(undefined)).toEqual([]);
    expect(dryRunVerdicts({ metadata: { filter_metadata: {} } })).toEqual([]);
    expect(
      dryRunVerdicts({
        metadata: {
          filter_metadata: {
            'envoy.filters.http.rbac': {
              fields: { istio_dry_run_deny_shadow_engine_result: { string_value: 'denied' } },
            },
          },
        },
      }),
    ).toEqual([{ action: 'DENY', result: 'denied', policyId: '' }]);
    expect(parsePolicyId('ns[a]-policy[b-c]-rule[12]')).toEqual({ namespace: 'a', name: 'b-c', rule: '12' });
    expect(parsePolicyId('something-else')).toBeUndefined();
    const m = new AuthzDryRunMetrics(1);
    m.record({ namespace: 'a', workload: 'w' }, [{ action: 'DENY', result: 'denied', policyId: 'x' }]);
    m.record({ namespace: 'a', workload: 'w' }, [{ action: 'DENY', result: 'denied', policyId: 'y' }]);
    expect(m.dropped).toBe(1);
    expect(m.serialize()).toContain('policy="x",rule=""} 1');
  });
});
