#!/usr/bin/env node
// meridian: the command-line tool. A small commander program; each command family lives in its own
// module and is loaded only when one of its commands runs (a `get` must not pay for etcd's or the
// CA's libraries), so families can be added independently: one line in COMMAND_FAMILIES.
//
// kubectl's habits: the connection flags (`--server`, `--context`, ...) go before or after the
// subcommand; a bad flag, argument or address is one line on stderr and exit 2; `--version`.
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { type CliContext, processContext, UsageError } from './context.js';

/** A command module: adds its commands to the program. */
export type CommandModule = (program: Command, ctx: CliContext) => void;

/** A family of commands: the top-level names (and aliases) it registers, and how to load it. */
export interface CommandFamily {
  readonly names: readonly string[];
  readonly load: () => Promise<CommandModule>;
}

/** Command families, in help order. Add new families here. */
export const COMMAND_FAMILIES: readonly CommandFamily[] = [
  {
    names: ['up', 'status', 'down', 'demo'],
    load: async () => (await import('./local/commands.js')).registerLocalCommands,
  },
  { names: ['ca'], load: async () => (await import('./commands/ca.js')).registerCaCommands },
  { names: ['token'], load: async () => (await import('./commands/token.js')).registerTokenCommands },
  {
    names: ['federation'],
    load: async () => (await import('./commands/federation.js')).registerFederationCommands,
  },
  {
    names: ['apply', 'get', 'delete'],
    load: async () => (await import('./commands/config.js')).registerConfigCommands,
  },
  { names: ['auth'], load: async () => (await import('./commands/auth.js')).registerAuthCommands },
  {
    names: ['proxy-status', 'ps', 'proxy-config', 'pc'],
    load: async () => (await import('./commands/proxy.js')).registerProxyCommands,
  },
  { names: ['analyze'], load: async () => (await import('./commands/analyze.js')).registerAnalyzeCommands },
  {
    names: ['manifest'],
    load: async () => (await import('./manifest/command.js')).registerManifestCommands,
  },
];

/** Connection flags taken by every admin-API command, wherever they stand on the command line. */
export const GLOBAL_VALUE_FLAGS: readonly string[] = [
  '--server',
  '--context',
  '--token',
  '--credentials',
  '--certificate-authority',
  '--client-certificate',
  '--client-key',
];

/** The CLI's version (its package's). */
export const VERSION: string = (() => {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
      version?: string;
    };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
})();

/**
 * kubectl lets connection flags precede the subcommand (`meridian --context east get vs`); commander
 * takes a command's options after its name. Moves the global flags found before the first
 * subcommand word to the end (before a `--`), and returns the subcommand word.
 */
export function hoistGlobalFlags(argv: readonly string[]): { argv: string[]; command: string | undefined } {
  const moved: string[] = [];
  const rest: string[] = [];
  let command: string | undefined;
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') break;
    const flag = a.split('=', 1)[0]!;
    if (command === undefined && GLOBAL_VALUE_FLAGS.includes(flag)) {
      if (a.includes('=')) moved.push(a);
      else {
        if (i + 1 >= argv.length) throw new UsageError(`option '${a} <value>' argument missing`);
        moved.push(a, argv[++i]!);
      }
      continue;
    }
    if (command === undefined && !a.startsWith('-')) command = a;
    rest.push(a);
  }
  return { argv: [...rest, ...moved, ...argv.slice(i)], command };
}

/** Commander error codes that mean "the command line is wrong" (exit 2, as kubectl's usage errors). */
const USAGE_CODES = new Set([
  'commander.unknownOption',
  'commander.unknownCommand',
  'commander.missingArgument',
  'commander.optionMissingArgument',
  'commander.missingMandatoryOptionValue',
  'commander.invalidArgument',
  'commander.excessArguments',
  'commander.conflictingOption',
]);

/** `createProgram`'s command for `meridian --version` alone: no family is loaded. */
const VERSION_ONLY = '\0version';

/** Builds the program with the families that `command` needs (all of them when undefined or unknown). */
export async function createProgram(ctx: CliContext = processContext, command?: string): Promise<Command> {
  const program = new Command('meridian')
    .description('Meridian service-mesh control plane')
    .version(VERSION, '--version', 'print the version')
    .exitOverride()
    .configureOutput({ writeOut: (s) => ctx.out(s.trimEnd()), writeErr: (s) => ctx.err(s.trimEnd()) });
  const wanted = COMMAND_FAMILIES.filter((f) => command !== undefined && f.names.includes(command));
  const families = wanted.length > 0 ? wanted : command === VERSION_ONLY ? [] : COMMAND_FAMILIES;
  for (const family of families) (await family.load())(program, ctx);
  return program;
}

/** Runs the CLI with `argv` (user arguments only); resolves to the process exit code. */
export async function run(argv: readonly string[], ctx: CliContext = processContext): Promise<number> {
  try {
    const hoisted = hoistGlobalFlags(argv);
    const versionOnly = hoisted.command === undefined && hoisted.argv.includes('--version');
    const program = await createProgram(ctx, versionOnly ? VERSION_ONLY : hoisted.command);
    await program.parseAsync(hoisted.argv, { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return USAGE_CODES.has(err.code) ? 2 : err.exitCode;
    const message = (err as Error).message ?? String(err);
    ctx.err(`error: ${message.split('\n')[0]}`);
    return err instanceof UsageError ? 2 : 1;
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
  // `meridian get ... | head`: a reader that goes away ends the output quietly, as for other tools.
  for (const stream of [process.stdout, process.stderr])
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      throw error;
    });
  process.exitCode = await run(process.argv.slice(2));
}
