// Scenarios across clusters: a cluster's backends lost (failover to the other), the NATS gateway
// between the clusters cut (briefly or for long) or slowed.
import { readFileSync } from 'node:fs';
import { adminGet } from '../../packages/cli/src/local/admin.js';
import { DelayProxy, killConnections } from '../lib/delay.js';
import type { Scenario } from '../lib/harness.js';
import { type Mesh, poll, sleep } from '../lib/mesh.js';
import { PortCut } from '../lib/net.js';
import { metricSum } from './observe.js';

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

export const clusterBackendsLost: Scenario = {
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

export function gatewayPartition(kind: 'short' | 'long'): Scenario {
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

export const gatewayLatency: Scenario = {
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
