// `meridian up | status | down | demo failover`: a whole local multi-cluster mesh from a topology file
// (deploy/local/two-clusters.yaml by default), its state and logs under one directory.
import { type Command, CommanderError } from 'commander';
import type { CliContext } from '../context.js';
import { defaultStateDir } from './plan.js';
import { parseCount } from './topology.js';

const STATE_DIR_HELP =
  'directory of the mesh state and logs (env MERIDIAN_STATE_DIR, default ~/.meridian/local)';
const stateDirOf = (o: { stateDir?: string }) =>
  o.stateDir ?? (process.env.MERIDIAN_STATE_DIR || defaultStateDir());

/** Registers `meridian up`, `status`, `down` and `demo`. */
export function registerLocalCommands(program: Command, ctx: CliContext): void {
  program
    .command('up')
    .description('start (or resume) a local multi-cluster mesh with a demo application; idempotent')
    .option('--topology <file>', 'topology file (default deploy/local/two-clusters.yaml)')
    .option('--clusters <n>', 'number of clusters (overrides the topology)', parseCount('--clusters'))
    .option('--replicas <n>', 'replicas per cluster (overrides the topology)', parseCount('--replicas'))
    .option('--state-dir <dir>', STATE_DIR_HELP)
    .action(async (o: { topology?: string; clusters?: number; replicas?: number; stateDir?: string }) => {
      const { up } = await import('./up.js');
      await up(ctx, { ...o, stateDir: stateDirOf(o) });
    });

  program
    .command('status')
    .description(
      'clusters, replicas, federation, CA expiry and demo traffic of the local mesh (exit 3: a process is down)',
    )
    .option('--state-dir <dir>', STATE_DIR_HELP)
    .action(async (o: { stateDir?: string }) => {
      const { status } = await import('./status.js');
      const report = await status(ctx, { stateDir: stateDirOf(o) });
      // Scripts can tell a degraded mesh: exit 3 when a process is down (listed above).
      if (report.processes.down.length > 0)
        throw new CommanderError(3, 'meridian.degraded', `${report.processes.down.length} processes down`);
    });

  program
    .command('down')
    .description(
      'stop every process of the local mesh (SIGTERM, then SIGKILL); --purge also removes its state',
    )
    .option('--purge', 'remove the state dir (data, CA, credentials, logs) after stopping')
    .option('--state-dir <dir>', STATE_DIR_HELP)
    .action(async (o: { purge?: boolean; stateDir?: string }) => {
      const { down } = await import('./down.js');
      await down(ctx, { ...o, stateDir: stateDirOf(o) });
    });

  const demo = program.command('demo').description('narrated demonstrations on the local mesh');
  demo
    .command('failover')
    .description("kill one cluster's demo backends, watch traffic move to another cluster and back")
    .option('--cluster <name>', 'the cluster whose backends are killed (default: the first)')
    .option('--state-dir <dir>', STATE_DIR_HELP)
    .action(async (o: { cluster?: string; stateDir?: string }) => {
      const { demoFailover } = await import('./failover.js');
      await demoFailover(ctx, { ...o, stateDir: stateDirOf(o) });
    });
}
