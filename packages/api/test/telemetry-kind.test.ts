// Istio's Telemetry kind (telemetry.istio.io v1/v1alpha1, telemetry-kind.ts): schema, semantic
// checks naming the field, and which Telemetry decides a workload's access logging (issue 17).
import { accessLoggingEnabled, parseConfigDocuments, type TelemetryConfig } from '@meridian/api';
import { describe, expect, it } from 'vitest';
import { errorsOf, obj } from './helpers.js';

function telemetries(yaml: string): TelemetryConfig[] {
  const r = parseConfigDocuments(yaml, { source: 't.yaml' });
  if (!r.ok) throw new Error(r.error.message);
  return r.configs as TelemetryConfig[];
}

describe('Telemetry kind', () => {
  it("accepts Istio's fields in v1 and v1alpha1", () => {
    expect(
      errorsOf(
        obj('Telemetry', {
          selector: { matchLabels: { app: 'reviews' } },
          accessLogging: [
            {
              providers: [{ name: 'meridian' }],
              match: { mode: 'SERVER' },
              filter: { expression: 'response.code >= 400' },
            },
          ],
          tracing: [
            {
              providers: [{ name: 'otel' }],
              randomSamplingPercentage: 10.5,
              customTags: { env: { literal: { value: 'prod' } } },
            },
          ],
          metrics: [{ providers: [{ name: 'prometheus' }], reportingInterval: '15s' }],
        }),
      ),
    ).toEqual([]);
    const alpha = {
      ...obj('Telemetry', { accessLogging: [{ disabled: true }] }),
      apiVersion: 'telemetry.istio.io/v1alpha1',
    };
    expect(errorsOf(alpha)).toEqual([]);
  });

  it('errors name the field: sampling out of range, a provider without a name, unknown fields, bad mode', () => {
    expect(
      errorsOf(
        obj('Telemetry', {
          tracing: [{ randomSamplingPercentage: 150 }],
          accessLogging: [{ providers: [{}] }, { match: { mode: 'BOTH' } }],
          accessLogs: [],
        }),
      ).join('\n'),
    ).toMatchInlineSnapshot(`
      "Telemetry default/t: spec.accessLogging[0].providers[0].name: provider name must be set
      Telemetry default/t: spec.accessLogging[1].match.mode: invalid value "BOTH", expected one of CLIENT_AND_SERVER, CLIENT, SERVER
      Telemetry default/t: spec.accessLogs: unknown field "accessLogs" in Telemetry
      Telemetry default/t: spec.tracing[0].randomSamplingPercentage: must be in [0.0, 100.0], got 150"
    `);
  });

  it('precedence: workload selector, then namespace, then root namespace; disabled turns off', () => {
    const all = telemetries(`apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  accessLogging: [{providers: [{name: meridian}]}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: quiet, namespace: batch}
spec:
  accessLogging: [{disabled: true}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: loud-one, namespace: batch}
spec:
  selector: {matchLabels: {app: loud}}
  accessLogging: [{providers: [{name: meridian}]}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: file-only, namespace: shop}
spec:
  accessLogging: [{providers: [{name: envoy}]}]
`);
    const on = (namespace: string, labels: Record<string, string> = {}) =>
      accessLoggingEnabled(all, { namespace, labels }, 'istio-system');
    expect(on('default')).toBe(true);
    expect(on('batch')).toBe(false);
    expect(on('batch', { app: 'loud' })).toBe(true);
    expect(on('shop')).toBe(false);
    expect(accessLoggingEnabled([], { namespace: 'default', labels: {} }, 'istio-system')).toBe(false);
  });
});
