// @meridian/cli: meridian, the command-line tool.

export type { CliContext } from './context.js';
export { parseDuration, parseList, processContext, UsageError } from './context.js';
export type { CommandFamily, CommandModule } from './main.js';
export { COMMAND_FAMILIES, createProgram, hoistGlobalFlags, run, VERSION } from './main.js';
