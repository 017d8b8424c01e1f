// The replica status block a replica's convergence summary shares with the other clusters (their
// dashboards' Mesh page): what it carries of /debug/replica and leaves out, its bounds, the
// receiver's checks and the trust rule (the sender is the NATS subject's cluster and replica).
import { describe, expect, it } from 'vitest';
import { MAX_STATUS_TEXT, type ReplicaConvergence, replicaStatus } from '../src/convergence.js';
import {
  acceptPeerMessage,
  parseConvergenceSummary,
  parseReplicaStatus,
  type Received,
  remoteReplicaStatus,
  telemetrySubject,
} from '../src/telemetry-federation.js';

/** A /debug/replica answer, with everything the local Mesh page gets. */
const debugReplica = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  id: 'west-0',
  meshId: 'm1',
  clusterId: 'west',
  locality: 'region2/zone1',
  version: '0.9.0',
  startedAt: '2026-12-06T10:00:00.000Z',
  xdsAddress: '10.2.0.5:15010',
  adminAddress: '10.2.0.5:15080',
  monitoringAddress: '10.2.0.5:15014',
  caAddress: '10.2.0.5:15012',
  advertiseAddress: '10.2.0.5',
  rootNamespace: 'istio-system',
  snapshotRevision: 42,
  watchedRevision: 42,
  store: 'ok',
  connections: 7,
  registrations: 3,
  isLeader: true,
  ...over,
});

const summary = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  replicaId: 'west-0',
  clusterId: 'west',
  revision: 42,
  version: '42',
  changedAt: '2026-12-06T10:00:00.000Z',
  proxies: 7,
  synced: 7,
  syncMs: [],
  behind: [],
  at: '2026-12-06T10:00:01.000Z',
  replicaStatus: replicaStatus(debugReplica()),
  ...over,
});

describe('replicaStatus (what a replica shares of itself)', () => {
  it('leader, locality, connected proxies, registrations, store health, version, revision; no address', () => {
    const s = replicaStatus(debugReplica())!;
    expect(s).toEqual({
      leader: true,
      locality: 'region2/zone1',
      connections: 7,
      registrations: 3,
      store: 'ok',
      version: '0.9.0',
      snapshotRevision: 42,
    });
    expect(JSON.stringify(s)).not.toMatch(/10\.2\.0\.5|istio-system|startedAt/);
  });

  it('a follower with a degraded store and no registrations; texts cut to the bound', () => {
    const s = replicaStatus(
      debugReplica({
        isLeader: false,
        store: `degraded: store unavailable since ${'x'.repeat(1000)}`,
        locality: 'r'.repeat(1000),
        registrations: undefined,
        connections: -1,
      }),
    )!;
    expect(s.leader).toBe(false);
    expect(s.store.length).toBe(MAX_STATUS_TEXT);
    expect(s.store.startsWith('degraded:')).toBe(true);
    expect(s.locality.length).toBe(MAX_STATUS_TEXT);
    expect(s.connections).toBe(0);
    expect(s).not.toHaveProperty('registrations');
    expect(replicaStatus(undefined)).toBeUndefined();
    expect(replicaStatus(['x'])).toBeUndefined();
  });
});

describe('parseConvergenceSummary: the replica status block from NATS', () => {
  it('keeps the block with only its known fields; a summary without one still parses', () => {
    const parsed = parseConvergenceSummary(
      summary({
        replicaStatus: { ...replicaStatus(debugReplica()), adminAddress: '10.2.0.5:15080', token: 'secret' },
      }),
    )!;
    expect(parsed.replicaStatus).toEqual(replicaStatus(debugReplica()));
    expect(JSON.stringify(parsed)).not.toMatch(/10\.2\.0\.5|secret/);
    const old = summary();
    delete old.replicaStatus;
    const p = parseConvergenceSummary(old);
    expect(p).toBeDefined();
    expect(p).not.toHaveProperty('replicaStatus');
  });

  const block = () => replicaStatus(debugReplica()) as unknown as Record<string, unknown>;
  it.each([
    ['a block that is not an object', 'leader'],
    ['a leader that is not a boolean', { ...block(), leader: 'yes' }],
    ['no store', { ...block(), store: undefined }],
    ['a store text above the bound', { ...block(), store: 'x'.repeat(MAX_STATUS_TEXT + 1) }],
    ['a locality above the bound', { ...block(), locality: 'x'.repeat(MAX_STATUS_TEXT + 1) }],
    ['negative connections', { ...block(), connections: -1 }],
    ['fractional registrations', { ...block(), registrations: 1.5 }],
    ['a revision that is text', { ...block(), snapshotRevision: '42' }],
  ])('drops one with %s', (_what, replicaStatusBlock) => {
    expect(parseReplicaStatus(replicaStatusBlock)).toBeUndefined();
    expect(parseConvergenceSummary(summary({ replicaStatus: replicaStatusBlock }))).toBeUndefined();
  });
});

describe('the trust rule and remoteReplicaStatus', () => {
  it("a status block is accepted only with its subject's cluster and replica", () => {
    const subject = telemetrySubject('convergence', 'm1', 'west', 'west-0');
    expect(acceptPeerMessage(subject, summary(), 'east')?.clusterId).toBe('west');
    // Another replica's status claimed on this subject, and the receiver's own cluster: refused.
    expect(acceptPeerMessage(subject, summary({ replicaId: 'west-9' }), 'east')).toBeUndefined();
    expect(acceptPeerMessage(subject, summary({ clusterId: 'c3' }), 'east')).toBeUndefined();
    expect(acceptPeerMessage(subject, summary(), 'west')).toBeUndefined();
  });

  it('replicas by cluster and replica, named from the subject, with the time since receipt', () => {
    const parsed = parseConvergenceSummary(summary())!;
    const received: Received<ReplicaConvergence>[] = [
      {
        clusterId: 'west',
        replicaId: 'west-1',
        receivedAt: 9_000,
        value: {
          ...parsed,
          replicaId: 'west-1',
          replicaStatus: { ...parsed.replicaStatus!, leader: false, connections: 0 },
        },
      },
      { clusterId: 'west', replicaId: 'west-0', receivedAt: 8_000, value: parsed },
      {
        clusterId: 'north',
        replicaId: 'n-0',
        receivedAt: 9_500,
        value: { ...parsed, replicaStatus: undefined },
      },
    ];
    expect(remoteReplicaStatus(received, 10_000)).toEqual([
      { clusterId: 'north', replicaId: 'n-0', reportedAgoMs: 500 },
      { clusterId: 'west', replicaId: 'west-0', reportedAgoMs: 2000, status: parsed.replicaStatus },
      {
        clusterId: 'west',
        replicaId: 'west-1',
        reportedAgoMs: 1000,
        status: { ...parsed.replicaStatus, leader: false, connections: 0 },
      },
    ]);
    // A clock running backwards reads as just received.
    expect(remoteReplicaStatus(received.slice(1, 2), 7_000)[0]!.reportedAgoMs).toBe(0);
  });
});
