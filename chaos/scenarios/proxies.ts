// Scenarios of proxies and config: a proxy that NACKs, one that stops reading, one that reads slowly,
// and a flood of config writes with bad objects among them.
import * as grpc from '@grpc/grpc-js';
import { TypeUrl } from '../../packages/envoy/src/type-urls.js';
import { SimulatedProxy } from '../../packages/testkit/src/index.js';
import type { Harness, Scenario } from '../lib/harness.js';
import { poll, sleep } from '../lib/mesh.js';
import { adminCall, etcdNames, seYaml } from '../lib/writer.js';
import { metricSum } from './observe.js';

export const nackingProxy: Scenario = {
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

/** Two proxies behind east's client agent (see agentProxy), connected, each with a first response (30 s at most). */
async function connectedAgentProxies(
  h: Harness,
  a: string,
  b: string,
): Promise<[ReturnType<typeof agentProxy>, ReturnType<typeof agentProxy>]> {
  const pa = agentProxy(h, a);
  const pb = agentProxy(h, b);
  pa.p.connect(pa.ch);
  pb.p.connect(pb.ch);
  const first = await poll(async () => responses(pa.p) > 0 && responses(pb.p) > 0, 30_000);
  if (!first) throw new Error('the two proxies got no first response within 30 s');
  return [pa, pb];
}

export const stuckProxy: Scenario = {
  name: 'stuck-proxy',
  title:
    "a proxy behind east's client agent stops reading for 30 s under config writes; a healthy one beside it",
  async run(h) {
    const writer = h.startWriter('east');
    const [stuck, healthy] = await connectedAgentProxies(h, 'stuck-0', 'healthy-0');
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

export const slowProxy: Scenario = {
  name: 'slow-proxy',
  title:
    "a proxy behind east's client agent reads slowly (100 ms in every 2 s) for 30 s under config writes; a healthy one beside it",
  async run(h) {
    const writer = h.startWriter('east');
    const [slow, healthy] = await connectedAgentProxies(h, 'slow-0', 'healthy-1');
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

export const configFlood: Scenario = {
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
