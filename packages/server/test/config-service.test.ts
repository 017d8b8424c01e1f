// The config API's rules over the in-memory store (same contract as etcd): validation first,
// resourceVersion compare-and-swap, all-or-nothing, kubectl's messages, writes refused while the
// store is known to be down.
import { Keyspace, MemoryStore } from '@meridian/store';
import { beforeEach, describe, expect, it } from 'vitest';
import { AdminError, ConfigService } from '../src/index.js';

const vs = (timeout: string, extraMeta = '') => `apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: reviews
  namespace: default${extraMeta}
spec:
  hosts: [reviews]
  http:
  - timeout: ${timeout}
    route:
    - destination: {host: reviews}
`;
const dr = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec: {host: reviews}
`;

let store: MemoryStore;
let availability: { unavailableSince: number | undefined };
let config: ConfigService;

async function failure(p: Promise<unknown>): Promise<AdminError> {
  const error = await p.then(
    () => {
      throw new Error('expected an AdminError');
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(AdminError);
  return error as AdminError;
}

beforeEach(() => {
  store = new MemoryStore({ keyspace: Keyspace.of('m', 'c') });
  availability = { unavailableSince: undefined };
  config = new ConfigService(store, availability);
});

describe('ConfigService', () => {
  it('creates, reports unchanged, configures, and stores the canonical v1 form', async () => {
    const created = await config.applyText(`${vs('5s')}---\n${dr}`);
    expect(created.items.map((i) => i.action)).toEqual(['created', 'created']);
    expect((await config.applyText(vs('5s'))).items[0]!.action).toBe('unchanged');
    const configured = await config.applyText(vs('6s'));
    expect(configured.items[0]!.action).toBe('configured');
    const got = await config.get('VirtualService', 'default', 'reviews');
    expect(got.apiVersion).toBe('networking.istio.io/v1');
    expect(got.metadata.resourceVersion).toBe(String(configured.revision));
    expect((await config.list('DestinationRule')).items.map((o) => o.metadata.name)).toEqual(['reviews']);
  });

  it('refuses a stale resourceVersion with kubectl’s conflict message and keeps the stored object', async () => {
    const first = await config.applyText(vs('5s'));
    const rv = first.items[0]!.resourceVersion;
    const second = await config.applyText(vs('6s', `\n  resourceVersion: "${rv}"`));
    const error = await failure(config.applyText(vs('7s', `\n  resourceVersion: "${rv}"`)));
    expect(error.code).toBe('CONFLICT');
    expect(error.httpStatus).toBe(409);
    expect(error.message).toBe(
      `Operation cannot be fulfilled on virtualservices.networking.istio.io "reviews": the object has been modified; please apply your changes to the latest version and try again (resourceVersion ${rv}, current ${second.revision})`,
    );
    expect(JSON.stringify(await config.get('VirtualService', 'default', 'reviews'))).toContain('"6s"');
  });

  it('writes nothing when one object of a multi-object apply is invalid', async () => {
    const error = await failure(config.applyText(`${dr}---\n${vs('-1s')}`));
    expect(error.code).toBe('INVALID_CONFIG');
    expect(error.details.errors?.map((e) => `${e.object} ${e.path}`)).toEqual([
      'VirtualService/default/reviews spec.http[0].timeout',
    ]);
    expect((await store.list('')).items).toEqual([]);
  });

  it('deletes with kubectl’s not-found message, and only at the given resourceVersion', async () => {
    const { revision } = await config.applyText(dr);
    const stale = await failure(config.delete('DestinationRule', 'default', 'reviews', String(revision - 1)));
    expect(stale.code).toBe('CONFLICT');
    await config.delete('DestinationRule', 'default', 'reviews', String(revision));
    const gone = await failure(config.delete('DestinationRule', 'default', 'reviews'));
    expect(gone.code).toBe('NOT_FOUND');
    expect(gone.message).toBe('destinationrules.networking.istio.io "reviews" not found');
  });

  it('refuses writes at once while the store is known to be unavailable', async () => {
    availability.unavailableSince = Date.parse('2026-01-02T03:04:05.000Z');
    const error = await failure(config.applyText(dr));
    expect(error.code).toBe('STORE_UNAVAILABLE');
    expect(error.message).toBe(
      'store unavailable since 2026-01-02T03:04:05.000Z: apply refused; the write was not applied',
    );
    expect((await store.list('')).items).toEqual([]);
  });
});
