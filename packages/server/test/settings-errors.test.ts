// Issue 15, item 5: every bad setting, address that cannot be listened on, taken port or etcd never
// reached ends meridiand with one line on stderr naming the setting, exit code 2, no stack trace.
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePorts } from '@meridian/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnTs } from './harness.js';

const MAIN = fileURLToPath(new URL('../src/main.ts', import.meta.url));

/** Runs meridiand to its exit; returns the exit code and stderr. */
function meridiand(
  args: readonly string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number | null; stderr: string; stdout: string }> {
  const child = spawnTs(MAIN, args, { MERIDIAN_CONFIG: '', ...env });
  let stderr = '';
  let stdout = '';
  child.stderr?.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  child.stdout?.on('data', (c: Buffer) => {
    stdout += c.toString();
  });
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, stderr, stdout })));
}

let taken: Server;
let takenPort: number;
let deadEtcdPort: number;

beforeAll(async () => {
  [takenPort, deadEtcdPort] = (await freePorts(2)) as [number, number];
  taken = createServer();
  await new Promise<void>((resolve) => taken.listen(takenPort, '127.0.0.1', resolve));
});
afterAll(() => new Promise<void>((resolve) => taken.close(() => resolve())));

// Listeners are checked before etcd is dialled, so none of these needs an etcd.
const base = () => [
  '--etcd-endpoints',
  `http://127.0.0.1:${deadEtcdPort}`,
  '--store-connect-timeout-ms',
  '1500',
  '--xds-address',
  '127.0.0.1:0',
  '--admin-address',
  '127.0.0.1:0',
  '--monitoring-address',
  'off',
];

describe('meridiand settings errors', () => {
  const cases: [string, () => string[], NodeJS.ProcessEnv, () => RegExp][] = [
    [
      'an admin address that is not host:port',
      () => [...base(), '--admin-address', 'nonsense'],
      {},
      () => /^meridiand: --admin-address: expected host:port, got "nonsense"\n$/,
    ],
    [
      'an admin port already in use',
      () => [...base(), '--admin-address', `127.0.0.1:${takenPort}`],
      {},
      () =>
        new RegExp(
          `^meridiand: --admin-address: cannot listen on 127\\.0\\.0\\.1:${takenPort}: address already in use \\(EADDRINUSE\\)\\n$`,
        ),
    ],
    [
      'an xDS port already in use',
      () => [...base(), '--xds-address', `127.0.0.1:${takenPort}`],
      {},
      () =>
        new RegExp(
          `^meridiand: --xds-address: cannot listen on 127\\.0\\.0\\.1:${takenPort}: address already in use`,
        ),
    ],
    [
      'a monitoring port already in use',
      () => [...base(), '--monitoring-address', `127.0.0.1:${takenPort}`],
      {},
      () =>
        new RegExp(
          `^meridiand: --monitoring-address: cannot listen on 127\\.0\\.0\\.1:${takenPort}: address already in use`,
        ),
    ],
    [
      'an address that is not on this host',
      () => [...base(), '--admin-address', '192.0.2.1:15080'],
      {},
      () =>
        /^meridiand: --admin-address: cannot listen on 192\.0\.2\.1:15080: address not available on this host \(EADDRNOTAVAIL\)\n$/,
    ],
    [
      'two settings on one port',
      () => [...base(), '--admin-address', '127.0.0.1:15999', '--monitoring-address', '127.0.0.1:15999'],
      {},
      () => /^meridiand: --monitoring-address: 127\.0\.0\.1:15999 is also --admin-address\n$/,
    ],
    [
      'an etcd endpoint that is not a URL',
      () => [...base(), '--etcd-endpoints', 'http://127.0.0.1:2379,ftp://x'],
      {},
      () =>
        /^meridiand: --etcd-endpoints: expected http:\/\/host:port or https:\/\/host:port, got "ftp:\/\/x"\n$/,
    ],
    [
      'a log level pino does not know',
      () => [...base(), '--log-level', 'loud'],
      {},
      () =>
        /^meridiand: --log-level: expected one of fatal, error, warn, info, debug, trace, silent, got "loud"\n$/,
    ],
    [
      'a mesh id that cannot be an etcd key segment',
      () => [...base(), '--mesh-id', 'my/mesh'],
      {},
      () => /^meridiand: --mesh-id: "my\/mesh" must start with a letter or digit/,
    ],
    [
      'a missing key-encryption-key file',
      () => [...base(), '--ca-address', '127.0.0.1:0', '--ca-kek-file', '/nonexistent/kek'],
      {},
      () => /^meridiand: --ca-kek-file: cannot read \/nonexistent\/kek: ENOENT\n$/,
    ],
    [
      'etcd never reached (and no snapshot on disk)',
      () => [...base(), '--snapshot-dir', join(tmpdir(), `meridian-no-snapshot-${process.pid}`)],
      {},
      () =>
        new RegExp(
          `^meridiand: --etcd-endpoints: etcd not reachable at http://127\\.0\\.0\\.1:${deadEtcdPort} within 2 s[^\\n]*\\n$`,
        ),
    ],
  ];
  for (const [what, args, env, expected] of cases) {
    it(`${what}: one line naming the setting, exit 2`, async () => {
      const out = await meridiand(args(), env);
      expect(out.stderr).toMatch(expected());
      expect(out.stderr).not.toMatch(/\n {4}at /);
      expect(out.code).toBe(2);
    }, 60_000);
  }

  it('names the environment variable a bad value came from', async () => {
    const out = await meridiand(base().slice(0, -2), { MERIDIAN_MONITORING_ADDRESS: 'localhost' });
    expect(out.stderr).toBe(
      'meridiand: MERIDIAN_MONITORING_ADDRESS: expected host:port or off, got "localhost"\n',
    );
    expect(out.code).toBe(2);
  }, 60_000);
});
