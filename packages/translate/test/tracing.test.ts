// Issue 17, item 5: Envoy tracing from Istio's Telemetry `tracing` (tracing.ts), with Istio's
// semantics: provider from the Telemetry or the mesh's default, root -> namespace -> workload
// overrides, client/server sides, sampling, custom tags; every listener with tracing passes Envoy's
// schemas and encodes.
import { type ConfigObject, parseConfigDocuments } from '@meridian/api';
import { checkResource, decodeResource, type EnvoyJson, encodeResource, TypeUrl } from '@meridian/envoy';
import { describe, expect, it } from 'vitest';
import {
  createConfigSnapshot,
  createRegistrySnapshot,
  type MeshTracing,
  type RegistrySnapshot,
  resolveTracing,
  Translator,
  translateProxy,
} from '../src/index.js';
import { bookinfoRegistry, endpoint, proxy, service } from './fixtures.js';

function objects(yaml: string): ConfigObject[] {
  const r = parseConfigDocuments(yaml, { source: 't.yaml' });
  if (!r.ok) throw new Error(r.error.message);
  return r.configs;
}

const OTEL_HOST = 'otel-collector.observability.svc.cluster.local';
const ZIPKIN_HOST = 'zipkin.observability.svc.cluster.local';

/** Bookinfo plus an OpenTelemetry collector and a Zipkin service. */
function registry(): RegistrySnapshot {
  const base = bookinfoRegistry();
  return createRegistrySnapshot(
    1,
    [
      ...base.services,
      service('otel-collector', 'observability', [{ name: 'grpc-otlp', port: 4317, protocol: 'GRPC' }]),
      service('zipkin', 'observability', [{ name: 'http', port: 9411, protocol: 'HTTP' }]),
    ],
    {
      ...Object.fromEntries(base.endpoints),
      [OTEL_HOST]: [endpoint('10.2.0.1', { 'grpc-otlp': 4317 }, { app: 'otel' })],
      [ZIPKIN_HOST]: [endpoint('10.2.0.2', { http: 9411 }, { app: 'zipkin' })],
    },
  );
}

const MESH: MeshTracing = {
  extensionProviders: [
    { name: 'otel', opentelemetry: { service: OTEL_HOST, port: 4317 } },
    { name: 'otel-http', opentelemetry: { service: OTEL_HOST, port: 4317, http: { path: '/v1/traces' } } },
    { name: 'zipkin', zipkin: { service: ZIPKIN_HOST, port: 9411, maxTagLength: 99 } },
    { name: 'nowhere', opentelemetry: { service: 'missing.ns.svc.cluster.local', port: 4317 } },
  ],
};

const MESH_WIDE = `apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  tracing:
  - providers: [{name: otel}]
    randomSamplingPercentage: 10
    customTags:
      team: {literal: {value: checkout}}
      user: {header: {name: x-user, defaultValue: anonymous}}
      pod: {environment: {name: POD_NAME}}
`;

const HCM = 'envoy.filters.network.http_connection_manager';

/** The tracing of every HCM of a listener (undefined entries: an HCM without tracing). */
function hcmTracings(listener: EnvoyJson): (EnvoyJson | undefined)[] {
  const out: (EnvoyJson | undefined)[] = [];
  for (const chain of (listener.filter_chains as EnvoyJson[] | undefined) ?? [])
    for (const f of (chain.filters as EnvoyJson[] | undefined) ?? [])
      if (f.name === HCM) out.push((f.typed_config as EnvoyJson).tracing as EnvoyJson | undefined);
  return out;
}

function translate(yaml: string, mesh: MeshTracing | undefined = MESH, p = proxy()) {
  const out = translateProxy(
    createConfigSnapshot(1, objects(yaml), mesh ? { tracing: mesh } : {}),
    registry(),
    p,
  );
  const byName = new Map(out.listeners.map((l) => [l.name, l.resource]));
  return { out, outbound: byName.get('0.0.0.0_9080')!, inbound: byName.get('virtualInbound')! };
}

function expectEnvoyAccepts(listeners: readonly { name: string; resource: EnvoyJson }[]): void {
  for (const l of listeners) {
    expect(checkResource(TypeUrl.Listener, l.resource), l.name).toEqual([]);
    const back = decodeResource(TypeUrl.Listener, encodeResource(TypeUrl.Listener, l.resource)) as EnvoyJson;
    expect(back.name).toBe(l.name);
  }
}

describe('tracing from Telemetry', () => {
  it('a mesh-wide Telemetry: OpenTelemetry over gRPC to the collector, its sampling, Istio and custom tags; Envoy accepts it', () => {
    const { out, outbound, inbound } = translate(MESH_WIDE);
    const [client] = hcmTracings(outbound);
    expect(client).toEqual({
      client_sampling: { value: 100 },
      random_sampling: { value: 10 },
      overall_sampling: { value: 100 },
      custom_tags: [
        { tag: 'istio.canonical_revision', literal: { value: 'v1' } },
        { tag: 'istio.canonical_service', literal: { value: 'productpage' } },
        { tag: 'istio.cluster_id', literal: { value: 'cluster1' } },
        { tag: 'istio.mesh_id', literal: { value: 'unknown' } },
        { tag: 'istio.namespace', literal: { value: 'default' } },
        { tag: 'pod', environment: { name: 'POD_NAME' } },
        { tag: 'team', literal: { value: 'checkout' } },
        { tag: 'user', request_header: { name: 'x-user', default_value: 'anonymous' } },
      ],
      provider: {
        name: 'envoy.tracers.opentelemetry',
        typed_config: {
          '@type': 'type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig',
          grpc_service: { envoy_grpc: { cluster_name: `outbound|4317||${OTEL_HOST}`, authority: OTEL_HOST } },
          service_name: 'productpage.default',
        },
      },
    });
    // The server side (inbound HCMs) has the same config here.
    const server = hcmTracings(inbound);
    expect(server.length).toBeGreaterThan(0);
    for (const t of server) expect(t).toEqual(client);
    // The collector's cluster is one the sidecar has.
    expect(out.clusters.some((c) => c.name === `outbound|4317||${OTEL_HOST}`)).toBe(true);
    expectEnvoyAccepts(out.listeners);
    // The request-id extension carries Istio's default (the request id decides sampling).
    const hcm = ((outbound.filter_chains as EnvoyJson[])[0]!.filters as EnvoyJson[])[0]!;
    expect((hcm.typed_config as EnvoyJson).request_id_extension).toEqual({
      typed_config: {
        '@type': 'type.googleapis.com/envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig',
        pack_trace_reason: true,
        use_request_id_for_trace_sampling: true,
      },
    });
  });

  it('overrides: the namespace turns off server spans, the workload raises sampling and replaces the tags', () => {
    const yaml = `${MESH_WIDE}---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: ns, namespace: default}
spec:
  tracing:
  - match: {mode: SERVER}
    disableSpanReporting: true
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: productpage, namespace: default}
spec:
  selector: {matchLabels: {app: productpage}}
  tracing:
  - randomSamplingPercentage: 100
    useRequestIdForTraceSampling: false
    customTags: {only: {literal: {value: this}}}
`;
    const { out, outbound, inbound } = translate(yaml);
    const [client] = hcmTracings(outbound);
    expect(client).toMatchObject({ random_sampling: { value: 100 } });
    expect((client!.custom_tags as EnvoyJson[]).map((t) => t.tag)).toEqual([
      'istio.canonical_revision',
      'istio.canonical_service',
      'istio.cluster_id',
      'istio.mesh_id',
      'istio.namespace',
      'only',
    ]);
    for (const t of hcmTracings(inbound)) expect(t).toBeUndefined();
    expectEnvoyAccepts(out.listeners);
    // Another workload of the namespace: the namespace's override only (sampling from the root).
    const other = translate(yaml, MESH, proxy({ pod: 'ratings-v1-x', labels: { app: 'ratings' } }));
    expect(hcmTracings(other.outbound)[0]).toMatchObject({ random_sampling: { value: 10 } });
    for (const t of hcmTracings(other.inbound)) expect(t).toBeUndefined();
  });

  it("the mesh's default provider and sampling without any Telemetry; Zipkin; OTLP/HTTP", () => {
    const { outbound } = translate('', {
      ...MESH,
      defaultProviders: { tracing: ['zipkin'] },
      defaultSampling: 2.5,
    });
    expect(hcmTracings(outbound)[0]).toMatchObject({
      random_sampling: { value: 2.5 },
      max_path_tag_length: 99,
      provider: {
        name: 'envoy.tracers.zipkin',
        typed_config: {
          '@type': 'type.googleapis.com/envoy.config.trace.v3.ZipkinConfig',
          collector_cluster: `outbound|9411||${ZIPKIN_HOST}`,
          collector_endpoint: '/api/v2/spans',
          collector_hostname: ZIPKIN_HOST,
          collector_endpoint_version: 'HTTP_JSON',
          trace_id_128bit: true,
        },
      },
    });
    expectEnvoyAccepts(translate('', { ...MESH, defaultProviders: { tracing: ['zipkin'] } }).out.listeners);
    const http = translate(MESH_WIDE.replace('{name: otel}', '{name: otel-http}'));
    expect(hcmTracings(http.outbound)[0]).toMatchObject({
      provider: {
        typed_config: {
          http_service: {
            http_uri: {
              uri: `${OTEL_HOST}/v1/traces`,
              cluster: `outbound|4317||${OTEL_HOST}`,
              timeout: '5s',
            },
          },
        },
      },
    });
    expectEnvoyAccepts(http.out.listeners);
  });

  it('no tracing: no Telemetry and no default, an undefined provider, a collector not in the registry, disableSpanReporting, proxyless gRPC', () => {
    const none = (yaml: string, mesh: MeshTracing | undefined = MESH, p = proxy()) => {
      const { out } = translate(yaml, mesh, p);
      for (const l of out.listeners)
        for (const t of hcmTracings(l.resource)) expect(t, l.name).toBeUndefined();
    };
    none('');
    none(MESH_WIDE, {});
    none(MESH_WIDE.replace('{name: otel}', '{name: jaeger}'));
    none(MESH_WIDE.replace('{name: otel}', '{name: nowhere}'));
    none(MESH_WIDE.replace('randomSamplingPercentage: 10', 'disableSpanReporting: true'));
    none(MESH_WIDE, MESH, proxy({ grpc: true }));
    expect(
      resolveTracing(objects(MESH_WIDE) as never, { namespace: 'default', labels: {} }, 'istio-system', {}),
    ).toMatchObject({ client: { disabled: true }, server: { disabled: true } });
  });

  it('proxies resolving the same tracing share the decorated outbound part; another canonical service gets its own', () => {
    const t = new Translator();
    const config = createConfigSnapshot(1, objects(MESH_WIDE), { tracing: MESH });
    const reg = registry();
    const a = t.translateParts(config, reg, proxy({ ip: '10.1.0.1' }));
    const b = t.translateParts(config, reg, proxy({ ip: '10.1.0.9', pod: 'productpage-v1-y' }));
    expect(b.outbound).toBe(a.outbound);
    const c = t.translateParts(
      config,
      reg,
      proxy({ ip: '10.1.0.7', pod: 'x-1', labels: { app: 'details' } }),
    );
    expect(c.outbound).not.toBe(a.outbound);
    const tags = hcmTracings(c.outbound.listeners.find((l) => l.name === '0.0.0.0_9080')!.resource)[0]!
      .custom_tags as EnvoyJson[];
    expect(tags).toContainEqual({ tag: 'istio.canonical_service', literal: { value: 'details' } });
  });
});
