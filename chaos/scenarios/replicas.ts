// Scenarios of the replicas: a leader or follower killed, a replica restarted while etcd is down, a
// replica whose clock is skewed.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { adminGet } from '../../packages/cli/src/local/admin.js';
import type { ClusterPlan } from '../../packages/cli/src/local/plan.js';
import { ensureStarted, probe, waitHealthy } from '../../packages/cli/src/local/procs.js';
import { TypeUrl } from '../../packages/envoy/src/type-urls.js';
import { SimulatedProxy } from '../../packages/testkit/src/index.js';
import type { Scenario } from '../lib/harness.js';
import { type Mesh, poll, sleep } from '../lib/mesh.js';

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

export function replicaKill(which: 'leader' | 'follower'): Scenario {
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
      await h.restoreAfterOutage(`${id} down`, at, writer);
    },
  };
}

export const replicaRestartWithoutEtcd: Scenario = {
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

export const replicaClockSkew: Scenario = {
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
