// --mesh-config (issue 17, item 5): the tracing providers of an Istio MeshConfig, or of the `istio`
// ConfigMap that holds one, as Telemetry's `tracing` needs them; bad input names the field.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ServerConfigError } from '../src/errors.js';
import { readMeshTracing } from '../src/tracing.js';

const dir = mkdtempSync(join(tmpdir(), 'meridian-mesh-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

const MESH = `defaultConfig:
  tracing:
    sampling: 5
defaultProviders:
  tracing: [otel]
extensionProviders:
- name: otel
  opentelemetry:
    service: otel-collector.observability.svc.cluster.local
    port: 4317
    maxTagLength: 256
- name: otel-http
  opentelemetry:
    service: observability/otel-collector.observability.svc.cluster.local
    port: 4318
    http: {path: /v1/traces, timeout: 2s}
- name: zipkin
  zipkin: {service: zipkin.observability.svc.cluster.local, port: 9411}
- name: als
  envoyHttpAls: {service: als.observability.svc.cluster.local, port: 9000}
`;

describe('readMeshTracing', () => {
  it("reads Istio's MeshConfig tracing providers, defaults and sampling; other kinds are skipped", () => {
    const expected = {
      extensionProviders: [
        {
          name: 'otel',
          opentelemetry: {
            service: 'otel-collector.observability.svc.cluster.local',
            port: 4317,
            maxTagLength: 256,
          },
        },
        {
          name: 'otel-http',
          opentelemetry: {
            service: 'observability/otel-collector.observability.svc.cluster.local',
            port: 4318,
            http: { path: '/v1/traces', timeout: '2s' },
          },
        },
        { name: 'zipkin', zipkin: { service: 'zipkin.observability.svc.cluster.local', port: 9411 } },
      ],
      defaultProviders: { tracing: ['otel'] },
      defaultSampling: 5,
    };
    expect(readMeshTracing(file('mesh.yaml', MESH))).toEqual(expected);
    const configMap = `apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |-
${MESH.split('\n')
  .map((l) => `    ${l}`)
  .join('\n')}
`;
    expect(readMeshTracing(file('cm.yaml', configMap))).toEqual(expected);
    expect(readMeshTracing('')).toBeUndefined();
  });

  it.each([
    [
      'extensionProviders: [{name: x, opentelemetry: {service: a, port: 0}}]',
      'extensionProviders[0].opentelemetry.port: expected an integer in [1, 65535]',
    ],
    [
      'extensionProviders: [{opentelemetry: {service: a, port: 1}}]',
      'extensionProviders[0].name: expected a non-empty string',
    ],
    [
      'extensionProviders: [{name: z, zipkin: {port: 9411}}]',
      'extensionProviders[0].zipkin.service: expected a non-empty string',
    ],
    ['defaultProviders: {tracing: [1]}', 'defaultProviders.tracing: expected a list of provider names'],
    [
      'defaultConfig: {tracing: {sampling: 101}}',
      'defaultConfig.tracing.sampling: expected a percentage in [0, 100], got 101',
    ],
  ])('refuses %s, naming the field', (text, reason) => {
    const path = file('bad.yaml', text);
    expect(() => readMeshTracing(path)).toThrow(new ServerConfigError('--mesh-config', `${path}: ${reason}`));
  });

  it('a missing file is a ServerConfigError', () => {
    expect(() => readMeshTracing(join(dir, 'absent.yaml'))).toThrow(ServerConfigError);
  });
});
