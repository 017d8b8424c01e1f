// @meridian/cli: meridian, the command-line tool.

export type { CliContext } from './context.js';
export { parseDuration, parseList, processContext } from './context.js';
export type { CommandModule } from './main.js';
export { COMMAND_MODULES, createProgram, run } from './main.js';
