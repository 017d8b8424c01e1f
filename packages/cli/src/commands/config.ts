// `meridian apply | get | delete`: config objects through a replica's admin API, with kubectl's
// output and error shapes. Server and token: see admin-client.ts.
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { type AnalysisMessage, formatAnalysisMessage } from '@meridian/api';
import { type Command, Option } from 'commander';
import { stringify } from 'yaml';
import { adminCall, fail, resolveTarget, type TargetFlags, withTargetOptions } from '../admin-client.js';
import type { CliContext } from '../context.js';

interface ConfigObjectJson {
  kind: string;
  apiVersion: string;
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec?: unknown;
}

/** The API group of a kind. */
function groupOf(kind: string): string {
  return kind === 'PeerAuthentication' || kind === 'AuthorizationPolicy'
    ? 'security.istio.io'
    : 'networking.istio.io';
}

/** kubectl's `virtualservice.networking.istio.io/reviews`. */
function objectRef(kind: string, apiGroup: string, name: string): string {
  return `${kind.toLowerCase()}.${apiGroup}/${name}`;
}

async function readInput(file: string): Promise<string> {
  if (file === '-') {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  }
  return readFile(file, 'utf8');
}

function printObjects(
  ctx: CliContext,
  items: ConfigObjectJson[],
  output: string | undefined,
  single: boolean,
): void {
  if (output === 'json') {
    ctx.out(JSON.stringify(single ? items[0] : { apiVersion: 'v1', kind: 'List', items }, null, 2));
    return;
  }
  if (output === 'yaml') {
    ctx.out(stringify(single ? items[0] : { apiVersion: 'v1', kind: 'List', items }).trimEnd());
    return;
  }
  if (items.length === 0) {
    ctx.err('No resources found');
    return;
  }
  const rows = items.map((o) => [o.metadata.namespace, o.metadata.name, o.metadata.resourceVersion ?? '']);
  const head = ['NAMESPACE', 'NAME', 'RESOURCEVERSION'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const r of [head, ...rows])
    ctx.out(
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('   ')
        .trimEnd(),
    );
}

/** Registers `meridian apply`, `meridian get` and `meridian delete`. */
export function registerConfigCommands(program: Command, ctx: CliContext): void {
  withTargetOptions(program.command('apply'))
    .description('create or update config objects from Istio YAML/JSON (all or nothing)')
    .requiredOption('-f, --filename <file...>', 'files to apply, - for stdin')
    .action(async (o: { filename: string[] } & TargetFlags) => {
      const target = await resolveTarget(o);
      for (const file of o.filename) {
        let text: string;
        try {
          text = await readInput(file);
        } catch (error) {
          fail(
            ctx,
            `error: the path "${file}" does not exist or cannot be read: ${(error as Error).message}`,
          );
        }
        const source = file === '-' ? 'stdin' : basename(file);
        const res = (await adminCall(
          ctx,
          target,
          'POST',
          `/apis/v1/apply?source=${encodeURIComponent(source)}`,
          {
            text,
            type: 'application/yaml',
          },
        )) as {
          items: { kind: string; name: string; namespace: string; action: string }[];
          warnings?: AnalysisMessage[];
        };
        for (const item of res.items) {
          const g = groupOf(item.kind);
          ctx.out(`${objectRef(item.kind, g, item.name)} ${item.action}`);
        }
        // kubectl prints server warnings on stderr, before or after the result: never a failure.
        for (const w of res.warnings ?? []) ctx.err(formatAnalysisMessage(w));
      }
    });

  withTargetOptions(program.command('get'))
    .description('show config objects of a kind (vs, dr, se, we, sidecar, pa, ap or the kind name)')
    .argument('<kind>', 'config kind')
    .argument('[name]', 'object name')
    .option('-n, --namespace <ns>', 'namespace', 'default')
    .option('-A, --all-namespaces', 'list every namespace')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['yaml', 'json']))
    .action(
      async (
        kind: string,
        name: string | undefined,
        o: { namespace: string; allNamespaces?: boolean; output?: string } & TargetFlags,
      ) => {
        const target = await resolveTarget(o);
        const k = encodeURIComponent(kind);
        if (name !== undefined) {
          const obj = (await adminCall(
            ctx,
            target,
            'GET',
            `/apis/v1/config/${k}/${encodeURIComponent(o.namespace)}/${encodeURIComponent(name)}`,
          )) as ConfigObjectJson;
          printObjects(ctx, [obj], o.output, true);
          return;
        }
        const query = o.allNamespaces ? '' : `?namespace=${encodeURIComponent(o.namespace)}`;
        const list = (await adminCall(ctx, target, 'GET', `/apis/v1/config/${k}${query}`)) as {
          items: ConfigObjectJson[];
        };
        printObjects(ctx, list.items, o.output, false);
      },
    );

  withTargetOptions(program.command('delete'))
    .description('delete a config object')
    .argument('<kind>', 'config kind')
    .argument('<name>', 'object name')
    .option('-n, --namespace <ns>', 'namespace', 'default')
    .option('--resource-version <rv>', 'delete only if the object is still at this resourceVersion')
    .action(
      async (
        kind: string,
        name: string,
        o: { namespace: string; resourceVersion?: string } & TargetFlags,
      ) => {
        const target = await resolveTarget(o);
        const rv =
          o.resourceVersion === undefined ? '' : `?resourceVersion=${encodeURIComponent(o.resourceVersion)}`;
        const res = (await adminCall(
          ctx,
          target,
          'DELETE',
          `/apis/v1/config/${encodeURIComponent(kind)}/${encodeURIComponent(o.namespace)}/${encodeURIComponent(name)}${rv}`,
        )) as { kind: string };
        const g = groupOf(res.kind);
        ctx.out(`${res.kind.toLowerCase()}.${g} "${name}" deleted`);
      },
    );
}
