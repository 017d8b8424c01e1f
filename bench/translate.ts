// Translation cost for one proxy in a large mesh: 1,000 services (20 namespaces, 1-2 HTTP ports),
// 5,000 endpoints (3 zones, versions v1/v2) and 500 routing rules (250 VirtualServices with a header
// match and a weighted 90/10 subset split, 250 DestinationRules with subsets, LB, pools, outlier
// detection), all validated by @meridian/api.
//
//   pnpm bench translate [--services 1000] [--endpoints 5000] [--rules 500] [--runs 15]
//
// Figures are medians of --runs, in CPU time of this process (user + system; on a shared machine
// wall time mostly measures waiting for a core), each on a fresh Translator unless said otherwise:
// - full: a sidecar that sees the whole mesh (no Sidecar scoping), nothing cached: every listener,
//   route configuration, cluster and ClusterLoadAssignment built. Each run translates its own
//   (equal) snapshots of new objects, cloned before timing starts, so nothing memoized on input
//   objects (per endpoint list, per DestinationRule, per registry snapshot) carries over from an
//   earlier run: cold all through;
// - full_same_inputs: a fresh Translator on the same snapshot objects every run (what `full` measured
//   before: memos keyed on the inputs stay warm, as in a replica translating many proxies);
// - full_amortized: --runs cold full translations back to back (each its own clones), total CPU
//   divided by their number: every collection they cause is in it, including the major GCs a
//   median of single runs leaves out as outliers (V8 pretenures what translation allocates, since it
//   survives, and old-space collections then come every few runs);
// - full_grpc: the same as full for a proxyless gRPC client (its own fresh snapshots);
// - second_proxy: another sidecar in another namespace on a warm Translator (clusters and CLAs
//   shared, its scope and routes built);
// - endpoint_change: one service's endpoint list replaced (withEndpoints), same proxy, warm
//   Translator: only that service's CLAs are rebuilt (counted and printed);
// - floor: a plain deep copy of the full output (allocating the same object graph), same run;
// - encode_all_cpu: encodeResource (@meridian/envoy, strict) of every resource of the full output (what the xDS server then does
//   once per distinct resource), for scale.
// Target (issue 4; issue 12 item 7: on V8's default heap, no flag): full under 20 ms.
import { spawnSync } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { type ConfigObject, validateConfig } from '@meridian/api';
import { encodeResource, type ProxyInfo, parseNode } from '@meridian/envoy';
import {
  createConfigSnapshot,
  createRegistrySnapshot,
  type Endpoint,
  type ProxyResources,
  resourcesByTypeUrl,
  type Service,
  Translator,
  withEndpoints,
} from '@meridian/translate';
import { emitResult, log, median, parseFlags, printTable, round3 } from './lib/index.js';

const ZONES = ['us-east1-b', 'us-east1-c', 'us-east1-d'];

export function buildMesh(services: number, endpoints: number, rules: number) {
  const svcs: Service[] = [];
  const eps = new Map<string, Endpoint[]>();
  const perService = Math.max(1, Math.floor(endpoints / services));
  for (let i = 0; i < services; i++) {
    const ns = `ns${i % 20}`;
    const hostname = `svc${i}.${ns}.svc.cluster.local`;
    const ports = [{ name: 'http', port: 8080, protocol: 'HTTP' }];
    if (i % 4 === 0) ports.push({ name: 'grpc', port: 9090, protocol: 'GRPC' });
    svcs.push({
      hostname,
      namespace: ns,
      ports,
      labels: { app: `svc${i}` },
      exportTo: [],
      resolution: 'EDS',
      addresses: [`10.96.${i >> 8}.${i & 255}`],
    });
    const list: Endpoint[] = [];
    for (let j = 0; j < perService; j++) {
      const n = i * perService + j;
      list.push({
        address: `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`,
        ports: { http: 8080, grpc: 9090 },
        labels: { app: `svc${i}`, version: j % 5 === 0 ? 'v2' : 'v1' },
        locality: { region: 'us-east1', zone: ZONES[j % 3] as string, subZone: '' },
        network: 'net1',
        clusterId: 'cluster1',
        health: 'HEALTHY',
        serviceAccount: `spiffe://cluster.local/ns/${ns}/sa/svc${i}`,
        weight: 1,
      });
    }
    eps.set(hostname, list);
  }
  const raw: unknown[] = [];
  const vsCount = Math.floor(rules / 2);
  for (let k = 0; k < rules - vsCount; k++) {
    const i = (k * 2) % services;
    raw.push({
      apiVersion: 'networking.istio.io/v1',
      kind: 'DestinationRule',
      metadata: { name: `svc${i}`, namespace: `ns${i % 20}` },
      spec: {
        host: `svc${i}`,
        trafficPolicy: {
          loadBalancer: { simple: 'LEAST_REQUEST' },
          connectionPool: { tcp: { maxConnections: 100 }, http: { http2MaxRequests: 1000 } },
          outlierDetection: { consecutive5xxErrors: 5, interval: '10s', baseEjectionTime: '30s' },
        },
        subsets: [
          { name: 'v1', labels: { version: 'v1' } },
          { name: 'v2', labels: { version: 'v2' } },
        ],
      },
    });
  }
  for (let k = 0; k < vsCount; k++) {
    const i = (k * 2) % services;
    raw.push({
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: `svc${i}`, namespace: `ns${i % 20}` },
      spec: {
        hosts: [`svc${i}`],
        http: [
          {
            match: [{ headers: { 'end-user': { exact: 'tester' } }, uri: { prefix: '/api' } }],
            route: [{ destination: { host: `svc${i}`, subset: 'v2' } }],
            timeout: '2s',
          },
          {
            route: [
              { destination: { host: `svc${i}`, subset: 'v1' }, weight: 90 },
              { destination: { host: `svc${i}`, subset: 'v2' }, weight: 10 },
            ],
            retries: { attempts: 3, perTryTimeout: '500ms', retryOn: '5xx' },
          },
        ],
      },
    });
  }
  const objects: ConfigObject[] = raw.map((r) => {
    const v = validateConfig(r);
    if (!v.ok) throw new Error(`bench config invalid: ${JSON.stringify(v)}`);
    return v.config;
  });
  return { config: createConfigSnapshot(1, objects), registry: createRegistrySnapshot(1, svcs, eps) };
}

type Mesh = ReturnType<typeof buildMesh>;

/** A deep copy made with spreads and maps, so every object keeps its original's shape (hidden
 * class): translation code sees the same shapes as with the original. */
function clone<T>(value: T): T {
  if (Array.isArray(value)) return value.map(clone) as T;
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = { ...(value as Record<string, unknown>) };
    for (const k in out) if (out[k] && typeof out[k] === 'object') out[k] = clone(out[k]);
    return out as T;
  }
  return value;
}

/** The same mesh made of new objects (config objects cloned, already validated), so that nothing
 * memoized on the inputs' identity is shared with the original. */
function cloneMesh(config: Mesh['config'], registry: Mesh['registry']): Mesh {
  return {
    config: createConfigSnapshot(
      config.revision,
      clone([...config.destinationRules, ...config.virtualServices]),
    ),
    registry: createRegistrySnapshot(
      registry.revision,
      clone(registry.services),
      new Map([...registry.endpoints].map(([host, list]) => [host, clone(list)])),
    ),
  };
}

export function proxyIn(ns: string, ip: string, grpc = false): ProxyInfo {
  return parseNode({
    id: `sidecar~${ip}~client-1.${ns}~${ns}.svc.cluster.local`,
    metadata: { NAMESPACE: ns, LABELS: { app: 'client' }, ...(grpc ? { GENERATOR: 'grpc' } : {}) },
    locality: { region: 'us-east1', zone: 'us-east1-b' },
  });
}

interface Sample {
  readonly wall: number;
  readonly cpu: number;
}

/** Wall time and this process's CPU time (user + system) of `fn`, in ms. On a shared machine the
 * CPU time is the stable figure: wall time includes waiting for a core. */
function timed(fn: () => unknown): Sample {
  const c0 = process.cpuUsage();
  const w0 = performance.now();
  fn();
  const wallMs = performance.now() - w0;
  const c = process.cpuUsage(c0);
  return { wall: wallMs, cpu: (c.user + c.system) / 1000 };
}

/** The floor: a plain deep copy of the output (allocating the same object graph, nothing else). */
function deepCopy(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(deepCopy);
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const k in value) out[k] = deepCopy((value as Record<string, unknown>)[k]);
    return out;
  }
  return value;
}

function count(r: ProxyResources): string {
  return `${r.listeners.length} LDS, ${r.routes.length} RDS, ${r.clusters.length} CDS, ${r.endpoints.length} EDS`;
}

export function main(args: string[]): void {
  const flags = parseFlags(
    args,
    {
      services: { type: 'integer', default: 1000, help: 'services in the mesh' },
      endpoints: { type: 'integer', default: 5000, help: 'endpoints in the mesh' },
      rules: {
        type: 'integer',
        default: 500,
        help: 'routing rules (half VirtualServices, half DestinationRules)',
      },
      runs: { type: 'integer', default: 15, help: 'repetitions; medians are reported' },
      semiSpaceMb: {
        type: 'integer',
        default: 64,
        help: 'also measure full translation in a child node with --max-semi-space-size=<this> (0: skip)',
      },
      fullOnly: {
        type: 'boolean',
        default: false,
        help: 'internal: print only the full-translation figures',
      },
    },
    { bench: 'translate', description: 'full and incremental translation for one proxy in a large mesh' },
  );
  const { config, registry } = buildMesh(flags.services, flags.endpoints, flags.rules);
  const sidecar = proxyIn('ns1', '10.200.0.1');
  const other = proxyIn('ns7', '10.200.0.2');
  const grpcClient = proxyIn('ns3', '10.200.0.3', true);

  // Warm up the JIT on a throwaway translator.
  for (let i = 0; i < 15; i++) new Translator().translate(config, registry, sidecar);
  // Equal snapshots made of new objects, one per timed run, made before timing starts.
  const fresh = () => Array.from({ length: flags.runs }, () => cloneMesh(config, registry));
  if (flags.fullOnly) {
    const xs: Sample[] = [];
    const meshes = fresh();
    for (const mesh of meshes) {
      xs.push(timed(() => new Translator().translate(mesh.config, mesh.registry, sidecar)));
    }
    process.stdout.write(
      `${JSON.stringify({ cpu: median(xs.map((x) => x.cpu)), wall: median(xs.map((x) => x.wall)) })}\n`,
    );
    return;
  }

  const full: Sample[] = [];
  const fullSame: Sample[] = [];
  const fullGrpc: Sample[] = [];
  const second: Sample[] = [];
  const change: Sample[] = [];
  const floor: Sample[] = [];
  let rebuilt = 0;
  let output: ProxyResources | undefined;
  let grpcOutput: ProxyResources | undefined;
  const meshes = fresh();
  const grpcMeshes = fresh();
  for (let run = 0; run < flags.runs; run++) {
    const mesh = meshes[run] as Mesh;
    full.push(timed(() => new Translator().translate(mesh.config, mesh.registry, sidecar)));
    const grpcMesh = grpcMeshes[run] as Mesh;
    fullGrpc.push(
      timed(() => {
        grpcOutput = new Translator().translate(grpcMesh.config, grpcMesh.registry, grpcClient);
      }),
    );
    const t = new Translator();
    fullSame.push(
      timed(() => {
        output = t.translate(config, registry, sidecar);
      }),
    );
    second.push(timed(() => t.translate(config, registry, other)));

    const host = registry.services[(run * 37) % registry.services.length]?.hostname ?? '';
    const list = registry.endpoints.get(host) ?? [];
    const next = withEndpoints(registry, 2 + run, host, [
      ...list.slice(1),
      { ...(list[0] as Endpoint), address: `10.250.${run}.1` },
    ]);
    const before = t.stats.loadAssignmentsBuilt;
    change.push(timed(() => t.translate(config, next, sidecar)));
    rebuilt = t.stats.loadAssignmentsBuilt - before;

    const out = output;
    floor.push(timed(() => deepCopy(out)));
  }
  if (!output || !grpcOutput) throw new Error('no runs');
  const batch = fresh();
  const amortized = timed(() => {
    for (const mesh of batch) new Translator().translate(mesh.config, mesh.registry, sidecar);
  });

  let encoded = 0;
  const out = output;
  const encodeAll = timed(() => {
    for (const [typeUrl, list] of resourcesByTypeUrl(out)) {
      for (const r of list) encoded += encodeResource(typeUrl, r.resource).length;
    }
  });

  log(
    `mesh: ${registry.services.length} services, ${[...registry.endpoints.values()].reduce((n, l) => n + l.length, 0)} endpoints, ${config.virtualServices.length} VirtualServices + ${config.destinationRules.length} DestinationRules`,
  );
  log(`sidecar output: ${count(output)} (${(encoded / 1024 / 1024).toFixed(1)} MiB encoded)`);
  log(`gRPC output: ${count(grpcOutput)}`);
  log(`endpoint change rebuilt ${rebuilt} ClusterLoadAssignments`);
  // Translation allocates its whole output; with V8's default 16 MiB semi-space most of its cost is
  // young-generation GC. The replica can run with a larger semi-space: measure that too.
  let tuned: { cpu: number; wall: number } | undefined;
  if (flags.semiSpaceMb > 0) {
    const child = spawnSync(
      process.execPath,
      [
        ...process.execArgv,
        `--max-semi-space-size=${flags.semiSpaceMb}`,
        fileURLToPath(new URL('./run.ts', import.meta.url)),
        'translate',
        '--full-only',
        '--runs',
        String(flags.runs),
        '--services',
        String(flags.services),
        '--endpoints',
        String(flags.endpoints),
        '--rules',
        String(flags.rules),
      ],
      { encoding: 'utf8' },
    );
    const line = child.stdout.trim().split('\n').pop() ?? '';
    try {
      tuned = JSON.parse(line) as { cpu: number; wall: number };
    } catch {
      log(`semi-space child failed: ${child.stderr.slice(0, 500)}`);
    }
  }
  const cpu = (xs: Sample[]) => round3(median(xs.map((x) => x.cpu)));
  const wall = (xs: Sample[]) => round3(median(xs.map((x) => x.wall)));
  const result = {
    full_cpu_ms: cpu(full),
    full_wall_ms: wall(full),
    full_same_inputs_cpu_ms: cpu(fullSame),
    full_amortized_cpu_ms: round3(amortized.cpu / batch.length),
    full_cpu_ms_semi_space: tuned ? round3(tuned.cpu) : -1,
    full_wall_ms_semi_space: tuned ? round3(tuned.wall) : -1,
    full_grpc_cpu_ms: cpu(fullGrpc),
    second_proxy_cpu_ms: cpu(second),
    endpoint_change_cpu_ms: cpu(change),
    endpoint_change_wall_ms: wall(change),
    endpoint_change_rebuilt_clas: rebuilt,
    floor_copy_cpu_ms: cpu(floor),
    encode_all_cpu_ms: round3(encodeAll.cpu),
  };
  printTable(
    Object.entries(result).map(([figure, value]) => ({
      figure,
      value: typeof value === 'number' ? value : 0,
    })),
  );
  log(
    `load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')} on ${cpus().length} cores: CPU time is the figure that matters`,
  );
  log(
    `target: full translation under 20 ms (CPU) -> ${result.full_cpu_ms < 20 ? 'met' : 'NOT met'} (default heap), ${
      tuned && tuned.cpu < 20 ? 'met' : 'NOT met'
    } (--max-semi-space-size=${flags.semiSpaceMb})`,
  );
  emitResult({
    services: registry.services.length,
    endpoints: flags.endpoints,
    rules: flags.rules,
    resources: {
      lds: output.listeners.length,
      rds: output.routes.length,
      cds: output.clusters.length,
      eds: output.endpoints.length,
    },
    ...result,
    target_full_cpu_ms: 20,
  });
}
