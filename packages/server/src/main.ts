#!/usr/bin/env node
// meridiand: one control-plane replica. `meridiand --help` lists the settings (flags > MERIDIAN_*
// environment > --config file > defaults). SIGTERM/SIGINT shut it down gracefully.
import { ServerConfigError } from './errors.js';
import { resolveOptions, usage } from './options.js';
import { Replica } from './replica.js';

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${usage()}\n`);
    return 0;
  }
  let options: ReturnType<typeof resolveOptions>;
  try {
    options = resolveOptions(argv);
  } catch (error) {
    if (error instanceof ServerConfigError) {
      process.stderr.write(`meridiand: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
  const replica = await Replica.start(options);
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
