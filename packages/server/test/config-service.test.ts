// The config API's rules over the in-memory store (same contract as etcd): validation first,
// resourceVersion compare-and-swap, all-or-nothing, kubectl's messages, writes refused while the
// store is known to be down.
import { Keyspace, MemoryStore } from '@meridian/store';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ClusterState } from '../src/cluster-state.js';
import { ConfigService, MAX_APPLY_OBJECTS } from '../src/config-service.js';
import { AdminError } from '../src/errors.js';

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
  it("returns analyze's findings about the applied objects (never a refusal): MER0001 for an AuthorizationPolicy proxyless gRPC cannot enforce", async () => {
    const res = await config.applyText(`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: jwt, namespace: shop}
spec:
  rules:
  - from:
    - source: {requestPrincipals: ["*"]}
`);
    expect(res.items.map((i) => i.action)).toEqual(['created']);
    expect(res.warnings?.map((w) => [w.code, w.object, w.path])).toEqual([
      ['MER0001', 'AuthorizationPolicy/shop/jwt', 'spec.rules[0].from[0].source.requestPrincipals'],
    ]);
    expect((await config.applyText(vs('5s'))).warnings).toBeUndefined();
  });

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

describe('applies larger than one etcd transaction (issue 15, item 1)', () => {
  const se = (i: number, port = 80) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: svc-${i}, namespace: bulk}
spec:
  hosts: [svc-${i}.bulk.svc.cluster.local]
  ports: [{number: ${port}, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.0.${Math.floor(i / 250)}.${(i % 250) + 1}}]
`;
  const many = (from: number, to: number, port = 80) =>
    Array.from({ length: to - from }, (_, i) => se(from + i, port)).join('---\n');

  let small: MemoryStore;
  let state: ClusterState;
  let seen: number[];

  beforeEach(async () => {
    // etcd's limit made small, so that a few hundred objects need many transactions.
    small = new MemoryStore({ keyspace: Keyspace.of('m', 'c'), maxTxnOps: 8 });
    seen = [];
    state = new ClusterState(
      small,
      pino({ level: 'silent' }),
      () => seen.push(state.list('config/ServiceEntry/').length),
      () => undefined,
    );
    await state.start();
    config = new ConfigService(small, availability, state, { log: pino({ level: 'silent' }) });
  });
  afterEach(async () => {
    config.close();
    await state.close();
  });

  const settled = () => new Promise((r) => setTimeout(r, 20));

  it('is all or nothing and seen by a watcher at once, whatever the transaction limit', async () => {
    const created = await config.applyText(many(0, 300));
    expect(created.items).toHaveLength(300);
    expect(new Set(created.items.map((i) => i.resourceVersion))).toEqual(new Set([String(created.revision)]));
    await settled();
    expect(seen).toEqual([300]);
    // Folded (in the background, after the answer): every object under config/ with its
    // resourceVersion, no staging left.
    await config.folded();
    expect((await small.list('config-staging/')).items).toEqual([]);
    expect((await small.list('config/ServiceEntry/')).items).toHaveLength(300);
    const listed = await config.list('ServiceEntry');
    expect(listed.items).toHaveLength(300);
    expect(new Set(listed.items.map((o) => o.metadata.resourceVersion))).toEqual(
      new Set([String(created.revision)]),
    );
    // The fold changed nothing visible: no second change.
    expect(state.revision).toBe(created.revision);

    // Again, half of them changed and ten new: unchanged ones keep their version, one change seen.
    const next = await config.applyText(`${many(0, 150, 81)}---\n${many(150, 310)}`);
    expect(next.items.filter((i) => i.action === 'configured')).toHaveLength(150);
    expect(next.items.filter((i) => i.action === 'created')).toHaveLength(10);
    const unchanged = next.items.filter((i) => i.action === 'unchanged');
    expect(unchanged).toHaveLength(150);
    expect(new Set(unchanged.map((i) => i.resourceVersion))).toEqual(new Set([String(created.revision)]));
    await settled();
    expect(seen).toEqual([300, 310]);
    const got = await config.get('ServiceEntry', 'bulk', 'svc-3');
    expect(got.metadata.resourceVersion).toBe(String(next.revision));
    expect(JSON.stringify(got.spec)).toContain('81');
  });

  it('a stale resourceVersion in a large apply fails all of it', async () => {
    await config.applyText(many(0, 50));
    const stale = many(0, 50, 82).replace('namespace: bulk}', 'namespace: bulk, resourceVersion: "1"}');
    const error = await failure(config.applyText(stale));
    expect(error.code).toBe('CONFLICT');
    await settled();
    expect(seen).toEqual([50]);
    expect(JSON.stringify((await config.list('ServiceEntry')).items)).not.toContain('82');
  });

  it('a commit whose writer died before folding is visible to readers and watchers, and folded by the next writer', async () => {
    // What a writer leaves when it dies right after its flip: staging and config-commit naming it.
    const enc = new TextEncoder();
    for (let i = 0; i < 20; i++)
      await small.put(
        `config-staging/x1-dead/ServiceEntry/bulk/svc-${i}`,
        enc.encode(
          JSON.stringify({
            apiVersion: 'networking.istio.io/v1',
            kind: 'ServiceEntry',
            metadata: { name: `svc-${i}`, namespace: 'bulk' },
            spec: {
              hosts: [`svc-${i}.example`],
              resolution: 'NONE',
              ports: [{ number: 80, name: 'http', protocol: 'HTTP' }],
            },
          }),
        ),
      );
    await settled();
    expect(seen).toEqual([]); // staged, not committed: invisible
    expect((await config.list('ServiceEntry')).items).toEqual([]);
    const { revision } = await small.put('config-commit', enc.encode('{"applyId":"x1-dead"}'));
    await settled();
    expect(seen).toEqual([20]);
    const listed = await config.list('ServiceEntry');
    expect(listed.items.map((o) => o.metadata.resourceVersion)).toEqual(Array(20).fill(String(revision)));
    // The next write folds it first; the fold is invisible, the write is one change.
    await config.applyText(dr);
    await settled();
    expect(seen).toEqual([20, 20]);
    expect((await small.list('config-staging/')).items).toEqual([]);
    expect((await config.get('ServiceEntry', 'bulk', 'svc-7')).metadata.resourceVersion).toBe(
      String(revision),
    );
    await config.delete('ServiceEntry', 'bulk', 'svc-7', String(revision));
    await settled();
    expect(seen).toEqual([20, 20, 19]);
  });

  it('refuses more than MAX_APPLY_OBJECTS objects with a 413 naming the limit', async () => {
    const error = await failure(config.apply(Array(MAX_APPLY_OBJECTS + 1).fill({})));
    expect(error.code).toBe('TOO_LARGE');
    expect(error.httpStatus).toBe(413);
    expect(error.message).toBe(
      `apply of ${MAX_APPLY_OBJECTS + 1} objects refused: at most ${MAX_APPLY_OBJECTS} objects per apply (MAX_APPLY_OBJECTS); split the file`,
    );
  });
});
