// LocalViewBuilder (indexed, memoized) against a plain reading of the selection rule: for each
// ServiceEntry with a workloadSelector, every WorkloadEntry then every registration of its namespace
// whose labels carry all of the selector's, in input order. Random meshes and random edit sequences;
// the builder is reused across the sequence, as LocalSource reuses it.
import type { ServiceEntryConfig, WorkloadEntryConfig } from '@meridian/api';
import { createRegistrySnapshot, type Endpoint } from '@meridian/translate';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LocalSource, Registry, toRegistration, type WorkloadRegistration } from '../src/index.js';
import { type LocalInputs, LocalViewBuilder } from '../src/local.js';

const NAMESPACES = ['a', 'b'];
const label = fc.record(
  { app: fc.constantFrom('x', 'y', 'z'), version: fc.constantFrom('v1', 'v2') },
  { requiredKeys: [] },
);

const serviceEntry = (
  i: number,
  ns: string,
  selector: Record<string, string> | undefined,
): ServiceEntryConfig => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'ServiceEntry',
  metadata: { name: `se${i}`, namespace: ns },
  spec: {
    hosts: [`se${i}.${ns}.svc.cluster.local`],
    ports: [{ number: 80, name: 'http', protocol: 'HTTP' }],
    resolution: 'STATIC',
    ...(selector ? { workloadSelector: { labels: selector } } : { endpoints: [{ address: `192.0.2.${i}` }] }),
  },
});

const workloadEntry = (
  i: number,
  ns: string,
  meta: Record<string, string>,
  spec: Record<string, string>,
  weight: number,
): WorkloadEntryConfig => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'WorkloadEntry',
  metadata: { name: `we${i}`, namespace: ns, labels: meta },
  spec: { address: `10.0.0.${i}`, labels: spec, weight, locality: 'r/z' },
});

const registration = (i: number, ns: string, labels: Record<string, string>): WorkloadRegistration =>
  toRegistration(
    { name: `r${i}`, namespace: ns, address: `10.1.0.${i}`, labels, ports: { http: 80 }, health: 'HEALTHY' },
    'replica',
    new Date(0),
  );

const matches = (selector: Record<string, string>, labels: Record<string, string>) =>
  Object.entries(selector).every(([k, v]) => labels[k] === v);

/** The selection rule read plainly: addresses per hostname, in the order the rule gives. */
function expected(inputs: LocalInputs): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const se of inputs.serviceEntries) {
    const ns = se.metadata.namespace;
    const selector = se.spec.workloadSelector?.labels;
    const addresses = selector
      ? [
          ...inputs.workloadEntries
            .filter(
              (we) =>
                we.metadata.namespace === ns &&
                matches(selector, { ...(we.metadata.labels ?? {}), ...(we.spec.labels ?? {}) }),
            )
            .map((we) => `${we.spec.address}/${we.spec.weight}`),
          ...inputs.registrations
            .filter((r) => r.namespace === ns && matches(selector, r.labels))
            .map((r) => `${r.address}/${r.weight}`),
        ]
      : (se.spec.endpoints ?? []).map((e) => `${e.address}/1`);
    for (const host of se.spec.hosts ?? []) out.set(host, addresses);
  }
  return out;
}

const seen = (eps: readonly Endpoint[]) => eps.map((e) => `${e.address}/${e.weight}`);

const meshArb = fc.record({
  services: fc.array(fc.tuple(fc.constantFrom(...NAMESPACES), fc.option(label, { nil: undefined })), {
    maxLength: 6,
  }),
  workloads: fc.array(
    fc.tuple(fc.constantFrom(...NAMESPACES), label, label, fc.integer({ min: 1, max: 3 })),
    {
      maxLength: 12,
    },
  ),
  registrations: fc.array(fc.tuple(fc.constantFrom(...NAMESPACES), label), { maxLength: 4 }),
});

type Edit =
  | { kind: 'relabel'; index: number; labels: Record<string, string> }
  | { kind: 'weight'; index: number; weight: number }
  | { kind: 'remove'; index: number }
  | { kind: 'reselect'; index: number; selector: Record<string, string> };

const editArb: fc.Arbitrary<Edit> = fc.oneof(
  fc.record({ kind: fc.constant('relabel' as const), index: fc.nat(), labels: label }),
  fc.record({
    kind: fc.constant('weight' as const),
    index: fc.nat(),
    weight: fc.integer({ min: 1, max: 3 }),
  }),
  fc.record({ kind: fc.constant('remove' as const), index: fc.nat() }),
  fc.record({ kind: fc.constant('reselect' as const), index: fc.nat(), selector: label }),
);

describe('LocalViewBuilder', () => {
  it('selects the same endpoints as the plain rule, through any sequence of edits', () => {
    fc.assert(
      fc.property(meshArb, fc.array(editArb, { maxLength: 8 }), (mesh, edits) => {
        let inputs: LocalInputs = {
          serviceEntries: mesh.services.map(([ns, sel], i) => serviceEntry(i, ns, sel)),
          workloadEntries: mesh.workloads.map(([ns, meta, spec, w], i) =>
            workloadEntry(i, ns, meta, spec, w),
          ),
          registrations: mesh.registrations.map(([ns, l], i) => registration(i, ns, l)),
        };
        const builder = new LocalViewBuilder('c1');
        const local = new LocalSource('c1');
        const registry = new Registry([local]);
        for (let step = 0; ; step++) {
          const view = builder.build(inputs);
          const want = expected(inputs);
          // The registry's reusing snapshot equals a fresh one of the same view.
          local.update(inputs);
          const merged = registry.snapshot(step + 1);
          const fresh = createRegistrySnapshot(step + 1, view.services, view.endpoints);
          expect(merged.services).toEqual(fresh.services);
          expect([...merged.endpoints]).toEqual([...fresh.endpoints]);
          expect(new Map([...view.endpoints].map(([h, eps]) => [h, seen(eps)]))).toEqual(want);
          expect(view.services.map((s) => s.hostname).sort()).toEqual([...want.keys()].sort());
          const edit = edits[step];
          if (!edit) break;
          const wes = [...inputs.workloadEntries];
          const ses = [...inputs.serviceEntries];
          if (edit.kind === 'reselect' && ses.length > 0) {
            const i = edit.index % ses.length;
            const old = ses[i]!;
            ses[i] = serviceEntry(i, old.metadata.namespace, edit.selector);
          } else if (edit.kind !== 'reselect' && wes.length > 0) {
            const i = edit.index % wes.length;
            const old = wes[i]!;
            if (edit.kind === 'remove') wes.splice(i, 1);
            else
              wes[i] = {
                ...old,
                spec: {
                  ...old.spec,
                  ...(edit.kind === 'relabel' ? { labels: edit.labels } : { weight: edit.weight }),
                },
              };
          }
          inputs = { ...inputs, serviceEntries: ses, workloadEntries: wes };
        }
      }),
      { numRuns: 300 },
    );
  });

  it('keeps the identity of an endpoint list whose members did not change', () => {
    const ses = [
      serviceEntry(1, 'a', { app: 'x' }),
      serviceEntry(2, 'a', { app: 'y' }),
      serviceEntry(3, 'b', undefined),
    ];
    const wes = [workloadEntry(1, 'a', {}, { app: 'x' }, 1), workloadEntry(2, 'a', {}, { app: 'y' }, 1)];
    const builder = new LocalViewBuilder('c1');
    const first = builder.build({ serviceEntries: ses, workloadEntries: wes, registrations: [] });
    // we2 gets a new weight: only se2's list changes.
    const edited = [wes[0]!, { ...wes[1]!, spec: { ...wes[1]!.spec, weight: 5 } }];
    const second = builder.build({ serviceEntries: ses, workloadEntries: edited, registrations: [] });
    const host = (i: number, ns = 'a') => `se${i}.${ns}.svc.cluster.local`;
    expect(second.endpoints.get(host(1))).toEqual(first.endpoints.get(host(1)));
    expect(second.endpoints.get(host(1))![0]).toBe(first.endpoints.get(host(1))![0]);
    expect(seen(second.endpoints.get(host(2))!)).toEqual(['10.0.0.2/5']);
    expect(second.services[0]).toBe(first.services[0]);
    expect(second.endpoints.get(host(3, 'b'))![0]).toBe(first.endpoints.get(host(3, 'b'))![0]);
  });

  it('through LocalSource and Registry: an edited workload reaches its service, other lists keep their identity', () => {
    const ses = [serviceEntry(1, 'a', { app: 'x' }), serviceEntry(2, 'a', { app: 'y' })];
    const wes = [workloadEntry(1, 'a', {}, { app: 'x' }, 1), workloadEntry(2, 'a', {}, { app: 'y' }, 1)];
    const local = new LocalSource('c1');
    const registry = new Registry([local]);
    local.update({ serviceEntries: ses, workloadEntries: wes, registrations: [] });
    const first = registry.snapshot(1);
    // The same inputs again: the same snapshot object.
    local.update({ serviceEntries: [...ses], workloadEntries: [...wes], registrations: [] });
    expect(registry.snapshot(2)).toBe(first);
    const edited = [wes[0]!, { ...wes[1]!, spec: { ...wes[1]!.spec, weight: 7, address: '10.9.9.9' } }];
    local.update({ serviceEntries: ses, workloadEntries: edited, registrations: [] });
    const third = registry.snapshot(3);
    const host = (i: number) => `se${i}.a.svc.cluster.local`;
    expect(third).not.toBe(first);
    expect(third.endpoints.get(host(1))).toBe(first.endpoints.get(host(1)));
    expect(seen(third.endpoints.get(host(2))!)).toEqual(['10.9.9.9/7']);
    expect(third.services).toBe(first.services);
  });
});
