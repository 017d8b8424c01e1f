import { ManagedProcess, pidAlive, ServerStartError, startTogether } from '@meridian/testkit';
import { describe, expect, it } from 'vitest';

const never = async () => false;

describe('ManagedProcess start-up failures: one clear error, never a hang', () => {
  it('a process that exits during start-up: exit code and its last output lines', async () => {
    const p = new ManagedProcess({
      name: 'crasher',
      command: 'sh',
      args: ['-c', 'echo "fatal: port taken" >&2; exit 3'],
      probe: never,
    });
    const err = await p.start().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ServerStartError);
    const e = err as ServerStartError;
    expect(e.message).toBe(
      'crasher exited during start-up (code 3)\n--- last output of crasher ---\nfatal: port taken',
    );
    expect(e.exitCode).toBe(3);
    expect(e.server).toBe('crasher');
    expect(e.addressInUse).toBe(false);
  });

  it('a process that never becomes ready: bounded wait, then it is killed', async () => {
    const p = new ManagedProcess({
      name: 'sleeper',
      command: 'sleep',
      args: ['60'],
      probe: never,
      readyTimeoutMs: 300,
    });
    const err = await p.start().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ServerStartError);
    expect((err as ServerStartError).message).toBe(
      'sleeper did not become ready within 300 ms\n(sleeper wrote no output)',
    );
    expect(p.running).toBe(false);
    expect(pidAlive(p.pid!)).toBe(false);
  });

  it('a missing binary is a ServerStartError naming it, with the install hint', async () => {
    const p = new ManagedProcess({
      name: 'ghost',
      command: 'meridian-no-such-server',
      args: [],
      probe: never,
      installHint: 'apt-get install it',
    });
    const err = await p.start().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ServerStartError);
    expect((err as ServerStartError).message).toBe(
      'ghost: meridian-no-such-server not found on PATH (apt-get install it)\n(ghost wrote no output)',
    );
  });

  it('flags "address already in use" so the start functions retry on fresh ports', async () => {
    const p = new ManagedProcess({
      name: 'binder',
      command: 'sh',
      args: ['-c', 'echo "listen tcp 127.0.0.1:23456: bind: address already in use" >&2; exit 1'],
      probe: never,
    });
    const err = (await p.start().catch((e: unknown) => e)) as ServerStartError;
    expect(err.addressInUse).toBe(true);
  });

  it('startTogether: the first failure kills the others at once instead of waiting out their deadline', async () => {
    // The sleeper's deadline (120 s) is past the test timeout: only the early kill lets this pass.
    const sleeper = new ManagedProcess({
      name: 'peer',
      command: 'sleep',
      args: ['300'],
      probe: never,
      readyTimeoutMs: 120_000,
    });
    const crasher = new ManagedProcess({
      name: 'member',
      command: 'sh',
      args: ['-c', 'sleep 0.3; exit 2'],
      probe: never,
    });
    const err = await startTogether([sleeper, crasher]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ServerStartError);
    expect((err as ServerStartError).server).toBe('member');
    expect(sleeper.running).toBe(false);
  }, 30_000);

  it('kill(SIGTERM) resolves once the process has exited; restart starts it again', async () => {
    const p = new ManagedProcess({ name: 'svc', command: 'sleep', args: ['60'], probe: async () => true });
    await p.start();
    const first = p.pid!;
    expect(p.running).toBe(true);
    await p.restart();
    expect(pidAlive(first)).toBe(false);
    expect(p.pid).not.toBe(first);
    await p.kill('SIGTERM');
    expect(p.running).toBe(false);
    await p.kill(); // no-op when stopped
  });
});
