// istiod's metric names on a real replica's /metrics (issue 17, item 1): a meridiand process with the
// cluster CA, two simulated proxies (SotW and Delta, one NACKing LDS), a config change and a signed
// CSR; then the monitoring port's scrape is checked against istiod's list (names, Prometheus types,
// labels, histogram buckets: istio/istio pilot/pkg/xds/monitoring.go, pkg/xds/monitoring.go,
// pilot/pkg/model/push_context.go, security/pkg/server/ca/monitoring.go) and against the series
// selectors of Istio's control-plane Grafana dashboard, as Istio's own dashboard test checks them.
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import {
  createBootstrapToken,
  createCertificate,
  createCertificateServiceClient,
  createCsr,
} from '@meridian/ca';
import { TypeUrl } from '@meridian/envoy';
import { type EtcdCluster, eventually, freePorts, SimulatedProxy, startEtcd } from '@meridian/testkit';
import { ISTIOD_BUCKETS, TRIGGER_REASONS } from '@meridian/xds';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALL_TYPES, benchConfig, installClusterCaForTest, ReplicaProcess, xdsClient } from './harness.js';

/** One sample of a Prometheus text exposition. */
interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** A parsed scrape: TYPE by metric family, HELP by family, samples. */
interface Scrape {
  readonly types: Map<string, string>;
  readonly help: Map<string, string>;
  readonly samples: Sample[];
}

function parseScrape(text: string): Scrape {
  const types = new Map<string, string>();
  const help = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let m = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (m) {
      expect(types.has(m[1]!), `one TYPE line for ${m[1]}`).toBe(false);
      types.set(m[1]!, m[2]!);
      continue;
    }
    m = /^# HELP (\S+) (.*)$/.exec(line);
    if (m) {
      help.set(m[1]!, m[2]!);
      continue;
    }
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    expect(m, `a sample line: ${line}`).not.toBeNull();
    const labels: Record<string, string> = {};
    for (const l of (m![2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
      labels[l[1]!] = l[2]!.replace(/\\"/g, '"').replace(/\\n/g, '\n').replace(/\\\\/g, '\\');
    samples.push({
      name: m![1]!,
      labels,
      value: m![3] === '+Inf' ? Number.POSITIVE_INFINITY : Number(m![3]),
    });
  }
  return { types, help, samples };
}

/** The metric family of a sample name (histogram series carry `_bucket`, `_sum`, `_count`). */
function familyOf(name: string, types: Map<string, string>): string {
  for (const suffix of ['_bucket', '_sum', '_count']) {
    const base = name.slice(0, -suffix.length);
    if (name.endsWith(suffix) && types.get(base) === 'histogram') return base;
  }
  return name;
}

/**
 * istiod's metrics: Prometheus type and label names (histograms: of `_bucket`, without `le`).
 * Sources: pilot/pkg/xds/monitoring.go, pkg/xds/monitoring.go, pilot/pkg/model/push_context.go,
 * pilot/pkg/bootstrap/monitoring.go (istio_build) and security/pkg/server/ca/monitoring.go at
 * istio/istio 86c9f01fd735fb01d8192f5bcaf0d424afb7f14c.
 */
const ISTIOD_METRICS: Readonly<Record<string, { type: string; labels: readonly string[] }>> = {
  pilot_xds: { type: 'gauge', labels: ['version'] },
  pilot_xds_pushes: { type: 'counter', labels: ['type'] },
  pilot_push_triggers: { type: 'counter', labels: ['type'] },
  pilot_total_xds_rejects: { type: 'counter', labels: ['type'] },
  pilot_xds_lds_reject: { type: 'gauge', labels: ['err', 'node'] },
  pilot_total_xds_internal_errors: { type: 'counter', labels: [] },
  pilot_xds_write_timeout: { type: 'counter', labels: [] },
  pilot_xds_recv_max: { type: 'gauge', labels: [] },
  pilot_xds_push_time: { type: 'histogram', labels: ['type'] },
  pilot_xds_send_time: { type: 'histogram', labels: [] },
  pilot_debounce_time: { type: 'histogram', labels: [] },
  pilot_proxy_queue_time: { type: 'histogram', labels: [] },
  pilot_proxy_convergence_time: { type: 'histogram', labels: [] },
  pilot_xds_config_size_bytes: { type: 'histogram', labels: ['type'] },
  pilot_services: { type: 'gauge', labels: [] },
  pilot_virt_services: { type: 'gauge', labels: [] },
  istio_build: { type: 'gauge', labels: ['component', 'tag'] },
  citadel_server_csr_count: { type: 'counter', labels: [] },
  citadel_server_success_cert_issuance_count: { type: 'counter', labels: [] },
  citadel_server_authentication_failure_count: { type: 'counter', labels: [] },
  citadel_server_csr_parsing_err_count: { type: 'counter', labels: [] },
  citadel_server_id_extraction_err_count: { type: 'counter', labels: [] },
  citadel_server_csr_sign_err_count: { type: 'counter', labels: [] },
  citadel_server_root_cert_expiry_timestamp: { type: 'gauge', labels: [] },
  citadel_server_root_cert_expiry_seconds: { type: 'gauge', labels: [] },
  citadel_server_cert_chain_expiry_timestamp: { type: 'gauge', labels: [] },
  citadel_server_cert_chain_expiry_seconds: { type: 'gauge', labels: [] },
};

/**
 * Every query of Istio's control-plane dashboard (manifests/addons/dashboards/pilot-dashboard.gen.json
 * at istio/istio 86c9f01fd735fb01d8192f5bcaf0d424afb7f14c), as Grafana sends them.
 */
const PILOT_DASHBOARD_QUERIES = [
  'pilot_total_xds_internal_errors',
  'sum (pilot_xds)',
  'sum (rate(galley_validation_failed[$__rate_interval]))',
  'sum (rate(galley_validation_passed[$__rate_interval]))',
  'sum (rate(sidecar_injection_failure_total[$__rate_interval]))',
  'sum (rate(sidecar_injection_success_total[$__rate_interval]))',
  'sum by (pod) (container_memory_working_set_bytes{container="discovery",pod=~"istiod-.*"})',
  'sum by (pod) (go_goroutines{app="istiod"})',
  'sum by (pod) (go_memstats_heap_alloc_bytes{app="istiod"})',
  'sum by (pod) (go_memstats_heap_inuse_bytes{app="istiod"})',
  'sum by (pod) (go_memstats_stack_inuse_bytes{app="istiod"})',
  'sum by (pod) (irate(container_cpu_usage_seconds_total{container="discovery",pod=~"istiod-.*"}[$__rate_interval]))',
  'sum by (pod) (rate(go_memstats_alloc_bytes_total{app="istiod"}[$__rate_interval]))',
  'sum by (pod) (rate(go_memstats_mallocs_total{app="istiod"}[$__rate_interval]))',
  'sum by (tag) (istio_build{component="pilot"})',
  'sum by (type) (irate(pilot_xds_pushes[$__rate_interval]))',
  'sum by (type) (pilot_total_xds_rejects)',
  'sum by (type) (rate(pilot_push_triggers[$__rate_interval]))',
  'sum by (type,event) (rate(pilot_k8s_cfg_events[$__rate_interval]))',
  'sum by (type,event) (rate(pilot_k8s_reg_events[$__rate_interval]))',
  'sum(envoy_cluster_upstream_cx_active{cluster_name="xds-grpc"})',
  'sum(rate(pilot_xds_config_size_bytes_bucket{}[$__rate_interval])) by (le)',
  'sum(rate(pilot_xds_push_time_bucket{}[$__rate_interval])) by (le)',
];

/**
 * Series that cannot exist here, as Istio's own dashboard test (tests/integration/telemetry/api/
 * dashboard_test.go) excludes what its test cluster lacks: no Kubernetes (galley validation, sidecar
 * injection, pilot_k8s_* events, cAdvisor's container_*), no Go runtime (go_*), and series of the
 * proxies, not the control plane (envoy_*).
 */
const NOT_APPLICABLE = [/^galley_/, /^sidecar_injection_/, /^pilot_k8s_/, /^container_/, /^go_/, /^envoy_/];

const PROMQL_WORDS = new Set([
  'sum',
  'by',
  'without',
  'rate',
  'irate',
  'increase',
  'histogram_quantile',
  'label_join',
  'round',
  'or',
  'and',
  'unless',
  'vector',
  'bool',
  'on',
  'ignoring',
  'max',
  'min',
  'avg',
  'count',
  'topk',
]);

/** A series selector of a query: metric name and label matchers. */
interface Selector {
  readonly name: string;
  readonly matchers: readonly { label: string; op: string; value: string }[];
}

/** The series selectors of a PromQL expression (metric names outside strings, functions and `by (...)`). */
function selectors(query: string): Selector[] {
  const expr = query.replace(/\$__rate_interval/g, '1m').replace(/\b(by|without)\s*\([^)]*\)/g, '');
  const out: Selector[] = [];
  for (const m of expr.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?/g)) {
    const before = expr.slice(0, m.index);
    if ((before.match(/"/g)?.length ?? 0) % 2 === 1) continue; // inside a string
    if (/[[{][^\]}]*$/.test(before)) continue; // inside [range] or {matchers}
    const name = m[1]!;
    if (PROMQL_WORDS.has(name)) continue;
    if (/^\s*\(/.test(expr.slice(m.index! + m[0].length)) && m[2] === undefined) continue; // a function
    const matchers = [
      ...(m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"/g),
    ].map((x) => ({ label: x[1]!, op: x[2]!, value: x[3]! }));
    out.push({ name, matchers });
  }
  return out;
}

function matches(sample: Sample, s: Selector): boolean {
  if (sample.name !== s.name) return false;
  return s.matchers.every(({ label, op, value }) => {
    const v = sample.labels[label] ?? '';
    const re = new RegExp(`^(?:${value})$`);
    return op === '=' ? v === value : op === '!=' ? v !== value : op === '=~' ? re.test(v) : !re.test(v);
  });
}

const tmp = mkdtempSync(join(tmpdir(), 'meridian-istiod-metrics-'));
let etcd: EtcdCluster;
let replica: ReplicaProcess;
let monitoring: string;
let scrape: Scrape;
const clients: grpc.Client[] = [];
const NACKING = 'sidecar~10.1.0.2~nacker-2.default~default.svc.cluster.local';

beforeAll(async () => {
  etcd = await startEtcd();
  const ca = await installClusterCaForTest(etcd.endpoints, 'test', join(tmp, 'kek'));
  const [xdsPort, adminPort, caPort, monitoringPort] = await freePorts(4);
  monitoring = `127.0.0.1:${monitoringPort}`;
  replica = new ReplicaProcess({
    id: 'metrics-1',
    etcd: etcd.endpoints,
    xdsPort: xdsPort!,
    adminPort: adminPort!,
    extraArgs: [
      ...['--ca-address', `127.0.0.1:${caPort}`, '--ca-kek-file', join(tmp, 'kek')],
      ...['--monitoring-address', monitoring, '--debounce-ms', '20'],
    ],
  });
  await replica.start();
  expect((await replica.apply(benchConfig(0))).status).toBe(200);

  // Two proxies of Istio 1.24, SotW and Delta; the Delta one rejects every listener push.
  const proxy = (nodeId: string, variant: 'sotw' | 'delta') =>
    new SimulatedProxy({
      nodeId,
      metadata: {
        NAMESPACE: 'default',
        CLUSTER_ID: 'c1',
        ISTIO_VERSION: '1.24.0',
        LABELS: { app: 'client' },
      },
      variant,
      subscriptions: ALL_TYPES.map((typeUrl) => ({ typeUrl })),
    });
  const good = proxy('sidecar~10.1.0.1~client-1.default~default.svc.cluster.local', 'sotw');
  const nacker = proxy(NACKING, 'delta');
  nacker.nackTypes.set(TypeUrl.Listener, 'listener 0.0.0.0_9080: test rejects it');
  for (const p of [good, nacker]) {
    const client = xdsClient(replica.xds);
    clients.push(client);
    p.connect(client);
  }
  await eventually(
    'both proxies served',
    () => [good, nacker].every((p) => ALL_TYPES.every((t) => (p.state.get(t)?.responses ?? 0) > 0)),
    30_000,
    50,
  );
  // A config change: a debounced push with trigger "config" to both.
  const routes = good.state.get(TypeUrl.RouteConfiguration)!.responses;
  expect((await replica.apply(benchConfig(1))).status).toBe(200);
  await eventually(
    'the route change pushed',
    () => good.state.get(TypeUrl.RouteConfiguration)!.responses > routes,
    30_000,
    50,
  );

  // A CSR signed over the CA port with a bootstrap token.
  const certClient = createCertificateServiceClient(
    `127.0.0.1:${caPort}`,
    grpc.credentials.createSsl(Buffer.from(ca.root.certPem)),
    { 'grpc.ssl_target_name_override': 'localhost', 'grpc.default_authority': 'localhost' },
  );
  try {
    const identity = { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'client' };
    const token = await createBootstrapToken({ signingKeyPem: ca.signingKeyPem, identity, ttlSeconds: 600 });
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const chain = await createCertificate(
      certClient,
      { csr: createCsr({ key: privateKey, uris: ['spiffe://cluster.local/ns/default/sa/client'] }) },
      { token },
    );
    expect(chain).toHaveLength(3);
  } finally {
    certClient.close();
  }
  const res = await fetch(`http://${monitoring}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  scrape = parseScrape(await res.text());
}, 120_000);

afterAll(async () => {
  for (const c of clients) c.close();
  await replica?.kill();
  await etcd?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

describe("istiod's metrics on a replica's /metrics", () => {
  it("has every istiod metric with istiod's type and labels", () => {
    const missing = Object.keys(ISTIOD_METRICS).filter((n) => !scrape.types.has(n));
    expect(missing).toEqual([]);
    for (const [name, want] of Object.entries(ISTIOD_METRICS)) {
      expect(scrape.types.get(name), name).toBe(want.type);
      const series = scrape.samples.filter((s) => familyOf(s.name, scrape.types) === name);
      expect(series.length, `${name} has series`).toBeGreaterThan(0);
      for (const s of series) {
        const labels = Object.keys(s.labels)
          .filter((l) => !(want.type === 'histogram' && s.name.endsWith('_bucket') && l === 'le'))
          .sort();
        expect(labels, `labels of ${s.name}`).toEqual([...want.labels].sort());
      }
    }
  });

  it("writes counters as istiod's exporter does: no _total, no unit suffix, no scope labels", () => {
    const names = new Set(scrape.samples.map((s) => s.name));
    expect([...names].filter((n) => n.endsWith('_total'))).toEqual(['process_cpu_seconds_total']);
    expect(
      [...names].filter((n) => /^(pilot|citadel)_.*_(seconds|bytes)_(bucket|sum|count)$/.test(n)),
    ).toEqual([...names].filter((n) => n.startsWith('pilot_xds_config_size_bytes_')));
    expect(scrape.samples.filter((s) => 'otel_scope_name' in s.labels)).toEqual([]);
    expect(scrape.help.get('pilot_xds_pushes')).toBe(
      'Pilot build and send errors for lds, rds, cds and eds.',
    );
    expect(scrape.help.get('citadel_server_csr_count')).toBe(
      'The number of CSRs received by Citadel server.',
    );
  });

  it("uses istiod's histogram buckets", () => {
    for (const [name, bounds] of Object.entries(ISTIOD_BUCKETS)) {
      const les = new Set(scrape.samples.filter((s) => s.name === `${name}_bucket`).map((s) => s.labels.le));
      expect([...les].sort(), name).toEqual([...bounds.map(String), '+Inf'].sort());
    }
  });

  it('counts what happened: proxies, pushes, triggers, the NACK, the CSR', () => {
    const value = (name: string, labels: Record<string, string> = {}) =>
      scrape.samples
        .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
        .reduce((sum, s) => sum + s.value, 0);
    expect(value('pilot_xds', { version: '1.24.0' })).toBe(2);
    for (const type of ['cds', 'eds', 'lds', 'rds'])
      expect(value('pilot_xds_pushes', { type })).toBeGreaterThan(0);
    const triggers = scrape.samples.filter((s) => s.name === 'pilot_push_triggers').map((s) => s.labels.type);
    expect(triggers).toContain('config');
    for (const t of triggers) expect(TRIGGER_REASONS).toContain(t);
    expect(value('pilot_total_xds_rejects', { type: 'lds' })).toBeGreaterThanOrEqual(1);
    expect(value('pilot_xds_lds_reject', { node: NACKING, err: 'InvalidArgument' })).toBeGreaterThanOrEqual(
      1,
    );
    expect(value('pilot_total_xds_internal_errors')).toBe(0);
    expect(value('pilot_services')).toBe(1);
    expect(value('pilot_virt_services')).toBe(1);
    expect(value('istio_build', { component: 'pilot' })).toBe(1);
    expect(value('pilot_proxy_convergence_time_count')).toBeGreaterThan(0);
    expect(value('pilot_debounce_time_count')).toBeGreaterThan(0);
    expect(value('pilot_proxy_queue_time_count')).toBeGreaterThan(0);
    expect(value('pilot_xds_send_time_count')).toBeGreaterThan(0);
    expect(value('pilot_xds_push_time_count', { type: 'cds' })).toBeGreaterThan(0);
    expect(value('pilot_xds_config_size_bytes_count', { type: TypeUrl.Cluster })).toBeGreaterThan(0);
    expect(value('citadel_server_csr_count')).toBe(1);
    expect(value('citadel_server_success_cert_issuance_count')).toBe(1);
    const now = Date.now() / 1000;
    expect(value('citadel_server_cert_chain_expiry_timestamp')).toBeGreaterThan(now);
    expect(value('citadel_server_root_cert_expiry_seconds')).toBeGreaterThan(0);
  });

  it("returns series for every query of Istio's control-plane dashboard that can apply", () => {
    const empty: string[] = [];
    let checked = 0;
    for (const query of PILOT_DASHBOARD_QUERIES) {
      const wanted = selectors(query).filter((s) => !NOT_APPLICABLE.some((re) => re.test(s.name)));
      if (wanted.length === 0) continue;
      checked++;
      for (const s of wanted)
        if (!scrape.samples.some((x) => matches(x, s))) empty.push(`${query}: ${s.name}`);
    }
    expect(empty).toEqual([]);
    expect(checked).toBe(8);
  });
});
