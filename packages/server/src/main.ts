#!/usr/bin/env node
// meridiand: one control-plane replica. `meridiand --help` lists the settings (flags > MERIDIAN_*
// environment > --config file > defaults). SIGTERM/SIGINT shut it down gracefully.
import { ServerConfigError } from './errors.js';
import { replicaLogger } from './logger.js';
import { resolveOptions, usage } from './options.js';
import { Replica } from './replica.js';

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${usage()}\n`);
    return 0;
  }
  let replica: Replica;
  try {
    const options = resolveOptions(argv);
    replica = await Replica.start(options, { logger: replicaLogger(options) });
  } catch (error) {
    // A bad setting, a taken port, an address that is not local, etcd never reached: one line
    // naming the setting, exit 2 (as for a bad flag), never a stack trace.
    if (error instanceof ServerConfigError) {
      process.stderr.write(`meridiand: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
  await new Promise<void>((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) return;
      stopping = true;
      replica.log.info({ signal }, 'signal received');
      replica.stop().then(resolve, (error: unknown) => {
        replica.log.error({ err: error }, 'shutdown failed');
        resolve();
      });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(
      `meridiand: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exit(1);
  },
);
