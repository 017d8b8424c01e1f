// kubectl's habits in meridian, against a real replica on a real etcd (issue 14, item 4): connection
// flags before or after the subcommand; apply -f with a directory, stdin and an http(s) URL;
// --dry-run=server validates and diffs and writes nothing; get -o yaml|json of a list that apply -f
// takes back unchanged; --version; every bad flag or address one line on stderr and exit 2. The
// stdin and exit-code cases run the real `meridian` process.
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readCredentials } from '@meridian/auth/credentials';
import { run, VERSION } from '@meridian/cli';
import { Replica, resolveOptions } from '@meridian/server';
import { type EtcdCluster, startEtcd } from '@meridian/testkit';
import pino from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';

const MAIN = fileURLToPath(new URL('../src/main.ts', import.meta.url));
let dir: string;
let etcd: EtcdCluster;
let replica: Replica;
let web: Server;
let webUrl: string;
let out: string[] = [];
let err: string[] = [];
const ctx = { out: (l: string) => out.push(l), err: (l: string) => err.push(l) };
const env = process.env;
const meridian = (...args: string[]): Promise<number> => run(args, ctx);

/** The real CLI process: exit code, stdout, stderr. */
function meridianProcess(
  args: string[],
  input?: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      ['--conditions=@meridian/source', '--import', 'tsx', MAIN, ...args],
      { env: process.env, timeout: 60_000 },
      (error, stdout, stderr) =>
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
    );
    child.stdin?.end(input ?? '');
  });
}

const se = (name: string, address: string) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ${name}, namespace: habits}
spec:
  hosts: [${name}.habits.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: ${address}}]
`;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meridian-cli-habits-'));
  etcd = await startEtcd();
  replica = await Replica.start(
    resolveOptions(
      [
        ...['--mesh-id', 'mesh1', '--cluster-id', 'h1', '--replica-id', 'habits-1'],
        ...['--etcd-endpoints', etcd.endpoints.join(',')],
        ...['--xds-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0', '--monitoring-address', 'off'],
      ],
      {},
    ),
    { logger: pino({ level: 'silent' }) },
  );
  process.env = { ...env, MERIDIAN_CREDENTIALS: join(dir, 'credentials.yaml') };
  delete process.env.MERIDIAN_TOKEN;
  delete process.env.MERIDIAN_SERVER;
  // The cluster's first admin credential, saved as context "h1" with the replica's address.
  expect(
    await meridian(
      ...['auth', 'bootstrap', '--etcd', etcd.endpoints.join(','), '--mesh', 'mesh1', '--cluster', 'h1'],
      ...['--server', replica.adminAddress],
    ),
  ).toBe(0);
  web = createServer((req, res) => {
    if (req.url === '/ratings.yaml') res.end(se('ratings', '10.9.0.3'));
    else {
      res.statusCode = 404;
      res.end('not found');
    }
  });
  await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
  webUrl = `http://127.0.0.1:${(web.address() as { port: number }).port}`;
}, 60_000);

afterAll(async () => {
  process.env = env;
  await new Promise((r) => web?.close(r));
  await replica?.stop();
  await etcd?.stop();
  await rm(dir, { recursive: true, force: true });
});

beforeEach(() => {
  out = [];
  err = [];
});

describe('meridian with kubectl habits', { timeout: 60_000 }, () => {
  it('takes connection flags before or after the subcommand', async () => {
    // A wrong server in the credentials context: only the flag can make these calls work.
    const token = (await readCredentials(join(dir, 'credentials.yaml'))).contexts[0]!.token!;
    await writeFile(
      join(dir, 'other.yaml'),
      `current-context: broken\ncontexts:\n  - {name: broken, server: "http://127.0.0.1:1", token: "${token}"}\n`,
    );
    const creds = join(dir, 'other.yaml');
    expect(await meridian('--credentials', creds, '--server', replica.adminAddress, 'get', 'se', '-A')).toBe(
      0,
    );
    expect(await meridian('get', 'se', '-A', '--credentials', creds, '--server', replica.adminAddress)).toBe(
      0,
    );
    expect(await meridian(`--server=${replica.adminAddress}`, '--credentials', creds, 'auth', 'whoami')).toBe(
      0,
    );
    expect(out.at(-1)).toContain('admin');
    // --context before the subcommand picks the context of the default file (h1, the replica).
    expect(await meridian('--context', 'h1', 'get', 'se', '-n', 'habits')).toBe(0);
    expect(await meridian('--context', 'nope', 'get', 'se')).toBe(2);
    expect(err.at(-1)).toMatch(/^error: context "nope" is not in .*credentials\.yaml \(contexts: h1\)$/);
  });

  it('applies a directory (its .yaml/.yml/.json files in name order), stdin and an http URL', async () => {
    const d = join(dir, 'manifests');
    await mkdir(d, { recursive: true });
    await writeFile(join(d, 'a-reviews.yaml'), se('reviews', '10.9.0.1'));
    await writeFile(join(d, 'b-details.yml'), se('details', '10.9.0.2'));
    await writeFile(join(d, 'notes.txt'), 'not a manifest');
    expect(await meridian('apply', '-f', d)).toBe(0);
    expect(out).toEqual([
      'serviceentry.networking.istio.io/reviews created',
      'serviceentry.networking.istio.io/details created',
    ]);

    const piped = await meridianProcess(['apply', '-f', '-'], se('productpage', '10.9.0.4'));
    expect(piped.stderr).toBe('');
    expect(piped.stdout.trim()).toBe('serviceentry.networking.istio.io/productpage created');
    expect(piped.code).toBe(0);

    out = [];
    expect(await meridian('apply', '-f', `${webUrl}/ratings.yaml`)).toBe(0);
    expect(out).toEqual(['serviceentry.networking.istio.io/ratings created']);
    expect(await meridian('apply', '-f', `${webUrl}/missing.yaml`)).toBe(2);
    expect(err.at(-1)).toBe(
      `error: unable to read URL "${webUrl}/missing.yaml", server reported 404 Not Found`,
    );

    out = [];
    expect(await meridian('get', 'se', '-n', 'habits')).toBe(0);
    expect(out.slice(1).map((l) => l.split(/\s+/)[1])).toEqual([
      'details',
      'productpage',
      'ratings',
      'reviews',
    ]);
  });

  it('get -o yaml and -o json print a List that apply -f takes back unchanged', async () => {
    for (const format of ['yaml', 'json']) {
      out = [];
      expect(await meridian('get', 'se', '-n', 'habits', '-o', format)).toBe(0);
      const file = join(dir, `list.${format}`);
      await writeFile(file, out.join('\n'));
      expect(out.join('\n')).toContain('List');
      out = [];
      expect(await meridian('apply', '-f', file)).toBe(0);
      expect(out).toEqual(
        ['details', 'productpage', 'ratings', 'reviews'].map(
          (n) => `serviceentry.networking.istio.io/${n} unchanged`,
        ),
      );
    }
  });

  it('--dry-run=server validates and shows the diff, and writes nothing', async () => {
    out = [];
    expect(await meridian('get', 'se', 'reviews', '-n', 'habits', '-o', 'json')).toBe(0);
    const before = JSON.parse(out.join('\n')) as { metadata: { resourceVersion: string } };
    await writeFile(
      join(dir, 'changed.yaml'),
      `${se('reviews', '10.9.9.9')}---\n${se('newcomer', '10.9.0.5')}`,
    );
    out = [];
    expect(await meridian('apply', '-f', join(dir, 'changed.yaml'), '--dry-run=server')).toBe(0);
    expect(out[0]).toBe('serviceentry.networking.istio.io/reviews configured (server dry run)');
    expect(out[1]).toBe('serviceentry.networking.istio.io/newcomer created (server dry run)');
    const diff = out.slice(2).join('\n');
    expect(diff).toContain('--- live/ServiceEntry/habits/reviews');
    expect(diff).toContain('-    - address: 10.9.0.1');
    expect(diff).toContain('+    - address: 10.9.9.9');
    // Nothing written: the object keeps its version and address, the new one does not exist.
    out = [];
    expect(await meridian('get', 'se', 'reviews', '-n', 'habits', '-o', 'json')).toBe(0);
    const after = JSON.parse(out.join('\n')) as { metadata: { resourceVersion: string }; spec: unknown };
    expect(after.metadata.resourceVersion).toBe(before.metadata.resourceVersion);
    expect(JSON.stringify(after.spec)).toContain('10.9.0.1');
    expect(await meridian('get', 'se', 'newcomer', '-n', 'habits')).toBe(1);
    expect(err.at(-1)).toMatch(/^Error from server \(NotFound\)/);
    // An invalid object is refused by the dry run with the server's validation message.
    await writeFile(join(dir, 'bad.yaml'), se('bad', '10.9.0.6').replace('protocol: HTTP', 'protocol: NOPE'));
    expect(await meridian('apply', '-f', join(dir, 'bad.yaml'), '--dry-run=server')).toBe(1);
    expect(err.at(-1)).toMatch(/^Error from server \(Invalid\).*protocol/);
    expect(await meridian('apply', '-f', join(dir, 'bad.yaml'), '--dry-run=client')).toBe(2);
    expect(err.at(-1)).toBe(
      "error: option '--dry-run <mode>' argument 'client' is invalid. Allowed choices are server, none.",
    );
  });

  it('prints its version', async () => {
    const r = await meridianProcess(['--version']);
    expect(r).toEqual({ code: 0, stdout: `${VERSION}\n`, stderr: '' });
    expect(VERSION).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('answers every bad flag or address with one line on stderr and exit 2, never a stack trace', async () => {
    const cases: [string[], RegExp][] = [
      [['get', 'se', '--bogus'], /^error: unknown option '--bogus'$/],
      [['--bogus', 'get', 'se'], /^error: unknown option '--bogus'$/],
      [['frobnicate'], /^error: unknown command 'frobnicate'$/],
      [['get'], /^error: missing required argument 'kind'$/],
      [['get', 'se', '-o', 'xml'], /^error: option '-o, --output <format>' argument 'xml' is invalid/],
      [
        ['get', 'se', '--server', 'ftp://x'],
        /^error: --server "ftp:\/\/x": scheme must be http or https, got ftp$/,
      ],
      [
        ['get', 'se', '--server', 'http://exa mple:80'],
        /^error: --server "http:\/\/exa mple:80" is not an address/,
      ],
      [
        ['get', 'se', '--server', 'http://127.0.0.1:1'],
        /^The connection to the server http:\/\/127\.0\.0\.1:1 was refused/,
      ],
      [
        ['apply', '-f', join(dir, 'no-such-file.yaml')],
        /^error: the path ".*no-such-file\.yaml" does not exist or cannot be read: ENOENT$/,
      ],
      [['up', '--clusters', 'many'], /^error: --clusters: must be 1 to 9, got "many"$/],
      [
        ['status', '--state-dir', join(dir, 'no-mesh')],
        /^error: no local mesh in .*no-mesh \(run: meridian up --state-dir .*\)$/,
      ],
    ];
    for (const [args, line] of cases) {
      const r = await meridianProcess(args);
      const lines = r.stderr.trimEnd().split('\n');
      expect({ args, code: r.code, lines: lines.length }).toEqual({ args, code: 2, lines: 1 });
      expect(lines[0]).toMatch(line);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });
});
