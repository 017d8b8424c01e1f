// `meridian manifest generate`: one cluster's Kubernetes manifests (see generate.ts).
import type { Command } from 'commander';
import type { CliContext } from '../context.js';

/** Registers `meridian manifest` and its subcommands. */
export function registerManifestCommands(program: Command, _ctx: CliContext): void {
  program.command('manifest').description('Kubernetes manifests of one Meridian cluster');
}
