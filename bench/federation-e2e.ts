// Issue 7's end-to-end federation benchmark:
//
//   pnpm bench federation --e2e [--proxies 1000] [--rounds 20] [--warmup 3] [--debounce 20ms] [--puts 200]
//
// Two clusters, A (east) and B (west), each a 3-member etcd; A runs one meridiand (its leader, the
// exporter), B three (importers) with N simulated Delta proxies spread over them; the NATS clusters
// (one server each, JetStream on) are joined by a gateway, with the generated per-cluster nkey users
// and permissions (replicas get their seed with --nats-creds). Per round, one endpoint registers in A
// (a WorkloadEntry applied through A's admin API); measured: from the write returning to the LAST
// proxy in B receiving (and ACKing, same tick) the ClusterLoadAssignment with it. Its floor, measured
// in interleaved rounds of the same run: etcd put -> watch (A's etcd) + NATS publish -> subscribe across
// the gateway (payload of one service record) + the xDS fan-out floor (3 bare XdsServer processes
// pushing a precomputed change to the same number of proxies, same debounce). Readable figures, then
// one JSON line (target: p99 <= 1.5 x floor p99 and < 300 ms).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TypeUrl } from '@meridian/envoy';
import { generateClusterCredentials, renderNatsAuthorization } from '@meridian/federation';
import {
  type EtcdCluster,
  eventually,
  freePorts,
  LoadGenerator,
  type NatsSupercluster,
  SimulatedProxy,
  startEtcdCluster,
  startNatsSupercluster,
} from '@meridian/testkit';
import { connect, type NatsConnection, nkeyAuthenticator } from '@nats-io/transport-node';
import { type ReplicaProcess, type spawnTs, startReplicas } from '../packages/server/test/harness.js';
import { EtcdFloor } from './lib/etcd-floor.js';
import { startFloorServers } from './lib/fanout-floor.js';
import {
  emitResult,
  formatMs,
  LatencyRecorder,
  log,
  parseFlags,
  printLatency,
  roundSummary,
} from './lib/index.js';

const RDS = TypeUrl.RouteConfiguration;
const EDS = TypeUrl.ClusterLoadAssignment;
const MESH = 'test'; // the harness starts replicas in mesh "test"
const HOST = 'reviews.default.svc.cluster.local';

const FLAGS = {
  e2e: {
    type: 'boolean',
    default: true,
    help: 'this end-to-end mode (bench/federation.ts dispatches on it)',
  },
  proxies: {
    type: 'integer',
    default: 1000,
    help: 'simulated proxies in cluster B, spread over its 3 replicas',
  },
  rounds: { type: 'integer', default: 20, help: 'measured endpoint registrations' },
  warmup: { type: 'integer', default: 3, help: 'unmeasured registrations first' },
  debounce: { type: 'duration', default: 20, help: 'push debounce of the replicas and of the floor servers' },
  puts: { type: 'integer', default: 200, help: 'etcd put->watch and NATS publish->subscribe samples' },
} as const;

const SERVICE = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [${HOST}]
  location: MESH_INTERNAL
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: reviews}}
`;

function workloadEntry(i: number): string {
  return `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-${i}, namespace: default}
spec:
  address: 10.9.${Math.floor(i / 250)}.${(i % 250) + 1}
  ports: {http: 9080}
  labels: {app: reviews}
  locality: us-east1/us-east1-a
  network: net-a
`;
}

/** A Delta sidecar of cluster B subscribing to every type by wildcard (Envoy's order). */
function proxyOptions(i: number) {
  const ip = `10.1.${Math.floor(i / 250)}.${(i % 250) + 1}`;
  return new SimulatedProxy({
    nodeId: `sidecar~${ip}~client-${i}.default~default.svc.cluster.local`,
    metadata: { NAMESPACE: 'default', CLUSTER_ID: 'west', LABELS: { app: 'client' } },
    variant: 'delta',
    subscriptions: [TypeUrl.Cluster, EDS, TypeUrl.Listener, RDS].map((typeUrl) => ({ typeUrl })),
  }).options;
}

function generators(addresses: readonly string[], proxies: number): LoadGenerator[] {
  return addresses.map(
    (address, s) =>
      new LoadGenerator({
        address,
        proxies: Math.floor(proxies / addresses.length) + (s < proxies % addresses.length ? 1 : 0),
        proxy: (i) => proxyOptions(s * 100_000 + i),
        streamsPerConnection: 50,
      }),
  );
}

const all = (gens: readonly LoadGenerator[]) => gens.flatMap((g) => g.proxies);

async function connectAll(gens: LoadGenerator[], what: string, ready: (p: SimulatedProxy) => boolean) {
  for (const g of gens) g.connect();
  const msStart = performance.now();
  await eventually(what, () => all(gens).every(ready), 240_000, 50);
  const ms = performance.now() - msStart;
  log(`${what}: ${all(gens).length} proxies synced in ${formatMs(ms)}`);
}

/** Mark, change, wait for every proxy's response of `typeUrl`: the time from `change()`'s result to the last. */
async function round(gens: LoadGenerator[], typeUrl: string, change: () => Promise<number>): Promise<number> {
  const markAt = Math.min(...gens.map((g) => g.mark()));
  const returned = await change();
  await eventually(
    'every proxy got the change',
    () => all(gens).every((p) => p.sinceMark.has(typeUrl)),
    60_000,
    2,
  );
  return Math.max(...all(gens).map((p) => Math.max(0, markAt + p.sinceMark.get(typeUrl)! - returned)));
}

/** NATS publish (A) -> subscriber callback (B) across the gateway, on A's own subject space. */
class NatsFloor {
  readonly rec = new LatencyRecorder();
  #waiter: (() => void) | undefined;
  readonly #subject = `meridian.${MESH}.fed.east.svc.default.floor.default.svc.cluster.local`;
  readonly #payload: Uint8Array;

  constructor(
    private readonly a: NatsConnection,
    private readonly b: NatsConnection,
    bytes: number,
  ) {
    this.#payload = new TextEncoder().encode('x'.repeat(bytes));
    b.subscribe(this.#subject, { callback: () => this.#waiter?.() });
  }

  async open(): Promise<void> {
    await this.b.flush();
    for (;;) {
      const got = new Promise<boolean>((resolve) => {
        this.#waiter = () => resolve(true);
        setTimeout(() => resolve(false), 200);
      });
      this.a.publish(this.#subject, this.#payload);
      if (await got) return;
    }
  }

  async sample(count: number, warmup = false): Promise<void> {
    for (let i = 0; i < count; i++) {
      const got = new Promise<void>((resolve) => {
        this.#waiter = resolve;
      });
      const t0 = performance.now();
      this.a.publish(this.#subject, this.#payload);
      await got;
      if (!warmup) this.rec.record(performance.now() - t0);
    }
  }
}

export async function main(args: string[]): Promise<void> {
  const flags = parseFlags(args, FLAGS, {
    bench: 'federation',
    description:
      'endpoint registered in cluster A -> last of N proxies in cluster B ACKs it, vs etcd + NATS + xDS fan-out floor',
  });
  const dir = mkdtempSync(join(tmpdir(), 'meridian-bench-fed-'));
  const credsA = generateClusterCredentials('east');
  const credsB = generateClusterCredentials('west');
  writeFileSync(join(dir, 'east.nk'), credsA.seed!, { mode: 0o600 });
  writeFileSync(join(dir, 'west.nk'), credsB.seed!, { mode: 0o600 });
  const auth = renderNatsAuthorization({ mesh: MESH, clusters: [credsA, credsB] });
  let sc: NatsSupercluster | undefined;
  let etcdA: EtcdCluster | undefined;
  let etcdB: EtcdCluster | undefined;
  let replicas: ReplicaProcess[] = [];
  let gens: LoadGenerator[] = [];
  let floorGens: LoadGenerator[] = [];
  let etcdFloor: EtcdFloor | undefined;
  const conns: NatsConnection[] = [];
  const floorServers: ReturnType<typeof spawnTs>[] = [];
  try {
    [sc, etcdA, etcdB] = await Promise.all([
      startNatsSupercluster({
        clusters: [{ name: 'east' }, { name: 'west' }],
        jetstream: true,
        configExtra: () => auth,
      }),
      startEtcdCluster({ size: 3 }),
      startEtcdCluster({ size: 3 }),
    ]);
    const natsA = sc.clusters.east![0]!.url;
    const natsB = sc.clusters.west![0]!.url;
    const total = flags.warmup + flags.rounds;
    const ports = await freePorts(8);
    const common = ['--debounce-ms', String(flags.debounce), '--log-level', 'warn'];
    replicas = await startReplicas([
      {
        id: 'a0',
        etcd: etcdA.endpoints,
        xdsPort: ports[0]!,
        adminPort: ports[1]!,
        extraArgs: [
          ...common,
          '--cluster-id',
          'east',
          '--locality',
          'us-east1/us-east1-a',
          '--nats-url',
          natsA,
          '--nats-creds',
          join(dir, 'east.nk'),
        ],
      },
      ...[0, 1, 2].map((i) => ({
        id: `b${i}`,
        etcd: etcdB!.endpoints,
        xdsPort: ports[2 + 2 * i]!,
        adminPort: ports[3 + 2 * i]!,
        extraArgs: [
          ...common,
          '--cluster-id',
          'west',
          '--locality',
          'us-west1/us-west1-a',
          '--nats-url',
          natsB,
          '--nats-creds',
          join(dir, 'west.nk'),
        ],
      })),
    ]);
    const [a, ...bs] = replicas as [ReplicaProcess, ...ReplicaProcess[]];
    for (const r of [a, bs[0]!]) {
      const res = await r.apply(SERVICE);
      if (res.status !== 200) throw new Error(`apply failed on ${r.spec.id}: ${JSON.stringify(res.body)}`);
    }
    await eventually(
      'A exporting',
      async () => (await a.getJson<{ exporting: boolean }>('/debug/federation')).exporting,
      60_000,
      100,
    );

    const dial = async (url: string, seed: string) => {
      const nc = await connect({
        servers: url,
        authenticator: nkeyAuthenticator(new TextEncoder().encode(seed)),
      });
      conns.push(nc);
      return nc;
    };
    // Floor NATS publishes on A's own subjects, so A's user is allowed; B's user subscribes.
    const natsFloor = new NatsFloor(await dial(natsA, credsA.seed!), await dial(natsB, credsB.seed!), 700);
    await natsFloor.open();
    etcdFloor = await EtcdFloor.open(etcdA);
    const floorAddresses = await startFloorServers(floorServers, total, flags.debounce);
    gens = generators(
      bs.map((r) => r.xds),
      flags.proxies,
    );
    floorGens = generators(floorAddresses, flags.proxies);
    await connectAll(gens, 'cluster B replicas', (p) => (p.state.get(EDS)?.resources.size ?? 0) > 0);
    await connectAll(floorGens, 'fan-out floor servers', (p) => (p.state.get(RDS)?.resources.size ?? 0) > 0);
    await etcdFloor.sample(20, true);
    await natsFloor.sample(20, true);

    const e2e = new LatencyRecorder();
    const fanout = new LatencyRecorder();
    const perRound = Math.max(1, Math.ceil(flags.puts / flags.rounds));
    for (let i = 1; i <= total; i++) {
      const measured = i > flags.warmup;
      const last = await round(gens, EDS, async () => {
        const res = await a.apply(workloadEntry(i));
        if (res.status !== 200) throw new Error(`apply failed: ${JSON.stringify(res.body)}`);
        return performance.now();
      });
      const f = await round(floorGens, RDS, async () => {
        const at = performance.now();
        for (const c of floorServers) c.stdin?.write(`bump ${i}\n`);
        return at;
      });
      await etcdFloor.sample(perRound, !measured);
      await natsFloor.sample(perRound, !measured);
      if (measured) {
        e2e.record(last);
        fanout.record(f);
      }
    }
    const e = roundSummary(e2e.summary());
    const et = roundSummary(etcdFloor.rec.summary());
    const nt = roundSummary(natsFloor.rec.summary());
    const fo = roundSummary(fanout.summary());
    const r3 = (x: number) => Math.round(x * 1000) / 1000;
    const floor = { p50: r3(et.p50 + nt.p50 + fo.p50), p99: r3(et.p99 + nt.p99 + fo.p99) };
    log();
    log(`${flags.proxies} Delta proxies in cluster B (3 replicas), ${flags.rounds} registrations in A`);
    printLatency('registered in A -> last B proxy ACK ', e);
    printLatency('floor: etcd put -> watch (A)        ', et);
    printLatency('floor: NATS publish -> subscribe A>B', nt);
    printLatency('floor: xDS fan-out -> last ACK      ', fo);
    log(`floor (sum): p50 ${formatMs(floor.p50)}  p99 ${formatMs(floor.p99)}`);
    const ratio = Math.round((e.p99 / floor.p99) * 100) / 100;
    log(`p99 / floor p99 = ${ratio} (target <= 1.5, and p99 < 300 ms)`);
    emitResult({
      mode: 'e2e',
      proxies: flags.proxies,
      replicasB: 3,
      rounds: flags.rounds,
      debounce_ms: flags.debounce,
      register_to_last_ack: { p50: e.p50, p99: e.p99, max: e.max },
      floor: {
        p50: floor.p50,
        p99: floor.p99,
        etcd_put_watch: { p50: et.p50, p99: et.p99 },
        nats_gateway: { p50: nt.p50, p99: nt.p99 },
        xds_fanout_last_ack: { p50: fo.p50, p99: fo.p99 },
      },
      p99_over_floor: ratio,
      target_met: ratio <= 1.5 && e.p99 < 300,
    });
  } finally {
    for (const g of [...gens, ...floorGens]) g.close();
    await etcdFloor?.close().catch(() => undefined);
    for (const nc of conns) await nc.close().catch(() => undefined);
    for (const c of floorServers) c.kill('SIGKILL');
    await Promise.all(replicas.map((r) => r.kill('SIGKILL')));
    await Promise.all([etcdA?.stop(), etcdB?.stop(), sc?.stop()]);
    rmSync(dir, { recursive: true, force: true });
  }
}
