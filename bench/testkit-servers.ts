// How long the testkit takes to give tests real servers: etcd start, 3-member cluster ready, leader
// replacement after SIGKILL (fast election), NATS start and gateway supercluster ready. Median of --runs.
import { startEtcd, startEtcdCluster, startNats, startNatsSupercluster } from '@meridian/testkit';
import { emitResult, log, median, nowMs, parseFlags, printTable, repeat, round3 } from './lib/index.js';

const flags = {
  runs: { type: 'integer', default: 3, help: 'repetitions; figures are medians' },
  clusterSize: { type: 'integer', default: 3, help: 'etcd cluster members' },
  jetstream: { type: 'boolean', default: false, help: 'JetStream on the NATS servers and supercluster' },
  tmpfs: { type: 'boolean', default: true, help: 'etcd data dirs on /dev/shm' },
} as const;

export async function main(args: string[]): Promise<void> {
  const f = parseFlags(args, flags, {
    bench: 'testkit-servers',
    description: 'Start-up and failover times of the real etcd and NATS servers the testkit runs.',
  });
  const runs = await repeat(f.runs, async (run) => {
    let t0 = nowMs();
    const single = await startEtcd({ tmpfs: f.tmpfs });
    const etcdStart = nowMs() - t0;
    await single.stop();

    t0 = nowMs();
    const cluster = await startEtcdCluster({ size: f.clusterSize, fastElection: true, tmpfs: f.tmpfs });
    const clusterReady = nowMs() - t0;
    let leaderReplace: number;
    try {
      const old = await cluster.leader();
      t0 = nowMs();
      await old.kill();
      await cluster.leader({ timeoutMs: 15_000 });
      leaderReplace = nowMs() - t0;
    } finally {
      await cluster.stop();
    }

    t0 = nowMs();
    const nats = await startNats({ jetstream: f.jetstream });
    const natsStart = nowMs() - t0;
    await nats.stop();

    t0 = nowMs();
    const sc = await startNatsSupercluster({
      clusters: [{ name: 'a' }, { name: 'b' }],
      jetstream: f.jetstream,
    });
    const superclusterReady = nowMs() - t0;
    await sc.stop();

    const r = { etcdStart, clusterReady, leaderReplace, natsStart, superclusterReady };
    log(
      `run ${run + 1}/${f.runs}: ${Object.entries(r)
        .map(([k, v]) => `${k} ${v.toFixed(0)} ms`)
        .join(', ')}`,
    );
    return r;
  });
  const keys = ['etcdStart', 'clusterReady', 'leaderReplace', 'natsStart', 'superclusterReady'] as const;
  log();
  printTable(
    keys.map((k) => ({
      figure: k,
      median: median(runs.map((r) => r[k])),
      min: Math.min(...runs.map((r) => r[k])),
      max: Math.max(...runs.map((r) => r[k])),
    })),
  );
  emitResult({
    runs: f.runs,
    clusterSize: f.clusterSize,
    jetstream: f.jetstream,
    ...Object.fromEntries(keys.map((k) => [`${k}Ms`, round3(median(runs.map((r) => r[k])))])),
  });
}
