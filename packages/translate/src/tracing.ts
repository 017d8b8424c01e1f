/**
 * Envoy tracing on sidecars' HTTP connection managers from Istio's `Telemetry` kind, with Istio's
 * semantics (istio/istio `pilot/pkg/model/telemetry.go` `Tracing`,
 * `pilot/pkg/networking/core/tracing.go`):
 *
 * - **Providers** are defined in the mesh settings ({@link MeshTracing}, the `extensionProviders`
 *   and `defaultProviders.tracing` of Istio's MeshConfig; the replica reads them from
 *   `--mesh-config`). A Telemetry's `tracing[].providers` names one (only the first is used, as
 *   Istio); without one, `defaultProviders.tracing[0]`. A name with no definition, or a provider
 *   whose `service` is not in the registry, configures no tracing (Istio logs a warning and does the
 *   same). OpenTelemetry (gRPC or HTTP export) and Zipkin are supported.
 * - **Which Telemetry**: the root namespace's (no selector), then the proxy's namespace's (no
 *   selector), then the first in the proxy's namespace whose selector matches it; each later one
 *   overrides, field by field, what it sets (`providers`, `disableSpanReporting`, `customTags` (as
 *   a whole), `randomSamplingPercentage`, `useRequestIdForTraceSampling`), for the client side,
 *   the server side or both (`match.mode`).
 * - **Client / server**: outbound listeners' HCMs get the client side, inbound ones the server side.
 *   `disableSpanReporting: true` on a side, or no provider, leaves that side without tracing.
 * - **Sampling**: `random_sampling` is `randomSamplingPercentage`, else the mesh's default
 *   (`defaultConfig.tracing.sampling`, else 1%, Istio's PILOT_TRACE_SAMPLING); `client_sampling`
 *   and `overall_sampling` are 100%.
 * - **Custom tags**: Istio's service tags (`istio.canonical_service`, `istio.canonical_revision`,
 *   `istio.mesh_id`, `istio.namespace`, `istio.cluster_id`) and the Telemetry's `customTags`
 *   (`literal`, `environment`, `header`), sorted by tag name. Istio's dry-run authorization tags are
 *   not added.
 * - The UUID request-id extension carries `useRequestIdForTraceSampling` (default true).
 * - Proxyless gRPC clients get none (grpc-js-xds has no tracing).
 *
 * Decorated listeners are cached per listener object and tracing config, so proxies with the same
 * outbound view and the same resolved tracing (namespace, canonical service, cluster) share one
 * object and one encoding.
 */
import type { TelemetryConfig, Tracing as TracingEntry } from '@meridian/api';
import type { EnvoyJson, JsonValue, ProxyInfo } from '@meridian/envoy';
import type { NamedResource, RegistrySnapshot } from './types.js';
import { any, mapListenerFilters } from './util.js';

const HCM_NAME = 'envoy.filters.network.http_connection_manager';

/** An OpenTelemetry collector (Istio `MeshConfig.ExtensionProvider.OpenTelemetryTracingProvider`). */
export interface OpenTelemetryProvider {
  /** `hostname` or `namespace/hostname` of a service in the registry. */
  readonly service: string;
  readonly port: number;
  readonly maxTagLength?: number;
  /** OTLP/HTTP export (`path`, e.g. `/v1/traces`); OTLP/gRPC when absent. */
  readonly http?: { readonly path?: string; readonly timeout?: string };
  readonly grpc?: { readonly timeout?: string };
}

/** A Zipkin collector (Istio `MeshConfig.ExtensionProvider.ZipkinTracingProvider`). */
export interface ZipkinProvider {
  readonly service: string;
  readonly port: number;
  readonly maxTagLength?: number;
  /** Default `/api/v2/spans`. */
  readonly path?: string;
  readonly enable64bitTraceId?: boolean;
}

/** One of MeshConfig's `extensionProviders` (tracing kinds only; others are ignored here). */
export interface TracingProviderDefinition {
  readonly name: string;
  readonly opentelemetry?: OpenTelemetryProvider;
  readonly zipkin?: ZipkinProvider;
}

/** The tracing parts of Istio's MeshConfig. */
export interface MeshTracing {
  readonly extensionProviders?: readonly TracingProviderDefinition[];
  readonly defaultProviders?: { readonly tracing?: readonly string[] };
  /** `defaultConfig.tracing.sampling` (percent); Istio's default 1. */
  readonly defaultSampling?: number;
}

/** One side (client or server) of a proxy's resolved tracing, as Istio's `TracingSpec`. */
export interface TracingSpec {
  readonly provider: TracingProviderDefinition | undefined;
  readonly disabled: boolean;
  readonly randomSamplingPercentage: number | undefined;
  readonly customTags: Readonly<Record<string, unknown>> | undefined;
  readonly useRequestIdForTraceSampling: boolean;
}

type Telemetries = readonly Pick<TelemetryConfig, 'metadata' | 'spec'>[];

const fetchProvider = (mesh: MeshTracing, name: string) =>
  (mesh.extensionProviders ?? []).find(
    (p) => p.name.toLowerCase() === name.toLowerCase() && (p.opentelemetry || p.zipkin),
  );

/**
 * Istio's `Telemetries.Tracing`: the client and server specs of `proxy`, or undefined when neither a
 * Telemetry with `tracing` applies nor the mesh names a default tracing provider. Pure.
 */
export function resolveTracing(
  telemetries: Telemetries,
  proxy: Pick<ProxyInfo, 'namespace' | 'labels'>,
  rootNamespace: string,
  mesh: MeshTracing,
): { client: TracingSpec; server: TracingSpec } | undefined {
  const ns = (t: Telemetries[number]) => t.metadata.namespace ?? 'default';
  const selector = (t: Telemetries[number]) => t.spec.selector?.matchLabels ?? {};
  const namespaceWide = (namespace: string) =>
    telemetries.find((t) => ns(t) === namespace && Object.keys(selector(t)).length === 0);
  const applicable: TracingEntry[] = [];
  const root = namespaceWide(rootNamespace);
  if (root) applicable.push(...(root.spec.tracing ?? []));
  if (proxy.namespace !== rootNamespace) {
    const own = namespaceWide(proxy.namespace);
    if (own) applicable.push(...(own.spec.tracing ?? []));
  }
  const workload = [...telemetries]
    .filter((t) => ns(t) === proxy.namespace && Object.keys(selector(t)).length > 0)
    .sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0))
    .find((t) => Object.entries(selector(t)).every(([k, v]) => proxy.labels[k] === v));
  if (workload) applicable.push(...(workload.spec.tracing ?? []));

  const defaults = mesh.defaultProviders?.tracing ?? [];
  if (applicable.length === 0 && defaults.length === 0) return undefined;
  type Mutable = { -readonly [K in keyof TracingSpec]: TracingSpec[K] };
  const fresh = (): Mutable => ({
    provider: defaults[0] !== undefined ? fetchProvider(mesh, defaults[0]) : undefined,
    disabled: false,
    randomSamplingPercentage: undefined,
    customTags: undefined,
    useRequestIdForTraceSampling: true,
  });
  const client = fresh();
  const server = fresh();
  for (const m of applicable) {
    const mode = m.match?.mode;
    const specs = mode === 'CLIENT' ? [client] : mode === 'SERVER' ? [server] : [client, server];
    const name = (m.providers ?? []).find((p) => p.name)?.name;
    for (const s of specs) {
      if (name !== undefined) s.provider = fetchProvider(mesh, name);
      if (m.disableSpanReporting !== undefined) s.disabled = m.disableSpanReporting;
      if (m.customTags !== undefined) s.customTags = m.customTags;
      if (m.randomSamplingPercentage !== undefined) s.randomSamplingPercentage = m.randomSamplingPercentage;
      if (m.useRequestIdForTraceSampling !== undefined)
        s.useRequestIdForTraceSampling = m.useRequestIdForTraceSampling;
    }
  }
  if (!client.provider) client.disabled = true;
  if (!server.provider) server.disabled = true;
  return { client, server };
}

/** Istio's `LookupCluster`: the outbound cluster of `service` (`[namespace/]hostname`) and port. */
function lookupCluster(
  registry: RegistrySnapshot,
  service: string,
  port: number,
): { hostname: string; cluster: string } | undefined {
  const slash = service.indexOf('/');
  const namespace = slash >= 0 ? service.slice(0, slash) : undefined;
  const hostname = slash >= 0 ? service.slice(slash + 1) : service;
  const svc = registry.services.find(
    (s) => s.hostname === hostname && (namespace === undefined || s.namespace === namespace),
  );
  if (!svc?.ports.some((p) => p.port === port)) return undefined;
  return { hostname, cluster: `outbound|${port}||${hostname}` };
}

const label = (proxy: ProxyInfo, ...keys: string[]) => {
  for (const k of keys) {
    const v = proxy.labels[k];
    if (v) return v;
  }
  return undefined;
};

/** Istio's service tags (`buildServiceTags`), from the labels its injector sets and their sources. */
function istioTags(proxy: ProxyInfo): EnvoyJson[] {
  const literal = (tag: string, value: string) => ({ tag, literal: { value } });
  return [
    literal(
      'istio.canonical_revision',
      label(proxy, 'service.istio.io/canonical-revision', 'app.kubernetes.io/version', 'version') ?? 'latest',
    ),
    literal(
      'istio.canonical_service',
      label(proxy, 'service.istio.io/canonical-name', 'app.kubernetes.io/name', 'app') ?? 'unknown',
    ),
    literal('istio.cluster_id', proxy.clusterId || 'unknown'),
    literal('istio.mesh_id', proxy.meshId || 'unknown'),
    literal('istio.namespace', proxy.namespace || 'default'),
  ];
}

/** A Telemetry `customTags` entry as Envoy's `type.tracing.v3.CustomTag`; undefined if it has no kind. */
function customTag(tag: string, value: unknown): EnvoyJson | undefined {
  const v = (value ?? {}) as {
    literal?: { value?: string };
    environment?: { name?: string; defaultValue?: string };
    header?: { name?: string; defaultValue?: string };
  };
  if (v.literal) return { tag, literal: { value: v.literal.value ?? '' } };
  if (v.environment)
    return {
      tag,
      environment: {
        name: v.environment.name ?? '',
        ...(v.environment.defaultValue ? { default_value: v.environment.defaultValue } : {}),
      },
    };
  if (v.header)
    return {
      tag,
      request_header: {
        name: v.header.name ?? '',
        ...(v.header.defaultValue ? { default_value: v.header.defaultValue } : {}),
      },
    };
  return undefined;
}

/** The proxy's span service name: Istio uses the node's cluster, `<canonical service>.<namespace>`. */
function serviceName(proxy: ProxyInfo): string {
  const svc = label(proxy, 'service.istio.io/canonical-name', 'app.kubernetes.io/name', 'app');
  return `${svc ?? (proxy.workloadName || 'unknown')}.${proxy.namespace || 'default'}`;
}

/** The HCM `provider` (`config.trace.v3.Tracing.Http`) of a provider definition, or undefined. */
function providerConfig(
  def: TracingProviderDefinition,
  registry: RegistrySnapshot,
  proxy: ProxyInfo,
): { provider: EnvoyJson; maxTagLength: number | undefined } | undefined {
  if (def.opentelemetry) {
    const o = def.opentelemetry;
    const found = lookupCluster(registry, o.service, o.port);
    if (!found) return undefined;
    const http: EnvoyJson = o.http
      ? {
          http_service: {
            http_uri: {
              uri: `${found.hostname}${o.http.path ? `/${o.http.path.replace(/^\/+/, '')}` : ''}`,
              cluster: found.cluster,
              timeout: o.http.timeout ?? '5s',
            },
          },
        }
      : {
          grpc_service: {
            envoy_grpc: { cluster_name: found.cluster, authority: found.hostname },
            ...(o.grpc?.timeout ? { timeout: o.grpc.timeout } : {}),
          },
        };
    return {
      provider: {
        name: 'envoy.tracers.opentelemetry',
        typed_config: any('envoy.config.trace.v3.OpenTelemetryConfig', {
          ...http,
          service_name: serviceName(proxy),
        }),
      },
      maxTagLength: o.maxTagLength,
    };
  }
  if (def.zipkin) {
    const z = def.zipkin;
    const found = lookupCluster(registry, z.service, z.port);
    if (!found) return undefined;
    return {
      provider: {
        name: 'envoy.tracers.zipkin',
        typed_config: any('envoy.config.trace.v3.ZipkinConfig', {
          collector_cluster: found.cluster,
          collector_endpoint: z.path || '/api/v2/spans',
          collector_hostname: found.hostname,
          collector_endpoint_version: 'HTTP_JSON',
          trace_id_128bit: !z.enable64bitTraceId,
          shared_span_context: false,
        }),
      },
      maxTagLength: z.maxTagLength,
    };
  }
  return undefined;
}

/** What one side's HCMs get: `tracing` and `request_id_extension`, or undefined for no tracing. */
export interface HcmTracing {
  readonly tracing: EnvoyJson;
  readonly requestIdExtension: EnvoyJson;
}

/** Istio's `configureTracingFromTelemetry` for one side. Pure. */
export function hcmTracing(
  spec: TracingSpec,
  registry: RegistrySnapshot,
  proxy: ProxyInfo,
  mesh: MeshTracing,
): HcmTracing | undefined {
  if (spec.disabled || !spec.provider) return undefined;
  const p = providerConfig(spec.provider, registry, proxy);
  if (!p) return undefined;
  const sampling = spec.randomSamplingPercentage ?? mesh.defaultSampling ?? 1;
  const user = Object.entries(spec.customTags ?? {})
    .map(([tag, v]) => customTag(tag, v))
    .filter((t): t is EnvoyJson => t !== undefined);
  const tags = [...istioTags(proxy), ...user].sort((a, b) =>
    (a.tag as string) < (b.tag as string) ? -1 : (a.tag as string) > (b.tag as string) ? 1 : 0,
  );
  return {
    tracing: {
      client_sampling: { value: 100 },
      random_sampling: { value: sampling },
      overall_sampling: { value: 100 },
      custom_tags: tags as JsonValue[],
      provider: p.provider,
      ...(p.maxTagLength ? { max_path_tag_length: p.maxTagLength } : {}),
    },
    requestIdExtension: {
      typed_config: any('envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig', {
        pack_trace_reason: true,
        use_request_id_for_trace_sampling: spec.useRequestIdForTraceSampling,
      }),
    },
  };
}

/** A listener with `t` on every HCM of its filter chains. */
export function withTracing(listener: EnvoyJson, t: HcmTracing): EnvoyJson {
  return mapListenerFilters(listener, (f) => {
    const typed = f.typed_config as EnvoyJson | undefined;
    if (f.name !== HCM_NAME || !typed) return f;
    return {
      ...f,
      typed_config: { ...typed, tracing: t.tracing, request_id_extension: t.requestIdExtension },
    };
  });
}

/** The resolved HCM tracing of both sides of a proxy (undefined sides get none). */
export interface ProxyTracing {
  readonly client: HcmTracing | undefined;
  readonly server: HcmTracing | undefined;
}

/** {@link resolveTracing} then {@link hcmTracing} per side; undefined when neither side traces. */
export function proxyTracing(
  telemetries: Telemetries,
  registry: RegistrySnapshot,
  proxy: ProxyInfo,
  rootNamespace: string,
  mesh: MeshTracing | undefined,
): ProxyTracing | undefined {
  if (proxy.kind === 'grpc') return undefined;
  const m = mesh ?? {};
  const specs = resolveTracing(telemetries, proxy, rootNamespace, m);
  if (!specs) return undefined;
  const client = hcmTracing(specs.client, registry, proxy, m);
  const server = hcmTracing(specs.server, registry, proxy, m);
  return client || server ? { client, server } : undefined;
}

const parts = new WeakMap<object, Map<string, object>>();

/**
 * A translated part with tracing on its listeners' HCMs: inbound listeners (`traffic_direction`
 * INBOUND) get the server side, the others the client side. The same part and the same tracing give
 * the same object (cached), so proxies that resolve the same tracing keep sharing.
 */
export function partWithTracing<P extends { readonly listeners: readonly NamedResource[] }>(
  part: P,
  tracing: ProxyTracing,
): P {
  const key = JSON.stringify(tracing);
  let byKey = parts.get(part);
  const cached = byKey?.get(key);
  if (cached) return cached as P;
  const listeners = part.listeners.map((l) => {
    const t = l.resource.traffic_direction === 'INBOUND' ? tracing.server : tracing.client;
    return t ? { name: l.name, resource: withTracing(l.resource, t) } : l;
  });
  const out = { ...part, listeners } as P;
  if (!byKey) {
    byKey = new Map();
    parts.set(part, byKey);
  }
  if (byKey.size > 64) byKey.clear();
  byKey.set(key, out);
  return out;
}
