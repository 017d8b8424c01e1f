// `meridian analyze`: Istio-style analysis of config (istioctl analyze): warnings about rules that
// point nowhere, hosts that do not resolve, policies a proxyless gRPC server cannot enforce exactly,
// and the rest of @meridian/api's checks. Never changes anything.
//
//   meridian analyze -f a.yaml -f b.yaml     the files alone (offline)
//   meridian analyze                         the live config of the server
//   meridian analyze -f new.yaml --live      the files as they would be applied over the live config
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import {
  ALL_KINDS,
  analyzeConfigs,
  type ConfigObject,
  configKey,
  formatAnalysisMessage,
  parseConfigDocuments,
} from '@meridian/api';
import { type Command, CommanderError } from 'commander';
import { adminCall, fail, resolveTarget, type TargetFlags, withTargetOptions } from '../admin-client.js';
import type { CliContext } from '../context.js';

async function liveConfig(ctx: CliContext, flags: TargetFlags): Promise<ConfigObject[]> {
  const target = await resolveTarget(flags);
  const out: ConfigObject[] = [];
  for (const k of ALL_KINDS) {
    const list = (await adminCall(ctx, target, 'GET', `/apis/v1/config/${k.kind}`)) as {
      items: ConfigObject[];
    };
    out.push(...list.items);
  }
  return out;
}

/** Registers `meridian analyze`. */
export function registerAnalyzeCommands(program: Command, ctx: CliContext): void {
  withTargetOptions(program.command('analyze'))
    .description(
      'analyze config files and/or the live config for problems (exit 0; 79 with warnings, as istioctl)',
    )
    .option('-f, --filename <file...>', 'files to analyze (without: the live config)')
    .option('--live', 'with -f: analyze the files over the live config, as if applied')
    .action(async (o: TargetFlags & { filename?: string[]; live?: boolean }) => {
      const files: ConfigObject[] = [];
      for (const file of o.filename ?? []) {
        let text: string;
        try {
          text = await readFile(file, 'utf8');
        } catch (error) {
          fail(
            ctx,
            `error: the path "${file}" does not exist or cannot be read: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
          );
        }
        const parsed = parseConfigDocuments(text, { source: basename(file) });
        if (!parsed.ok) fail(ctx, `error: ${parsed.error.message}`);
        files.push(...parsed.configs);
      }
      const live = !o.filename || o.live ? await liveConfig(ctx, o) : [];
      const byKey = new Map<string, ConfigObject>();
      for (const obj of [...live, ...files]) byKey.set(configKey(obj), obj);
      const messages = analyzeConfigs([...byKey.values()]);
      // Findings about the files only when files were given (the live config is context).
      const wanted = o.filename ? new Set(files.map((f) => configKey(f))) : undefined;
      const shown = messages.filter((m) => !wanted || (m.object !== undefined && wanted.has(m.object)));
      if (shown.length === 0) {
        ctx.err(
          `\u2714 No validation issues found when analyzing ${o.filename ? `${files.length} objects` : 'the live config'}.`,
        );
        return;
      }
      for (const m of shown) ctx.out(formatAnalysisMessage(m));
      // istioctl analyze exits 79 when it reports warnings.
      throw new CommanderError(79, 'meridian.analyze.warnings', `${shown.length} warnings`);
    });
}
