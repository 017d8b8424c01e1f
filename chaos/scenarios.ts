// The chaos scenarios, in priority order. Each one acts on the mesh's processes (by PID file) or its
// loopback ports, observes through the demo clients' own call records, the config writer's own log and
// etcd read directly, and restores the mesh with `meridian up`'s code.
import { execFile, execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { adminGet } from '../packages/cli/src/local/admin.js';
import { type ClusterPlan, etcdEndpoints, program } from '../packages/cli/src/local/plan.js';
import { ensureStarted, probe, waitHealthy } from '../packages/cli/src/local/procs.js';
import { TypeUrl } from '../packages/envoy/src/type-urls.js';
import { SimulatedProxy } from '../packages/testkit/src/index.js';
import { DelayProxy, killConnections } from './lib/delay.js';
import type { Harness, Scenario } from './lib/harness.js';
import { type Mesh, poll, sleep } from './lib/mesh.js';
import { anchorOf, MtlsTraffic, pemBlocks, SdsWorkload } from './lib/mtls.js';
import { PortCut } from './lib/net.js';
import { adminCall, etcdNames, seYaml } from './lib/writer.js';

interface LeaderStatus {
  replicaId: string;
  isLeader: boolean;
  leader?: string;
}

/** The index of `c`'s replica that leads, asked of every replica (the majority answer). */
async function replicaLeader(mesh: Mesh, c: ClusterPlan): Promise<number | undefined> {
  return poll(async () => {
    for (let i = 0; i < c.replicas; i++) {
      const s = await adminGet<LeaderStatus>(c, i, mesh.token(c), '/debug/leader');
      if (s?.isLeader) return i;
    }
    return undefined;
  }, 30_000);
}

/** Every series of `name` per replica (`<replica> <labels>` -> value). */
async function metricSeries(mesh: Mesh, name: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const c of mesh.plan.clusters)
    for (const [i, r] of c.replicaPorts.entries()) {
      const text = await fetch(`http://127.0.0.1:${r.monitoring}/metrics`, {
        signal: AbortSignal.timeout(5000),
      }).then((res) => res.text());
      for (const line of text.split('\n'))
        if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) {
          const sp = line.lastIndexOf(' ');
          out.set(`${c.name}-${i} ${line.slice(name.length, sp)}`, Number(line.slice(sp + 1)));
        }
    }
  return out;
}

/** The series of `name` that grew between two readings, as `series +delta` text. */
function grown(before: Map<string, number>, after: Map<string, number>): string {
  const out: string[] = [];
  for (const [k, v] of after) {
    const d = v - (before.get(k) ?? 0);
    if (d > 0) out.push(`${k} +${d}`);
  }
  return out.join('; ') || 'none';
}

/** Sum of a counter over every demo agent of the mesh (their metrics ports). */
async function agentSum(mesh: Mesh, name: string): Promise<number> {
  let sum = 0;
  for (const c of mesh.plan.clusters)
    for (const port of [c.demo.metricsV1, c.demo.metricsV2, c.demo.metricsClient]) {
      const text = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5000) })
        .then((res) => res.text())
        .catch(() => '');
      for (const line of text.split('\n'))
        if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) sum += Number(line.split(' ').at(-1));
    }
  return sum;
}

/** Sum of `pilot_xds_pushes` over every replica of the mesh. */
const pushes = (mesh: Mesh) => metricSum(mesh, 'pilot_xds_pushes');

/** etcd's own view: the member index of `c`'s leader, from `etcdctl endpoint status` of `members`. */
function etcdLeader(mesh: Mesh, c: ClusterPlan, members: readonly number[]): number | undefined {
  const out = mesh.etcdctl(c, ['endpoint', 'status', '-w', 'json'], members);
  const rows = JSON.parse(out) as {
    Endpoint: string;
    Status: { header: { member_id: number }; leader: number };
  }[];
  const leaderId = rows.find((r) => r.Status.leader !== 0)?.Status.leader;
  const row = rows.find((r) => r.Status.header.member_id === leaderId);
  if (!row) return undefined;
  return c.etcd.findIndex((e) => row.Endpoint.endsWith(`:${e.client}`));
}

function replicaKill(which: 'leader' | 'follower'): Scenario {
  return {
    name: `replica-kill-${which}`,
    title: `SIGKILL of east's ${which} replica under demo traffic and config writes`,
    async run(h) {
      const east = h.mesh.cluster('east');
      const writer = h.startWriter('east');
      await sleep(5000);
      const leader = await replicaLeader(h.mesh, east);
      if (leader === undefined) throw new Error('east has no leader replica');
      const victim = which === 'leader' ? leader : (leader + 1) % east.replicas;
      const id = `east-${victim}`;
      h.notes.push(`killed replica ${id} (leader before: east-${leader})`);
      const at = h.mark(`SIGKILL ${id}`);
      await h.mesh.kill(h.mesh.replica(east, victim));
      if (which === 'leader') {
        const newLeader = await poll(async () => {
          for (let i = 0; i < east.replicas; i++) {
            if (i === victim) continue;
            const s = await adminGet<LeaderStatus>(east, i, h.mesh.token(east), '/debug/leader');
            if (s?.isLeader) return Date.now();
          }
          return undefined;
        }, 60_000);
        h.figure('timeToNewLeaderS', newLeader === undefined ? null : h.secs(newLeader - at));
        if (newLeader !== undefined) h.mark('new leader', newLeader);
      }
      await sleep(15_000);
      const restoreAt = h.mark('restart (meridian up)');
      h.fault(`${id} down`, at, restoreAt);
      h.figure('writesAcceptedWhileDown', writer.count('apply', 'ack', at, restoreAt));
      h.figure('writesRefusedWhileDown', writer.count('apply', 'refused', at, restoreAt));
      h.figure('restoreS', h.secs(await h.mesh.restore()));
      await sleep(5000);
      h.rpcFigures(['east', 'west'], at, 10_000);
    },
  };
}

const etcdLeaderKill: Scenario = {
  name: 'etcd-leader-kill',
  title: "SIGKILL of east's etcd leader under config writes",
  async run(h) {
    const east = h.mesh.cluster('east');
    const writer = h.startWriter('east');
    await sleep(5000);
    const all = east.etcd.map((_, i) => i);
    const leader = etcdLeader(h.mesh, east, all);
    if (leader === undefined) throw new Error("east's etcd reports no leader");
    h.notes.push(`killed etcd member ${leader}`);
    const at = h.mark(`SIGKILL etcd-${leader}`);
    await h.mesh.kill(h.mesh.etcd(east, leader));
    const others = all.filter((i) => i !== leader);
    const elected = await poll(async () => {
      const l = etcdLeader(h.mesh, east, others);
      return l !== undefined && l !== leader ? Date.now() : undefined;
    }, 30_000);
    h.figure('timeToNewLeaderS', elected === undefined ? null : h.secs(elected - at));
    if (elected !== undefined) h.mark('new etcd leader', elected);
    // The first write acknowledged after the kill.
    const firstAck = await poll(
      async () => writer.log.find((e) => e.at > at && e.outcome === 'ack')?.at,
      30_000,
    );
    h.figure('firstWriteAckedAfterKillS', firstAck === undefined ? null : h.secs(firstAck - at));
    await sleep(10_000);
    const restoreAt = h.mark('restart (meridian up)');
    h.fault(`etcd-${leader} down`, at, restoreAt);
    h.figure('writesAcceptedWhileDown', writer.count('apply', 'ack', at, restoreAt));
    h.figure('writesRefusedWhileDown', writer.count('apply', 'refused', at, restoreAt));
    h.figure('restoreS', h.secs(await h.mesh.restore()));
    await sleep(5000);
    h.rpcFigures(['east', 'west'], at, 10_000);
  },
};

const clusterBackendsLost: Scenario = {
  name: 'cluster-backends-lost',
  title: "east's echo backends SIGKILLed: east's client fails over to west, then returns",
  async run(h) {
    const east = h.mesh.cluster('east');
    const at = h.mark('SIGKILL east echo');
    await h.mesh.kill(h.mesh.echo(east));
    const window = 30_000;
    // Switched: 3 s of calls all answered by west.
    const switched = await poll(
      async () => {
        await h.traffic.read();
        const now = Date.now();
        const recent = h.traffic.between('east', now - 3000, now);
        return now - at > 3000 && recent.length > 0 && recent.every(([, by]) => by === 'west')
          ? now
          : undefined;
      },
      60_000,
      500,
    );
    h.figure('switchedToWestS', switched === undefined ? null : h.secs(switched - 3000 - at));
    const firstWest = h.traffic.between('east', at).find(([, by]) => by === 'west')?.[0];
    h.figure('firstAnsweredByWestS', firstWest === undefined ? null : h.secs(firstWest - at));
    await sleep(5000);
    const restoreAt = h.mark('backends restarted (meridian up)');
    h.fault('east backends down', at, restoreAt);
    h.rpcFigures(['east'], at, window, restoreAt);
    const failedBeforeRestore = h.figures.failedRpcsDuringWindow;
    h.figure('restoreS', h.secs(await h.mesh.restore()));
    const back = await poll(
      async () => {
        await h.traffic.read();
        const now = Date.now();
        const recent = h.traffic.between('east', now - 3000, now);
        return recent.length > 0 && recent.every(([, by]) => by === 'east') ? now : undefined;
      },
      60_000,
      500,
    );
    h.figure('backToEastS', back === undefined ? null : h.secs(back - 3000 - restoreAt));
    if (back !== undefined) h.mark('back to east', back - 3000);
    await sleep(3000);
    // Failures outside the window after the kill, and any failure after the restore.
    h.invariant('rpcsFailedAfterRestore', h.traffic.failed('east', restoreAt) + h.traffic.failed('west', at));
    h.figure('failedRpcsDuringWindow', failedBeforeRestore ?? null);
    if (switched === undefined) h.invariant('switchedToWest', 0, 1);
    if (back === undefined) h.invariant('backToEast', 0, 1);
  },
};

function gatewayPartition(kind: 'short' | 'long'): Scenario {
  const cutMs = kind === 'short' ? 5000 : 25_000;
  return {
    name: `gateway-partition-${kind}`,
    title: `NATS gateway link cut for ${cutMs / 1000} s (${kind === 'short' ? 'shorter' : 'longer'} than the 10 s federation grace)`,
    async run(h) {
      if (!PortCut.available()) throw new Error('iptables is not usable here (the cut needs root)');
      const gw = h.mesh.plan.clusters.flatMap((c) => c.nats.map((n) => n.gateway));
      // Baseline: pushes over a quiet period as long as what is measured after the cut.
      const measured = cutMs + 15_000;
      const b0 = await pushes(h.mesh);
      await sleep(measured);
      const baseline = (await pushes(h.mesh)) - b0;
      h.figure('pushesBaseline', baseline);
      const cut = new PortCut(gw);
      h.cleanups.push(() => cut.heal());
      const p0 = await pushes(h.mesh);
      const series0 = await metricSeries(h.mesh, 'pilot_xds_pushes');
      const triggers0 = await metricSeries(h.mesh, 'pilot_push_triggers');
      const streams0 = await metricSeries(h.mesh, 'pilot_xds');
      const moves0 = await agentSum(h.mesh, 'istiod_connection_terminations');
      const at = h.mark('gateway cut');
      cut.cut();
      // NATS's own view (its monitoring port): the gateway connection of east to west is gone.
      const gatewayDown = await poll(
        async () => {
          const n = h.mesh.cluster('east').nats[0]!;
          const gz = (await fetch(`http://127.0.0.1:${n.monitor}/gatewayz`, {
            signal: AbortSignal.timeout(2000),
          }).then((r) => r.json())) as { outbound_gateways?: Record<string, { connection?: unknown }> };
          return !gz.outbound_gateways?.west?.connection ? Date.now() : undefined;
        },
        Math.min(cutMs - 500, 4000),
        200,
      );
      h.invariant('gatewayDownSeenByNats', gatewayDown === undefined ? 0 : 1, 1);
      if (gatewayDown !== undefined) h.figure('gatewayDownAfterS', h.secs(gatewayDown - at));
      let withdrawnAt: number | undefined;
      if (kind === 'long') {
        // Imports withdrawn: east's replicas no longer hold west's services (and pushes follow).
        withdrawnAt = await poll(
          async () => {
            const east = h.mesh.cluster('east');
            const f = await adminGet<{
              remoteClusters: { cluster: string; stale: boolean; services: number }[];
            }>(east, 0, h.mesh.token(east), '/debug/federation');
            const w = f?.remoteClusters.find((r) => r.cluster === 'west');
            return w === undefined || w.stale || w.services === 0 ? Date.now() : undefined;
          },
          at + cutMs - Date.now(),
          500,
        );
        h.figure('importsWithdrawnAfterS', withdrawnAt === undefined ? null : h.secs(withdrawnAt - at));
        if (withdrawnAt !== undefined) h.mark('imports withdrawn', withdrawnAt);
      }
      await sleep(at + cutMs - Date.now());
      cut.heal();
      const healAt = h.mark('gateway healed');
      h.fault('gateway cut', at, healAt);
      await sleep(measured - (Date.now() - at));
      const caused = (await pushes(h.mesh)) - p0;
      h.figure('pushesDuringAndAfterCut', caused);
      h.figure('pushesBySeries', grown(series0, await metricSeries(h.mesh, 'pilot_xds_pushes')));
      h.figure('pushTriggers', grown(triggers0, await metricSeries(h.mesh, 'pilot_push_triggers')));
      // A new proxy stream (an agent moving) is pushed everything: tell it apart from a push to held streams.
      const streams1 = await metricSeries(h.mesh, 'pilot_xds');
      h.figure('xdsStreamsBefore', [...streams0].map(([k, v]) => `${k} ${v}`).join('; '));
      h.figure(
        'agentUpstreamTerminations',
        (await agentSum(h.mesh, 'istiod_connection_terminations')) - moves0,
      );
      h.figure('xdsStreamsAfter', [...streams1].map(([k, v]) => `${k} ${v}`).join('; '));
      if (kind === 'short') h.invariant('pushesCausedByShortPartition', Math.max(0, caused - baseline));
      else {
        h.invariant('importsWithdrawn', withdrawnAt === undefined ? 0 : 1, 1);
        const restored = await poll(
          async () => {
            for (const c of h.mesh.plan.clusters) {
              const f = await adminGet<{
                remoteClusters: { stale: boolean; synced: boolean; services: number }[];
              }>(c, 0, h.mesh.token(c), '/debug/federation');
              if (!f || f.remoteClusters.some((r) => r.stale || !r.synced || r.services < 1))
                return undefined;
            }
            return Date.now();
          },
          90_000,
          500,
        );
        h.figure('importsRestoredAfterHealS', restored === undefined ? null : h.secs(restored - healAt));
        h.invariant('importsRestored', restored === undefined ? 0 : 1, 1);
        if (restored !== undefined) h.mark('imports restored', restored);
      }
      // Local traffic never depends on the gateway.
      h.rpcFigures(['east', 'west'], at, 0);
    },
  };
}

/** A Go duration as NATS prints it (`1.5ms`, `350µs`, `1.2s`, `1m2s`) in milliseconds. */
function goDurationMs(text: string | undefined): number | undefined {
  if (!text) return undefined;
  const unit: Record<string, number> = {
    h: 3_600_000,
    m: 60_000,
    s: 1000,
    ms: 1,
    µs: 0.001,
    us: 0.001,
    ns: 1e-6,
  };
  let ms = 0;
  let matched = false;
  for (const [, n, u] of text.matchAll(/([\d.]+)(h|ms|m|s|µs|us|ns)/g)) {
    ms += Number(n) * unit[u!]!;
    matched = true;
  }
  return matched ? ms : undefined;
}

interface FederationView {
  exporting: boolean;
  remoteClusters: {
    cluster: string;
    stale: boolean;
    synced: boolean;
    services: number;
    heardAgoMs?: number;
  }[];
}

/** Replicas (every one of every cluster) whose imports are not live and synced with services, by name. */
async function federationNotLive(mesh: Mesh): Promise<string[]> {
  const bad: string[] = [];
  for (const c of mesh.plan.clusters) {
    let exporters = 0;
    for (let i = 0; i < c.replicas; i++) {
      const f = await adminGet<FederationView>(c, i, mesh.token(c), '/debug/federation');
      if (!f) bad.push(`${c.name}-${i}: no answer`);
      else {
        if (f.exporting) exporters++;
        for (const r of f.remoteClusters)
          if (r.stale || !r.synced || r.services < 1)
            bad.push(
              `${c.name}-${i}: ${r.cluster} ${r.stale ? 'stale' : !r.synced ? 'not synced' : 'no services'} (heard ${r.heardAgoMs ?? '-'} ms ago)`,
            );
      }
    }
    if (exporters !== 1) bad.push(`${c.name}: ${exporters} replicas exporting`);
  }
  return bad;
}

/**
 * The federation lines (liveness, bucket re-reads) every replica logged since `from`, counted by
 * message, for a note when imports were not live: what the importer itself said about it.
 */
function federationLogSummary(mesh: Mesh, from: number): string {
  const counts = new Map<string, number>();
  for (const c of mesh.plan.clusters)
    for (let i = 0; i < c.replicas; i++) {
      let text = '';
      try {
        text = readFileSync(mesh.replica(c, i).log, 'utf8');
      } catch {
        continue;
      }
      for (const line of text.split('\n')) {
        if (!/remote cluster|remote bucket|federation/.test(line)) continue;
        try {
          const e = JSON.parse(line) as { time?: number; msg?: string; err?: unknown };
          if ((e.time ?? 0) < from || !e.msg) continue;
          const k = `${c.name}-${i}: ${e.msg}`;
          counts.set(k, (counts.get(k) ?? 0) + 1);
        } catch {
          // not a JSON log line
        }
      }
    }
  return [...counts].map(([k, n]) => `${k} (${n})`).join('; ') || 'none';
}

const LATENCY_MS = 200;

const gatewayLatency: Scenario = {
  name: 'gateway-latency',
  title: `every NATS gateway connection relayed with ${LATENCY_MS} ms added each way for 30 s (userspace proxy)`,
  async run(h) {
    if (!PortCut.available()) throw new Error('iptables is not usable here (the REDIRECT needs root)');
    const gw = h.mesh.plan.clusters.flatMap((c) => c.nats.map((n) => n.gateway));
    const holdMs = 30_000;
    const measured = holdMs + 5000;
    // Baseline: pushes over a quiet period as long as what is measured, and the imports sampled as
    // during the fault (a link that is not live before the fault says nothing about the latency).
    const b0 = await pushes(h.mesh);
    const baseFrom = Date.now();
    let baseSamples = 0;
    let baseNotLive = 0;
    const baseSeen = new Set<string>();
    while (Date.now() - baseFrom < measured) {
      const bad = await federationNotLive(h.mesh).catch((e: Error) => [`federation: ${e.message}`]);
      baseSamples++;
      if (bad.length > 0) {
        baseNotLive++;
        for (const b of bad) baseSeen.add(b.replace(/ \(heard .*\)$/, ''));
      }
      await sleep(500);
    }
    const baseline = (await pushes(h.mesh)) - b0;
    h.figure('pushesBaseline', baseline);
    h.figure('federationSamplesBaseline', baseSamples);
    h.figure('federationSamplesNotLiveBaseline', baseNotLive);
    if (baseSeen.size > 0) h.notes.push(`not live before the fault: ${[...baseSeen].join('; ')}`);
    if (baseNotLive > 0) {
      h.notes.push(`federation log lines: ${federationLogSummary(h.mesh, baseFrom)}`);
      throw new Error(`federation not live before the fault (${baseNotLive} of ${baseSamples} samples)`);
    }
    const proxies = gw.map((port) => new DelayProxy(port, LATENCY_MS));
    h.cleanups.push(() => {
      for (const p of proxies) p.stop();
    });
    const p0 = await pushes(h.mesh);
    for (const p of proxies) await p.start();
    // The gateway connections made before the REDIRECT are ended, so NATS makes them again through it.
    const at = h.mark(`gateway link +${LATENCY_MS} ms each way`);
    for (const port of gw) killConnections(port);
    // Sampled every 500 ms: NATS's own round trip on east's outbound gateway, and every replica's imports.
    const east = h.mesh.cluster('east');
    let samples = 0;
    let notLive = 0;
    const notLiveSeen = new Set<string>();
    let maxRttMs = 0;
    let throughProxyAt: number | undefined;
    while (Date.now() - at < holdMs) {
      const n = east.nats[0]!;
      const gz = (await fetch(`http://127.0.0.1:${n.monitor}/gatewayz`, { signal: AbortSignal.timeout(2000) })
        .then((r) => r.json())
        .catch(() => undefined)) as { outbound_gateways?: Record<string, { connection?: { rtt?: string } }> };
      const rtt = goDurationMs(gz?.outbound_gateways?.west?.connection?.rtt);
      if (rtt !== undefined) {
        maxRttMs = Math.max(maxRttMs, rtt);
        if (rtt >= LATENCY_MS && throughProxyAt === undefined) throughProxyAt = Date.now();
      }
      const bad = await federationNotLive(h.mesh).catch((e: Error) => [`federation: ${e.message}`]);
      samples++;
      if (bad.length > 0) {
        notLive++;
        for (const b of bad) notLiveSeen.add(b.replace(/ \(heard .*\)$/, ''));
      }
      await sleep(500);
    }
    for (const p of proxies) p.stop();
    const endAt = h.mark('latency removed');
    h.fault(`gateway +${LATENCY_MS} ms`, at, endAt);
    if (throughProxyAt !== undefined) h.mark('NATS measures the added RTT', throughProxyAt);
    h.figure('addedDelayEachWayMs', LATENCY_MS);
    h.figure('natsGatewayRttMaxMs', Math.round(maxRttMs));
    h.figure('natsRttAboveDelayAfterS', throughProxyAt === undefined ? null : h.secs(throughProxyAt - at));
    h.figure(
      'proxiedConnections',
      proxies.reduce((n, p) => n + p.connections, 0),
    );
    h.figure(
      'proxiedBytes',
      proxies.map((p) => `:${p.targetPort} ${p.bytesToTarget}/${p.bytesFromTarget}`).join('; '),
    );
    h.figure('federationSamples', samples);
    // The link really went through the proxies: NATS's own RTT and the bytes both ways.
    h.invariant(
      'linkThroughDelayProxy',
      throughProxyAt !== undefined && proxies.every((p) => p.bytesToTarget > 0 && p.bytesFromTarget > 0)
        ? 1
        : 0,
      1,
    );
    h.invariant('federationSamplesNotLive', notLive);
    if (notLiveSeen.size > 0) {
      h.notes.push(`not live: ${[...notLiveSeen].join('; ')}`);
      h.notes.push(`federation log lines: ${federationLogSummary(h.mesh, at)}`);
    }
    await sleep(measured - (Date.now() - at));
    const caused = (await pushes(h.mesh)) - p0;
    h.figure('pushesDuringAndAfter', caused);
    h.invariant('pushesCausedByLatency', Math.max(0, caused - baseline));
    h.rpcFigures(['east', 'west'], at, 0);
  },
};

const etcdQuorumLoss: Scenario = {
  name: 'etcd-quorum-loss',
  title: "east's etcd loses quorum for 30 s (2 of 3 members SIGKILLed) under writes and traffic",
  async run(h) {
    const east = h.mesh.cluster('east');
    const writer = h.startWriter('east');
    await sleep(5000);
    const at = h.mark('SIGKILL etcd-1, etcd-2');
    await Promise.all([h.mesh.kill(h.mesh.etcd(east, 1)), h.mesh.kill(h.mesh.etcd(east, 2))]);
    await sleep(30_000);
    const restoreAt = h.mark('restart (meridian up)');
    h.fault('quorum lost', at, restoreAt);
    // Calls ending 6 s after the kill or later: writes started after etcd's loss was detectable.
    h.figure('writesAcceptedWithoutQuorum', writer.count('apply', 'ack', at + 6000, restoreAt));
    h.figure('writesRefusedWithoutQuorum', writer.count('apply', 'refused', at, restoreAt));
    h.figure('writesUnknownWithoutQuorum', writer.count('apply', 'unknown', at, restoreAt));
    h.invariant('writesAcceptedWithoutQuorum', writer.count('apply', 'ack', at + 6000, restoreAt));
    h.figure('restoreS', h.secs(await h.mesh.restore()));
    const firstAck = await poll(
      async () => writer.log.find((e) => e.at > restoreAt && e.outcome === 'ack')?.at,
      60_000,
    );
    h.figure('firstWriteAckedAfterRestoreS', firstAck === undefined ? null : h.secs(firstAck - restoreAt));
    await sleep(5000);
    // Serving continues from the watched state: no failure at all, the window is 0.
    h.rpcFigures(['east', 'west'], at, 0);
  },
};

/** Sum of a counter over every replica of the mesh (their monitoring ports). */
async function metricSum(mesh: Mesh, name: string): Promise<number> {
  let sum = 0;
  for (const c of mesh.plan.clusters)
    for (const r of c.replicaPorts) {
      const text = await fetch(`http://127.0.0.1:${r.monitoring}/metrics`, {
        signal: AbortSignal.timeout(5000),
      }).then((res) => res.text());
      for (const line of text.split('\n'))
        if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) sum += Number(line.split(' ').at(-1));
    }
  return sum;
}

const nackingProxy: Scenario = {
  name: 'nacking-proxy',
  title: "a proxy behind east's client agent NACKs every response, under config writes",
  async run(h) {
    const east = h.mesh.cluster('east');
    const writer = h.startWriter('east');
    const rejects0 = await metricSum(h.mesh, 'pilot_total_xds_rejects');
    const ch = new grpc.Client(`127.0.0.1:${east.demo.agentClient}`, grpc.credentials.createInsecure());
    const p = new SimulatedProxy({
      nodeId: 'sidecar~127.0.0.1~nacker-0.demo~demo.svc.cluster.local',
      metadata: { NAMESPACE: 'demo', CLUSTER_ID: 'east' },
      variant: 'sotw',
      subscriptions: [{ typeUrl: TypeUrl.Cluster }, { typeUrl: TypeUrl.Listener }],
    });
    for (const t of [
      TypeUrl.Cluster,
      TypeUrl.Listener,
      TypeUrl.ClusterLoadAssignment,
      TypeUrl.RouteConfiguration,
    ])
      p.nackTypes.set(t, 'chaos: every response rejected on purpose');
    h.cleanups.push(() => {
      p.disconnect();
      ch.close();
    });
    const at = h.mark('NACKing proxy connected');
    p.connect(ch);
    await sleep(30_000);
    const endedEarly = p.ended;
    const end = h.mark('NACKing proxy gone');
    p.disconnect();
    h.fault('NACKing proxy', at, end);
    const nacks = [...p.state.values()].reduce((n, s) => n + s.nacks, 0);
    const responses = [...p.state.values()].reduce((n, s) => n + s.responses, 0);
    h.figure('responsesToNacker', responses);
    h.figure('nacksSent', nacks);
    h.figure('replicaRejectsCounted', (await metricSum(h.mesh, 'pilot_total_xds_rejects')) - rejects0);
    h.figure('writesAcceptedMeanwhile', writer.count('apply', 'ack', at, end));
    h.invariant('nackerGotResponses', responses > 0 && nacks > 0 ? 1 : 0, 1);
    h.invariant('nackerStreamEndedByServer', endedEarly ? 1 : 0, 0);
    await sleep(3000);
    h.rpcFigures(['east', 'west'], at, 0);
  },
};

/** A proxy behind east's client agent (SotW, CDS and LDS wildcard). */
function agentProxy(h: Harness, pod: string): { p: SimulatedProxy; ch: grpc.Client } {
  const east = h.mesh.cluster('east');
  const ch = new grpc.Client(`127.0.0.1:${east.demo.agentClient}`, grpc.credentials.createInsecure());
  const p = new SimulatedProxy({
    nodeId: `sidecar~127.0.0.1~${pod}.demo~demo.svc.cluster.local`,
    metadata: { NAMESPACE: 'demo', CLUSTER_ID: 'east' },
    variant: 'sotw',
    subscriptions: [{ typeUrl: TypeUrl.Cluster }, { typeUrl: TypeUrl.Listener }],
  });
  h.cleanups.push(() => {
    p.disconnect();
    ch.close();
  });
  return { p, ch };
}

const responses = (p: SimulatedProxy) => [...p.state.values()].reduce((n, s) => n + s.responses, 0);

const stuckProxy: Scenario = {
  name: 'stuck-proxy',
  title:
    "a proxy behind east's client agent stops reading for 30 s under config writes; a healthy one beside it",
  async run(h) {
    const writer = h.startWriter('east');
    const stuck = agentProxy(h, 'stuck-0');
    const healthy = agentProxy(h, 'healthy-0');
    stuck.p.connect(stuck.ch);
    healthy.p.connect(healthy.ch);
    const first = await poll(async () => responses(stuck.p) > 0 && responses(healthy.p) > 0, 30_000);
    if (!first) throw new Error('the two proxies got no first response within 30 s');
    const at = h.mark('proxy stops reading');
    stuck.p.stopReading();
    const stuckBefore = responses(stuck.p);
    const healthyBefore = responses(healthy.p);
    await sleep(30_000);
    const healthyDuring = responses(healthy.p) - healthyBefore;
    const resumeAt = h.mark('proxy reads again');
    h.fault('proxy stuck', at, resumeAt);
    stuck.p.resumeReading();
    h.figure('healthyProxyResponsesWhileStuck', healthyDuring);
    h.figure('writesAcceptedWhileStuck', writer.count('apply', 'ack', at, resumeAt));
    h.invariant('healthyProxyServedWhileOtherStuck', healthyDuring > 0 ? 1 : 0, 1);
    const caught = await poll(
      async () => (responses(stuck.p) > stuckBefore ? Date.now() : undefined),
      30_000,
    );
    h.figure('stuckProxyCaughtUpAfterS', caught === undefined ? null : h.secs(caught - resumeAt));
    h.invariant('stuckProxyCaughtUp', caught === undefined ? 0 : 1, 1);
    h.invariant('stuckProxyStreamEnded', stuck.p.ended ? 1 : 0, 0);
    await sleep(3000);
    h.rpcFigures(['east', 'west'], at, 0);
  },
};

const slowProxy: Scenario = {
  name: 'slow-proxy',
  title:
    "a proxy behind east's client agent reads slowly (100 ms in every 2 s) for 30 s under config writes; a healthy one beside it",
  async run(h) {
    const writer = h.startWriter('east');
    const slow = agentProxy(h, 'slow-0');
    const healthy = agentProxy(h, 'healthy-1');
    slow.p.connect(slow.ch);
    healthy.p.connect(healthy.ch);
    const first = await poll(async () => responses(slow.p) > 0 && responses(healthy.p) > 0, 30_000);
    if (!first) throw new Error('the two proxies got no first response within 30 s');
    // Responses per second of the healthy proxy before the fault: its own pace under the writes.
    const h0 = responses(healthy.p);
    await sleep(10_000);
    const healthyBefore = (responses(healthy.p) - h0) / 10;
    const at = h.mark('proxy reads slowly');
    const slowBefore = responses(slow.p);
    const healthyAt = responses(healthy.p);
    const end = at + 30_000;
    while (Date.now() < end) {
      slow.p.stopReading();
      await sleep(1900);
      slow.p.resumeReading();
      await sleep(100);
    }
    const resumeAt = h.mark('proxy reads normally');
    h.fault('proxy slow', at, resumeAt);
    const healthyDuring = (responses(healthy.p) - healthyAt) / ((resumeAt - at) / 1000);
    h.figure('healthyResponsesPerSBefore', Math.round(healthyBefore * 100) / 100);
    h.figure('healthyResponsesPerSWhileSlow', Math.round(healthyDuring * 100) / 100);
    h.figure('slowProxyResponsesWhileSlow', responses(slow.p) - slowBefore);
    h.figure('writesAcceptedWhileSlow', writer.count('apply', 'ack', at, resumeAt));
    h.invariant('healthyProxyServedWhileOtherSlow', healthyDuring > 0 ? 1 : 0, 1);
    // The healthy proxy is not slowed down by its neighbour: at least half its own pace before.
    h.invariant('healthyProxySlowedBelowHalfItsPace', healthyDuring >= healthyBefore / 2 ? 0 : 1);
    const slowAtResume = responses(slow.p);
    const caught = await poll(
      async () => (responses(slow.p) > slowAtResume ? Date.now() : undefined),
      30_000,
    );
    h.figure('slowProxyNextResponseAfterS', caught === undefined ? null : h.secs(caught - resumeAt));
    h.invariant('slowProxyServedAfterwards', caught === undefined ? 0 : 1, 1);
    h.invariant('slowProxyStreamEnded', slow.p.ended ? 1 : 0, 0);
    await sleep(3000);
    h.rpcFigures(['east', 'west'], at, 0);
  },
};

/** Bad ServiceEntries of the flood: each is refused by admission, whole. */
const BAD_SPECS = [
  (n: string) => seYaml(n).replace('number: 80', 'number: 70000'),
  (n: string) => seYaml(n).replace(`hosts: [${n}.chaos.example]`, 'hosts: []'),
  (n: string) => seYaml(n).replace('resolution: NONE', 'resolution: SOMETIMES'),
  (n: string) => seYaml(n).replace('protocol: HTTP', 'protocol: 42'),
];

const configFlood: Scenario = {
  name: 'config-flood',
  title: 'a flood of 400 applies from 4 concurrent writers to east, one in four a bad object',
  async run(h) {
    const east = h.mesh.cluster('east');
    const run = Date.now().toString(36);
    const good: { name: string; outcome: string }[] = [];
    const bad: { name: string; outcome: string; status?: number }[] = [];
    const at = h.mark('flood starts');
    let n = 0;
    await Promise.all(
      [0, 1, 2, 3].map(async (w) => {
        while (n < 400) {
          const i = n++;
          const isBad = i % 4 === 3;
          const name = `${isBad ? 'bad' : 'good'}-${run}-${i}`;
          const yaml = isBad ? BAD_SPECS[(i >> 2) % BAD_SPECS.length]!(name) : seYaml(name);
          const r = await adminCall(
            h.mesh,
            east,
            w % east.replicas,
            'POST',
            '/apis/v1/apply?source=chaos-flood',
            yaml,
          );
          (isBad ? bad : good).push({ name, outcome: r.outcome, ...(r.status ? { status: r.status } : {}) });
        }
      }),
    );
    const end = h.mark('flood ends');
    h.fault('flood', at, end);
    h.figure('floodS', h.secs(end - at));
    h.figure('goodAccepted', good.filter((g) => g.outcome === 'ack').length);
    h.figure('goodRefused', good.filter((g) => g.outcome === 'refused').length);
    h.figure('goodUnknown', good.filter((g) => g.outcome === 'unknown').length);
    h.figure('badRefused', bad.filter((b) => b.outcome === 'refused').length);
    h.figure(
      'badRefusedAs4xx',
      bad.filter((b) => b.status !== undefined && b.status >= 400 && b.status < 500).length,
    );
    await sleep(2000);
    const present = etcdNames(h.mesh, east);
    h.invariant('badObjectsAccepted', bad.filter((b) => b.outcome === 'ack').length);
    h.invariant('badObjectsInEtcd', bad.filter((b) => present.has(b.name)).length);
    h.invariant(
      'ackedGoodObjectsLost',
      good.filter((g) => g.outcome === 'ack' && !present.has(g.name)).length,
    );
    h.rpcFigures(['east', 'west'], at, 0);
  },
};

/** Whether `dir` is a mount point. */
function mounted(dir: string): boolean {
  try {
    execFileSync('mountpoint', ['-q', dir]);
    return true;
  } catch {
    return false;
  }
}

const etcdDiskFull: Scenario = {
  name: 'etcd-disk-full',
  title:
    "one of east's etcd members (a follower) on a small tmpfs that fills up, under writes and traffic; space freed after 20 s",
  async run(h) {
    const east = h.mesh.cluster('east');
    const writer = h.startWriter('east');
    await sleep(5000);
    const all = east.etcd.map((_, i) => i);
    const leader = etcdLeader(h.mesh, east, all);
    if (leader === undefined) throw new Error("east's etcd reports no leader");
    const victim = (leader + 1) % all.length;
    const spec = h.mesh.etcd(east, victim);
    const dataDir = spec.args[spec.args.indexOf('--data-dir') + 1]!;
    const saved = `${dataDir}.disk`;
    const filler = join(dataDir, 'chaos-filler');
    h.notes.push(`member ${victim} (etcd leader: ${leader}) moved onto a tmpfs`);
    // Back on its disk (also on failure): the member stopped, what it wrote on the tmpfs copied to a
    // new directory, the tmpfs unmounted, that directory put in its place. Nothing it persisted is lost
    // (a member that forgot entries it acknowledged would break raft's guarantees, not test them).
    const offTmpfs = async () => {
      if (!mounted(dataDir)) return;
      if (h.mesh.pid(spec) !== undefined) await h.mesh.kill(spec);
      rmSync(filler, { force: true });
      const back = `${dataDir}.back`;
      rmSync(back, { recursive: true, force: true });
      mkdirSync(back, { mode: 0o700 });
      execFileSync('cp', ['-a', `${dataDir}/.`, back]);
      execFileSync('umount', [dataDir]);
      rmSync(dataDir, { recursive: true, force: true });
      renameSync(back, dataDir);
      rmSync(saved, { recursive: true, force: true });
    };
    h.cleanups.push(offTmpfs);
    // Onto a tmpfs with room for what it holds and one more WAL segment (64 MB), nothing else.
    await h.mesh.kill(spec);
    const used = Number(execFileSync('du', ['-sb', dataDir], { encoding: 'utf8' }).split('\t')[0]);
    const sizeMiB = Math.ceil(used / 2 ** 20) + 72;
    renameSync(dataDir, saved);
    mkdirSync(dataDir, { mode: 0o700 });
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeMiB}m,mode=0700`, 'tmpfs', dataDir]);
    execFileSync('cp', ['-a', `${saved}/.`, dataDir]);
    h.figure('tmpfsMiB', sizeMiB);
    await ensureStarted(spec);
    await waitHealthy(spec, 60_000);
    await sleep(3000);
    const at = h.mark(`etcd-${victim}'s disk filled`);
    // The disk fills up: a file takes every byte left.
    try {
      execFileSync('dd', ['if=/dev/zero', `of=${filler}`, 'bs=1M'], { stdio: 'ignore' });
    } catch {
      // dd ends with ENOSPC: that is the point
    }
    const free = execFileSync('df', ['-B1', '--output=avail', dataDir], { encoding: 'utf8' }).split('\n')[1];
    h.figure('freeBytesAfterFill', Number(free));
    const exited = await poll(
      async () => (h.mesh.pid(spec) === undefined ? Date.now() : undefined),
      20_000,
      100,
    );
    h.figure('memberExitedAfterS', exited === undefined ? null : h.secs(exited - at));
    if (exited !== undefined) h.mark(`etcd-${victim} exited`, exited);
    const log = readFileSync(spec.log, 'utf8');
    h.figure('memberLoggedNoSpace', /no space left on device/.test(log) ? 'yes' : 'no');
    await sleep(Math.max(0, at + 20_000 - Date.now()));
    const freedAt = h.mark('space freed, member restarted');
    h.fault(`etcd-${victim} disk full`, at, freedAt);
    h.figure('writesAcceptedWhileFull', writer.count('apply', 'ack', at, freedAt));
    h.figure('writesRefusedWhileFull', writer.count('apply', 'refused', at, freedAt));
    h.figure('writesUnknownWhileFull', writer.count('apply', 'unknown', at, freedAt));
    // Two members of three keep the quorum: writes go on.
    h.invariant(
      'noWriteAcceptedWhileOneMemberFull',
      writer.count('apply', 'ack', at + 3000, freedAt) > 0 ? 0 : 1,
    );
    rmSync(filler, { force: true });
    await ensureStarted(spec);
    const healthy = await poll(
      async () => ((await probe(spec.health)) ? Date.now() : undefined),
      60_000,
      200,
    );
    h.figure('memberHealthyAfterFreeS', healthy === undefined ? null : h.secs(healthy - freedAt));
    h.invariant('memberRejoined', healthy === undefined ? 0 : 1, 1);
    // Caught up: its raft applied index is the leader's (etcd's own status of each member).
    const caughtUp = await poll(
      async () => {
        const rows = JSON.parse(h.mesh.etcdctl(east, ['endpoint', 'status', '-w', 'json'])) as {
          Endpoint: string;
          Status: { raftAppliedIndex: number; raftIndex: number; header: { revision: number } };
        }[];
        const mine = rows.find((r) => r.Endpoint.endsWith(`:${east.etcd[victim]!.client}`));
        const max = Math.max(...rows.map((r) => r.Status.header.revision));
        return mine && rows.length === all.length && mine.Status.header.revision === max
          ? Date.now()
          : undefined;
      },
      60_000,
      500,
    );
    h.figure('memberCaughtUpAfterFreeS', caughtUp === undefined ? null : h.secs(caughtUp - freedAt));
    h.invariant('memberCaughtUp', caughtUp === undefined ? 0 : 1, 1);
    if (caughtUp !== undefined) h.mark(`etcd-${victim} caught up`, caughtUp);
    await sleep(3000);
    await offTmpfs();
    h.figure('restoreS', h.secs(await h.mesh.restore()));
    h.invariant('tmpfsLeftMounted', mounted(dataDir) || existsSync(saved) ? 1 : 0);
    await sleep(3000);
    h.rpcFigures(['east', 'west'], at, 0);
  },
};

const replicaRestartWithoutEtcd: Scenario = {
  name: 'replica-restart-without-etcd',
  title: "all of east's etcd down, an east replica SIGKILLed and restarted: it serves from its disk snapshot",
  async run(h) {
    const east = h.mesh.cluster('east');
    const victim = 1;
    const at = h.mark('SIGKILL east etcd 0-2');
    await Promise.all([0, 1, 2].map((i) => h.mesh.kill(h.mesh.etcd(east, i))));
    await h.mesh.kill(h.mesh.replica(east, victim));
    const restartAt = h.mark(`east-${victim} restarted`);
    await ensureStarted(h.mesh.replica(east, victim));
    // A fresh proxy straight to the restarted replica's TLS port, with the east client agent's
    // workload certificate (demo/client): does it get the echo cluster?
    const certDir = join(h.mesh.paths.demo('east'), 'agent-client', 'certs');
    const creds = grpc.credentials.createSsl(
      readFileSync(join(certDir, 'root-cert.pem')),
      readFileSync(join(certDir, 'key.pem')),
      readFileSync(join(certDir, 'cert-chain.pem')),
      { checkServerIdentity: () => undefined },
    );
    const ch = new grpc.Client(`127.0.0.1:${east.replicaPorts[victim]!.ca}`, creds);
    const p = new SimulatedProxy({
      nodeId: 'sidecar~127.0.0.1~client-probe.demo~demo.svc.cluster.local',
      metadata: { NAMESPACE: 'demo', CLUSTER_ID: 'east' },
      variant: 'sotw',
      subscriptions: [{ typeUrl: TypeUrl.Cluster }],
    });
    h.cleanups.push(() => {
      p.disconnect();
      ch.close();
    });
    // The stream is retried until the replica answers (it may not listen yet).
    // The stream is opened again when it ends or stays silent for 5 s (the replica may not listen yet).
    const servedWithin = (ms: number) => {
      let connectedAt = 0;
      return poll(
        async () => {
          if (p.ended || (p.state.size === 0 && Date.now() - connectedAt > 5000)) {
            p.disconnect();
            p.connect(ch);
            connectedAt = Date.now();
          }
          return (p.state.get(TypeUrl.Cluster)?.resources.size ?? 0) > 0 ? Date.now() : undefined;
        },
        ms,
        500,
      );
    };
    const served = await servedWithin(40_000);
    const spec = h.mesh.replica(east, victim);
    h.figure('restartedReplicaAlive', h.mesh.pid(spec) === undefined ? 'no' : 'yes');
    h.figure(
      'restartedReplicaTlsPortListening',
      (await probe({ kind: 'tcp', port: east.replicaPorts[victim]!.ca })) ? 'yes' : 'no',
    );
    h.figure('servedFromDiskAfterS', served === undefined ? null : h.secs(served - restartAt));
    h.invariant('restartedReplicaServedWithoutEtcd', served === undefined ? 0 : 1, 1);
    if (served !== undefined) h.mark('restarted replica served', served);
    else h.notes.push(`no CDS from east-${victim} within 40 s; stream ended: ${p.ended?.details ?? 'no'}`);
    const restoreAt = h.mark('etcd restarted (meridian up)');
    h.fault('east etcd down', at, restoreAt);
    h.figure('restoreS', h.secs(await h.mesh.restore()));
    // Control: the same probe is served by the same replica once etcd is back.
    p.disconnect();
    p.state.clear();
    const control = await servedWithin(30_000);
    h.figure('servedOnceEtcdBackS', control === undefined ? null : h.secs(control - restoreAt));
    await sleep(3000);
    // Serving never depended on etcd: the clients' calls all succeed.
    h.rpcFigures(['east', 'west'], at, 0);
  },
};

const FAKETIME_LIB = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';

const replicaClockSkew: Scenario = {
  name: 'replica-clock-skew',
  title:
    "east's follower restarted under libfaketime (clock 2 min ahead, running at half speed), then every other east replica SIGKILLed so the skewed one leads for 40 s, under writes",
  async run(h) {
    const { existsSync } = await import('node:fs');
    if (!existsSync(FAKETIME_LIB)) throw new Error(`${FAKETIME_LIB} is missing (apt-get install faketime)`);
    const east = h.mesh.cluster('east');
    const writer = h.startWriter('east');
    await sleep(3000);
    const leader = await replicaLeader(h.mesh, east);
    if (leader === undefined) throw new Error('east has no leader replica');
    const follower = (leader + 1) % east.replicas;
    const spec = h.mesh.replica(east, follower);
    const at = h.mark(`east-${follower} restarted skewed`);
    await h.mesh.kill(spec);
    const skewed = { ...spec, env: { ...spec.env, LD_PRELOAD: FAKETIME_LIB, FAKETIME: '+120s x0.5' } };
    await ensureStarted(skewed);
    await waitHealthy(skewed, 120_000);
    h.figure('skewedReadyAfterS', h.secs(Date.now() - at));
    // Every other replica goes (the leader, and with 3 replicas the other follower, which could
    // otherwise win the election): the skewed one must lead.
    const others = Array.from({ length: east.replicas }, (_, i) => i).filter((i) => i !== follower);
    const killAt = h.mark(`SIGKILL east-${others.join(', east-')} (leader east-${leader})`);
    await Promise.all(others.map((i) => h.mesh.kill(h.mesh.replica(east, i))));
    const took = await poll(async () => {
      const s = await adminGet<LeaderStatus>(east, follower, h.mesh.token(east), '/debug/leader');
      return s?.isLeader ? Date.now() : undefined;
    }, 60_000);
    h.figure('skewedReplicaLeadsAfterS', took === undefined ? null : h.secs(took - killAt));
    h.invariant('skewedReplicaTookLeadership', took === undefined ? 0 : 1, 1);
    // Every 500 ms for 40 s: does the skewed leader keep its lease (asked of itself)?
    let samples = 0;
    let lost = 0;
    const end = Date.now() + 40_000;
    while (Date.now() < end) {
      const s = await adminGet<LeaderStatus>(east, follower, h.mesh.token(east), '/debug/leader');
      samples++;
      if (!s?.isLeader) lost++;
      await sleep(500);
    }
    const restoreAt = h.mark('skewed replica replaced (meridian up)');
    h.fault('clock skewed', at, restoreAt);
    h.figure('leaderSamples', samples);
    h.invariant('samplesSkewedLeaderNotLeading', lost);
    h.figure('writesAcceptedWhileSkewed', writer.count('apply', 'ack', at, restoreAt));
    h.figure('writesRefusedWhileSkewed', writer.count('apply', 'refused', at, restoreAt));
    await h.mesh.kill(spec);
    h.figure('restoreS', h.secs(await h.mesh.restore()));
    await sleep(3000);
    h.rpcFigures(['east', 'west'], at, 10_000);
  },
};

/** `meridian <args>` (the CLI from this repository); resolves with its output, rejects with it. */
function meridian(args: readonly string[]): Promise<string> {
  const [node, ...pre] = [process.execPath, ...program('cli', 'main')];
  return new Promise((resolve, reject) =>
    execFile(node!, [...pre, ...args], { encoding: 'utf8', timeout: 120_000 }, (err, stdout, stderr) => {
      if (err)
        reject(
          new Error(`meridian ${args.slice(0, 3).join(' ')}: ${(stderr || stdout || err.message).trim()}`),
        );
      else resolve(stdout);
    }),
  );
}

/** SHA-256 fingerprints of the certificates of a PEM bundle. */
function fingerprints(pem: string | undefined): string[] {
  return pemBlocks(pem ?? '').map((p) => new X509Certificate(p).fingerprint256);
}

const caRootRotation: Scenario = {
  name: 'ca-root-rotation',
  title:
    'the mesh root rotated with `meridian ca rotate` on both clusters (add-root, intermediate, remove-root) and back, under mTLS calls between SDS-fed workloads in east and west',
  async run(h) {
    const { mesh } = h;
    const td = mesh.plan.trustDomain;
    const east = mesh.cluster('east');
    const west = mesh.cluster('west');
    // The client in east, the server in west: each call crosses the clusters' CAs.
    const client = new SdsWorkload(mesh, east, 0, 'client', `spiffe://${td}/ns/demo/sa/client`);
    const server = new SdsWorkload(mesh, west, 0, 'echo-v1', `spiffe://${td}/ns/demo/sa/echo`);
    const workloads = [client, server];
    h.cleanups.push(() => {
      for (const w of workloads) w.stop();
    });
    for (const w of workloads) w.start();
    if (!(await poll(async () => client.ready && server.ready, 30_000)))
      throw new Error('the SDS workloads got no default and ROOTCA secrets within 30 s');
    const traffic = new MtlsTraffic(client, server, 100);
    h.cleanups.push(() => traffic.stop());
    h.series.set('mTLS calls', () => traffic.calls);
    await traffic.start();
    await sleep(5000);
    const pre = traffic.count();
    h.figure('mtlsCallsBeforeRotation', pre.ok);
    if (pre.ok === 0 || pre.failed > 0)
      throw new Error(`mTLS calls not steady before the rotation: ${pre.ok} ok, ${traffic.errors()}`);

    // The roots: the mesh's own (root-1, made by `meridian up`) and a new one (root-2, `meridian ca init`).
    const root1Dir = mesh.paths.rootDir;
    const root2Dir = join(mesh.dir, 'root-2');
    await meridian(['ca', 'init', '--out', root2Dir, '--key-type', 'ecdsa-p256', '--trust-domain', td]);
    const roots = new Map<string, string>([
      ['root-1', readFileSync(join(root1Dir, 'root-cert.pem'), 'utf8')],
      ['root-2', readFileSync(join(root2Dir, 'root-cert.pem'), 'utf8')],
    ]);
    const fp = (name: string) => fingerprints(roots.get(name))[0]!;
    const dirOf = { 'root-1': root1Dir, 'root-2': root2Dir } as Record<string, string>;
    for (const c of mesh.plan.clusters)
      writeFileSync(
        join(mesh.paths.caDir(c.name), 'meridian.json'),
        `${JSON.stringify({ clusterId: c.name, trustDomain: td })}\n`,
      );
    const install = (c: ClusterPlan) => [
      ...[
        '--etcd',
        etcdEndpoints(c).join(','),
        '--mesh',
        mesh.plan.mesh,
        '--kek-file',
        mesh.paths.kek(c.name),
      ],
    ];
    const bundleIs = (names: string[]) => () =>
      workloads.every((w) => {
        const have = fingerprints(w.bundlePem).sort();
        return have.length === names.length && names.every((n) => have.includes(fp(n)));
      });
    const chainsTo = (name: string) => () =>
      workloads.every((w) => w.chainPem !== undefined && anchorOf(w.chainPem, roots) === name);
    const steps: { label: string; args: (c: ClusterPlan) => string[]; done: () => boolean }[] = [];
    for (const [from, to] of [
      ['root-1', 'root-2'],
      ['root-2', 'root-1'],
    ] as const)
      steps.push(
        {
          label: `add-root ${to}`,
          args: (c) => [
            'ca',
            'rotate',
            'add-root',
            '--dir',
            mesh.paths.caDir(c.name),
            '--new-root-dir',
            dirOf[to]!,
          ],
          done: bundleIs([from, to]),
        },
        {
          label: `intermediate under ${to}`,
          args: (c) => [
            ...['ca', 'rotate', 'intermediate', '--dir', mesh.paths.caDir(c.name)],
            ...['--new-root-dir', dirOf[to]!, '--key-type', 'ecdsa-p256'],
          ],
          done: chainsTo(to),
        },
        {
          label: `remove-root ${from}`,
          args: (c) => [
            'ca',
            'rotate',
            'remove-root',
            '--dir',
            mesh.paths.caDir(c.name),
            '--old-root-dir',
            dirOf[from]!,
          ],
          done: bundleIs([to]),
        },
      );
    const at = h.mark('rotation starts');
    let observed = 0;
    for (const step of steps) {
      const t = Date.now();
      await Promise.all(mesh.plan.clusters.map((c) => meridian([...step.args(c), ...install(c)])));
      const applied = Date.now();
      const seen = await poll(async () => (step.done() ? Date.now() : undefined), 60_000, 100);
      h.figure(`${step.label}: commandS`, h.secs(applied - t));
      h.figure(`${step.label}: atBothWorkloadsS`, seen === undefined ? null : h.secs(seen - applied));
      if (seen === undefined) {
        h.notes.push(`${step.label}: not seen by both workloads within 60 s`);
        break;
      }
      observed++;
      h.mark(step.label, seen);
      // Calls go on under the new state before the next step.
      await sleep(3000);
    }
    const end = h.mark('rotated back');
    h.fault('root rotation', at, end);
    await sleep(2000);
    const during = traffic.count(at);
    h.figure('mtlsCallsOk', during.ok);
    h.figure('mtlsCallsFailed', during.failed);
    if (during.failed > 0) h.notes.push(`mTLS call errors: ${traffic.errors()}`);
    const issued = workloads.map((w) => w.events.filter((e) => e.name === 'default' && e.at >= at).length);
    h.figure('certificatesPushedClientServer', issued.join('/'));
    const wrongCerts = workloads.reduce(
      (n, w) =>
        n +
        w.events.filter((e) => e.name === 'default' && (e.sans?.length !== 1 || e.sans[0] !== w.spiffeId))
          .length,
      0,
    );
    // Controls: the handshakes really are verified. The client trusting only the root removed last
    // (root-2) is refused by the server's chain; with its own bundle it is served.
    const refused = await traffic.probe(roots.get('root-2')!);
    const served = await traffic.probe(client.bundlePem!);
    h.figure('controlRemovedRootOnly', refused.ok ? 'served' : `refused (${refused.error})`);
    h.invariant('controlRemovedRootOnlyRefused', refused.ok ? 0 : 1, 1);
    h.invariant('controlOwnBundleServed', served.ok ? 1 : 0, 1);
    h.invariant('rotationStepsSeenByBothWorkloads', observed, steps.length);
    h.invariant('mtlsCallsFailed', during.failed);
    h.invariant('wrongIdentityCertificates', wrongCerts + during.wrongIdentity);
    h.invariant('sdsStreamsEnded', workloads.filter((w) => w.ended).length);
    // The demo's own traffic (agents, plaintext between workloads) is not disturbed either.
    h.rpcFigures(['east', 'west'], at, 0);
  },
};

/** Every scenario, in priority order. */
export const SCENARIOS: readonly Scenario[] = [
  replicaKill('leader'),
  replicaKill('follower'),
  etcdLeaderKill,
  clusterBackendsLost,
  nackingProxy,
  stuckProxy,
  slowProxy,
  configFlood,
  gatewayPartition('short'),
  gatewayPartition('long'),
  gatewayLatency,
  etcdQuorumLoss,
  etcdDiskFull,
  replicaRestartWithoutEtcd,
  replicaClockSkew,
  caRootRotation,
];

/** The short subset run by chaos/ci.test.ts. */
export const CI_SUBSET = ['replica-kill-leader', 'cluster-backends-lost', 'nacking-proxy'];

export function scenario(name: string): Scenario {
  const s = SCENARIOS.find((x) => x.name === name);
  if (!s) throw new Error(`no scenario "${name}" (pnpm chaos --list names them)`);
  return s;
}

export type { Harness };
