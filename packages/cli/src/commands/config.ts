// `meridian apply | get | delete`: config objects through a replica's admin API, with kubectl's
// output and error shapes. Server and token: see admin-client.ts.
import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import type { AnalysisMessage } from '@meridian/api';
import { type Command, Option } from 'commander';
import { parseAllDocuments, stringify } from 'yaml';
import { adminCall, resolveTarget, type TargetFlags, withTargetOptions } from '../admin-client.js';
import { type CliContext, UsageError } from '../context.js';
import { unifiedDiff } from '../diff.js';

interface ConfigObjectJson {
  kind: string;
  apiVersion: string;
  metadata: {
    name: string;
    namespace: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  spec?: unknown;
}

/** The API group of a kind. */
async function groupOf(kind: string): Promise<string> {
  // Loaded on use: `get` does not need the kind table, and starts faster without it.
  const { ALL_KINDS } = await import('@meridian/api');
  return ALL_KINDS.find((k) => k.kind === kind)?.group ?? 'networking.istio.io';
}

/** kubectl's `virtualservice.networking.istio.io/reviews`. */
function objectRef(kind: string, apiGroup: string, name: string): string {
  return `${kind.toLowerCase()}.${apiGroup}/${name}`;
}

/** One document source of `apply -f`: its text and the name errors and the server see. */
interface InputFile {
  readonly source: string;
  readonly text: string;
}

const MANIFEST_EXTENSIONS = ['.yaml', '.yml', '.json'];

/**
 * What `-f <arg>` names, as kubectl reads it: `-` is stdin, an http(s):// URL is fetched, a
 * directory gives its .yaml/.yml/.json files in name order (not recursive), anything else is a file.
 */
export async function readInputs(
  arg: string,
  stdin: () => Promise<string> = readStdin,
): Promise<InputFile[]> {
  if (arg === '-') return [{ source: 'stdin', text: await stdin() }];
  if (/^https?:\/\//i.test(arg)) {
    let res: Response;
    try {
      res = await fetch(arg, { signal: AbortSignal.timeout(30_000), redirect: 'follow' });
    } catch (error) {
      const cause = (error as { cause?: { code?: string; message?: string } }).cause;
      throw new UsageError(
        `unable to read URL "${arg}": ${cause?.code ?? cause?.message ?? (error as Error).message}`,
      );
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw new UsageError(`unable to read URL "${arg}", server reported ${res.status} ${res.statusText}`);
    }
    return [{ source: basename(new URL(arg).pathname) || new URL(arg).host, text: await res.text() }];
  }
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(arg);
  } catch (error) {
    throw new UsageError(
      `the path "${arg}" does not exist or cannot be read: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
  }
  if (info.isDirectory()) {
    const names = (await readdir(arg))
      .filter((n) => MANIFEST_EXTENSIONS.includes(extname(n).toLowerCase()))
      .sort();
    if (names.length === 0)
      throw new UsageError(`error reading "${arg}": no .yaml, .yml or .json files in it`);
    return Promise.all(names.map(async (n) => ({ source: n, text: await readFile(join(arg, n), 'utf8') })));
  }
  return [{ source: basename(arg), text: await readFile(arg, 'utf8') }];
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Expands kubectl's `kind: List` documents (what `get -o yaml|json` prints for several objects) into
 * their items, so `get -o yaml > f; apply -f f` round-trips. Text without a List is returned as it
 * was (the server's errors then name its lines).
 */
export function expandLists(text: string): string {
  if (!/\bList\b/.test(text)) return text;
  const docs = parseAllDocuments(text);
  if (docs.some((d) => d.errors.length > 0)) return text; // the server reports the syntax error
  const values = docs.map((d) => d.toJS() as unknown);
  const isList = (v: unknown): v is { items: unknown[] } =>
    typeof v === 'object' &&
    v !== null &&
    (v as { kind?: unknown }).kind === 'List' &&
    Array.isArray((v as { items?: unknown }).items);
  if (!values.some(isList)) return text;
  const flat = values.flatMap((v) => (isList(v) ? v.items : v === null || v === undefined ? [] : [v]));
  return flat.map((v) => stringify(v)).join('---\n');
}

interface ApplyItemJson {
  kind: string;
  name: string;
  namespace: string;
  action: string;
}

/** The document's object `kind/namespace/name` → its canonical YAML of what apply compares. */
function comparable(o: ConfigObjectJson): string {
  const meta: Record<string, unknown> = {};
  if (o.metadata?.labels && Object.keys(o.metadata.labels).length > 0) meta.labels = o.metadata.labels;
  if (o.metadata?.annotations && Object.keys(o.metadata.annotations).length > 0)
    meta.annotations = o.metadata.annotations;
  return stringify(
    { ...(Object.keys(meta).length > 0 ? { metadata: meta } : {}), spec: o.spec ?? {} },
    {
      sortMapEntries: true,
    },
  );
}

/** Prints a unified diff of every object a dry run would configure (live object against the file). */
async function printDryRunDiff(
  ctx: CliContext,
  target: Awaited<ReturnType<typeof resolveTarget>>,
  text: string,
  items: readonly ApplyItemJson[],
): Promise<void> {
  const wanted = new Map<string, ConfigObjectJson>();
  for (const d of parseAllDocuments(text)) {
    const v = d.toJS() as ConfigObjectJson | null;
    if (v?.kind && v.metadata?.name)
      wanted.set(`${v.kind}/${v.metadata.namespace ?? 'default'}/${v.metadata.name}`, v);
  }
  for (const item of items) {
    if (item.action !== 'configured') continue;
    const mine = wanted.get(`${item.kind}/${item.namespace}/${item.name}`);
    if (!mine) continue;
    const live = (await adminCall(
      ctx,
      target,
      'GET',
      `/apis/v1/config/${encodeURIComponent(item.kind)}/${encodeURIComponent(item.namespace)}/${encodeURIComponent(item.name)}`,
    )) as ConfigObjectJson;
    const ref = `${item.kind}/${item.namespace}/${item.name}`;
    ctx.out(unifiedDiff(`live/${ref}`, `applied/${ref}`, comparable(live), comparable(mine)).trimEnd());
  }
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
    .requiredOption(
      '-f, --filename <file...>',
      'files, directories (their .yaml/.yml/.json files), http(s):// URLs, or - for stdin',
    )
    .addOption(
      new Option(
        '--dry-run <mode>',
        'server: validate and plan on the server, print the diff, write nothing',
      ).choices(['server', 'none']),
    )
    .action(async (o: { filename: string[]; dryRun?: string } & TargetFlags) => {
      const target = await resolveTarget(o);
      const dryRun = o.dryRun === 'server';
      const inputs: InputFile[] = [];
      for (const file of o.filename) inputs.push(...(await readInputs(file)));
      for (const input of inputs) {
        const text = expandLists(input.text);
        const query = `source=${encodeURIComponent(input.source)}${dryRun ? '&dryRun=All' : ''}`;
        const res = (await adminCall(ctx, target, 'POST', `/apis/v1/apply?${query}`, {
          text,
          type: 'application/yaml',
        })) as { items: ApplyItemJson[]; warnings?: AnalysisMessage[] };
        for (const item of res.items) {
          const g = await groupOf(item.kind);
          ctx.out(`${objectRef(item.kind, g, item.name)} ${item.action}${dryRun ? ' (server dry run)' : ''}`);
        }
        if (dryRun) await printDryRunDiff(ctx, target, text, res.items);
        // kubectl prints server warnings on stderr, before or after the result: never a failure.
        if (res.warnings?.length) {
          const { formatAnalysisMessage } = await import('@meridian/api');
          for (const w of res.warnings) ctx.err(formatAnalysisMessage(w));
        }
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
        const g = await groupOf(res.kind);
        ctx.out(`${res.kind.toLowerCase()}.${g} "${name}" deleted`);
      },
    );
}
