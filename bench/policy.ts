// Issue 16's benchmark, two parts:
//
// 1. Translation cost of policy: the translate benchmark's mesh (1,000 services, 5,000 endpoints,
//    500 routing rules) plus 500 AuthorizationPolicies over its 20 namespaces and the root namespace
//    (principals, namespaces, paths, methods, `when` conditions; about 25 select the measured
//    sidecar, which serves one HTTP port). Median CPU time of one full sidecar translation on a fresh
//    Translator, without and with the policies: `authz_overhead_pct` (target: under 25%). Also with
//    10 RequestAuthentications and 10 RateLimits on top (`policy_overhead_pct`).
// 2. Global rate-limit decisions per second on one replica's rate-limit service (the
//    GlobalRateLimiter behind Envoy's `envoy.service.ratelimit.v3` ShouldRateLimit, counters in a
//    real etcd) against its floor: the same gRPC unary method, same client, same concurrency,
//    answered OK without a decision. Two cases: one counter (batches of up to 1000 claimed from etcd)
//    and one counter per principal (1,000 principals: a claim per new counter).
//
//   pnpm bench policy [--runs 15] [--policies 500] [--seconds 3] [--concurrency 32] [--rounds 3]
import { cpus, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import { type ConfigObject, validateConfig } from '@meridian/api';
import { EtcdStore, Keyspace } from '@meridian/store';
import { startEtcd } from '@meridian/testkit';
import {
  createConfigSnapshot,
  createRegistrySnapshot,
  type Endpoint,
  type Service,
  Translator,
} from '@meridian/translate';
import pino from 'pino';
import {
  addRateLimitService,
  GlobalRateLimiter,
  rateLimitServiceClient,
  rateLimitServiceDefinition,
} from '../packages/server/src/ratelimit-service.js';
import { emitResult, log, median, parseFlags, printTable, round3 } from './lib/index.js';
import { buildMesh, proxyIn } from './translate.js';

function valid(raw: unknown): ConfigObject {
  const v = validateConfig(raw);
  if (!v.ok) throw new Error(`bench config invalid: ${v.error.message}`);
  return v.config;
}

/** `count` AuthorizationPolicies over ns0..ns19 and istio-system, a realistic mix of rules. */
function authorizationPolicies(count: number): ConfigObject[] {
  const out: ConfigObject[] = [];
  for (let k = 0; k < count; k++) {
    const root = k % 50 === 0;
    const ns = root ? 'istio-system' : `ns${k % 20}`;
    // In ns1, every other policy selects the measured sidecar (app: client).
    const app = ns === 'ns1' && k % 2 === 1 ? 'client' : `svc${k}`;
    const action = k % 5 === 0 ? 'DENY' : 'ALLOW';
    out.push(
      valid({
        apiVersion: 'security.istio.io/v1',
        kind: 'AuthorizationPolicy',
        metadata: { name: `ap${k}`, namespace: ns },
        spec: {
          ...(root ? {} : { selector: { matchLabels: { app } } }),
          action,
          rules: [
            {
              from: [
                {
                  source: {
                    principals: [
                      `cluster.local/ns/ns${k % 20}/sa/svc${k}`,
                      `cluster.local/ns/ns${(k + 1) % 20}/sa/*`,
                    ],
                    ...(k % 3 === 0 ? { notNamespaces: ['untrusted'] } : {}),
                  },
                },
              ],
              to: [{ operation: { methods: ['GET', 'POST'], paths: [`/api/v${k % 3}/*`, '/health'] } }],
              ...(k % 4 === 0 ? { when: [{ key: 'request.headers[x-tenant]', values: [`t${k}`] }] } : {}),
            },
            {
              from: [{ source: { namespaces: [`ns${(k + 3) % 20}`] } }],
              to: [{ operation: { ports: ['8080'] } }],
            },
          ],
        },
      }),
    );
  }
  return out;
}

/** 10 RequestAuthentications and 10 RateLimits, half selecting the sidecar. */
function otherPolicies(): ConfigObject[] {
  const out: ConfigObject[] = [];
  for (let k = 0; k < 10; k++) {
    const ns = `ns${k % 2 === 0 ? 1 : k}`;
    const selector = { matchLabels: { app: k % 2 === 0 ? 'client' : `svc${k}` } };
    out.push(
      valid({
        apiVersion: 'security.istio.io/v1',
        kind: 'RequestAuthentication',
        metadata: { name: `ra${k}`, namespace: ns },
        spec: {
          selector,
          jwtRules: [{ issuer: `https://issuer${k}.example`, jwksUri: `https://issuer${k}.example/k` }],
        },
      }),
      valid({
        apiVersion: 'policy.meridian.io/v1alpha1',
        kind: 'RateLimit',
        metadata: { name: `rl${k}`, namespace: ns },
        spec: {
          selector,
          ...(k % 4 === 0 ? { paths: [{ prefix: `/api/v${k}/` }] } : {}),
          local: { maxTokens: 100, fillInterval: '1s' },
          global: { limits: [{ key: 'SOURCE_PRINCIPAL', requestsPerUnit: 600, unit: 'MINUTE' }] },
        },
      }),
    );
  }
  return out;
}

function cpuMs(fn: () => unknown): number {
  const c0 = process.cpuUsage();
  fn();
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1000;
}

interface Caller {
  ShouldRateLimit(
    req: unknown,
    cb: (e: grpc.ServiceError | null, res: { overall_code: string }) => void,
  ): void;
}

/** Calls per second over `seconds` with `concurrency` calls in flight; `request(i)` builds call i. */
async function rate(
  client: Caller,
  seconds: number,
  concurrency: number,
  request: (i: number) => unknown,
): Promise<{ perSecond: number; over: number }> {
  let i = 0;
  let done = 0;
  let over = 0;
  const until = performance.now() + seconds * 1000;
  const worker = async () => {
    while (performance.now() < until) {
      const n = i++;
      const res = await new Promise<{ overall_code: string }>((resolve, reject) =>
        client.ShouldRateLimit(request(n), (e, r) => (e ? reject(e) : resolve(r))),
      );
      if (res.overall_code !== 'OK') over++;
      done++;
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { perSecond: done / ((performance.now() - t0) / 1000), over };
}

async function listen(server: grpc.Server): Promise<number> {
  return new Promise((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) =>
      e ? reject(e) : resolve(p),
    ),
  );
}

export async function main(args: string[]): Promise<void> {
  const flags = parseFlags(
    args,
    {
      runs: { type: 'integer', default: 15, help: 'translation repetitions; medians are reported' },
      policies: { type: 'integer', default: 500, help: 'AuthorizationPolicies added to the mesh' },
      seconds: { type: 'integer', default: 3, help: 'length of one rate-limit measurement' },
      concurrency: { type: 'integer', default: 32, help: 'ShouldRateLimit calls in flight' },
      rounds: {
        type: 'integer',
        default: 3,
        help: 'interleaved rounds of floor and decisions; medians reported',
      },
    },
    {
      bench: 'policy',
      description: 'translation cost of AuthorizationPolicy and rate-limit decisions per second',
    },
  );

  // ---------------------------------------------------------------- part 1: translation
  const mesh = buildMesh(1000, 5000, 500);
  const host = 'client.ns1.svc.cluster.local';
  const self: Service = {
    hostname: host,
    namespace: 'ns1',
    ports: [{ name: 'http', port: 8080, protocol: 'HTTP' }],
    labels: { app: 'client' },
    exportTo: [],
    resolution: 'EDS',
  };
  const selfEndpoint: Endpoint = {
    address: '10.200.0.1',
    ports: { http: 8080 },
    labels: { app: 'client' },
    locality: { region: 'us-east1', zone: 'us-east1-b', subZone: '' },
    network: 'net1',
    clusterId: 'cluster1',
    health: 'HEALTHY',
    serviceAccount: 'spiffe://cluster.local/ns/ns1/sa/client',
    weight: 1,
  };
  const registry = createRegistrySnapshot(
    1,
    [...mesh.registry.services, self],
    new Map([...mesh.registry.endpoints, [host, [selfEndpoint]]]),
  );
  const base: ConfigObject[] = [
    ...mesh.config.virtualServices,
    ...mesh.config.destinationRules,
  ] as ConfigObject[];
  const aps = authorizationPolicies(flags.policies);
  const plain = createConfigSnapshot(1, base);
  const withAuthz = createConfigSnapshot(1, [...base, ...aps]);
  const withAll = createConfigSnapshot(1, [...base, ...aps, ...otherPolicies()], {
    jwks: new Map(),
    rateLimitService: [{ host: '10.0.0.10', port: 15010 }],
  });
  const sidecar = proxyIn('ns1', '10.200.0.1');
  const translate = (config: typeof plain) => new Translator().translate(config, registry, sidecar);
  for (let i = 0; i < 10; i++) {
    translate(plain);
    translate(withAuthz);
    translate(withAll);
  }
  const times = { plain: [] as number[], authz: [] as number[], all: [] as number[] };
  // Interleaved, so machine load hits the three alike.
  for (let run = 0; run < flags.runs; run++) {
    times.plain.push(cpuMs(() => translate(plain)));
    times.authz.push(cpuMs(() => translate(withAuthz)));
    times.all.push(cpuMs(() => translate(withAll)));
  }
  const inbound = translate(withAll).listeners.find((l) => l.name === 'virtualInbound');
  const filters = JSON.stringify(inbound?.resource).match(/envoy\.filters\.http\.[a-z_]+/g) ?? [];
  const plainMs = median(times.plain);
  const authzMs = median(times.authz);
  const allMs = median(times.all);
  const authzPct = ((authzMs - plainMs) / plainMs) * 100;
  const allPct = ((allMs - plainMs) / plainMs) * 100;
  log(
    `mesh: ${registry.services.length} services, ${flags.policies} AuthorizationPolicies (${aps.filter((a) => a.metadata.namespace === 'ns1' || a.metadata.namespace === 'istio-system').length} in the sidecar's namespace or the root), sidecar filters: ${[...new Set(filters)].join(', ')}`,
  );
  printTable([
    { figure: 'full translation, no policy (cpu)', median: plainMs },
    { figure: `+ ${flags.policies} AuthorizationPolicies`, median: authzMs },
    { figure: '+ 10 RequestAuthentications, 10 RateLimits', median: allMs },
  ]);
  log(
    `authz_overhead_pct ${authzPct.toFixed(1)}% (target under 25%: ${authzPct < 25 ? 'met' : 'NOT met'}), policy_overhead_pct ${allPct.toFixed(1)}%`,
  );

  // ---------------------------------------------------------------- part 2: rate-limit decisions
  const etcd = await startEtcd({ tmpfs: true });
  const servers: grpc.Server[] = [];
  const clients: grpc.Client[] = [];
  let store: EtcdStore | undefined;
  try {
    store = await EtcdStore.connect({ endpoints: etcd.endpoints, keyspace: Keyspace.of('bench', 'c1') });
    const limits = [
      valid({
        apiVersion: 'policy.meridian.io/v1alpha1',
        kind: 'RateLimit',
        metadata: { name: 'bench', namespace: 'default' },
        spec: {
          global: {
            limits: [
              { requestsPerUnit: 1_000_000_000, unit: 'MINUTE' },
              { key: 'SOURCE_PRINCIPAL', requestsPerUnit: 1_000_000_000, unit: 'MINUTE' },
            ],
          },
        },
      }),
    ] as never[];
    const limiter = new GlobalRateLimiter({ store, limits: () => limits, log: pino({ level: 'silent' }) });
    const decide = new grpc.Server();
    // Plaintext, unauthenticated (the --rate-limit-plaintext mode): the decision, not the TLS handshake.
    addRateLimitService(decide, limiter, pino({ level: 'silent' }), { secure: false, plaintext: true });
    const floor = new grpc.Server();
    floor.addService(rateLimitServiceDefinition(), {
      ShouldRateLimit: (_call: unknown, cb: grpc.sendUnaryData<unknown>) =>
        cb(null, { overall_code: 'OK', statuses: [{ code: 'OK' }] }),
    });
    servers.push(decide, floor);
    const Ctor = rateLimitServiceClient();
    const decideClient = new Ctor(`127.0.0.1:${await listen(decide)}`, grpc.credentials.createInsecure());
    const floorClient = new Ctor(`127.0.0.1:${await listen(floor)}`, grpc.credentials.createInsecure());
    clients.push(decideClient, floorClient);
    const one = () => ({
      domain: 'meridian',
      descriptors: [{ entries: [{ key: 'meridian_limit', value: 'default/bench/0' }] }],
    });
    const perPrincipal = (i: number) => ({
      domain: 'meridian',
      descriptors: [
        {
          entries: [
            { key: 'meridian_limit', value: 'default/bench/1' },
            { key: 'source_principal', value: `spiffe://cluster.local/ns/default/sa/client-${i % 1000}` },
          ],
        },
      ],
    });
    const c = flags.concurrency;
    await rate(floorClient as unknown as Caller, 1, c, one);
    await rate(decideClient as unknown as Caller, 1, c, one);
    const samples = { floor: [] as number[], one: [] as number[], principals: [] as number[] };
    let over = 0;
    for (let round = 0; round < flags.rounds; round++) {
      samples.floor.push((await rate(floorClient as unknown as Caller, flags.seconds, c, one)).perSecond);
      const a = await rate(decideClient as unknown as Caller, flags.seconds, c, one);
      const b = await rate(decideClient as unknown as Caller, flags.seconds, c, perPrincipal);
      samples.one.push(a.perSecond);
      samples.principals.push(b.perSecond);
      over += a.over + b.over;
    }
    const floorRate = median(samples.floor);
    const oneRate = median(samples.one);
    const principalRate = median(samples.principals);
    log();
    log(
      `rate-limit service on one replica (etcd 1 member), ${c} calls in flight, ${flags.rounds} rounds of ${flags.seconds} s`,
    );
    for (const [name, v] of [
      ['floor: same unary call, no decision', floorRate],
      ['decisions, one counter', oneRate],
      ['decisions, 1,000 principals', principalRate],
    ] as const)
      log(
        `  ${name.padEnd(40)} ${Math.round(v).toString().padStart(7)} /s  (${((v / floorRate) * 100).toFixed(0)}% of floor)`,
      );
    log(
      `load average ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')} on ${cpus().length} cores`,
    );
    emitResult({
      policies: flags.policies,
      translate_cpu_ms: round3(plainMs),
      translate_authz_cpu_ms: round3(authzMs),
      translate_all_policy_cpu_ms: round3(allMs),
      authz_overhead_pct: round3(authzPct),
      policy_overhead_pct: round3(allPct),
      ratelimit_floor_per_s: Math.round(floorRate),
      ratelimit_decisions_per_s: Math.round(oneRate),
      ratelimit_decisions_principals_per_s: Math.round(principalRate),
      ratelimit_ratio: round3(oneRate / floorRate),
      ratelimit_principals_ratio: round3(principalRate / floorRate),
      over_limit_answers: over,
    });
  } finally {
    for (const cl of clients) cl.close();
    for (const s of servers) s.forceShutdown();
    await store?.close();
    await etcd.stop();
  }
}
