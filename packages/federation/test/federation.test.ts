/**
 * Federation between two NATS clusters (east, west) joined by a gateway, JetStream on, and the
 * generated per-cluster nkey users and permissions in force (issue 7, items 1-4).
 */

import { eventually, type NatsSupercluster, startNatsSupercluster, tcpProxy } from '@meridian/testkit';
import { jetstreamManager } from '@nats-io/jetstream';
import { type NatsConnection, nkeyAuthenticator, type Status } from '@nats-io/transport-node';
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import {
  type ClusterCredentials,
  type ExportedServiceState,
  ExporterFencedError,
  encodeMessage,
  FederationExporter,
  FederationImporter,
  generateClusterCredentials,
  type ImportChange,
  type ImporterOptions,
  memoryImportCache,
  renderNatsAuthorization,
  type ServiceRecord,
  Subjects,
  serviceId,
  WireFormatError,
} from '../src/index.js';
import { log, MESH, natsConnect, sleep, svc, waitView } from './helpers.js';

const subjects = new Subjects(MESH);

/** Collects on demand (no export interval): `await reader.collect()`. */
class TestReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}
let sc: NatsSupercluster;
let east: ClusterCredentials;
let west: ClusterCredentials;
const stoppers: (() => Promise<unknown>)[] = [];

function auth(c: ClusterCredentials) {
  return { authenticator: nkeyAuthenticator(new TextEncoder().encode(c.seed!)) };
}
async function conn(
  cluster: 'east' | 'west',
  extra: Parameters<typeof natsConnect>[1] = {},
): Promise<NatsConnection> {
  const nc = await natsConnect(sc.clusters[cluster]![0]!.url, {
    ...auth(cluster === 'east' ? east : west),
    ...extra,
  });
  stoppers.push(() => nc.close());
  return nc;
}
async function admin(cluster: 'east' | 'west'): Promise<NatsConnection> {
  const nc = await natsConnect(sc.clusters[cluster]![0]!.url, { user: 'admin', pass: 'admin' });
  stoppers.push(() => nc.close());
  return nc;
}
async function exporter(nc: NatsConnection, epoch: number, extra: { heartbeatIntervalMs?: number } = {}) {
  const e = await FederationExporter.start({ nc, mesh: MESH, cluster: 'east', epoch, logger: log, ...extra });
  stoppers.push(() => e.stop());
  return e;
}
async function importer(opts: Partial<ImporterOptions> & { nc: ImporterOptions['nc'] }, wait = true) {
  const i = new FederationImporter({ mesh: MESH, localCluster: 'west', logger: log, ...opts });
  stoppers.push(() => i.stop());
  await i.start();
  if (wait) await i.ready();
  return i;
}
function record(changes: ImportChange[], imp: FederationImporter) {
  return imp.onChange((c) => changes.push(c));
}
/** The importer's view of east as `serviceId -> endpoint addresses (sorted)`. */
function summary(imp: FederationImporter): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [id, s] of imp.view.services) out[id] = s.endpoints.map((e) => e.address).join(',');
  return out;
}
function expected(states: Iterable<ExportedServiceState>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const s of states)
    out[serviceId('east', s.service.namespace, s.service.hostname)] = s.endpoints
      .map((e) => e.address)
      .sort()
      .join(',');
  return out;
}

beforeAll(async () => {
  east = generateClusterCredentials('east');
  west = generateClusterCredentials('west');
  const conf = renderNatsAuthorization({
    mesh: MESH,
    clusters: [east, west],
    // A deliberately permissive user: the "misconfigured" case of the trust tests, and test cleanup.
    extraUsers: ['{ user: "admin", password: "admin" }'],
  });
  sc = await startNatsSupercluster({
    clusters: [{ name: 'east' }, { name: 'west' }],
    jetstream: true,
    configExtra: () => conf,
  });
}, 60_000);

afterEach(async () => {
  for (const stop of stoppers.splice(0).reverse()) await stop().catch(() => undefined);
  if (sc.clusters.east![0]!.running) {
    const nc = await natsConnect(sc.clusters.east![0]!.url, { user: 'admin', pass: 'admin' });
    try {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.delete(subjects.stream('east')).catch(() => undefined);
    } finally {
      await nc.close();
    }
  }
});

afterAll(async () => {
  await sc?.stop();
});

describe('export and import across the gateway', () => {
  test('services exported in east show up in west; updates and removals follow; exportTo is honoured', async () => {
    const exp = await exporter(await conn('east'), 1);
    const imp = await importer({ nc: conn('west') });
    const changes: ImportChange[] = [];
    record(changes, imp);

    const a = svc('east', 'a', 2);
    const b = svc('east', 'b', 1, { k: 2 });
    const local = svc('east', 'local-only', 1, { exportTo: ['.'] });
    const t0 = performance.now();
    const res = await exp.sync([a, b, local]);
    expect(res).toMatchObject({ written: 2, deleted: 0, unchanged: 0 });
    expect(res.skipped).toEqual([
      {
        namespace: 'default',
        hostname: 'local-only.default.svc.cluster.local',
        reason: 'exportTo ["."] keeps the service inside its namespace',
      },
    ]);
    await waitView(imp, (v) => v.services.size === 2, 10_000, 'a and b imported');
    log.info({ ms: performance.now() - t0 }, 'sync -> west view');
    const ia = imp.view.services.get(serviceId('east', 'default', 'a.default.svc.cluster.local'))!;
    expect(ia).toMatchObject({ cluster: 'east', stale: false, epoch: 1, service: a.service });
    expect(ia.endpoints).toEqual(a.endpoints);
    expect(imp.view.services.has(serviceId('east', 'default', 'local-only.default.svc.cluster.local'))).toBe(
      false,
    );

    changes.length = 0;
    const a3 = svc('east', 'a', 3);
    await exp.upsert(a3);
    await waitView(
      imp,
      (v) =>
        v.services.get(serviceId('east', 'default', 'a.default.svc.cluster.local'))?.endpoints.length === 3,
    );
    expect(changes.flatMap((c) => c.changed)).toEqual([
      { cluster: 'east', namespace: 'default', hostname: 'a.default.svc.cluster.local' },
    ]);

    changes.length = 0;
    expect(await exp.sync([a3])).toMatchObject({ written: 0, deleted: 1, unchanged: 1 });
    await waitView(imp, (v) => v.services.size === 1, 10_000, 'b removed');
    expect(changes.flatMap((c) => c.changed)).toEqual([
      { cluster: 'east', namespace: 'default', hostname: 'b.default.svc.cluster.local' },
    ]);
    expect(imp.stats().rejected).toEqual({});

    // Bad input is refused with the field named, and the previous export of that service stays.
    const bad = { ...a3, endpoints: [{ ...a3.endpoints[0]!, cluster: 'west' }] };
    const why =
      'federation message (from export of default/a.default.svc.cluster.local): endpoints[0].cluster is "west", the origin is "east"';
    await expect(exp.upsert(bad)).rejects.toThrow(
      new WireFormatError(why, {
        reason: 'origin_mismatch',
        field: 'endpoints[0].cluster',
        subject: 'export of default/a.default.svc.cluster.local',
      }),
    );
    const res2 = await exp.sync([bad]);
    expect(res2).toEqual({
      written: 0,
      deleted: 0,
      unchanged: 0,
      skipped: [{ namespace: 'default', hostname: 'a.default.svc.cluster.local', reason: why }],
    });
    await sleep(200);
    expect(
      imp.view.services.get(serviceId('east', 'default', 'a.default.svc.cluster.local'))!.endpoints,
    ).toHaveLength(3);
  });

  test('a late-joining importer gets the full state from JetStream; a replica without NATS serves its cache', async () => {
    const exp = await exporter(await conn('east'), 1);
    const states = Array.from({ length: 40 }, (_, i) => svc('east', `s${i}`, 1 + (i % 3), { k: i % 200 }));
    await exp.sync(states);

    // Started after every publish: everything it has comes from the KV bucket.
    const cache = memoryImportCache();
    const late = await importer({ nc: conn('west'), cache });
    expect(summary(late)).toEqual(expected(states));
    await late.stop();
    expect(cache.saved?.records).toHaveLength(40);

    // NATS "unreachable": the connection never comes. The cached state is served, then marked stale.
    const offline = await importer(
      { nc: new Promise<NatsConnection>(() => {}), cache, graceMs: 1_500 },
      false,
    );
    expect(summary(offline)).toEqual(expected(states));
    expect([...offline.view.services.values()].every((s) => !s.stale)).toBe(true);
    const v = await waitView(offline, (v) => v.staleClusters.has('east'), 10_000, 'cached east marked stale');
    expect(
      [...v.services.values()].every((s) => s.stale && s.endpoints.every((e) => e.health === 'UNHEALTHY')),
    ).toBe(true);
    expect(v.services.size).toBe(40);

    // NATS down when the replica starts, up later: the cache is served at once, and once the
    // connection comes (waitOnFirstConnect) the importer attaches and catches up with what changed.
    const link = await tcpProxy({ target: { host: '127.0.0.1', port: sc.clusters.west![0]!.port } });
    stoppers.push(() => link.close());
    await link.cut();
    const pending = natsConnect(`nats://${link.address}`, {
      ...auth(west),
      waitOnFirstConnect: true,
      ignoreClusterUpdates: true,
    });
    // (bounded: if the test failed before the heal, the connection never came)
    stoppers.push(() => Promise.race([pending.then((nc) => nc.close()), sleep(1_000)]));
    const later = await importer({ nc: pending, cache }, false);
    expect(summary(later)).toEqual(expected(states));
    const changed = svc('east', 's0', 4, { k: 7 });
    await exp.upsert(changed);
    await sleep(300);
    expect(summary(later)).toEqual(expected(states)); // still offline
    await link.heal();
    await later.ready();
    expect(summary(later)).toEqual(expected([changed, ...states.slice(1)]));
  });

  test('duplicate and out-of-order messages never replace newer state', async () => {
    const ncE = await conn('east');
    const exp = await exporter(ncE, 5);
    const imp = await importer({ nc: conn('west') });
    // Capture the raw records of service a as they cross the gateway.
    const raw: Uint8Array[] = [];
    const ncW = await conn('west');
    const sub = ncW.subscribe(subjects.service('east', 'default', 'a.default.svc.cluster.local'), {
      callback: (_e, m) => {
        raw.push(m.data);
      },
    });
    await ncW.flush();
    for (const n of [1, 2, 3]) await exp.upsert(svc('east', 'a', n));
    await eventually('three records of a', () => raw.length === 3, 10_000);
    sub.unsubscribe();
    const id = serviceId('east', 'default', 'a.default.svc.cluster.local');
    await waitView(imp, (v) => v.services.get(id)?.endpoints.length === 3);
    const version = imp.view.version;
    const changes: ImportChange[] = [];
    record(changes, imp);

    // Replay older (seq 1, 2) and duplicate (seq 3) records on east's subject, from east's connection,
    // then a fresh service: once b is in, the replays have been processed (one connection: in order).
    const subject = subjects.service('east', 'default', 'a.default.svc.cluster.local');
    for (const i of [1, 0, 2, 2, 0]) ncE.publish(subject, raw[i]!);
    await exp.upsert(svc('east', 'b', 1));
    await waitView(imp, (v) => v.services.size === 2, 10_000, 'b imported');
    expect(imp.view.services.get(id)!.endpoints).toHaveLength(3);
    expect(imp.view.services.get(id)!.seq).toBe(3);
    expect(changes.flatMap((c) => c.changed.map((r) => r.hostname))).toEqual(['b.default.svc.cluster.local']);
    expect(imp.view.version).toBe(version + 1);
    expect(imp.stats().rejected).toEqual({});
  });

  test('a leader change during a burst of changes: west ends with exactly the new leader’s final state', async () => {
    const imp = await importer({ nc: conn('west') });
    const oldLeader = await exporter(await conn('east'), 10);
    const fencedBy: ExporterFencedError[] = [];
    oldLeader.onFenced((e) => fencedBy.push(e));
    const keys = Array.from({ length: 20 }, (_, k) => k);
    const round = (e: FederationExporter, r: number) =>
      Promise.all(keys.map((k) => e.upsert(svc('east', `burst${k}`, 1 + ((r + k) % 4), { k: r % 250 }))));
    // The old leader changes every service, round after round, until it is fenced.
    let oldRounds = 0;
    let oldError: unknown;
    const oldLoop = (async () => {
      try {
        for (let r = 0; r < 2_000; r++) {
          await round(oldLeader, r);
          oldRounds++;
        }
      } catch (err) {
        oldError = err;
      }
    })();
    await eventually('old leader bursting', () => oldRounds >= 3, 10_000);
    // The new leader takes over mid-burst, changes everything a few times, then syncs the final local state.
    const newLeader = await exporter(await conn('east'), 11);
    for (let r = 0; r < 5; r++) await round(newLeader, 1_000 + r);
    const final = keys.map((k) => svc('east', `burst${k}`, 1 + (k % 3), { k: 251 }));
    await newLeader.sync(final);
    await oldLoop;
    log.info({ oldRounds }, 'old leader rounds before it was fenced');
    expect(oldError).toBeInstanceOf(ExporterFencedError);
    expect(oldError).toMatchObject({ code: 'EXPORTER_FENCED', cluster: 'east', epoch: 10, newerEpoch: 11 });
    expect(fencedBy).toHaveLength(1);
    expect(fencedBy[0]!.message).toMatch(
      /^exporter of cluster "east" with epoch 10 is fenced: key "(meta|svc\.default\.burst\d+\.default\.svc\.cluster\.local)" holds epoch 11$/,
    );
    await expect(oldLeader.upsert(svc('east', 'zombie', 1))).rejects.toThrow(ExporterFencedError);

    const want = expected(final);
    await eventually(
      'final state of the new leader',
      () => JSON.stringify(summary(imp)) === JSON.stringify(want),
      15_000,
    );
    // A late joiner reading JetStream agrees.
    const late = await importer({ nc: conn('west') });
    expect(summary(late)).toEqual(want);
    expect([...late.view.services.values()].every((s) => s.epoch === 11)).toBe(true);
  });
  test('a new leader re-exporting the same content causes no change event (no push on takeover)', async () => {
    const first = await exporter(await conn('east'), 30);
    const a = svc('east', 'a', 3, { labels: { app: 'a', tier: 'web' } });
    await first.sync([a]);
    const imp = await importer({ nc: conn('west') });
    expect(imp.view.services.size).toBe(1);
    const changes: ImportChange[] = [];
    record(changes, imp);
    // Same content, built differently: labels in another insertion order, endpoints reversed.
    const same = {
      service: { ...a.service, labels: { tier: 'web', app: 'a' } },
      endpoints: [...a.endpoints].reverse().map((e) => ({ ...e, labels: { ...e.labels } })),
    };
    await first.stop();
    const second = await exporter(await conn('east'), 31);
    expect(await second.sync([same])).toMatchObject({ written: 1 });
    await eventually(
      'the new leader record processed',
      () => imp.clusterStatus()[0]?.epoch === 31 && imp.clusterStatus()[0]?.watermark === 1,
      10_000,
    );
    await sleep(200);
    expect(changes).toEqual([]);
  });

  test('an idle deposed exporter is fenced as soon as the new leader claims the bucket', async () => {
    const old = await exporter(await conn('east'), 20);
    await old.sync([svc('east', 'a', 1)]);
    const fenced = new Promise<ExporterFencedError>((resolve) => old.onFenced(resolve));
    await exporter(await conn('east'), 21);
    const err = await fenced;
    expect(err.message).toBe('exporter of cluster "east" with epoch 20 is fenced: key "meta" holds epoch 21');
    await expect(old.upsert(svc('east', 'a', 2))).rejects.toThrow(err);
    // An exporter may not start with an epoch that is not newer than the bucket's.
    await expect(exporter(await conn('east'), 21)).rejects.toThrow(
      'exporter of cluster "east" with epoch 21 is fenced: key "meta" holds epoch 21',
    );
  });
});

describe('trust between clusters', () => {
  test('with the generated permissions, east cannot publish as another cluster or touch its bucket', async () => {
    const imp = await importer({ nc: conn('west') });
    const statuses: Status[] = [];
    const ncE = await conn('east');
    (async () => {
      for await (const s of ncE.status()) statuses.push(s);
    })().catch(() => undefined);
    const forged: ServiceRecord = {
      v: 1,
      kind: 'service',
      mesh: MESH,
      origin: 'north',
      epoch: 99,
      seq: 1,
      namespace: 'default',
      hostname: 'forged.default.svc.cluster.local',
      deleted: false,
      service: svc('north', 'forged', 1).service,
      endpoints: svc('north', 'forged', 1).endpoints,
      exportedAt: new Date().toISOString(),
    };
    const forgedSubject = subjects.service('north', 'default', 'forged.default.svc.cluster.local');
    ncE.publish(forgedSubject, encodeMessage(forged));
    await ncE.flush();
    await eventually('permission violation reported', () => statuses.some((s) => s.type === 'error'), 10_000);
    const err = statuses.find((s) => s.type === 'error') as Extract<Status, { type: 'error' }>;
    expect(err.error.name).toBe('PermissionViolationError');
    expect(err.error.message).toBe(`Permissions Violation for Publish to "${forgedSubject}"`);
    // Nor write into another cluster's bucket, nor delete it.
    const kvSubject = `$KV.${subjects.bucket('west')}.svc.default.forged.default.svc.cluster.local`;
    ncE.publish(kvSubject, encodeMessage(forged));
    await ncE.flush();
    await eventually(
      'second violation',
      () => statuses.filter((s) => s.type === 'error').length >= 2,
      10_000,
    );
    expect(
      (statuses.filter((s) => s.type === 'error')[1] as Extract<Status, { type: 'error' }>).error.message,
    ).toBe(`Permissions Violation for Publish to "${kvSubject}"`);
    await sleep(300);
    expect(imp.view.services.size).toBe(0);
    expect(imp.clusterStatus().map((c) => c.cluster)).not.toContain('north');
  });

  test('with a misconfigured permissive user, the importer rejects and counts forged or malformed messages', async () => {
    const reader = new TestReader();
    const provider = new MeterProvider({ readers: [reader] });
    stoppers.push(() => provider.shutdown());
    await exporter(await conn('east'), 1);
    const imp = await importer({ nc: conn('west'), meter: provider.getMeter('test') });
    const nc = await admin('east');
    const base = {
      v: 1,
      kind: 'service',
      mesh: MESH,
      namespace: 'default',
      hostname: 'forged.default.svc.cluster.local',
      deleted: false,
      service: svc('east', 'forged', 1).service,
      endpoints: svc('east', 'forged', 1).endpoints,
    };
    const onEast = subjects.service('east', 'default', 'forged.default.svc.cluster.local');
    const json = (o: unknown) => new TextEncoder().encode(JSON.stringify(o));
    // Claims to come from north, published on east's subject.
    nc.publish(
      onEast,
      json({ ...base, origin: 'north', epoch: 1, seq: 1, endpoints: svc('north', 'forged', 1).endpoints }),
    );
    // Malformed epoch / seq.
    nc.publish(onEast, json({ ...base, origin: 'east', epoch: -1, seq: 1 }));
    nc.publish(onEast, json({ ...base, origin: 'east', epoch: '3', seq: 1 }));
    nc.publish(onEast, json({ ...base, origin: 'east', epoch: 3, seq: 1.5 }));
    nc.publish(onEast, new TextEncoder().encode('{not json'));
    await nc.flush();
    await eventually(
      '5 rejections',
      () => Object.values(imp.stats().rejected).reduce((a, b) => a + b, 0) >= 5,
      10_000,
    );
    expect(imp.stats().rejected).toEqual({ origin_mismatch: 1, malformed: 4 });
    expect(imp.view.services.size).toBe(0);

    // The same figures through OpenTelemetry.
    await eventually('a heartbeat from east', () => imp.stats().imported > 0, 10_000);
    const { resourceMetrics } = await reader.collect();
    const points = (name: string) =>
      resourceMetrics.scopeMetrics
        .flatMap((sm) => sm.metrics)
        .filter((m) => m.descriptor.name === name)
        .flatMap((m) => m.dataPoints as { attributes: Record<string, unknown>; value: unknown }[]);
    const rejected = Object.fromEntries(
      points('meridian_federation_messages_rejected').map((p) => [String(p.attributes.reason), p.value]),
    );
    expect(rejected).toEqual({ origin_mismatch: 1, malformed: 4 });
    expect(points('meridian_federation_clusters_stale').map((p) => p.value)).toEqual([0]);
    const age = points('meridian_federation_heartbeat_age_seconds');
    expect(age.map((p) => p.attributes.cluster)).toEqual(['east']);
    expect(age[0]!.value as number).toBeLessThan(30);
    expect(points('meridian_federation_messages_imported')[0]!.value as number).toBeGreaterThan(0);
  });
});

describe('liveness', () => {
  const heartbeatIntervalMs = 250;

  test('a partition shorter than the grace period causes no change event', async () => {
    // East's exporter reaches NATS through a fault-injecting proxy: cutting it silences east for west
    // exactly as a partition does, without the seconds a NATS server restart takes.
    const server = sc.clusters.east![0]!;
    const proxy = await tcpProxy({ target: { host: '127.0.0.1', port: server.port } });
    stoppers.push(() => proxy.close());
    const ncE = await natsConnect(`nats://${proxy.address}`, { ...auth(east), ignoreClusterUpdates: true });
    stoppers.push(() => ncE.close());
    const exp = await exporter(ncE, 1, { heartbeatIntervalMs });
    await exp.sync([svc('east', 'a', 2), svc('east', 'b', 1)]);
    const graceMs = 10_000;
    const imp = await importer({ nc: conn('west'), graceMs });
    await waitView(imp, (v) => v.services.size === 2);
    const changes: ImportChange[] = [];
    record(changes, imp);
    const cutAt = performance.now();
    await proxy.cut();
    await sleep(1_500);
    await proxy.heal();
    await eventually(
      'east heard again',
      () => (imp.clusterStatus()[0]?.heardAgoMs ?? Infinity) < 2 * heartbeatIntervalMs,
      10_000,
    );
    const silentMs = performance.now() - cutAt;
    log.info({ silentMs, graceMs }, 'partition < grace: observed outage');
    expect(silentMs).toBeLessThan(graceMs); // precondition: the outage was shorter than the grace period
    await sleep(1_000);
    expect(changes).toEqual([]);
    expect(imp.clusterStatus()[0]).toMatchObject({ cluster: 'east', stale: false, services: 2 });
  });

  test('beyond the grace period endpoints are marked unhealthy (kept), and restored from JetStream on heal', async () => {
    const exp = await exporter(await conn('east'), 1, { heartbeatIntervalMs });
    const before = [svc('east', 'a', 2), svc('east', 'b', 1)];
    await exp.sync(before);
    const graceMs = 2_000;
    const imp = await importer({ nc: conn('west'), graceMs });
    await waitView(imp, (v) => v.services.size === 2);
    const changes: ImportChange[] = [];
    record(changes, imp);
    const server = sc.clusters.east![0]!;
    await server.kill();
    const cutAt = performance.now();
    const stale = await waitView(imp, (v) => v.staleClusters.has('east'), graceMs + 10_000, 'east stale');
    const staleAfterMs = performance.now() - cutAt;
    log.info({ staleAfterMs, graceMs }, 'partition > grace: marked stale');
    expect(staleAfterMs).toBeGreaterThanOrEqual(graceMs - 2 * heartbeatIntervalMs);
    expect(stale.services.size).toBe(2);
    for (const s of stale.services.values()) {
      expect(s.stale).toBe(true);
      expect(s.endpoints.every((e) => e.health === 'UNHEALTHY')).toBe(true);
    }
    expect(changes).toHaveLength(1);
    expect(changes[0]!.clusters).toEqual([{ cluster: 'east', stale: true }]);
    expect(changes[0]!.changed.map((r) => r.hostname).sort()).toEqual([
      'a.default.svc.cluster.local',
      'b.default.svc.cluster.local',
    ]);

    // East changes while partitioned (the write waits for its server), then the link heals.
    const during = exp.upsert(svc('east', 'a', 4));
    await server.restart();
    await sc.waitConnected();
    await during;
    const healed = await waitView(
      imp,
      (v) =>
        !v.staleClusters.has('east') &&
        v.services.get(serviceId('east', 'default', 'a.default.svc.cluster.local'))?.endpoints.length === 4,
      20_000,
      'east live again with its new state',
    );
    for (const s of healed.services.values()) {
      expect(s.stale).toBe(false);
      expect(s.endpoints.every((e) => e.health === 'HEALTHY')).toBe(true);
    }
    expect(summary(imp)).toEqual(expected([svc('east', 'a', 4), before[1]!]));
    expect(changes.some((c) => c.clusters.some((f) => f.cluster === 'east' && !f.stale))).toBe(true);
  });
});
