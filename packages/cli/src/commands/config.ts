// `meridian apply | get | delete`: config objects through a replica's admin API (issue 5), with
// kubectl's output and error shapes. The server is `--server URL`, else `MERIDIAN_SERVER`, else
// http://127.0.0.1:15014 (the replica's admin address).
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { type Command, CommanderError, Option } from 'commander';
import { stringify } from 'yaml';
import type { CliContext } from '../context.js';

/** The default admin address of a local replica. */
export const DEFAULT_SERVER = 'http://127.0.0.1:15014';

interface ErrorBody {
  code?: string;
  reason?: string;
  message?: string;
}

interface ConfigObjectJson {
  kind: string;
  apiVersion: string;
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec?: unknown;
}

/** The server URL from the flag, the environment, or the default. */
export function serverUrl(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const url = flag ?? env.MERIDIAN_SERVER ?? DEFAULT_SERVER;
  return (/^https?:\/\//.test(url) ? url : `http://${url}`).replace(/\/+$/, '');
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

/** Fails the command quietly after the message was printed. */
function fail(ctx: CliContext, line: string): never {
  ctx.err(line);
  throw new CommanderError(1, 'meridian.failed', line);
}

async function call(
  ctx: CliContext,
  server: string,
  method: string,
  path: string,
  body?: string,
): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(`${server}${path}`, {
      method,
      ...(body === undefined ? {} : { body, headers: { 'content-type': 'application/yaml' } }),
      signal: AbortSignal.timeout(30_000),
    });
  } catch (error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    fail(
      ctx,
      `The connection to the server ${server} was refused - did you specify the right host or port? (${cause?.code ?? cause?.message ?? (error as Error).message})`,
    );
  }
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  if (!res.ok) {
    const e = (parsed ?? {}) as ErrorBody;
    fail(ctx, `Error from server (${e.reason ?? res.statusText}): ${e.message ?? text.trim()}`);
  }
  return parsed;
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

const serverOption = () =>
  new Option('--server <url>', `replica admin address (env MERIDIAN_SERVER, default ${DEFAULT_SERVER})`);

/** Registers `meridian apply`, `meridian get` and `meridian delete`. */
export function registerConfigCommands(program: Command, ctx: CliContext): void {
  program
    .command('apply')
    .description('create or update config objects from Istio YAML/JSON (all or nothing)')
    .requiredOption('-f, --filename <file...>', 'files to apply, - for stdin')
    .addOption(serverOption())
    .action(async (o: { filename: string[]; server?: string }) => {
      const server = serverUrl(o.server);
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
        const res = (await call(
          ctx,
          server,
          'POST',
          `/apis/v1/apply?source=${encodeURIComponent(source)}`,
          text,
        )) as {
          items: { kind: string; name: string; namespace: string; action: string }[];
        };
        for (const item of res.items) {
          const g = groupOf(item.kind);
          ctx.out(`${objectRef(item.kind, g, item.name)} ${item.action}`);
        }
      }
    });

  program
    .command('get')
    .description('show config objects of a kind (vs, dr, se, we, sidecar, pa, ap or the kind name)')
    .argument('<kind>', 'config kind')
    .argument('[name]', 'object name')
    .option('-n, --namespace <ns>', 'namespace', 'default')
    .option('-A, --all-namespaces', 'list every namespace')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['yaml', 'json']))
    .addOption(serverOption())
    .action(
      async (
        kind: string,
        name: string | undefined,
        o: { namespace: string; allNamespaces?: boolean; output?: string; server?: string },
      ) => {
        const server = serverUrl(o.server);
        const k = encodeURIComponent(kind);
        if (name !== undefined) {
          const obj = (await call(
            ctx,
            server,
            'GET',
            `/apis/v1/config/${k}/${encodeURIComponent(o.namespace)}/${encodeURIComponent(name)}`,
          )) as ConfigObjectJson;
          printObjects(ctx, [obj], o.output, true);
          return;
        }
        const query = o.allNamespaces ? '' : `?namespace=${encodeURIComponent(o.namespace)}`;
        const list = (await call(ctx, server, 'GET', `/apis/v1/config/${k}${query}`)) as {
          items: ConfigObjectJson[];
        };
        printObjects(ctx, list.items, o.output, false);
      },
    );

  program
    .command('delete')
    .description('delete a config object')
    .argument('<kind>', 'config kind')
    .argument('<name>', 'object name')
    .option('-n, --namespace <ns>', 'namespace', 'default')
    .option('--resource-version <rv>', 'delete only if the object is still at this resourceVersion')
    .addOption(serverOption())
    .action(
      async (
        kind: string,
        name: string,
        o: { namespace: string; resourceVersion?: string; server?: string },
      ) => {
        const server = serverUrl(o.server);
        const rv =
          o.resourceVersion === undefined ? '' : `?resourceVersion=${encodeURIComponent(o.resourceVersion)}`;
        const res = (await call(
          ctx,
          server,
          'DELETE',
          `/apis/v1/config/${encodeURIComponent(kind)}/${encodeURIComponent(o.namespace)}/${encodeURIComponent(name)}${rv}`,
        )) as { kind: string };
        const g = groupOf(res.kind);
        ctx.out(`${res.kind.toLowerCase()}.${g} "${name}" deleted`);
      },
    );
}
