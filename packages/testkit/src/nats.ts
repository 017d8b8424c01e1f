import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePorts } from './ports.js';
import {
  ManagedProcess,
  makeTempDir,
  retryOnAddressInUse,
  type ServerProcess,
  startTogether,
} from './process.js';

/** One nats-server process started by the testkit. */
export interface NatsServer extends ServerProcess {
  /** `nats://127.0.0.1:<port>`: the client URL. */
  readonly url: string;
  readonly port: number;
  /** Route port (present in a supercluster, where every server has a cluster block). */
  readonly clusterPort?: number;
  /** Gateway port (present in a supercluster). */
  readonly gatewayPort?: number;
  /** HTTP monitoring port (`/healthz`, `/varz`, `/gatewayz`, `/routez`, `/jsz`). */
  readonly monitorPort: number;
  /** JetStream `store_dir`, when JetStream is on. */
  readonly storeDir?: string;
  /** The generated config file (`nats-server -c`). */
  readonly configFile: string;
  /** `server_name` in the config, e.g. `nats` or `A-0`. */
  readonly serverName: string;
}

/** Options of `startNats`. */
export interface NatsOptions {
  /** Enable JetStream with a `store_dir` under the temp dir (default false). */
  jetstream?: boolean;
  /** Appended verbatim to the generated config (accounts, users, limits...). */
  configExtra?: string;
  /** Bounded wait for `/healthz` (default 20 s). */
  readyTimeoutMs?: number;
}

/** Options of `startNatsSupercluster`. */
export interface NatsSuperclusterOptions {
  /** One entry per cluster; `size` servers each (default 1), routed together, clusters joined by gateways. */
  clusters: { name: string; size?: number }[];
  /** Enable JetStream on every server (default false). */
  jetstream?: boolean;
  /** Extra config per server, by cluster name and index within the cluster. */
  configExtra?: (cluster: string, index: number) => string;
  /** Bounded wait for health and every gateway connection (default 30 s). */
  readyTimeoutMs?: number;
}

/** A set of NATS clusters joined as a gateway supercluster. */
export interface NatsSupercluster extends AsyncDisposable {
  /** Servers by cluster name. */
  readonly clusters: Record<string, NatsServer[]>;
  /** Every server, cluster by cluster. A server's `restart()` waits for its /healthz only: call
   * `waitConnected()` after it to wait for its routes and gateways too. */
  readonly servers: NatsServer[];
  /**
   * Resolves when every running server is healthy, routed to the running servers of its cluster and
   * has inbound and outbound gateway connections to every other cluster (bounded, default 30 s).
   */
  waitConnected(opts?: { timeoutMs?: number }): Promise<void>;
  /** Kills every server and removes the temp dir. Idempotent. */
  stop(): Promise<void>;
}

/** A running standalone NATS server with its own `stop()`. */
export type StandaloneNatsServer = NatsServer & AsyncDisposable & { stop(): Promise<void> };

/** The supercluster did not reach full connectivity within the wait. */
export class NatsConnectivityError extends Error {
  override readonly name = 'NatsConnectivityError';
  /** What was still missing, one entry per server, e.g. `A-0: no outbound gateway to B`. */
  readonly missing: readonly string[];
  constructor(message: string, missing: readonly string[]) {
    super(message);
    this.missing = missing;
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** GET `/healthz` on the monitor port → true when `{"status":"ok"}`. */
export async function natsHealthy(monitorPort: number, signal?: AbortSignal): Promise<boolean> {
  const res = await fetch(`http://127.0.0.1:${monitorPort}/healthz`, {
    signal: signal ?? AbortSignal.timeout(2_000),
  });
  if (!res.ok) {
    await res.body?.cancel();
    return false;
  }
  const body = (await res.json()) as { status?: string };
  return body.status === 'ok';
}

/** Fetches a monitoring endpoint (`varz`, `gatewayz`, `routez`, `jsz`, ...) as JSON. */
export async function natsMonitor<T = unknown>(monitorPort: number, endpoint: string): Promise<T> {
  const res = await fetch(`http://127.0.0.1:${monitorPort}/${endpoint}`, {
    signal: AbortSignal.timeout(2_000),
  });
  if (!res.ok) throw new Error(`nats monitor ${endpoint} on port ${monitorPort}: HTTP ${res.status}`);
  return (await res.json()) as T;
}

const q = (s: string) => JSON.stringify(s);

interface ServerLayout {
  serverName: string;
  dir: string;
  port: number;
  monitorPort: number;
  cluster?: { name: string; port: number; routes: number[] };
  gateway?: { name: string; port: number; peers: { name: string; ports: number[] }[] };
  jetstream: boolean;
  configExtra: string;
}

function renderConfig(l: ServerLayout): { text: string; storeDir?: string } {
  const lines = [
    `server_name: ${q(l.serverName)}`,
    `listen: ${q(`127.0.0.1:${l.port}`)}`,
    `http: ${q(`127.0.0.1:${l.monitorPort}`)}`,
  ];
  let storeDir: string | undefined;
  if (l.jetstream) {
    storeDir = join(l.dir, 'js'); // nats-server keeps its files in <store_dir>/jetstream
    lines.push(`jetstream { store_dir: ${q(storeDir)}, max_memory_store: 256MB, max_file_store: 2GB }`);
  }
  if (l.cluster) {
    const routes = l.cluster.routes.map((p) => q(`nats-route://127.0.0.1:${p}`)).join(', ');
    lines.push(
      `cluster { name: ${q(l.cluster.name)}, listen: ${q(`127.0.0.1:${l.cluster.port}`)}, routes: [${routes}] }`,
    );
  }
  if (l.gateway) {
    const gws = l.gateway.peers
      .map(
        (p) =>
          `    { name: ${q(p.name)}, urls: [${p.ports.map((n) => q(`nats://127.0.0.1:${n}`)).join(', ')}] }`,
      )
      .join('\n');
    lines.push(
      `gateway {\n  name: ${q(l.gateway.name)}\n  listen: ${q(`127.0.0.1:${l.gateway.port}`)}\n  gateways: [\n${gws}\n  ]\n}`,
    );
  }
  if (l.configExtra) lines.push(l.configExtra);
  return { text: `${lines.join('\n')}\n`, storeDir };
}

class NatsServerProcess extends ManagedProcess implements NatsServer {
  readonly url: string;
  readonly port: number;
  readonly clusterPort?: number;
  readonly gatewayPort?: number;
  readonly monitorPort: number;
  readonly storeDir?: string;
  readonly configFile: string;
  readonly serverName: string;

  constructor(layout: ServerLayout, name: string, readyTimeoutMs: number) {
    mkdirSync(layout.dir, { recursive: true });
    const { text, storeDir } = renderConfig(layout);
    const configFile = join(layout.dir, 'nats.conf');
    writeFileSync(configFile, text);
    super({
      name,
      command: process.env.MERIDIAN_NATS_BIN ?? 'nats-server',
      installHint: 'apt-get install nats-server, or set MERIDIAN_NATS_BIN',
      args: ['-c', configFile],
      readyTimeoutMs,
      probe: (signal) => natsHealthy(layout.monitorPort, signal),
    });
    this.url = `nats://127.0.0.1:${layout.port}`;
    this.port = layout.port;
    if (layout.cluster) this.clusterPort = layout.cluster.port;
    if (layout.gateway) this.gatewayPort = layout.gateway.port;
    this.monitorPort = layout.monitorPort;
    if (storeDir) this.storeDir = storeDir;
    this.configFile = configFile;
    this.serverName = layout.serverName;
  }
}

async function startNatsOnce(opts: NatsOptions): Promise<StandaloneNatsServer> {
  const dir = makeTempDir('nats');
  const [port, monitorPort] = (await freePorts(2)) as [number, number];
  const server = new NatsServerProcess(
    {
      serverName: 'nats',
      dir: dir.path,
      port,
      monitorPort,
      jetstream: opts.jetstream ?? false,
      configExtra: opts.configExtra ?? '',
    },
    'nats',
    opts.readyTimeoutMs ?? 20_000,
  );
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await server.kill('SIGKILL');
    dir.remove();
  };
  try {
    await server.start();
  } catch (err) {
    await stop();
    throw err;
  }
  return Object.assign(server, { stop, [Symbol.asyncDispose]: stop });
}

/**
 * Starts one nats-server on free loopback ports above 20000 with a generated config under
 * `/tmp/meridian-test-nats-*` (JetStream optional). Resolves when `/healthz` on the monitor port is ok;
 * a start-up failure rejects with ServerStartError carrying the server's last output.
 */
export function startNats(opts: NatsOptions = {}): Promise<StandaloneNatsServer> {
  return retryOnAddressInUse(() => startNatsOnce(opts));
}

interface GatewayzReply {
  outbound_gateways?: Record<string, { connection?: unknown }>;
  inbound_gateways?: Record<string, unknown[]>;
}

class SuperclusterHandle implements NatsSupercluster {
  readonly clusters: Record<string, NatsServerProcess[]>;
  readonly #removeDir: () => void;
  #stopped = false;

  constructor(clusters: Record<string, NatsServerProcess[]>, removeDir: () => void) {
    this.clusters = clusters;
    this.#removeDir = removeDir;
  }

  get servers(): NatsServerProcess[] {
    return Object.values(this.clusters).flat();
  }

  /** What each running server still lacks; empty when fully connected. */
  async #missing(): Promise<string[]> {
    const names = Object.keys(this.clusters);
    const out: string[] = [];
    // Each server of cluster Y dials one server of cluster X: inbound connections are counted per cluster.
    const inbound = new Map<string, number>();
    await Promise.all(
      names.flatMap((cluster) =>
        this.clusters[cluster]!.filter((s) => s.running).map(async (s) => {
          try {
            if (!(await natsHealthy(s.monitorPort))) {
              out.push(`${s.name}: /healthz not ok`);
              return;
            }
            const peers = this.clusters[cluster]!.filter((p) => p !== s && p.running).length;
            if (peers > 0) {
              const routez = await natsMonitor<{ num_routes?: number }>(s.monitorPort, 'routez');
              if ((routez.num_routes ?? 0) < peers)
                out.push(`${s.name}: ${routez.num_routes ?? 0}/${peers} routes in cluster ${cluster}`);
            }
            const gz = await natsMonitor<GatewayzReply>(s.monitorPort, 'gatewayz');
            for (const other of names) {
              if (other === cluster || !this.clusters[other]!.some((p) => p.running)) continue;
              if (!gz.outbound_gateways?.[other]?.connection)
                out.push(`${s.name}: no outbound gateway to ${other}`);
              const key = `${cluster}<-${other}`;
              inbound.set(key, (inbound.get(key) ?? 0) + (gz.inbound_gateways?.[other]?.length ?? 0));
            }
          } catch (err) {
            out.push(`${s.name}: monitor unreachable (${(err as Error).message})`);
          }
        }),
      ),
    );
    for (const cluster of names) {
      for (const other of names) {
        if (other === cluster || !this.clusters[cluster]!.some((p) => p.running)) continue;
        const want = this.clusters[other]!.filter((p) => p.running).length;
        const have = inbound.get(`${cluster}<-${other}`) ?? 0;
        if (have < want)
          out.push(`cluster ${cluster}: ${have}/${want} inbound gateway connections from ${other}`);
      }
    }
    return out.sort();
  }

  async waitConnected(opts: { timeoutMs?: number } = {}): Promise<void> {
    const timeoutMs = opts.timeoutMs ?? 30_000;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const missing = await this.#missing();
      if (missing.length === 0) return;
      if (Date.now() >= deadline) {
        throw new NatsConnectivityError(
          `NATS supercluster not fully connected within ${timeoutMs} ms: ${missing.join('; ')}`,
          missing,
        );
      }
      await sleep(Date.now() - (deadline - timeoutMs) < 1_000 ? 50 : 200);
    }
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await Promise.all(this.servers.map((s) => s.kill('SIGKILL')));
    this.#removeDir();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

async function startSuperclusterOnce(opts: NatsSuperclusterOptions): Promise<SuperclusterHandle> {
  const dir = makeTempDir('nats-sc');
  const specs = opts.clusters.map((c) => ({ name: c.name, size: c.size ?? 1 }));
  const total = specs.reduce((n, c) => n + c.size, 0);
  const ports = await freePorts(total * 4);
  let next = 0;
  const take = () => ports[next++]!;
  const alloc = specs.map((c) => ({
    ...c,
    servers: Array.from({ length: c.size }, () => ({
      port: take(),
      monitor: take(),
      route: take(),
      gw: take(),
    })),
  }));
  const peers = alloc.map((c) => ({ name: c.name, ports: c.servers.map((s) => s.gw) }));
  const readyTimeoutMs = opts.readyTimeoutMs ?? 30_000;
  const clusters: Record<string, NatsServerProcess[]> = {};
  for (const c of alloc) {
    clusters[c.name] = c.servers.map((s, i) => {
      const serverName = `${c.name}-${i}`;
      return new NatsServerProcess(
        {
          serverName,
          dir: join(dir.path, serverName),
          port: s.port,
          monitorPort: s.monitor,
          // Every route, its own included: nats-server drops the route to itself, and JetStream in a
          // one-server cluster refuses to start without a configured route.
          cluster: {
            name: c.name,
            port: s.route,
            routes: c.servers.map((o) => o.route),
          },
          gateway: { name: c.name, port: s.gw, peers },
          jetstream: opts.jetstream ?? false,
          configExtra: opts.configExtra?.(c.name, i) ?? '',
        },
        `nats-${serverName}`,
        readyTimeoutMs,
      );
    });
  }
  const sc = new SuperclusterHandle(clusters, dir.remove);
  try {
    // JetStream's meta group needs a quorum before /healthz is ok, so start every server at once.
    await startTogether(sc.servers);
    await sc.waitConnected({ timeoutMs: readyTimeoutMs });
    return sc;
  } catch (err) {
    await sc.stop();
    throw err;
  }
}

/**
 * Starts N NATS clusters joined as a gateway supercluster, all on loopback. Resolves only when every
 * server is healthy and every gateway connection (inbound and outbound, checked on `/gatewayz`) is up.
 */
export function startNatsSupercluster(opts: NatsSuperclusterOptions): Promise<NatsSupercluster> {
  const names = opts.clusters.map((c) => c.name);
  if (names.length === 0) throw new RangeError('startNatsSupercluster: at least one cluster is required');
  const bad = names.find((n) => !/^[A-Za-z0-9_-]+$/.test(n));
  if (bad !== undefined)
    throw new RangeError(`startNatsSupercluster: invalid cluster name ${JSON.stringify(bad)}`);
  if (new Set(names).size !== names.length)
    throw new RangeError(`startNatsSupercluster: duplicate cluster names in ${names.join(', ')}`);
  return retryOnAddressInUse(() => startSuperclusterOnce(opts));
}
