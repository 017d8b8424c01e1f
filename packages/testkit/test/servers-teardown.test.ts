import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pidAlive } from '@meridian/testkit';
import { describe, expect, it } from 'vitest';

const script = fileURLToPath(new URL('./servers-orphan-child.ts', import.meta.url));
const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const hasSetpriv = existsSync('/usr/bin/setpriv') || existsSync('/bin/setpriv');

interface Started {
  child: ChildProcess;
  pids: number[];
  dirs: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
}

/** Spawns the child script and waits (bounded) for the JSON line of PIDs it prints. */
function startChild(mode: string, opts: { pdeathsig: boolean }): Promise<Started> {
  const child = spawn(process.execPath, ['--conditions=@meridian/source', '--import', 'tsx', script, mode], {
    cwd: repoRoot,
    env: { ...process.env, MERIDIAN_TESTKIT_PDEATHSIG: opts.pdeathsig ? '1' : '0' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>(
    (resolve) => child.once('exit', (code, signal) => resolve({ code, signal, stderr })),
  );
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`orphan child (${mode}) printed no PIDs within 45 s; stderr:\n${stderr}`));
    }, 45_000);
    child.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString();
      const nl = stdout.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      const { pids, dirs } = JSON.parse(stdout.slice(0, nl)) as { pids: number[]; dirs: string[] };
      resolve({ child, pids, dirs, exited });
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`orphan child (${mode}) exited early (${code ?? signal}); stderr:\n${stderr}`));
    });
  });
}

/** Polls (bounded) until none of `pids` is alive; returns the ones still alive. */
async function survivors(pids: number[], withinMs = 5_000): Promise<number[]> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const alive = pids.filter(pidAlive);
    if (alive.length === 0 || Date.now() > deadline) return alive;
    await new Promise((r) => setTimeout(r, 50));
  }
}

// The first three run with pdeathsig off, so they test the registry's exit and signal hooks alone.
describe('no orphan servers when the process that started them dies', () => {
  it('uncaught error: every etcd and NATS PID is gone and the temp dirs are removed', async () => {
    const { child, pids, dirs, exited } = await startChild('throw', { pdeathsig: false });
    expect(pids).toHaveLength(4);
    expect(pids.every(pidAlive)).toBe(true);
    child.stdin!.write('die\n');
    const { code, stderr } = await exited;
    expect(code).toBe(1);
    expect(stderr).toContain('orphan-child: uncaught error on purpose');
    expect(await survivors(pids)).toEqual([]);
    expect(dirs.filter((d) => existsSync(d))).toEqual([]);
  });

  it('unhandled rejection: every PID is gone', async () => {
    const { child, pids, exited } = await startChild('reject', { pdeathsig: false });
    expect(pids.every(pidAlive)).toBe(true);
    child.stdin!.write('die\n');
    expect((await exited).code).toBe(1);
    expect(await survivors(pids)).toEqual([]);
  });

  it('SIGTERM: every PID is gone, the temp dirs are removed, and the process still dies of SIGTERM', async () => {
    const { child, pids, dirs, exited } = await startChild('wait', { pdeathsig: false });
    expect(pids.every(pidAlive)).toBe(true);
    child.kill('SIGTERM');
    expect((await exited).signal).toBe('SIGTERM');
    expect(await survivors(pids)).toEqual([]);
    expect(dirs.filter((d) => existsSync(d))).toEqual([]);
  });

  it.runIf(hasSetpriv)(
    'SIGKILL of the parent (no hook runs): the kernel kills the servers via pdeathsig',
    async () => {
      const { child, pids, dirs, exited } = await startChild('wait', { pdeathsig: true });
      child.kill('SIGKILL');
      expect((await exited).signal).toBe('SIGKILL');
      expect(await survivors(pids)).toEqual([]);
      // No hook ran, so the temp dirs are left (CI's sweep would remove them): remove them here.
      for (const d of dirs) rmSync(dirname(d), { recursive: true, force: true });
    },
  );
});
