import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { freePorts } from './ports.js';
import {
  ManagedProcess,
  makeTempDir,
  retryOnAddressInUse,
  type ServerProcess,
  startTogether,
} from './process.js';

/** One etcd member of a cluster started by the testkit. */
export interface EtcdMember extends ServerProcess {
  /** `http://127.0.0.1:<port>`: the client URL (gRPC and the HTTP/JSON gateway). */
  readonly clientUrl: string;
  /** `http://127.0.0.1:<port>`: the peer (raft) URL. */
  readonly peerUrl: string;
  readonly dataDir: string;
  /** Raft member id as etcd prints it in JSON (a decimal uint64 string), known once the cluster started. */
  readonly memberId: string | undefined;
}

/** A running etcd cluster (one member for `startEtcd`). */
export interface EtcdCluster extends AsyncDisposable {
  /** Client URLs of every member, in member order. */
  readonly endpoints: string[];
  readonly members: EtcdMember[];
  /**
   * The current leader, as reported by the running members (HTTP gateway `/v3/maintenance/status`).
   * Waits (bounded, default 10 s) until a running member is reported as leader; throws otherwise.
   */
  leader(opts?: { timeoutMs?: number }): Promise<EtcdMember>;
  /** Resolves when every running member reports `/health` true (bounded, default 30 s). */
  waitHealthy(opts?: { timeoutMs?: number }): Promise<void>;
  /** Kills every member and removes the data dirs. Idempotent. */
  stop(): Promise<void>;
}

/** Options of `startEtcdCluster`. */
export interface EtcdClusterOptions {
  /** Number of members (default 3). */
  size?: number;
  /** `--heartbeat-interval 50 --election-timeout 500`, for failover tests. */
  fastElection?: boolean;
  /** Keep the data dirs on /dev/shm (the /tmp path is a symlink to it). */
  tmpfs?: boolean;
  /** Extra etcd flags for every member, e.g. `['--auto-compaction-retention', '1']`. */
  extraArgs?: string[];
  /** Bounded wait for the cluster to become healthy (default 30 s). */
  readyTimeoutMs?: number;
}

/** The etcd cluster has no leader among its running members within the wait. */
export class EtcdLeaderError extends Error {
  override readonly name = 'EtcdLeaderError';
  readonly endpoints: readonly string[];
  constructor(message: string, endpoints: readonly string[], cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.endpoints = endpoints;
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** GET `<clientUrl>/health` → true when the member reports `{"health":"true"}`. */
export async function etcdHealthy(clientUrl: string, signal?: AbortSignal): Promise<boolean> {
  const res = await fetch(`${clientUrl}/health`, { signal: signal ?? AbortSignal.timeout(2_000) });
  if (!res.ok) {
    await res.body?.cancel();
    return false;
  }
  const body = (await res.json()) as { health?: string | boolean };
  return body.health === 'true' || body.health === true;
}

interface MaintenanceStatus {
  header?: { member_id?: string };
  leader?: string;
}

/** POST `<clientUrl>/v3/maintenance/status` (the etcd gRPC gateway). */
async function etcdStatus(clientUrl: string, signal?: AbortSignal): Promise<MaintenanceStatus> {
  const res = await fetch(`${clientUrl}/v3/maintenance/status`, {
    method: 'POST',
    body: '{}',
    headers: { 'content-type': 'application/json' },
    signal: signal ?? AbortSignal.timeout(2_000),
  });
  if (!res.ok) throw new Error(`status ${res.status} from ${clientUrl}/v3/maintenance/status`);
  return (await res.json()) as MaintenanceStatus;
}

class EtcdMemberProcess extends ManagedProcess implements EtcdMember {
  readonly clientUrl: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  /** Raft member id (decimal string), learnt from the member's status. */
  memberId: string | undefined;

  constructor(fields: {
    name: string;
    clientUrl: string;
    peerUrl: string;
    dataDir: string;
    args: string[];
    readyTimeoutMs: number;
  }) {
    const env = { ...process.env };
    for (const k of Object.keys(env)) if (k.startsWith('ETCD_')) delete env[k];
    super({
      name: fields.name,
      command: process.env.MERIDIAN_ETCD_BIN ?? 'etcd',
      installHint: 'apt-get install etcd-server etcd-client, or set MERIDIAN_ETCD_BIN',
      args: fields.args,
      env,
      readyTimeoutMs: fields.readyTimeoutMs,
      probe: (signal) => etcdHealthy(fields.clientUrl, signal),
    });
    this.clientUrl = fields.clientUrl;
    this.peerUrl = fields.peerUrl;
    this.dataDir = fields.dataDir;
  }
}

class EtcdClusterHandle implements EtcdCluster {
  readonly members: EtcdMemberProcess[];
  readonly #removeDir: () => void;
  #stopped = false;

  constructor(members: EtcdMemberProcess[], removeDir: () => void) {
    this.members = members;
    this.#removeDir = removeDir;
  }

  get endpoints(): string[] {
    return this.members.map((m) => m.clientUrl);
  }

  async leader(opts: { timeoutMs?: number } = {}): Promise<EtcdMember> {
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const deadline = Date.now() + timeoutMs;
    let lastError: unknown;
    for (;;) {
      const running = this.members.filter((m) => m.running);
      const statuses = await Promise.all(
        running.map(async (m) => {
          try {
            const s = await etcdStatus(m.clientUrl, AbortSignal.timeout(1_000));
            if (s.header?.member_id) m.memberId = s.header.member_id;
            return s;
          } catch (err) {
            lastError = err;
            return undefined;
          }
        }),
      );
      for (const s of statuses) {
        const id = s?.leader;
        if (!id || id === '0') continue;
        const leader = running.find((m) => m.memberId === id);
        if (leader) return leader;
      }
      if (Date.now() >= deadline) {
        throw new EtcdLeaderError(
          `no etcd leader among running members within ${timeoutMs} ms (${running.length}/${this.members.length} running: ${running.map((m) => m.clientUrl).join(', ')})`,
          this.endpoints,
          lastError,
        );
      }
      await sleep(25);
    }
  }

  async waitHealthy(opts: { timeoutMs?: number } = {}): Promise<void> {
    const timeoutMs = opts.timeoutMs ?? 30_000;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const running = this.members.filter((m) => m.running);
      const ok = await Promise.all(running.map((m) => etcdHealthy(m.clientUrl).catch(() => false)));
      if (ok.every(Boolean)) return;
      if (Date.now() >= deadline) {
        const bad = running.filter((_, i) => !ok[i]).map((m) => m.name);
        throw new EtcdLeaderError(
          `etcd members not healthy within ${timeoutMs} ms: ${bad.join(', ')}`,
          this.endpoints,
        );
      }
      await sleep(50);
    }
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await Promise.all(this.members.map((m) => m.kill('SIGKILL')));
    this.#removeDir();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

async function startOnce(size: number, opts: EtcdClusterOptions): Promise<EtcdClusterHandle> {
  const dir = makeTempDir('etcd', { tmpfs: opts.tmpfs ?? false });
  const ports = await freePorts(size * 2);
  const token = `meridian-${randomBytes(6).toString('hex')}`;
  const names = Array.from({ length: size }, (_, i) => `m${i}`);
  const peerUrls = names.map((_, i) => `http://127.0.0.1:${ports[2 * i + 1]}`);
  const initialCluster = names.map((n, i) => `${n}=${peerUrls[i]}`).join(',');
  const readyTimeoutMs = opts.readyTimeoutMs ?? 30_000;
  const members = names.map((n, i) => {
    const clientUrl = `http://127.0.0.1:${ports[2 * i]}`;
    const peerUrl = peerUrls[i]!;
    const dataDir = join(dir.path, n);
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    // biome-ignore format: one flag and its value per line
    const args = [
      '--name', n,
      '--data-dir', dataDir,
      '--listen-client-urls', clientUrl,
      '--advertise-client-urls', clientUrl,
      '--listen-peer-urls', peerUrl,
      '--initial-advertise-peer-urls', peerUrl,
      '--initial-cluster', initialCluster,
      '--initial-cluster-token', token,
      '--initial-cluster-state', 'new',
      '--logger', 'zap',
      '--log-outputs', 'stderr',
      '--log-level', 'warn',
      ...(opts.fastElection ? ['--heartbeat-interval', '50', '--election-timeout', '500'] : []),
      ...(opts.extraArgs ?? []),
    ];
    return new EtcdMemberProcess({
      name: size === 1 ? 'etcd' : `etcd-${n}`,
      clientUrl,
      peerUrl,
      dataDir,
      args,
      readyTimeoutMs,
    });
  });
  const cluster = new EtcdClusterHandle(members, dir.remove);
  try {
    // Members of a new cluster only become healthy together, so start them all at once.
    await startTogether(members);
    await cluster.leader({ timeoutMs: readyTimeoutMs }); // learns every member id
    for (const m of members) {
      if (m.memberId === undefined) {
        const s = await etcdStatus(m.clientUrl);
        m.memberId = s.header?.member_id;
      }
    }
    return cluster;
  } catch (err) {
    await cluster.stop();
    throw err;
  }
}

/**
 * Starts a `size`-member etcd cluster (default 3) on free loopback ports above 20000, data under
 * `/tmp/meridian-test-etcd-*`. Resolves when every member reports `/health` true; a start-up failure
 * rejects with ServerStartError carrying the member's last output. Stop it with `stop()` or `await using`.
 */
export function startEtcdCluster(opts: EtcdClusterOptions = {}): Promise<EtcdCluster> {
  const size = opts.size ?? 3;
  if (!Number.isInteger(size) || size < 1)
    throw new RangeError(`etcd cluster size must be >= 1, got ${size}`);
  return retryOnAddressInUse(() => startOnce(size, opts));
}

/**
 * Starts a single-member etcd (see `startEtcdCluster`). `fastElection` defaults to true here: a lone
 * member has no peer to disagree with, and it elects itself in ~0.5 s instead of ~1 s.
 */
export function startEtcd(opts: Omit<EtcdClusterOptions, 'size'> = {}): Promise<EtcdCluster> {
  return startEtcdCluster({ fastElection: true, ...opts, size: 1 });
}
