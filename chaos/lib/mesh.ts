// The chaos suite's mesh: brought up and restored by `meridian up`'s own functions (up, down and the
// process specs of packages/cli/src/local), in a temporary state dir, with its own credentials file.
// Faults act on processes by their PID files; `restore()` is `up` again, which restarts exactly what
// is missing and waits for the whole mesh (etcd, NATS gateways, replicas, demo traffic, federation).
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CliContext } from '../../packages/cli/src/context.js';
import { clusterToken } from '../../packages/cli/src/local/admin.js';
import { down } from '../../packages/cli/src/local/down.js';
import {
  type ClusterPlan,
  etcdSpec,
  type MeshPlan,
  natsSpec,
  replicaSpec,
  requirePlan,
  StatePaths,
} from '../../packages/cli/src/local/plan.js';
import { type ProcSpec, runningPid } from '../../packages/cli/src/local/procs.js';
import { echoSpec, up } from '../../packages/cli/src/local/up.js';

export const CHAOS_TOPOLOGY = fileURLToPath(new URL('../topology.yaml', import.meta.url));

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `check` until it returns a value other than undefined/false, or `timeoutMs` passes (undefined). */
export async function poll<T>(
  check: () => Promise<T | undefined | false>,
  timeoutMs: number,
  everyMs = 200,
): Promise<T | undefined> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await check().catch(() => undefined);
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) return undefined;
    await sleep(everyMs);
  }
}

/** A context that keeps `up`'s output (printed only when `verbose`). */
function quietContext(verbose: boolean, lines: string[]): CliContext {
  return {
    out: (l) => {
      lines.push(l);
      if (verbose) process.stdout.write(`    ${l}\n`);
    },
    err: (l) => {
      lines.push(l);
      process.stderr.write(`    ${l}\n`);
    },
  };
}

/** PIDs of live processes whose command line contains `marker` (the state dir). */
export function processesOf(marker: string): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (cmdline.includes(marker) && !/\) Z /.test(stat)) out.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

export interface MeshOptions {
  readonly topology?: string;
  readonly verbose?: boolean;
  readonly timeoutMs?: number;
}

/** A running chaos mesh. */
export class Mesh {
  private constructor(
    readonly dir: string,
    readonly paths: StatePaths,
    readonly plan: MeshPlan,
    readonly tokens: ReadonlyMap<string, string>,
    private readonly ctx: CliContext,
    private readonly timeoutMs: number,
    readonly upMs: number,
  ) {}

  /** Brings a mesh up in a fresh temp dir with `meridian up`'s code; on failure, tears it down. */
  static async start(o: MeshOptions = {}): Promise<Mesh> {
    const dir = await mkdtemp(join(tmpdir(), 'meridian-chaos-'));
    const paths = new StatePaths(join(dir, 'state'));
    // ensureCredentials also saves the contexts to the default credentials file: keep it ours.
    process.env.MERIDIAN_CREDENTIALS = join(dir, 'credentials.yaml');
    const lines: string[] = [];
    const ctx = quietContext(o.verbose ?? false, lines);
    const timeoutMs = o.timeoutMs ?? 240_000;
    const t0 = Date.now();
    try {
      await up(ctx, { topology: o.topology ?? CHAOS_TOPOLOGY, stateDir: paths.dir, timeoutMs });
      const plan = await requirePlan(paths);
      const tokens = new Map<string, string>();
      for (const c of plan.clusters) {
        const t = await clusterToken(paths, plan, c);
        if (!t) throw new Error(`no admin token for ${c.name} in ${paths.credentials}`);
        tokens.set(c.name, t);
      }
      return new Mesh(dir, paths, plan, tokens, ctx, timeoutMs, Date.now() - t0);
    } catch (error) {
      process.stderr.write(`${lines.slice(-20).join('\n')}\n`);
      await teardown(dir, paths);
      throw error;
    }
  }

  cluster(name: string): ClusterPlan {
    const c = this.plan.clusters.find((x) => x.name === name);
    if (!c) throw new Error(`no cluster ${name} in the chaos mesh`);
    return c;
  }

  token(c: ClusterPlan): string {
    return this.tokens.get(c.name)!;
  }

  replica(c: ClusterPlan, i: number): ProcSpec {
    return replicaSpec(this.paths, this.plan, c, i);
  }
  etcd(c: ClusterPlan, i: number): ProcSpec {
    return etcdSpec(this.paths, c, i);
  }
  nats(c: ClusterPlan, i: number): ProcSpec {
    return natsSpec(this.paths, c, i);
  }
  echo(c: ClusterPlan): ProcSpec {
    return echoSpec(this.paths, c);
  }

  pid(spec: ProcSpec): number | undefined {
    return runningPid(spec.pidFile, spec.marker);
  }

  /** Sends `signal` to the process of `spec` (by its PID file); returns the PID. */
  signal(spec: ProcSpec, signal: NodeJS.Signals): number {
    const pid = this.pid(spec);
    if (pid === undefined) throw new Error(`${spec.id} is not running`);
    process.kill(pid, signal);
    return pid;
  }

  /** SIGKILLs `spec` and waits until it is gone. */
  async kill(spec: ProcSpec): Promise<number> {
    const pid = this.signal(spec, 'SIGKILL');
    await poll(async () => this.pid(spec) === undefined, 10_000, 50);
    return pid;
  }

  /** `meridian up` again: restarts what is missing, waits for the whole mesh; resolves with its duration. */
  async restore(): Promise<number> {
    const t0 = Date.now();
    await up(this.ctx, { stateDir: this.paths.dir, timeoutMs: this.timeoutMs });
    return Date.now() - t0;
  }

  /** etcdctl against the members of `c` given (default: all). */
  etcdctl(c: ClusterPlan, args: readonly string[], members?: readonly number[]): string {
    const eps = (members ?? c.etcd.map((_, i) => i)).map((i) => `http://127.0.0.1:${c.etcd[i]!.client}`);
    return execFileSync('etcdctl', ['--endpoints', eps.join(','), '--command-timeout=3s', ...args], {
      encoding: 'utf8',
      timeout: 10_000,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  }

  /** `meridian down`, SIGKILL of anything left naming the state dir, and the temp dir removed. */
  async stop(): Promise<void> {
    await teardown(this.dir, this.paths);
  }
}

async function teardown(dir: string, paths: StatePaths): Promise<void> {
  try {
    await down({ out: () => {}, err: () => {} }, { stateDir: paths.dir });
  } catch {
    // the SIGKILL pass below
  }
  for (const pid of processesOf(paths.dir)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  await rm(dir, { recursive: true, force: true });
}
