// Issue 17, item 4: sidecars' access logs pointed at the replicas (access-log.ts). With a Telemetry
// naming the `meridian` provider and `policyInputs.accessLogService`, every HCM gets an http_grpc access log and every tcp_proxy a
// tcp_grpc one (direction in the log name), the access-log cluster is sent once, and every listener
// and cluster passes Envoy's schemas; without it nothing changes; proxyless gRPC gets none.

import { type ConfigObject, parseConfigDocuments } from '@meridian/api';
import { checkResource, decodeResource, type EnvoyJson, encodeResource, TypeUrl } from '@meridian/envoy';
import { describe, expect, it } from 'vitest';
import { ACCESS_LOG_CLUSTER, createConfigSnapshot, Translator, translateProxy } from '../src/index.js';
import { bookinfoRegistry, proxy } from './fixtures.js';

/** Istio's Telemetry objects from YAML. */
function objects(yaml: string): ConfigObject[] {
  const r = parseConfigDocuments(yaml, { source: 't.yaml' });
  if (!r.ok) throw new Error(r.error.message);
  return r.configs;
}

/** Mesh-wide access logging to the replicas (provider `meridian`), and a namespace turning it off. */
const TELEMETRY = objects(`apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  accessLogging: [{providers: [{name: meridian}]}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: off, namespace: quiet}
spec:
  accessLogging: [{disabled: true}]
`);

const SERVICE = [
  { host: '10.0.0.10', port: 15010 },
  { host: '10.0.0.11', port: 15010 },
];

/** Every access log of a listener: [filter name, logger name, log name]. */
function accessLogs(listener: EnvoyJson): [string, string, string][] {
  const out: [string, string, string][] = [];
  for (const chain of (listener.filter_chains as EnvoyJson[] | undefined) ?? [])
    for (const f of (chain.filters as EnvoyJson[] | undefined) ?? []) {
      const typed = f.typed_config as EnvoyJson;
      for (const log of (typed.access_log as EnvoyJson[] | undefined) ?? []) {
        const cfg = log.typed_config as EnvoyJson;
        out.push([f.name as string, log.name as string, (cfg.common_config as EnvoyJson).log_name as string]);
      }
    }
  return out;
}

describe('access logs to the replicas', () => {
  it('HCMs get http_grpc, tcp_proxies tcp_grpc, named by direction; the cluster is sent once; Envoy accepts all', () => {
    const config = createConfigSnapshot(1, TELEMETRY, { accessLogService: SERVICE });
    const out = translateProxy(config, bookinfoRegistry(), proxy());
    const byName = new Map(out.listeners.map((l) => [l.name, l.resource]));
    const HCM = 'envoy.filters.network.http_connection_manager';
    const TCP = 'envoy.filters.network.tcp_proxy';
    expect(accessLogs(byName.get('0.0.0.0_9080')!)).toEqual([
      [HCM, 'envoy.access_loggers.http_grpc', 'meridian-outbound'],
    ]);
    expect(accessLogs(byName.get('10.96.0.20_27017')!)).toEqual([
      [TCP, 'envoy.access_loggers.tcp_grpc', 'meridian-outbound'],
    ]);
    expect(accessLogs(byName.get('virtualOutbound')!)).toEqual([
      [TCP, 'envoy.access_loggers.tcp_grpc', 'meridian-outbound'],
    ]);
    const inbound = accessLogs(byName.get('virtualInbound')!);
    expect(inbound).toContainEqual([HCM, 'envoy.access_loggers.http_grpc', 'meridian-inbound']);
    expect(inbound).toContainEqual([TCP, 'envoy.access_loggers.tcp_grpc', 'meridian-inbound']);
    // The HTTP logger logs what tells gRPC from HTTP and gRPC's status.
    const hcm = ((byName.get('0.0.0.0_9080')!.filter_chains as EnvoyJson[])[0]!.filters as EnvoyJson[])[0]!;
    const http = ((hcm.typed_config as EnvoyJson).access_log as EnvoyJson[])[0]!.typed_config as EnvoyJson;
    expect(http).toMatchObject({
      additional_request_headers_to_log: ['content-type'],
      additional_response_trailers_to_log: ['grpc-status'],
      common_config: {
        grpc_service: { envoy_grpc: { cluster_name: ACCESS_LOG_CLUSTER } },
        transport_api_version: 'V3',
      },
    });
    const clusters = out.clusters.filter((c) => c.name === ACCESS_LOG_CLUSTER);
    expect(clusters).toHaveLength(1);
    expect(clusters[0]!.resource).toMatchObject({
      type: 'STATIC',
      load_assignment: { cluster_name: ACCESS_LOG_CLUSTER },
    });
    for (const l of out.listeners) {
      expect(checkResource(TypeUrl.Listener, l.resource), l.name).toEqual([]);
      expect(decodeResource(TypeUrl.Listener, encodeResource(TypeUrl.Listener, l.resource)).name).toBe(
        l.name,
      );
    }
    for (const c of out.clusters) expect(checkResource(TypeUrl.Cluster, c.resource), c.name).toEqual([]);
    expect(encodeResource(TypeUrl.Cluster, clusters[0]!.resource).length).toBeGreaterThan(0);
  });

  it('without a Telemetry naming the provider, a disabling one, or the service, nothing changes; proxyless gRPC gets no logger', () => {
    const none = (config: ReturnType<typeof createConfigSnapshot>, namespace = 'default') => {
      const out = translateProxy(config, bookinfoRegistry(), proxy({ namespace }));
      for (const l of out.listeners) expect(accessLogs(l.resource)).toEqual([]);
      expect(out.clusters.some((c) => c.name === ACCESS_LOG_CLUSTER)).toBe(false);
    };
    none(createConfigSnapshot(1, TELEMETRY));
    none(createConfigSnapshot(1, [], { accessLogService: SERVICE }));
    none(createConfigSnapshot(1, TELEMETRY, { accessLogService: SERVICE }), 'quiet');
    const grpc = translateProxy(
      createConfigSnapshot(1, TELEMETRY, { accessLogService: SERVICE }),
      bookinfoRegistry(),
      proxy({ grpc: true }),
    );
    expect(grpc.clusters.some((c) => c.name === ACCESS_LOG_CLUSTER)).toBe(false);
  });

  it("the replicas' CA ports (mtls): the cluster is mTLS with the workload certificate and checks the replicas' SANs", () => {
    const mtls = SERVICE.map((a) => ({ ...a, port: 15012, mtls: true }));
    const out = translateProxy(
      createConfigSnapshot(1, TELEMETRY, { accessLogService: mtls }),
      bookinfoRegistry(),
      proxy(),
    );
    const cluster = out.clusters.find((c) => c.name === ACCESS_LOG_CLUSTER)!.resource;
    expect(checkResource(TypeUrl.Cluster, cluster)).toEqual([]);
    expect(cluster.transport_socket).toMatchObject({
      name: 'envoy.transport_sockets.tls',
      typed_config: {
        common_tls_context: {
          tls_certificate_sds_secret_configs: [{ name: 'default' }],
          combined_validation_context: {
            default_validation_context: {
              match_typed_subject_alt_names: [
                { san_type: 'IP_ADDRESS', matcher: { exact: '10.0.0.10' } },
                { san_type: 'IP_ADDRESS', matcher: { exact: '10.0.0.11' } },
              ],
            },
            validation_context_sds_secret_config: { name: 'ROOTCA' },
          },
          alpn_protocols: ['h2'],
        },
      },
    });
    // Plaintext addresses: no transport socket.
    const plain = translateProxy(
      createConfigSnapshot(1, TELEMETRY, { accessLogService: SERVICE }),
      bookinfoRegistry(),
      proxy(),
    );
    expect(
      plain.clusters.find((c) => c.name === ACCESS_LOG_CLUSTER)!.resource.transport_socket,
    ).toBeUndefined();
  });

  it('two sidecars with the same outbound view share the decorated outbound part (one encoding)', () => {
    const t = new Translator();
    const config = createConfigSnapshot(1, TELEMETRY, { accessLogService: SERVICE });
    const registry = bookinfoRegistry();
    const a = t.translateParts(config, registry, proxy({ ip: '10.1.0.1' }));
    const b = t.translateParts(config, registry, proxy({ ip: '10.1.0.9', pod: 'productpage-v1-x' }));
    expect(b.outbound).toBe(a.outbound);
    expect(accessLogs(a.outbound.listeners.find((l) => l.name === '0.0.0.0_9080')!.resource)).toHaveLength(1);
  });
});
