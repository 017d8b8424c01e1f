import { type ChildProcess, spawn } from 'node:child_process';
import {
  accessSync,
  constants,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
} from 'node:fs';
import { delimiter, join } from 'node:path';

/**
 * A real server process started by the testkit (etcd member, NATS server). Every one is in the
 * process-wide registry below, so it is killed even when the test that started it throws.
 */
export interface ServerProcess {
  /** Human-readable name, e.g. `etcd-m1` or `nats-A-0`. */
  readonly name: string;
  /** OS process id while running (and the last one after it stopped); undefined before the first start. */
  readonly pid: number | undefined;
  readonly running: boolean;
  /** Sends `signal` (default SIGKILL) and resolves once the process has exited. No-op when not running. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the process again with the same ports and data dir; resolves when it is ready again. */
  restart(): Promise<void>;
}

/** A server failed to start: it exited early or did not become ready within the bounded wait. */
export class ServerStartError extends Error {
  override readonly name = 'ServerStartError';
  /** Name of the server, e.g. `etcd-m0`. */
  readonly server: string;
  /** Exit code if the process exited during start-up, else null. */
  readonly exitCode: number | null;
  /** Signal that ended the process during start-up, else null. */
  readonly exitSignal: NodeJS.Signals | null;
  /** The last lines the process wrote to stderr/stdout. */
  readonly outputTail: readonly string[];
  /** True when the output says a port was already taken (start functions retry on fresh ports). */
  readonly addressInUse: boolean;

  constructor(
    message: string,
    fields: {
      server: string;
      exitCode?: number | null;
      exitSignal?: NodeJS.Signals | null;
      outputTail: readonly string[];
      cause?: unknown;
    },
  ) {
    const tail = fields.outputTail.length
      ? `\n--- last output of ${fields.server} ---\n${fields.outputTail.join('\n')}`
      : `\n(${fields.server} wrote no output)`;
    super(`${message}${tail}`, fields.cause === undefined ? undefined : { cause: fields.cause });
    this.server = fields.server;
    this.exitCode = fields.exitCode ?? null;
    this.exitSignal = fields.exitSignal ?? null;
    this.outputTail = fields.outputTail;
    this.addressInUse = fields.outputTail.some((l) => /address already in use|EADDRINUSE/i.test(l));
  }
}

// ---------------------------------------------------------------------------------------------------
// Process-wide registry. Deliberately module state: it must see every child of this OS process.

const live = new Set<ChildProcess>();
/** Removers of the temp dirs still in use; run after the kill on exit and on a fatal signal. */
const tempDirs = new Set<() => void>();
let hooksInstalled = false;

function killAllSync(): void {
  for (const child of live) {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}

function cleanUpSync(): void {
  killAllSync();
  for (const remove of tempDirs) {
    try {
      remove();
    } catch {
      // best effort: CI's sweep removes what is left
    }
  }
  tempDirs.clear();
}

function onSignal(signal: NodeJS.Signals): void {
  cleanUpSync();
  // Keep the default behaviour (terminate) when nobody else handles the signal.
  if (process.listenerCount(signal) === 1) {
    process.removeListener(signal, onSignal);
    process.kill(process.pid, signal);
  }
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  // 'exit' also fires after an uncaught exception or unhandled rejection ends the process.
  process.on('exit', cleanUpSync);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, onSignal);
}

/** PIDs of every registered child still running (for diagnostics and tests). */
export function liveChildPids(): number[] {
  return [...live].map((c) => c.pid).filter((p): p is number => p !== undefined);
}

/**
 * SIGKILLs every child the testkit started in this process and removes its temp dirs (also done
 * automatically on exit and on SIGINT/SIGTERM/SIGHUP). Handles become unusable.
 */
export function killAllServers(): void {
  cleanUpSync();
}

/**
 * True when `pid` names a running process. A zombie (exited, not yet reaped: in a container, PID 1 may
 * never reap orphans) counts as dead.
 */
export function pidAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    if (existsSync('/proc/self/stat')) return false;
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  }
}

/**
 * `setpriv --pdeathsig KILL` makes the kernel SIGKILL the server when the thread that spawned it dies,
 * even by SIGKILL, where no exit hook runs. Used when util-linux's setpriv is installed, unless
 * MERIDIAN_TESTKIT_PDEATHSIG=0 (the teardown test uses that to check the exit hooks alone).
 */
const SETPRIV =
  process.env.MERIDIAN_TESTKIT_PDEATHSIG === '0'
    ? undefined
    : ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));

// ---------------------------------------------------------------------------------------------------
// Temp dirs

/** Prefix of every temp dir; CI's last-resort sweep kills processes whose command line contains it. */
export const TEMP_PREFIX = '/tmp/meridian-test-';

/**
 * Creates `/tmp/meridian-test-<kind>-XXXXXX`. With `tmpfs`, the data lives in
 * `/dev/shm/meridian-test-<kind>-XXXXXX` and the returned /tmp path is a symlink to it, so command
 * lines still carry the /tmp prefix. Returns the path and a remover.
 */
export function makeTempDir(kind: string, opts: { tmpfs?: boolean } = {}): { path: string; remove(): void } {
  installHooks();
  let path: string;
  let removeNow: () => void;
  if (opts.tmpfs && existsSync('/dev/shm')) {
    const real = mkdtempSync(`/dev/shm/meridian-test-${kind}-`);
    const link = `${TEMP_PREFIX}${kind}-${real.slice(real.lastIndexOf('-') + 1)}`;
    symlinkSync(real, link);
    path = link;
    removeNow = () => {
      rmSync(link, { force: true });
      rmSync(real, { recursive: true, force: true });
    };
  } else {
    mkdirSync('/tmp', { recursive: true });
    const dir = mkdtempSync(`${TEMP_PREFIX}${kind}-`);
    path = dir;
    removeNow = () => rmSync(dir, { recursive: true, force: true });
  }
  tempDirs.add(removeNow);
  return {
    path,
    remove() {
      tempDirs.delete(removeNow);
      removeNow();
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// ManagedProcess

/** How to run one server. */
export interface ProcessSpec {
  name: string;
  command: string;
  args: string[];
  cwd?: string;
  /** Environment; defaults to process.env. */
  env?: NodeJS.ProcessEnv;
  /** Resolves true when the server is ready. Called repeatedly until the deadline. */
  probe(signal: AbortSignal): Promise<boolean>;
  /** Bounded wait for readiness (default 30 s). */
  readyTimeoutMs?: number;
  /** Added to the error when `command` is not found, e.g. how to install it. */
  installHint?: string;
}

/** Absolute path of `command` (as given when it contains a slash, else looked up on PATH), or undefined. */
export function findExecutable(command: string): string | undefined {
  const isExec = (p: string) => {
    try {
      accessSync(p, constants.X_OK);
      return statSync(p).isFile();
    } catch {
      return false;
    }
  };
  if (command.includes('/')) return isExec(command) ? command : undefined;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir && isExec(join(dir, command))) return join(dir, command);
  }
  return undefined;
}

const OUTPUT_LINES = 60;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Base class of every server handle: spawn, wait until ready, kill by PID, restart. */
export class ManagedProcess implements ServerProcess {
  readonly name: string;
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  #output: string[] = [];
  #partial = '';
  readonly #spec: ProcessSpec;

  constructor(spec: ProcessSpec) {
    this.name = spec.name;
    this.#spec = spec;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  get running(): boolean {
    const c = this.#child;
    return c !== undefined && c.exitCode === null && c.signalCode === null;
  }

  /** The last lines the server wrote (stderr and stdout interleaved). */
  outputTail(n = OUTPUT_LINES): string[] {
    const lines = this.#partial ? [...this.#output, this.#partial] : this.#output;
    return lines.slice(-n);
  }

  /** Spawns the process and waits until `probe` says ready; throws ServerStartError otherwise. */
  async start(): Promise<void> {
    if (this.running) throw new Error(`${this.name} is already running (pid ${this.pid})`);
    installHooks();
    this.#output = [];
    this.#partial = '';
    const { command, args } = this.#spec;
    if (findExecutable(command) === undefined) {
      throw new ServerStartError(
        `${this.name}: ${command} not found${command.includes('/') ? '' : ' on PATH'}${this.#spec.installHint ? ` (${this.#spec.installHint})` : ''}`,
        { server: this.name, outputTail: [] },
      );
    }
    const [cmd, argv] = SETPRIV
      ? [SETPRIV, ['--pdeathsig', 'KILL', '--', command, ...args]]
      : [command, args];
    const child = spawn(cmd, argv, {
      cwd: this.#spec.cwd,
      env: this.#spec.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.#child = child;
    live.add(child);
    this.#exited = new Promise<void>((resolve) => {
      child.once('exit', () => {
        live.delete(child);
        resolve();
      });
    });
    let spawnError: Error | undefined;
    child.once('error', (err) => {
      spawnError = err;
      live.delete(child);
    });
    const verbose = process.env.MERIDIAN_TESTKIT_VERBOSE === '1';
    const onData = (buf: Buffer) => {
      const text = this.#partial + buf.toString('utf8');
      const lines = text.split('\n');
      this.#partial = lines.pop() ?? '';
      for (const l of lines) {
        this.#output.push(l);
        if (verbose) process.stderr.write(`[${this.name}] ${l}\n`);
      }
      if (this.#output.length > OUTPUT_LINES * 2) this.#output.splice(0, this.#output.length - OUTPUT_LINES);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);

    const timeoutMs = this.#spec.readyTimeoutMs ?? 30_000;
    const deadline = Date.now() + timeoutMs;
    let lastProbeError: unknown;
    for (;;) {
      if (spawnError) {
        throw new ServerStartError(`${this.name}: could not spawn ${command}: ${spawnError.message}`, {
          server: this.name,
          outputTail: this.outputTail(),
          cause: spawnError,
        });
      }
      if (child.exitCode !== null || child.signalCode !== null) {
        await sleep(20); // let the last output arrive
        throw new ServerStartError(
          `${this.name} exited during start-up (${child.exitCode !== null ? `code ${child.exitCode}` : child.signalCode})`,
          {
            server: this.name,
            exitCode: child.exitCode,
            exitSignal: child.signalCode,
            outputTail: this.outputTail(),
          },
        );
      }
      try {
        if (
          await this.#spec.probe(AbortSignal.timeout(Math.min(2_000, Math.max(100, deadline - Date.now()))))
        )
          return;
        lastProbeError = undefined;
      } catch (err) {
        lastProbeError = err;
      }
      if (Date.now() >= deadline) {
        await this.kill('SIGKILL');
        throw new ServerStartError(`${this.name} did not become ready within ${timeoutMs} ms`, {
          server: this.name,
          outputTail: this.outputTail(),
          cause: lastProbeError,
        });
      }
      // Poll fast at first, then back off: every failed probe may log a line (NATS /healthz does).
      await sleep(Date.now() - (deadline - timeoutMs) < 1_000 ? 50 : 200);
    }
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.#child;
    if (!child || !this.running) return;
    try {
      child.kill(signal);
    } catch {
      // raced with exit
    }
    const graceMs = signal === 'SIGKILL' ? 10_000 : 5_000;
    const exited = await Promise.race([this.#exited.then(() => true), sleep(graceMs).then(() => false)]);
    if (exited) return;
    if (signal !== 'SIGKILL') return this.kill('SIGKILL');
    throw new Error(`${this.name} (pid ${child.pid}) did not exit ${graceMs} ms after SIGKILL`);
  }

  async restart(): Promise<void> {
    await this.kill('SIGKILL');
    await this.start();
  }
}

/**
 * Starts `procs` concurrently (members of a new cluster only become ready together). The first failure
 * kills the others at once, instead of letting them wait out their deadline for a peer that is gone,
 * and is the error thrown.
 */
export async function startTogether(procs: readonly ManagedProcess[]): Promise<void> {
  let first: unknown;
  let failed = false;
  await Promise.allSettled(
    procs.map((p) =>
      p.start().catch(async (err: unknown) => {
        if (failed) return;
        failed = true;
        first = err;
        await Promise.all(procs.filter((o) => o !== p).map((o) => o.kill('SIGKILL')));
      }),
    ),
  );
  if (failed) throw first;
}

/** Retries `attempt` when it fails with a port collision (another worker took a probed port). */
export async function retryOnAddressInUse<T>(attempt: () => Promise<T>, tries = 3): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await attempt();
    } catch (err) {
      if (i >= tries || !(err instanceof ServerStartError) || !err.addressInUse) throw err;
    }
  }
}
