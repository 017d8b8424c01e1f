import { type EtcdCluster, pidAlive, ServerStartError, startEtcd, startEtcdCluster } from '@meridian/testkit';
import { afterAll, describe, expect, it } from 'vitest';

async function put(endpoint: string, key: string, value: string): Promise<void> {
  const res = await fetch(`${endpoint}/v3/kv/put`, {
    method: 'POST',
    body: JSON.stringify({ key: btoa(key), value: btoa(value) }),
    signal: AbortSignal.timeout(5_000),
  });
  expect(res.status).toBe(200);
  await res.json();
}

async function get(endpoint: string, key: string): Promise<string | undefined> {
  const res = await fetch(`${endpoint}/v3/kv/range`, {
    method: 'POST',
    body: JSON.stringify({ key: btoa(key) }),
    signal: AbortSignal.timeout(5_000),
  });
  const body = (await res.json()) as { kvs?: { value: string }[] };
  const v = body.kvs?.[0]?.value;
  return v === undefined ? undefined : atob(v);
}

describe('startEtcd (single member)', () => {
  it('starts on loopback above port 20000 with a /tmp/meridian-test- data dir, serves kv, stops cleanly', async () => {
    const t0 = performance.now();
    const etcd = await startEtcd();
    console.log(`etcd single member ready in ${(performance.now() - t0).toFixed(0)} ms`);
    try {
      expect(etcd.endpoints).toHaveLength(1);
      const m = etcd.members[0]!;
      expect(m.clientUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(Number(new URL(m.clientUrl).port)).toBeGreaterThan(20000);
      expect(m.dataDir.startsWith('/tmp/meridian-test-etcd-')).toBe(true);
      await put(etcd.endpoints[0]!, 'k', 'v1');
      expect(await get(etcd.endpoints[0]!, 'k')).toBe('v1');
      expect((await etcd.leader()).name).toBe(m.name);
      // restart: same port and data dir, data survives
      await m.restart();
      expect(await get(etcd.endpoints[0]!, 'k')).toBe('v1');
    } finally {
      const pid = etcd.members[0]!.pid!;
      await etcd.stop();
      await etcd.stop(); // idempotent
      expect(pidAlive(pid)).toBe(false);
    }
  });

  it('supports await using, and tmpfs data dirs', async () => {
    let pid: number | undefined;
    {
      await using etcd = await startEtcd({ tmpfs: true });
      pid = etcd.members[0]!.pid;
      await put(etcd.endpoints[0]!, 'a', 'b');
    }
    expect(pid).toBeDefined();
    expect(pidAlive(pid!)).toBe(false);
  });

  it('a start-up failure is one clear error with the last output lines, not a hang', async () => {
    const err = await startEtcd({ extraArgs: ['--no-such-flag'] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ServerStartError);
    const e = err as ServerStartError;
    expect(e.server).toBe('etcd');
    expect(e.message).toMatch(/^etcd exited during start-up \(code \d+\)/);
    expect(e.message).toContain('no-such-flag');
  });
});

describe('startEtcdCluster (3 members, fast election)', () => {
  let cluster: EtcdCluster;
  afterAll(async () => {
    await cluster?.stop();
  });

  it('starts 3 healthy members', async () => {
    const t0 = performance.now();
    cluster = await startEtcdCluster({ fastElection: true, tmpfs: true });
    console.log(`etcd 3-member cluster ready in ${(performance.now() - t0).toFixed(0)} ms`);
    expect(cluster.members).toHaveLength(3);
    expect(new Set(cluster.endpoints).size).toBe(3);
    const ids = cluster.members.map((m) => m.memberId);
    expect(ids.every((id) => id !== undefined && /^\d+$/.test(id))).toBe(true);
    expect(new Set(ids).size).toBe(3);
    await put(cluster.endpoints[0]!, 'x', '1');
    expect(await get(cluster.endpoints[2]!, 'x')).toBe('1');
  });

  it('kill and restart one member: the cluster is healthy again and the member caught up', async () => {
    const leader = await cluster.leader();
    const follower = cluster.members.find((m) => m !== leader)!;
    const oldPid = follower.pid!;
    await follower.kill();
    expect(follower.running).toBe(false);
    expect(pidAlive(oldPid)).toBe(false);
    await put(leader.clientUrl, 'while-down', 'yes');
    await follower.restart();
    expect(follower.running).toBe(true);
    await cluster.waitHealthy();
    expect(await get(follower.clientUrl, 'while-down')).toBe('yes');
  });

  it('kill the leader: a new leader appears', async () => {
    const old = await cluster.leader();
    const t0 = performance.now();
    await old.kill();
    const next = await cluster.leader({ timeoutMs: 10_000 });
    const ms = performance.now() - t0;
    console.log(`etcd leader replaced in ${ms.toFixed(0)} ms (${old.name} -> ${next.name})`);
    expect(next).not.toBe(old);
    await put(next.clientUrl, 'after-failover', 'ok');
    await old.restart();
    await cluster.waitHealthy();
    expect(await get(old.clientUrl, 'after-failover')).toBe('ok');
  });
});
