// The processes of a local mesh: started detached with their output in a log file and their PID in a
// PID file, recognised again by PID and command line (so a reused PID is never taken for ours), and
// stopped by PID: SIGTERM, then SIGKILL after a bound.
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { dirname } from 'node:path';

/** How to tell that a started process is serving. */
export type Health =
  | {
      readonly kind: 'http';
      readonly url: string;
      readonly check?: (status: number, body: string) => boolean;
    }
  | { readonly kind: 'tcp'; readonly port: number }
  | { readonly kind: 'alive' };

/** One process of the mesh. */
export interface ProcSpec {
  /** Unique in the mesh, e.g. `east/etcd-0`; names the log and PID files. */
  readonly id: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
  readonly cwd?: string;
  readonly log: string;
  readonly pidFile: string;
  readonly health: Health;
  /** A string the process's command line contains (the state dir): a PID not showing it is not ours. */
  readonly marker: string;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The PID in `pidFile` if that process runs and is ours (its command line contains `marker`). */
export function runningPid(pidFile: string, marker: string): number | undefined {
  let pid: number;
  try {
    pid = Number(readFileSync(pidFile, 'utf8').trim());
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 1) return undefined;
  try {
    process.kill(pid, 0);
  } catch {
    return undefined;
  }
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (!cmdline.includes(marker)) return undefined;
    // A zombie (exited, not yet reaped) is not running.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (/\) Z /.test(stat)) return undefined;
  } catch {
    // No /proc (not Linux): trust kill -0.
  }
  return pid;
}

/** One health probe, bounded by `timeoutMs`. */
export async function probe(h: Health, timeoutMs = 1500): Promise<boolean> {
  if (h.kind === 'alive') return true;
  if (h.kind === 'tcp')
    return new Promise((resolve) => {
      const s = connect({ host: '127.0.0.1', port: h.port });
      const done = (ok: boolean) => {
        s.destroy();
        resolve(ok);
      };
      s.setTimeout(timeoutMs, () => done(false));
      s.once('connect', () => done(true));
      s.once('error', () => done(false));
    });
  try {
    const res = await fetch(h.url, { signal: AbortSignal.timeout(timeoutMs) });
    const body = await res.text();
    return h.check ? h.check(res.status, body) : res.ok;
  } catch {
    return false;
  }
}

/** The last `n` lines of a log file (for failure messages). */
export function tail(file: string, n = 5): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-n).join('\n');
  } catch {
    return '';
  }
}

/** A process did not start or did not become healthy. */
export class StartError extends Error {
  override readonly name = 'StartError';
  constructor(
    message: string,
    readonly log: string,
  ) {
    super(message);
  }
}

/**
 * Starts `spec` detached unless it already runs (then it is reused); resolves with its PID and
 * whether it was started. The process outlives the CLI.
 */
export async function ensureStarted(spec: ProcSpec): Promise<{ pid: number; started: boolean }> {
  const existing = runningPid(spec.pidFile, spec.marker);
  if (existing !== undefined) return { pid: existing, started: false };
  await mkdir(dirname(spec.log), { recursive: true });
  await mkdir(dirname(spec.pidFile), { recursive: true });
  const fd = openSync(spec.log, 'a');
  try {
    const child = spawn(spec.command, [...spec.args], {
      detached: true,
      stdio: ['ignore', fd, fd],
      cwd: spec.cwd,
      env: { ...process.env, ...spec.env },
    });
    const pid = await new Promise<number>((resolve, reject) => {
      child.once('error', (e) =>
        reject(new StartError(`${spec.id}: ${spec.command}: ${e.message}`, spec.log)),
      );
      child.once('spawn', () => resolve(child.pid!));
    });
    child.unref();
    await writeFile(spec.pidFile, `${pid}\n`);
    return { pid, started: true };
  } finally {
    closeSync(fd);
  }
}

/** Waits until `spec` answers its health probe; fails early when the process exits. */
export async function waitHealthy(spec: ProcSpec, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (runningPid(spec.pidFile, spec.marker) === undefined)
      throw new StartError(`${spec.id} exited`, spec.log);
    if (await probe(spec.health)) return;
    if (Date.now() > end)
      throw new StartError(`${spec.id} not healthy within ${Math.round(timeoutMs / 1000)} s`, spec.log);
    await sleep(200);
  }
}

/** Stops the process of `pidFile`: SIGTERM, SIGKILL after `graceMs`; removes the PID file. */
export async function stopProcess(pidFile: string, marker: string, graceMs: number): Promise<boolean> {
  const pid = runningPid(pidFile, marker);
  if (pid === undefined) {
    await rm(pidFile, { force: true });
    return false;
  }
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    // gone already
  }
  const end = Date.now() + graceMs;
  while (Date.now() < end && runningPid(pidFile, marker) !== undefined) await sleep(100);
  if (runningPid(pidFile, marker) !== undefined) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
    const killEnd = Date.now() + 5000;
    while (Date.now() < killEnd && runningPid(pidFile, marker) !== undefined) await sleep(50);
  }
  await rm(pidFile, { force: true });
  return true;
}

/** `n` distinct free TCP ports on 127.0.0.1 (bound and released at once). */
export async function allocatePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const s = createServer();
          s.once('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/** Reads a JSON file, or undefined when it does not exist. */
export async function readJson<T>(file: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`${file}: ${(error as Error).message}`);
  }
}
