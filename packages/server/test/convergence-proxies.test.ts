// The proxy rows a replica's convergence summary shares with the other clusters (their dashboards'
// Proxies page): what a row carries and leaves out, its bounds, the receiver's checks and trust rule
// (the sender is the NATS subject's cluster and replica), and the ages brought forward on receipt.
import type { ProxySyncStatus, TypeSyncStatus } from '@meridian/xds';
import { describe, expect, it } from 'vitest';
import { MAX_PROXY_ROWS, proxyRows, type ReplicaConvergence } from '../src/convergence.js';
import {
  acceptPeerMessage,
  parseConvergenceSummary,
  type Received,
  remoteProxyRows,
  telemetrySubject,
} from '../src/telemetry-federation.js';

const type = (over: Partial<TypeSyncStatus> = {}): TypeSyncStatus => ({
  state: 'SYNCED',
  nonceSent: 'n-secret-1',
  nonceAcked: 'n-secret-1',
  versionAcked: '12',
  wildcard: true,
  subscribed: [],
  resources: 3,
  lastPushAgeMs: 900,
  lastAckAgeMs: 800,
  error: undefined,
  ...over,
});

const status = (name: string, over: Partial<ProxySyncStatus> = {}): ProxySyncStatus => ({
  proxyId: `sidecar~10.1.0.7~${name}~default.svc.cluster.local`,
  name,
  istioVersion: '1.24.0',
  connectionId: 'conn-1',
  variant: 'delta',
  namespace: 'default',
  clusterId: 'west',
  kind: 'sidecar',
  authenticatedIdentity: 'spiffe://cluster.local/ns/default/sa/secret-sa',
  peer: '10.1.0.7:53211',
  connectedAt: '2026-12-06T10:00:00.000Z',
  blocked: false,
  bufferedBytes: 0,
  types: { cds: type(), lds: type({ lastAckAgeMs: 300 }), eds: type(), rds: type() },
  syncedVersion: '12',
  syncedAgeMs: 1000,
  ...over,
});

const summary = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  replicaId: 'west-0',
  clusterId: 'west',
  revision: 12,
  version: '12',
  changedAt: '2026-12-06T10:00:00.000Z',
  proxies: 1,
  synced: 1,
  syncMs: [40],
  behind: [],
  at: '2026-12-06T10:00:01.000Z',
  proxyRows: [
    {
      proxy: 'client-0.default',
      namespace: 'default',
      kind: 'sidecar',
      variant: 'delta',
      types: { cds: 'SYNCED', lds: 'SYNCED', eds: 'SYNCED', rds: 'SYNCED' },
      syncedVersion: '12',
      syncedAgeMs: 1000,
      lastAckAgeMs: 300,
    },
  ],
  proxyRowsOmitted: 0,
  ...over,
});

describe('proxyRows (what a replica shares of its proxies)', () => {
  it('per proxy: name, namespace, kind, state per type, synced version, ages; no address, identity, nonce or error text', () => {
    const { rows, omitted } = proxyRows(
      [
        status('client-0.default', {
          types: { cds: type({ state: 'ERROR', error: 'NACK: secret detail' }), lds: type() },
          pushError: { message: 'translate failed: secret detail', snapshotVersion: '12', ageMs: 5 },
        }),
      ],
      '12',
    );
    expect(omitted).toBe(0);
    expect(rows).toEqual([
      {
        proxy: 'client-0.default',
        namespace: 'default',
        kind: 'sidecar',
        variant: 'delta',
        types: { cds: 'ERROR', lds: 'SYNCED' },
        syncedVersion: '12',
        syncedAgeMs: 1000,
        lastAckAgeMs: 800,
        pushFailed: true,
      },
    ]);
    const text = JSON.stringify(rows);
    for (const leak of ['10.1.0.7', 'spiffe://', 'n-secret', 'secret detail', 'conn-1'])
      expect(text).not.toContain(leak);
  });

  it(`at most ${MAX_PROXY_ROWS} rows, the rest counted; proxies behind or failing first, then by name`, () => {
    const many = Array.from({ length: MAX_PROXY_ROWS + 50 }, (_, i) =>
      status(`p${String(i).padStart(3, '0')}.default`),
    );
    many.push(status('zz-behind.default', { syncedVersion: '11' }));
    many.push(status('zz-nack.default', { types: { cds: type({ state: 'ERROR' }) } }));
    const { rows, omitted } = proxyRows(many, '12');
    expect(rows).toHaveLength(MAX_PROXY_ROWS);
    expect(omitted).toBe(52);
    expect(rows.slice(0, 3).map((r) => r.proxy)).toEqual([
      'zz-behind.default',
      'zz-nack.default',
      'p000.default',
    ]);
    expect(proxyRows(many, '12', 0)).toEqual({ rows: [], omitted: many.length });
    // Before its first ACK a proxy has no last-ACK age.
    expect(
      proxyRows([status('new.default', { types: { cds: type({ lastAckAgeMs: undefined }) } })], '12').rows[0],
    ).not.toHaveProperty('lastAckAgeMs');
  });
});

describe('parseConvergenceSummary: proxy rows from NATS', () => {
  it('keeps well-formed rows with only their known fields; a summary without rows still parses', () => {
    const withExtra = summary({
      proxyRows: [{ ...(summary().proxyRows as object[])[0], peer: '10.1.0.7:1', token: 'secret' }],
    });
    const parsed = parseConvergenceSummary(withExtra)!;
    expect(parsed.proxyRows).toEqual(summary().proxyRows);
    expect(JSON.stringify(parsed)).not.toContain('secret');
    const old = summary();
    delete old.proxyRows;
    delete old.proxyRowsOmitted;
    expect(parseConvergenceSummary(old)).not.toHaveProperty('proxyRows');
  });

  it(`caps the rows at ${MAX_PROXY_ROWS}, counting the rest as omitted`, () => {
    const row = (summary().proxyRows as object[])[0]!;
    const parsed = parseConvergenceSummary(
      summary({
        proxies: 1000,
        synced: 0,
        proxyRows: Array.from({ length: 300 }, () => row),
        proxyRowsOmitted: 10,
      }),
    )!;
    expect(parsed.proxyRows).toHaveLength(MAX_PROXY_ROWS);
    expect(parsed.proxyRowsOmitted).toBe(110);
  });

  const row0 = () => (summary().proxyRows as Record<string, unknown>[])[0]!;
  it.each([
    ['rows that are not a list', { proxyRows: { a: 1 } }],
    ['more rows than proxies', { proxyRows: [row0(), row0()] }],
    ['rows and omitted above the proxies', { proxyRowsOmitted: 1 }],
    ['a row without a name', { proxyRows: [{ ...row0(), proxy: undefined }] }],
    ['a type state that is not text', { proxyRows: [{ ...row0(), types: { cds: 1 } }] }],
    ['a type name that is not one', { proxyRows: [{ ...row0(), types: { 'cds.x': 'SYNCED' } }] }],
    ['a negative age', { proxyRows: [{ ...row0(), lastAckAgeMs: -5 }] }],
    ['a negative omitted count', { proxyRowsOmitted: -1 }],
  ])('drops one with %s', (_what, over) => {
    expect(parseConvergenceSummary(summary(over))).toBeUndefined();
  });
});

describe('acceptPeerMessage (the trust rule)', () => {
  const subject = telemetrySubject('convergence', 'm1', 'west', 'west-0');
  it("the sender is the subject's cluster and replica", () => {
    const body = summary();
    expect(acceptPeerMessage(subject, body, 'east')).toEqual({
      clusterId: 'west',
      replicaId: 'west-0',
      body,
    });
  });
  it.each([
    [
      'a body naming another cluster',
      telemetrySubject('convergence', 'm1', 'west', 'west-0'),
      summary({ clusterId: 'c3' }),
    ],
    ['a body naming another replica', subject, summary({ replicaId: 'west-9' })],
    ['a body without names', subject, { proxies: 1 }],
    [
      "the receiver's own cluster",
      telemetrySubject('convergence', 'm1', 'east', 'east-0'),
      summary({ clusterId: 'east', replicaId: 'east-0' }),
    ],
    ['a body that is not an object', subject, ['west', 'west-0']],
    ['no body', subject, null],
    ['a short subject', 'west.west-0', summary()],
  ])('refuses %s', (_what, s, body) => {
    expect(acceptPeerMessage(s, body, 'east')).toBeUndefined();
  });
});

describe('remoteProxyRows', () => {
  it("rows by cluster and replica, with the sender's names and ages brought forward by the time since receipt", () => {
    const parsed = parseConvergenceSummary(summary())!;
    const received: Received<ReplicaConvergence>[] = [
      {
        clusterId: 'west',
        replicaId: 'west-1',
        receivedAt: 9_000,
        value: { ...parsed, replicaId: 'west-1', proxyRows: [], proxyRowsOmitted: 0, proxies: 0 },
      },
      { clusterId: 'west', replicaId: 'west-0', receivedAt: 8_000, value: parsed },
      {
        clusterId: 'north',
        replicaId: 'n-0',
        receivedAt: 9_500,
        value: { ...parsed, proxyRows: undefined, proxyRowsOmitted: undefined },
      },
    ];
    const r = remoteProxyRows(received, 10_000);
    expect(r.replicas).toEqual([
      { clusterId: 'north', replicaId: 'n-0', proxies: 1, listed: 0, omitted: 1, reportedAgoMs: 500 },
      { clusterId: 'west', replicaId: 'west-0', proxies: 1, listed: 1, omitted: 0, reportedAgoMs: 2000 },
      { clusterId: 'west', replicaId: 'west-1', proxies: 0, listed: 0, omitted: 0, reportedAgoMs: 1000 },
    ]);
    expect(r.proxies).toEqual([
      {
        ...(summary().proxyRows as object[])[0],
        syncedAgeMs: 3000,
        lastAckAgeMs: 2300,
        clusterId: 'west',
        replicaId: 'west-0',
        reportedAgoMs: 2000,
      },
    ]);
  });
});
