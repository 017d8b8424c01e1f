// `meridian down`: stops every process of a local mesh by its PID file (SIGTERM, then SIGKILL after a
// bound), the demo first and etcd last; `--purge` then removes the state dir.
import { rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { CliContext } from '../context.js';
import { loadPlan, StatePaths, stateFlag } from './plan.js';
import { stopProcess } from './procs.js';
import { Progress } from './progress.js';
import { allSpecs } from './status.js';

/** Grace before SIGKILL, by kind of process (replicas drain their streams). */
function graceOf(id: string): number {
  if (id.includes('/replica-')) return 10_000;
  return 5_000;
}

/** Runs `meridian down`. */
export async function down(ctx: CliContext, o: { stateDir: string; purge?: boolean }): Promise<void> {
  const paths = new StatePaths(resolve(o.stateDir));
  const plan = await loadPlan(paths);
  const progress = new Progress(ctx);
  if (!plan) {
    ctx.out(`no local mesh in ${paths.dir}: nothing to stop`);
    if (o.purge) await rm(paths.dir, { recursive: true, force: true });
    return;
  }
  const specs = allSpecs(paths, plan);
  const groups: [string, (id: string) => boolean][] = [
    ['demo', (id) => /\/(client|agent-|echo)/.test(id)],
    ['replicas', (id) => id.includes('/replica-')],
    ['NATS', (id) => id.includes('/nats-')],
    ['etcd', (id) => id.includes('/etcd-')],
  ];
  let stopped = 0;
  for (const [title, match] of groups) {
    const mine = specs.filter((s) => match(s.id));
    if (mine.length === 0) continue;
    await progress.step(`stop ${title}`, async () => {
      const r: boolean[] = [];
      if (title === 'etcd') {
        // One member at a time: a leader stopping hands leadership to a live member, which is quick;
        // stopped all at once, a leader waits for a transfer to members that are exiting too, until
        // etcd's request timeout (about 5 s), and the grace ends in SIGKILL.
        for (const s of mine) r.push(await stopProcess(s.pidFile, s.marker, graceOf(s.id)));
      } else r.push(...(await Promise.all(mine.map((s) => stopProcess(s.pidFile, s.marker, graceOf(s.id))))));
      const n = r.filter(Boolean).length;
      stopped += n;
      return n === 0 ? 'none running' : `${n} stopped`;
    });
  }
  if (o.purge) {
    await rm(paths.dir, { recursive: true, force: true });
    ctx.out(`${stopped} processes stopped; ${paths.dir} removed`);
  } else
    ctx.out(
      `${stopped} processes stopped; state kept in ${paths.dir} ("meridian up${stateFlag(paths)}" starts it again, "meridian down --purge${stateFlag(paths)}" removes it)`,
    );
}
