// Issue 13's benchmark: N simulated Delta proxies behind meridian-agents (several agents in this
// process, placed in three zones so the zone-1 replica holds the most), 3 meridiand replicas (one per
// zone) on one etcd. SIGKILL the replica holding the most streams; measured, per affected proxy: from
// the kill to the first response of the next replica on its relayed stream (its agent noticed the
// failure, picked the next-ranked replica on a warm channel and resumed with its versions), and the
// resource bytes resent as a share of a full push.
//
// The floor, in the same run: the same proxies reconnecting straight to a surviving replica with no
// agent (what a proxy does today when its control plane dies: a new stream and a full push), timed
// from disconnect to the last proxy fully synced, with its bytes (100% of a full push by definition).
//
//   pnpm bench failover [--proxies 1000] [--agents 6] [--services 50]

import { Agent } from '@meridian/agent';
import { eventually, freePorts, LoadGenerator, type SimulatedProxy, startEtcd } from '@meridian/testkit';
import pino from 'pino';
import { ReplicaProcess, sidecar } from '../packages/server/test/harness.js';
import { emitResult, formatMs, LatencyRecorder, log, parseFlags, printLatency, round3 } from './lib/index.js';

const FLAGS = {
  proxies: { type: 'integer', default: 1000, help: 'simulated Delta proxies, spread over the agents' },
  agents: {
    type: 'integer',
    default: 6,
    help: 'agents (half in zone 1, a third in zone 2, the rest in zone 3)',
  },
  services: { type: 'integer', default: 50, help: 'ServiceEntries in the mesh (5 endpoints each)' },
} as const;

const CDS = 'type.googleapis.com/envoy.config.cluster.v3.Cluster';

function meshConfig(services: number): string {
  const docs: string[] = [];
  for (let s = 0; s < services; s++) {
    const eps = Array.from(
      { length: 5 },
      (_, e) => `{address: 10.${20 + (s >> 8)}.${s & 255}.${e + 1}, labels: {app: svc-${s}}}`,
    );
    docs.push(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: svc-${s}, namespace: default}
spec:
  hosts: [svc-${s}.default.svc.cluster.local]
  ports: [{number: 8080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [${eps.join(', ')}]`);
  }
  return `${docs.join('\n---\n')}\n`;
}

const EDS = 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment';
const LDS = 'type.googleapis.com/envoy.config.listener.v3.Listener';
const RDS = 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration';
/** Holding every type: clusters and endpoints of every service, listeners and routes. */
const synced = (p: SimulatedProxy, services: number) =>
  (p.state.get(CDS)?.resources.size ?? 0) >= services &&
  (p.state.get(EDS)?.resources.size ?? 0) >= services &&
  (p.state.get(LDS)?.resources.size ?? 0) > 0 &&
  (p.state.get(RDS)?.resources.size ?? 0) > 0;

export async function main(args: string[]): Promise<void> {
  const flags = parseFlags(args, FLAGS, {
    bench: 'failover',
    description:
      'SIGKILL of the replica holding the most proxies behind agents: resync time and resent bytes',
  });
  const etcd = await startEtcd();
  const ports = await freePorts(6);
  const replicas = [0, 1, 2].map(
    (z) =>
      new ReplicaProcess({
        id: `r${z + 1}`,
        etcd: etcd.endpoints,
        xdsPort: ports[2 * z]!,
        adminPort: ports[2 * z + 1]!,
        extraArgs: ['--locality', `region1/zone${z + 1}`, '--debounce-ms', '20'],
      }),
  );
  const agents: Agent[] = [];
  const gens: LoadGenerator[] = [];
  try {
    await Promise.all(replicas.map((r) => r.start()));
    const applied = await replicas[0]!.apply(meshConfig(flags.services));
    if (applied.status !== 200) throw new Error(`apply failed: ${JSON.stringify(applied.body)}`);
    const seeds = replicas.map((r) => r.xds);
    const zoneOf = (a: number) =>
      a < Math.ceil(flags.agents / 2) ? 1 : a < Math.ceil((flags.agents * 5) / 6) ? 2 : 3;
    for (let a = 0; a < flags.agents; a++) {
      agents.push(
        await Agent.start({
          seeds,
          place: { clusterId: 'c1', locality: `region1/zone${zoneOf(a)}` },
          listenAddress: '127.0.0.1:0',
          refreshMs: 2000,
          failedHoldMs: 5000,
          logger: pino({ level: 'silent' }),
        }),
      );
    }
    let next = 0;
    for (let a = 0; a < flags.agents; a++) {
      const n = Math.floor(flags.proxies / flags.agents) + (a < flags.proxies % flags.agents ? 1 : 0);
      const base = next;
      next += n;
      gens.push(
        new LoadGenerator({
          address: agents[a]!.address,
          proxies: n,
          proxy: (i) => sidecar(base + i, 'delta').options,
          streamsPerConnection: 50,
        }),
      );
    }
    for (const g of gens) g.connect();
    const all = gens.flatMap((g) => g.proxies);
    const syncMsStart = performance.now();
    await eventually(
      'every proxy synced through its agent',
      () => all.every((p) => synced(p, flags.services)),
      120_000,
      50,
    );
    const syncMs = performance.now() - syncMsStart;
    await new Promise((r) => setTimeout(r, 1000));
    log(`${all.length} proxies synced through ${agents.length} agents in ${formatMs(syncMs)}`);

    // The replica holding the most relayed streams, and the proxies on it.
    const byReplica = new Map<string, number>();
    for (const a of agents)
      for (const s of a.relay.streams)
        if (s.upstreamAddress) byReplica.set(s.upstreamAddress, (byReplica.get(s.upstreamAddress) ?? 0) + 1);
    const [victimAddress, held] = [...byReplica].sort((x, y) => y[1] - x[1])[0]!;
    const victim = replicas.find((r) => r.xds === victimAddress)!;
    log(
      `streams per replica: ${[...byReplica].map(([k, v]) => `${replicas.find((r) => r.xds === k)?.spec.id}=${v}`).join(', ')}; killing ${victim.spec.id} (${held})`,
    );
    const affectedIds = new Set<string>();
    for (const a of agents)
      for (const s of a.relay.streams) if (s.upstreamAddress === victimAddress) affectedIds.add(s.proxyId);
    const affected = all.filter((p) => affectedIds.has(p.options.nodeId));
    const bytesBefore = new Map(affected.map((p) => [p, p.totalResourceBytes]));
    const fullPush = affected.reduce((sum, p) => sum + p.totalResourceBytes, 0);
    const resync = new LatencyRecorder();
    const seen = new Set<string>();
    const offs = agents.map((a) =>
      a.relay.onResync((proxyId, ms) => {
        if (!affectedIds.has(proxyId) || seen.has(proxyId)) return;
        seen.add(proxyId);
        resync.record(ms);
      }),
    );
    await victim.kill('SIGKILL');
    await eventually('every affected proxy resynced', () => seen.size >= affectedIds.size, 30_000, 10).catch(
      () => undefined,
    );
    await new Promise((r) => setTimeout(r, 1000));
    for (const off of offs) off();
    const resent = affected.reduce((sum, p) => sum + (p.totalResourceBytes - (bytesBefore.get(p) ?? 0)), 0);
    const broken = affected.filter((p) => p.ended !== undefined).length;
    const s = resync.summary();
    printLatency(`failover through the agent (${seen.size}/${affectedIds.size} resynced)`, s);
    log(
      `resent ${resent} of ${fullPush} bytes of a full push (${((resent / Math.max(1, fullPush)) * 100).toFixed(2)}%); local streams broken: ${broken}`,
    );

    // Floor: the same proxies reconnecting straight to a surviving replica, with a full push.
    const survivor = replicas.find((r) => r !== victim)!;
    const direct = new LoadGenerator({
      address: survivor.xds,
      proxies: affected.length,
      proxy: (i) => affected[i]!.options,
      streamsPerConnection: 50,
    });
    const t0 = performance.now();
    direct.connect();
    await eventually(
      'direct reconnect synced',
      () => direct.proxies.every((p) => synced(p, flags.services)),
      60_000,
      10,
    );
    const floorMs = performance.now() - t0;
    const floorBytes = direct.proxies.reduce((sum, p) => sum + p.totalResourceBytes, 0);
    direct.close();
    log(
      `floor: ${direct.proxies.length} proxies reconnecting directly with a full push: all synced in ${formatMs(floorMs)} (${floorBytes} bytes)`,
    );
    // The killed replica comes back: time until it holds its share again (rebalancing and move-back).
    // 80% of an equal share: agents of its zone come back by locality, others stay where they moved.
    const share = Math.floor((all.length / replicas.length) * 0.8);
    const holding = () =>
      agents.reduce(
        (n, a) => n + [...a.relay.streams].filter((st) => st.upstreamAddress === victimAddress).length,
        0,
      );
    const restarted = performance.now();
    await victim.start();
    const ready = performance.now();
    const refilled = await eventually(
      'the returning replica holds its share',
      () => holding() >= share,
      60_000,
      20,
    )
      .then(() => performance.now() - ready)
      .catch(() => undefined);
    log(
      refilled === undefined
        ? `returning replica: ${holding()} streams after 60 s (share ${share})`
        : `returning replica: ${holding()} streams (share ${share}) ${formatMs(refilled)} after it was ready (${formatMs(ready - restarted)} to start)`,
    );
    emitResult({
      proxies: all.length,
      agents: agents.length,
      affected: affectedIds.size,
      resynced: seen.size,
      resync_p50_ms: round3(s.p50),
      resync_p99_ms: round3(s.p99),
      resync_max_ms: round3(s.max),
      resent_share: round3(resent / Math.max(1, fullPush)),
      local_streams_broken: broken,
      floor_direct_full_sync_ms: round3(floorMs),
      floor_bytes: floorBytes,
      ratio_p99_to_floor: round3(s.p99 / floorMs),
      joining_replica_fair_share_ms: refilled === undefined ? null : round3(refilled),
    });
  } finally {
    for (const g of gens) g.close();
    await Promise.all(agents.map((a) => a.stop().catch(() => undefined)));
    await Promise.all(replicas.map((r) => r.kill()));
    await etcd.stop();
  }
}
