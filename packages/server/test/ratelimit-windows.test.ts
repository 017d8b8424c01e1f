// GlobalRateLimiter's counting rules on the in-memory store (etcd's semantics, no process): shared
// counters between limiters (replicas), concurrent requests on one replica, fixed windows, limits
// the config does not have, and claims that never exceed the limit.
import type { ConfigObject, RateLimitConfig } from '@meridian/api';
import { validateConfig } from '@meridian/api';
import { Keyspace, MemoryBackend, MemoryStore } from '@meridian/store';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import {
  GlobalRateLimiter,
  RATE_LIMIT_PREFIX,
  rateLimitServiceAddresses,
  replicaServiceKey,
} from '../src/ratelimit-service.js';

function rateLimit(limits: unknown[]): RateLimitConfig {
  const v = validateConfig({
    apiVersion: 'policy.meridian.io/v1alpha1',
    kind: 'RateLimit',
    metadata: { name: 'rl', namespace: 'default' },
    spec: { global: { limits } },
  });
  if (!v.ok) throw new Error(v.error.message);
  return v.config as ConfigObject as RateLimitConfig;
}

const log = pino({ level: 'silent' });
const at = { now: Date.UTC(2026, 0, 1, 10, 0, 5) };

function limiters(n: number, config: RateLimitConfig) {
  const backend = new MemoryBackend();
  const stores = Array.from(
    { length: n },
    () => new MemoryStore({ keyspace: Keyspace.of('m', 'c'), backend }),
  );
  return {
    stores,
    limiters: stores.map(
      (store) => new GlobalRateLimiter({ store, limits: () => [config], log, now: () => at.now }),
    ),
  };
}

const desc = (limit: string, extra: Array<{ key: string; value: string }> = []) => [
  [{ key: 'meridian_limit', value: limit }, ...extra],
];

async function countOk(
  ls: GlobalRateLimiter[],
  limit: string,
  n: number,
  extra: Array<{ key: string; value: string }> = [],
) {
  let ok = 0;
  for (let i = 0; i < n; i++) {
    const d = await ls[i % ls.length]!.decide('meridian', desc(limit, extra));
    if (d.overall === 'OK') ok++;
  }
  return ok;
}

describe('GlobalRateLimiter', () => {
  it('limiters sharing a store allow exactly the limit, and the store holds no more than it', async () => {
    const { stores, limiters: ls } = limiters(3, rateLimit([{ requestsPerUnit: 50, unit: 'MINUTE' }]));
    expect(await countOk(ls, 'default/rl/0', 200)).toBe(50);
    const list = await stores[0]!.list(RATE_LIMIT_PREFIX);
    expect(list.items.map((kv) => Buffer.from(kv.value).toString())).toEqual(['50']);
    // Bound to a lease (expires after the window), never left forever.
    expect(list.items[0]?.lease).toBeDefined();
  });

  it('concurrent requests on one limiter wait for one claim and never pass the limit', async () => {
    const { limiters: ls } = limiters(1, rateLimit([{ requestsPerUnit: 10, unit: 'SECOND' }]));
    const answers = await Promise.all(
      Array.from({ length: 50 }, () => ls[0]!.decide('meridian', desc('default/rl/0'))),
    );
    expect(answers.filter((a) => a.overall === 'OK')).toHaveLength(10);
    const over = answers.find((a) => a.overall === 'OVER_LIMIT');
    expect(over?.statuses[0]).toMatchObject({
      code: 'OVER_LIMIT',
      limit: { requestsPerUnit: 10, unit: 'SECOND' },
      remaining: 0,
    });
  });

  it('a new window starts a new count', async () => {
    const { limiters: ls } = limiters(2, rateLimit([{ requestsPerUnit: 5, unit: 'MINUTE' }]));
    expect(await countOk(ls, 'default/rl/0', 10)).toBe(5);
    at.now += 60_000;
    expect(await countOk(ls, 'default/rl/0', 10)).toBe(5);
  });

  it('counts each value of the key apart; unknown limits and other domains are not counted', async () => {
    const { limiters: ls } = limiters(
      2,
      rateLimit([{ key: 'HEADER', header: 'x-user', requestsPerUnit: 3, unit: 'HOUR' }]),
    );
    const user = (v: string) => [{ key: 'header', value: v }];
    expect(await countOk(ls, 'default/rl/0', 5, user('a'))).toBe(3);
    expect(await countOk(ls, 'default/rl/0', 5, user('b'))).toBe(3);
    expect(await countOk(ls, 'default/rl/7', 5)).toBe(5);
    expect(await countOk(ls, 'default/other/0', 5)).toBe(5);
    const d = await ls[0]!.decide('someone-else', desc('default/rl/0', user('a')));
    expect(d).toEqual({ overall: 'OK', statuses: [{ code: 'OK' }] });
  });

  it('a limiter that stops loses only what it had claimed and not used', async () => {
    const { limiters: ls } = limiters(3, rateLimit([{ requestsPerUnit: 1000, unit: 'DAY' }]));
    // Ten requests on each: each claims a batch (a tenth of what is left) and uses ten.
    expect(await countOk(ls, 'default/rl/0', 30)).toBe(30);
    const [a, b, c] = ls as [GlobalRateLimiter, GlobalRateLimiter, GlobalRateLimiter];
    const lost = c.shares()[0]!.available;
    expect(lost).toBeGreaterThan(0);
    expect(lost).toBeLessThanOrEqual(100);
    // c stops (its batch is never used); a and b take everything else.
    expect(await countOk([a, b], 'default/rl/0', 2000)).toBe(1000 - 30 - lost);
  });
});

describe('rateLimitServiceAddresses', () => {
  it('uses the setting, else the replicas by id, leaving out unspecified bind addresses', () => {
    expect(rateLimitServiceAddresses('rls.meridian.svc:15010, [::1]:9', undefined, 'plaintext')).toEqual([
      { host: 'rls.meridian.svc', port: 15010 },
      { host: '::1', port: 9 },
    ]);
    expect(
      rateLimitServiceAddresses(
        '',
        [
          { id: 'b', xdsAddress: '10.0.0.2:15010' },
          { id: 'a', xdsAddress: '10.0.0.1:15010' },
          { id: 'c', xdsAddress: '0.0.0.0:15010' },
          { id: 'd', xdsAddress: '' },
        ],
        'plaintext',
      ),
    ).toEqual([
      { host: '10.0.0.1', port: 15010 },
      { host: '10.0.0.2', port: 15010 },
    ]);
  });

  it("mtls: the replicas' CA addresses (or the setting), each marked mtls; off: none", () => {
    const replicas = [
      { id: 'b', xdsAddress: '10.0.0.2:15010', caAddress: '10.0.0.2:15012' },
      { id: 'a', xdsAddress: '10.0.0.1:15010', caAddress: 'replica-a.meridian.svc:15012' },
      { id: 'c', xdsAddress: '10.0.0.3:15010', caAddress: '0.0.0.0:15012' },
      { id: 'd', xdsAddress: '10.0.0.4:15010', caAddress: '' },
    ];
    expect(rateLimitServiceAddresses('', replicas, 'mtls')).toEqual([
      { host: 'replica-a.meridian.svc', port: 15012, mtls: true },
      { host: '10.0.0.2', port: 15012, mtls: true },
    ]);
    expect(rateLimitServiceAddresses('rls.meridian.svc:15012', replicas, 'mtls')).toEqual([
      { host: 'rls.meridian.svc', port: 15012, mtls: true },
    ]);
    expect(rateLimitServiceAddresses('rls.meridian.svc:15012', replicas, 'off')).toEqual([]);
    expect(replicaServiceKey(rateLimitServiceAddresses('', replicas, 'mtls'))).not.toBe(
      replicaServiceKey(rateLimitServiceAddresses('', replicas, 'plaintext')),
    );
  });
});
