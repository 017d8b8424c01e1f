// Federation latency across a NATS gateway (issue 7, NATS-side part of the benchmark):
//
//   pnpm bench federation [--samples 500] [--warmup 50] [--endpoints 10] [--services 500]
//   pnpm bench federation --e2e [...]   (end to end through meridiand: bench/federation-e2e.ts)
//
// Two NATS clusters (east, west), one server each, joined by a gateway, JetStream on, with the
// generated per-cluster nkey users and permissions. Measured in the same run:
//   - floor: raw NATS publish (east) -> subscriber callback (west) across the gateway, with a payload
//     of the size of one service record;
//   - publish -> view: FederationExporter.upsert in east -> west's FederationImporter change event for
//     that service (includes the JetStream KV write that precedes the publish, decode, merge, new view);
//   - export write: upsert() resolving (KV compare-and-set acknowledged + publish);
//   - late join: a new importer reading `--services` services from east's JetStream bucket.
// One change at a time (latency, not throughput). Readable figures, then one JSON line.
// The end-to-end version (etcd -> NATS -> 1,000 proxies ACK): `pnpm bench federation --e2e`.

import type { ExportedServiceState, FederatedEndpoint } from '@meridian/federation';
import {
  FederationExporter,
  FederationImporter,
  generateClusterCredentials,
  renderNatsAuthorization,
} from '@meridian/federation';
import { startNatsSupercluster } from '@meridian/testkit';
import { connect, type NatsConnection, nkeyAuthenticator } from '@nats-io/transport-node';
import { pino } from 'pino';
import {
  emitResult,
  LatencyRecorder,
  log,
  nowMs,
  parseFlags,
  printLatency,
  round3,
  roundSummary,
} from './lib/index.js';

const MESH = 'bench';
const logger = pino({ level: process.env.FEDERATION_BENCH_LOG ?? 'warn' });

function service(name: string, endpoints: number, version: number): ExportedServiceState {
  const eps: FederatedEndpoint[] = Array.from({ length: endpoints }, (_, i) => ({
    address: `10.${(version >> 8) & 255}.${version & 255}.${i + 1}`,
    ports: { http: 8080, grpc: 9090 },
    labels: { app: name, version: 'v1' },
    locality: { region: 'us-east1', zone: 'us-east1-b', subZone: '' },
    network: 'net-east',
    cluster: 'east',
    health: 'HEALTHY',
    serviceAccount: name,
    weight: 1,
  }));
  return {
    service: {
      hostname: `${name}.default.svc.cluster.local`,
      namespace: 'default',
      ports: [
        { name: 'http', port: 80, protocol: 'HTTP', targetPort: 8080 },
        { name: 'grpc', port: 9090, protocol: 'GRPC' },
      ],
      labels: { app: name },
      exportTo: [],
      resolution: 'EDS',
    },
    endpoints: eps,
  };
}

export async function main(args: string[]): Promise<void> {
  // `--e2e`: the end-to-end version through meridiand replicas (bench/federation-e2e.ts).
  if (args.includes('--e2e')) return (await import('./federation-e2e.js')).main(args);
  const flags = parseFlags(
    args,
    {
      samples: { type: 'integer', default: 500, help: 'measured changes per series' },
      warmup: { type: 'integer', default: 50, help: 'unmeasured changes before each series' },
      endpoints: { type: 'integer', default: 10, help: 'endpoints per service record' },
      services: { type: 'integer', default: 500, help: 'services in the bucket for the late-join read' },
    },
    {
      bench: 'federation',
      description: 'exporter publish -> importer view across a NATS gateway, vs raw NATS',
    },
  );
  const east = generateClusterCredentials('east');
  const west = generateClusterCredentials('west');
  const auth = renderNatsAuthorization({ mesh: MESH, clusters: [east, west] });
  const sc = await startNatsSupercluster({
    clusters: [{ name: 'east' }, { name: 'west' }],
    jetstream: true,
    configExtra: () => auth,
  });
  const conns: NatsConnection[] = [];
  const dial = async (cluster: 'east' | 'west') => {
    const creds = cluster === 'east' ? east : west;
    const nc = await connect({
      servers: sc.clusters[cluster]![0]!.url,
      authenticator: nkeyAuthenticator(new TextEncoder().encode(creds.seed!)),
    });
    conns.push(nc);
    return nc;
  };
  const stops: (() => Promise<void>)[] = [];
  try {
    const ncE = await dial('east');
    const ncW = await dial('west');
    const sampleRecord = new TextEncoder().encode(JSON.stringify(service('probe', flags.endpoints, 1)));
    log(
      `NATS gateway east <-> west, JetStream on; ${flags.endpoints} endpoints per record (~${sampleRecord.length} bytes)`,
    );

    // Floor: raw publish -> subscribe across the gateway, same subject space and payload size.
    const floor = new LatencyRecorder();
    {
      const subject = `meridian.${MESH}.fed.east.svc.default.floor.default.svc.cluster.local`;
      let waiter: (() => void) | undefined;
      const sub = ncW.subscribe(subject, { callback: () => waiter?.() });
      await ncW.flush();
      // Gateway interest propagation: wait until a message makes it across.
      for (;;) {
        const got = new Promise<boolean>((resolve) => {
          waiter = () => resolve(true);
          setTimeout(() => resolve(false), 200);
        });
        ncE.publish(subject, sampleRecord);
        if (await got) break;
      }
      for (let i = 0; i < flags.warmup + flags.samples; i++) {
        const got = new Promise<void>((resolve) => {
          waiter = resolve;
        });
        const t0 = nowMs();
        ncE.publish(subject, sampleRecord);
        await got;
        if (i >= flags.warmup) floor.record(nowMs() - t0);
      }
      sub.unsubscribe();
    }

    // Federation: exporter upsert -> importer change event.
    const exporter = await FederationExporter.start({
      nc: ncE,
      mesh: MESH,
      cluster: 'east',
      epoch: 1,
      logger,
    });
    stops.push(() => exporter.stop());
    const importer = new FederationImporter({ nc: ncW, mesh: MESH, localCluster: 'west', logger });
    stops.push(() => importer.stop());
    await importer.start();
    await importer.ready();
    const toView = new LatencyRecorder();
    const write = new LatencyRecorder();
    const host = 'hot.default.svc.cluster.local';
    let seen: (() => void) | undefined;
    importer.onChange((c) => {
      if (c.changed.some((r) => r.hostname === host)) seen?.();
    });
    for (let i = 0; i < flags.warmup + flags.samples; i++) {
      const arrived = new Promise<void>((resolve) => {
        seen = resolve;
      });
      const t0 = nowMs();
      const written = exporter.upsert(service('hot', flags.endpoints, i + 2)).then(() => nowMs() - t0);
      await arrived;
      const tView = nowMs() - t0;
      const tWrite = await written;
      if (i >= flags.warmup) {
        toView.record(tView);
        write.record(tWrite);
      }
    }

    // Late join: the complete state of `services` services from JetStream, nobody asked.
    const all = Array.from({ length: flags.services }, (_, i) => service(`svc${i}`, flags.endpoints, i));
    await exporter.sync([service('hot', flags.endpoints, 1), ...all]);
    const late = new FederationImporter({ nc: ncW, mesh: MESH, localCluster: 'west', logger });
    stops.push(() => late.stop());
    const tLate0 = nowMs();
    await late.start();
    await late.ready();
    const lateMs = nowMs() - tLate0;
    if (late.view.services.size !== flags.services + 1)
      throw new Error(`late joiner read ${late.view.services.size} services, expected ${flags.services + 1}`);

    const f = floor.summary();
    const v = toView.summary();
    const w = write.summary();
    log('');
    printLatency('floor: NATS publish -> subscribe across the gateway', f);
    printLatency('publish -> view: exporter upsert -> west importer change', v);
    printLatency('export write: KV compare-and-set ack + publish       ', w);
    log(`late join: ${flags.services + 1} services read from JetStream in ${round3(lateMs)} ms`);
    log(`p99 ratio (publish -> view / floor): ${round3(v.p99 / f.p99)}`);
    emitResult({
      samples: flags.samples,
      endpointsPerService: flags.endpoints,
      recordBytes: sampleRecord.length,
      floor: roundSummary(f),
      publishToView: roundSummary(v),
      exportWrite: roundSummary(w),
      p99Ratio: round3(v.p99 / f.p99),
      p50Ratio: round3(v.p50 / f.p50),
      lateJoin: { services: flags.services + 1, ms: round3(lateMs) },
    });
  } finally {
    for (const s of stops.reverse()) await s().catch(() => undefined);
    for (const nc of conns) await nc.close().catch(() => undefined);
    await sc.stop();
  }
}
