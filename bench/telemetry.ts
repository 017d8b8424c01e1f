// Issue 17's telemetry benchmark:
//
// 1. Access-log entries ingested per second by one replica's receiver (TelemetryIngest: Envoy's
//    `StreamAccessLogs` over gRPC on loopback, protobufjs decoding, labels derived from a registry of
//    --workloads workloads, Istio's metrics and the service graph kept), against its floor measured in
//    the same run: the same gRPC method, same client, same pre-encoded messages, each message
//    decoded with the same protobufjs type and dropped. Rounds interleave floor and ingest; medians.
//    Target: floor / ingest within 2x.
// 2. Memory per graph edge: heap of an EdgeStore holding --edges edges, each with observations in
//    every second of its 60 s window (the worst case), and of the same edges' Istio series.
//
// Client and server share this process (the client only writes pre-encoded bytes). The etcd
// publication of the graph (every 2 s, one put) is not part of the loop.
//
//   pnpm bench telemetry [--seconds 3] [--rounds 3] [--streams 8] [--entries 50] [--workloads 200] [--edges 10000]
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import * as grpc from '@grpc/grpc-js';
import { lookupMessage } from '@meridian/envoy';
import type { Endpoint, RegistrySnapshot, Service } from '@meridian/translate';
import pino from 'pino';
import { IstioMetrics } from '../packages/server/src/istio-metrics.js';
import { EdgeStore, edgeId, nodeOf } from '../packages/server/src/service-graph.js';
import { TelemetryIngest } from '../packages/server/src/telemetry-ingest.js';
import { encodeAccessLogs, httpEntry, sidecarNodeId } from '../packages/server/test/access-log-client.js';
import { emitResult, log, median, parseFlags, printTable, round3 } from './lib/index.js';

const PATH = '/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs';

/** `n` workloads in 10 namespaces, one service each, at 10.x.y.z:8080. */
function registryOf(n: number): { registry: RegistrySnapshot; ips: string[] } {
  const services: Service[] = [];
  const endpoints = new Map<string, Endpoint[]>();
  const ips: string[] = [];
  for (let i = 0; i < n; i++) {
    const ns = `ns${i % 10}`;
    const host = `svc${i}.${ns}.svc.cluster.local`;
    const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    ips.push(ip);
    services.push({
      hostname: host,
      namespace: ns,
      ports: [{ name: 'http', port: 8080, protocol: 'HTTP' }],
      labels: {},
      exportTo: ['*'],
      resolution: 'EDS',
    } as Service);
    endpoints.set(host, [
      {
        address: ip,
        ports: { http: 8080 },
        labels: { app: `svc${i}`, version: 'v1' },
        locality: { region: '', zone: '', subZone: '' },
        network: '',
        clusterId: 'c1',
        health: 'HEALTHY',
        serviceAccount: `sa${i}`,
        weight: 1,
      },
    ]);
  }
  return { registry: { revision: 1, services, endpoints }, ips };
}

/**
 * Pre-encoded messages: each stream's node is one workload; its entries call 5 other workloads with
 * a mix of codes and latencies (so edges = streams x 5 at most, series a few per edge).
 */
function messagesFor(stream: number, ips: string[], perMessage: number, count: number): Buffer[] {
  const n = ips.length;
  const self = stream % n;
  const out: Buffer[] = [];
  for (let m = 0; m < count; m++) {
    const http = Array.from({ length: perMessage }, (_, k) => {
      const peer = (self + 1 + ((m + k) % 5)) % n;
      return httpEntry({
        direction: 'outbound',
        downstream: `${ips[self]}:40000`,
        upstream: `${ips[peer]}:8080`,
        upstreamCluster: `outbound|8080||svc${peer}.ns${peer % 10}.svc.cluster.local`,
        code: k % 20 === 0 ? 503 : 200,
        durationMs: 1 + ((k * 7) % 40),
      });
    });
    out.push(
      encodeAccessLogs(
        { http },
        m === 0 ? sidecarNodeId(ips[self]!, `w${self}`, `ns${self % 10}`) : undefined,
      ),
    );
  }
  return out;
}

/** A server whose StreamAccessLogs handler gives each message to `onMessage`. */
async function serve(
  onMessage: (stream: object, b: Buffer) => void,
): Promise<{ server: grpc.Server; address: string }> {
  const server = new grpc.Server();
  const raw = (b: Buffer) => b;
  server.addService(
    {
      StreamAccessLogs: {
        path: PATH,
        requestStream: true,
        responseStream: false,
        requestSerialize: raw,
        requestDeserialize: raw,
        responseSerialize: () => Buffer.alloc(0),
        responseDeserialize: () => ({}),
      },
    } as unknown as grpc.ServiceDefinition,
    {
      StreamAccessLogs: (call: grpc.ServerReadableStream<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
        const stream = {};
        call.on('data', (b: Buffer) => onMessage(stream, b));
        call.on('end', () => cb(null, Buffer.alloc(0)));
      },
    },
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) =>
      e ? reject(e) : resolve(p),
    ),
  );
  return { server, address: `127.0.0.1:${port}` };
}

/** Streams the messages (cycled) on `streams` calls for `seconds`; resolves with the entries written. */
async function drive(
  address: string,
  pools: Buffer[][],
  perMessage: number,
  seconds: number,
): Promise<number> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  const until = performance.now() + seconds * 1000;
  let written = 0;
  await Promise.all(
    pools.map(
      (pool) =>
        new Promise<void>((resolve, reject) => {
          const call = client.makeClientStreamRequest(
            PATH,
            (b: Buffer) => b,
            (b: Buffer) => b,
            (e) => (e ? reject(e) : resolve()),
          );
          let i = 0;
          const pump = () => {
            while (performance.now() < until) {
              written += perMessage;
              const ok = call.write(pool[i++ % pool.length] as Buffer);
              // After the first message (the identifier), cycle over the rest.
              if (i === pool.length) i = 1;
              if (!ok) {
                call.once('drain', pump);
                return;
              }
            }
            call.end();
          };
          pump();
        }),
    ),
  );
  client.close();
  return written;
}

/** Heap and array-buffer bytes used after a full collection. */
function heapUsed(): number {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  gc();
  gc();
  const m = process.memoryUsage();
  // Typed arrays' contents live outside the heap (arrayBuffers).
  return m.heapUsed + m.arrayBuffers;
}

export async function main(args: string[]): Promise<void> {
  const f = parseFlags(
    args,
    {
      seconds: { type: 'integer', default: 3, help: 'length of one measurement' },
      rounds: {
        type: 'integer',
        default: 3,
        help: 'interleaved rounds of floor and ingest; medians reported',
      },
      streams: { type: 'integer', default: 8, help: 'concurrent StreamAccessLogs calls (one proxy each)' },
      entries: {
        type: 'integer',
        default: 50,
        help: 'entries per message (Envoy flushes at 16 KiB: ~30-60)',
      },
      workloads: { type: 'integer', default: 200, help: 'workloads in the registry' },
      edges: { type: 'integer', default: 10000, help: 'edges of the memory measurement' },
    },
    {
      bench: 'telemetry',
      description: 'access-log ingestion rate against a decode-and-drop floor; memory per graph edge',
    },
  );
  const { registry, ips } = registryOf(f.workloads);
  const pools = Array.from({ length: f.streams }, (_, s) => messagesFor(s * 7, ips, f.entries, 32));
  const type = lookupMessage('envoy.service.accesslog.v3.StreamAccessLogsMessage')!;
  log(
    `telemetry: ${f.streams} streams x ${f.entries} entries/message, ${f.workloads} workloads, ${f.rounds} rounds of ${f.seconds} s; load average ${loadavg()[0]!.toFixed(2)}`,
  );

  let floorEntries = 0;
  const floor = await serve((_s, b) => {
    const m = type.decode(b) as unknown as { http_logs?: { log_entry?: unknown[] } };
    floorEntries += m.http_logs?.log_entry?.length ?? 0;
  });
  const ingest = new TelemetryIngest({
    clusterId: 'c1',
    replicaId: 'bench',
    trustDomain: 'cluster.local',
    plaintext: true,
    log: pino({ level: 'silent' }),
  });
  ingest.setRegistry(registry, new Map());
  const states = new WeakMap<object, ReturnType<TelemetryIngest['openStream']>>();
  let ingested = 0;
  const real = await serve((s, b) => {
    let st = states.get(s);
    if (!st) {
      st = ingest.openStream();
      states.set(s, st);
    }
    ingest.ingestAccessLogs(st, b);
    ingested += f.entries;
  });
  const rows: Record<string, string | number>[] = [];
  const floorRates: number[] = [];
  const ingestRates: number[] = [];
  try {
    // Warm-up: schemas, JIT.
    await drive(floor.address, pools, f.entries, 1);
    await drive(real.address, pools, f.entries, 1);
    for (let r = 0; r < f.rounds; r++) {
      for (const [name, target, counter] of [
        ['floor', floor.address, () => floorEntries],
        ['ingest', real.address, () => ingested],
      ] as const) {
        const before = counter();
        const t0 = performance.now();
        await drive(target, pools, f.entries, f.seconds);
        const rate = (counter() - before) / ((performance.now() - t0) / 1000);
        (name === 'floor' ? floorRates : ingestRates).push(rate);
        rows.push({ round: String(r + 1), receiver: name, 'entries/s': String(Math.round(rate)) });
      }
    }
  } finally {
    floor.server.forceShutdown();
    real.server.forceShutdown();
  }
  printTable(rows);
  const floorRate = median(floorRates);
  const ingestRate = median(ingestRates);
  // Each round's floor and ingest run back to back: the median of the per-round ratios is less
  // exposed to other load on the machine than the ratio of the medians (both are printed).
  const ratio = median(floorRates.map((fr, i) => fr / (ingestRates[i] as number)));
  const graph = ingest.graph();
  log(
    `median entries/s: floor ${Math.round(floorRate)}, ingest with graph ${Math.round(ingestRate)}; floor/ingest ${(floorRate / ingestRate).toFixed(2)}x; median of per-round ratios ${ratio.toFixed(2)}x (target <= 2)`,
  );
  log(`graph kept: ${graph.edges.length} edges, ${ingest.istio.seriesCount} istio series`);

  // Memory per edge: every second of the window holds observations (worst case).
  const base = heapUsed();
  const store = new EdgeStore(60);
  const t0 = Date.now();
  for (let e = 0; e < f.edges; e++) {
    const k = {
      source: nodeOf('workload', `w${e}`, `ns${e % 10}`, 'c1'),
      destination: nodeOf('service', `s${e % 500}`, `ns${e % 10}`, 'c1'),
      cluster: 'c1',
      protocol: 'http' as const,
      reporter: 'source' as const,
    };
    const id = edgeId(k);
    for (let s = 0; s < 60; s++)
      store.observe(id, k, { atMs: t0 - s * 1000, error: false, mtls: undefined, durationMs: 5 });
  }
  const edgeBytes = (heapUsed() - base) / f.edges;
  const metrics = new IstioMetrics(f.edges * 2);
  for (let e = 0; e < f.edges; e++)
    metrics.recordRequest(
      Array.from({ length: 16 }, (_, i) => (i === 1 ? `w${e}` : `label-value-${i}`)),
      ['http', '200', '', '-', 'unknown'],
      5,
      100,
      500,
    );
  const seriesBytes = (heapUsed() - base) / f.edges - edgeBytes;
  log(
    `memory per graph edge (60 s window, every second used): ${Math.round(edgeBytes)} B; per istio_* HTTP series: ${Math.round(seriesBytes)} B`,
  );
  if (store.size !== f.edges || metrics.seriesCount !== f.edges)
    throw new Error('memory measurement lost edges');
  emitResult({
    streams: f.streams,
    entries_per_message: f.entries,
    floor_entries_per_s: Math.round(floorRate),
    ingest_entries_per_s: Math.round(ingestRate),
    floor_over_ingest: round3(ratio),
    ratio_of_medians: round3(floorRate / ingestRate),
    within_2x: ratio <= 2,
    graph_edges: graph.edges.length,
    istio_series: ingest.istio.seriesCount,
    bytes_per_edge: Math.round(edgeBytes),
    bytes_per_istio_series: Math.round(seriesBytes),
    load_average: round3(loadavg()[0]!),
  });
}
