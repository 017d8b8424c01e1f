// meridian: the command-line tool. A small commander program; each command family lives in its own
// module under commands/ and registers itself here, so families can be added independently.
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { registerAnalyzeCommands } from './commands/analyze.js';
import { registerAuthCommands } from './commands/auth.js';
import { registerCaCommands } from './commands/ca.js';
import { registerConfigCommands } from './commands/config.js';
import { registerFederationCommands } from './commands/federation.js';
import { registerProxyCommands } from './commands/proxy.js';
import { registerTokenCommands } from './commands/token.js';
import { type CliContext, processContext } from './context.js';
import { registerManifestCommands } from './manifest/command.js';

/** A command module: adds its commands to the program. */
export type CommandModule = (program: Command, ctx: CliContext) => void;

/** Command modules, in help order. Add new families here. */
export const COMMAND_MODULES: readonly CommandModule[] = [
  registerCaCommands,
  registerTokenCommands,
  registerFederationCommands,
  registerConfigCommands,
  registerAuthCommands,
  registerProxyCommands,
  registerAnalyzeCommands,
  registerManifestCommands,
];

/** Builds the program (without running it); errors are thrown as CommanderError, not process.exit. */
export function createProgram(ctx: CliContext = processContext): Command {
  const program = new Command('meridian')
    .description('Meridian service-mesh control plane')
    .exitOverride()
    .configureOutput({ writeOut: (s) => ctx.out(s.trimEnd()), writeErr: (s) => ctx.err(s.trimEnd()) });
  for (const register of COMMAND_MODULES) register(program, ctx);
  return program;
}

/** Runs the CLI with `argv` (user arguments only); resolves to the process exit code. */
export async function run(argv: readonly string[], ctx: CliContext = processContext): Promise<number> {
  const program = createProgram(ctx);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    ctx.err(`error: ${(err as Error).message}`);
    return 1;
  }
}

const invokedDirectly = (() => {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
})();
if (invokedDirectly) {
  process.exitCode = await run(process.argv.slice(2));
}
