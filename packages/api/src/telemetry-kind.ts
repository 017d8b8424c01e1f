/**
 * Telemetry (`telemetry.istio.io` v1/v1alpha1): its spec type, schema and semantic checks.
 *
 * Semantics follow Istio's API: a Telemetry in the root namespace applies mesh-wide, one in a
 * namespace to its workloads, one with a `selector` to the selected workloads; the most specific one
 * decides. Meridian reads `accessLogging`: the provider named {@link MERIDIAN_ACCESS_LOG_PROVIDER}
 * (Envoy's gRPC access-log service on the replicas, which derive Istio's metrics and the service
 * graph from it) turns sidecars' access logs on; `disabled: true` turns them off. `tracing` is
 * validated (sampling 0..100) and translated to Envoy tracing by @meridian/translate's tracing.ts,
 * with its providers from the mesh config (`--mesh-config`). Other access-log provider names are
 * accepted (they are Istio mesh-config providers) and have no effect here.
 */
import type { FieldPath, Reporter } from './path.js';
import type { FieldSchema, MessageSchema } from './schema.js';
import type { PolicyTargetReference, WorkloadSelector } from './types.js';

/** The provider name of the replicas' access-log service. */
export const MERIDIAN_ACCESS_LOG_PROVIDER = 'meridian';

/** `telemetry.v1.ProviderRef`. */
export interface ProviderRef {
  name?: string;
}

/** `telemetry.v1.AccessLogging.LogSelector`. */
export interface AccessLogSelector {
  mode?: 'CLIENT_AND_SERVER' | 'CLIENT' | 'SERVER';
}

/** `telemetry.v1.AccessLogging`. */
export interface AccessLogging {
  match?: AccessLogSelector;
  providers?: ProviderRef[];
  disabled?: boolean;
  filter?: { expression?: string };
}

/** `telemetry.v1.Tracing` (the fields Meridian reads). */
export interface Tracing {
  match?: { mode?: 'CLIENT_AND_SERVER' | 'CLIENT' | 'SERVER' };
  providers?: ProviderRef[];
  randomSamplingPercentage?: number;
  disableSpanReporting?: boolean;
  customTags?: Record<string, unknown>;
  useRequestIdForTraceSampling?: boolean;
}

/** `telemetry.v1.Metrics` (accepted; Meridian derives Istio's metrics from access logs). */
export interface Metrics {
  providers?: ProviderRef[];
  overrides?: unknown[];
  reportingInterval?: string;
}

/** `telemetry.v1.Telemetry` spec. */
export interface Telemetry {
  selector?: WorkloadSelector;
  targetRef?: PolicyTargetReference;
  targetRefs?: PolicyTargetReference[];
  tracing?: Tracing[];
  metrics?: Metrics[];
  accessLogging?: AccessLogging[];
}

const str: FieldSchema = { t: 'string' };
const strMap: FieldSchema = { t: 'map', of: str };
const MODES = ['CLIENT_AND_SERVER', 'CLIENT', 'SERVER'];

function message<M>(name: string, fields: { readonly [K in keyof Required<M>]: FieldSchema }): MessageSchema {
  return { name, fields: fields as Record<string, FieldSchema>, oneofs: [] };
}
const msg = (of: () => MessageSchema): FieldSchema => ({ t: 'message', of });
const listOf = (of: () => MessageSchema): FieldSchema => ({ t: 'list', of: { t: 'message', of } });

const ProviderSchema = message<ProviderRef>('ProviderRef', { name: str });
const TargetRefSchema = message<PolicyTargetReference>('PolicyTargetReference', {
  group: str,
  kind: str,
  name: str,
  namespace: str,
});
const CustomTagSchema: MessageSchema = {
  name: 'Tracing.CustomTag',
  fields: {
    literal: msg(() => ({ name: 'Literal', fields: { value: str }, oneofs: [] })),
    environment: msg(() => ({ name: 'Environment', fields: { name: str, defaultValue: str }, oneofs: [] })),
    header: msg(() => ({ name: 'RequestHeader', fields: { name: str, defaultValue: str }, oneofs: [] })),
  },
  oneofs: [['literal', 'environment', 'header']],
};
const MetricsOverrideSchema: MessageSchema = {
  name: 'MetricsOverrides',
  fields: {
    match: msg(() => ({
      name: 'MetricSelector',
      fields: { metric: str, customMetric: str, mode: { t: 'enum', values: MODES } },
      oneofs: [['metric', 'customMetric']],
    })),
    disabled: { t: 'bool', presence: true },
    tagOverrides: {
      t: 'map',
      of: msg(() => ({
        name: 'TagOverride',
        fields: { operation: { t: 'enum', values: ['UPSERT', 'REMOVE'] }, value: str },
        oneofs: [],
      })),
    },
  },
  oneofs: [],
};

/** The schema of a Telemetry spec. */
export const TelemetrySchema = message<Telemetry>('Telemetry', {
  selector: msg(() => message<WorkloadSelector>('WorkloadSelector', { matchLabels: strMap })),
  targetRef: msg(() => TargetRefSchema),
  targetRefs: listOf(() => TargetRefSchema),
  tracing: listOf(() =>
    message<Tracing>('Tracing', {
      match: msg(() => ({
        name: 'TracingSelector',
        fields: { mode: { t: 'enum', values: MODES } },
        oneofs: [],
      })),
      providers: listOf(() => ProviderSchema),
      randomSamplingPercentage: { t: 'double', presence: true },
      disableSpanReporting: { t: 'bool', presence: true },
      customTags: { t: 'map', of: { t: 'message', of: () => CustomTagSchema } },
      useRequestIdForTraceSampling: { t: 'bool', presence: true },
    }),
  ),
  metrics: listOf(() =>
    message<Metrics>('Metrics', {
      providers: listOf(() => ProviderSchema),
      overrides: { t: 'list', of: { t: 'message', of: () => MetricsOverrideSchema } },
      reportingInterval: { t: 'duration' },
    }),
  ),
  accessLogging: listOf(() =>
    message<AccessLogging>('AccessLogging', {
      match: msg(() => message<AccessLogSelector>('LogSelector', { mode: { t: 'enum', values: MODES } })),
      providers: listOf(() => ProviderSchema),
      disabled: { t: 'bool', presence: true },
      filter: msg(() => ({ name: 'Filter', fields: { expression: str }, oneofs: [] })),
    }),
  ),
});

/**
 * Validates a Telemetry spec. `checkSelector` is the shared workload-selector check (semantics/common.ts).
 * Errors name the field: `spec.tracing[0].randomSamplingPercentage`, `spec.accessLogging[1].providers[0].name`.
 */
export function checkTelemetry(
  t: Telemetry,
  p: FieldPath,
  r: Reporter,
  checkSelector: (labels: Record<string, string> | undefined, p: FieldPath, r: Reporter) => void,
): void {
  if (t.selector !== undefined && (t.targetRef !== undefined || (t.targetRefs ?? []).length > 0))
    r.add(p, 'only one of targetRefs or workloadSelector can be set');
  if (t.targetRef !== undefined && (t.targetRefs ?? []).length > 0)
    r.add(p.field('targetRef'), 'only one of targetRef or targetRefs can be set');
  if (t.selector !== undefined)
    checkSelector(t.selector.matchLabels, p.field('selector').field('matchLabels'), r);
  const providers = (list: ProviderRef[] | undefined, lp: FieldPath) =>
    (list ?? []).forEach((ref, i) => {
      if (!ref.name) r.add(lp.field('providers').index(i).field('name'), 'provider name must be set');
    });
  (t.tracing ?? []).forEach((tr, i) => {
    const tp = p.field('tracing').index(i);
    providers(tr.providers, tp);
    const rate = tr.randomSamplingPercentage;
    if (rate !== undefined && !(rate >= 0 && rate <= 100))
      r.add(tp.field('randomSamplingPercentage'), `must be in [0.0, 100.0], got ${rate}`);
  });
  (t.metrics ?? []).forEach((m, i) => {
    providers(m.providers, p.field('metrics').index(i));
  });
  (t.accessLogging ?? []).forEach((a, i) => {
    providers(a.providers, p.field('accessLogging').index(i));
  });
}

/**
 * Whether sidecars with `labels` in `namespace` send access logs to the replicas under the
 * Telemetry objects `telemetries` (Istio's precedence: workload selector in the namespace, then the
 * namespace's Telemetry without selector, then the root namespace's). Within the deciding object,
 * the first `accessLogging` entry decides: `disabled: true` off, else on when it names the provider
 * {@link MERIDIAN_ACCESS_LOG_PROVIDER}.
 */
export function accessLoggingEnabled(
  telemetries: readonly {
    readonly metadata: { readonly name: string; readonly namespace?: string | undefined };
    readonly spec: Telemetry;
  }[],
  proxy: { readonly namespace: string; readonly labels: Readonly<Record<string, string>> },
  rootNamespace: string,
): boolean {
  const selects = (t: Telemetry) => {
    const sel = t.selector?.matchLabels ?? {};
    return Object.entries(sel).every(([k, v]) => proxy.labels[k] === v);
  };
  const hasSelector = (t: Telemetry) => Object.keys(t.selector?.matchLabels ?? {}).length > 0;
  const byName = [...telemetries].sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : 1));
  const ns = (t: (typeof byName)[number]) => t.metadata.namespace ?? 'default';
  const decider =
    byName.find((t) => ns(t) === proxy.namespace && hasSelector(t.spec) && selects(t.spec)) ??
    byName.find((t) => ns(t) === proxy.namespace && !hasSelector(t.spec)) ??
    byName.find((t) => ns(t) === rootNamespace && !hasSelector(t.spec));
  // `match.mode` (client or server side only) is not told apart: both directions log.
  const first = decider?.spec.accessLogging?.[0];
  if (!first) return false;
  if (first.disabled === true) return false;
  return (first.providers ?? []).some((p) => p.name === MERIDIAN_ACCESS_LOG_PROVIDER);
}
