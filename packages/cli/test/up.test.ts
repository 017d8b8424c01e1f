// `meridian up` end to end (issue 14), the real CLI process on a small topology in a temp state dir:
// two clusters of one replica each (one etcd member and one NATS server each, gateway-linked), the
// CA, credentials and the demo (echo v1/v2 behind agents, a grpc-js-xds client per cluster behind its
// agent). `status` reports every replica and both clusters federated; the demo's calls succeed, each
// client answered by its own cluster; a second `up` reuses every process; `demo failover` moves the
// traffic to the other cluster and back; `down` leaves no process of the mesh. Multi-process: runs in
// the serial pass.
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TrafficFile } from '../src/local/demo-app.js';

const MAIN = fileURLToPath(new URL('../src/main.ts', import.meta.url));
let dir: string;
let state: string;
let env: NodeJS.ProcessEnv;

const TOPOLOGY = `mesh: uptest
clusters:
  - {name: east, region: us-east1, zones: [us-east1-a, us-east1-b], replicas: 1, etcdMembers: 1, natsServers: 1}
  - {name: west, region: us-west1, zones: [us-west1-a, us-west1-b], replicas: 1, etcdMembers: 1, natsServers: 1}
demo: {enabled: true, rps: 10}
`;

/** The real CLI process: exit code and output. */
function meridian(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--conditions=@meridian/source', '--import', 'tsx', MAIN, ...args],
      { env, timeout: 300_000, maxBuffer: 16 << 20 },
      (error, stdout, stderr) =>
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
    );
  });
}

/** PIDs of live processes whose command line mentions the state dir (ours, by construction). */
function processesOf(marker: string): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (cmdline.includes(marker) && !/\) Z /.test(stat)) out.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** PID file contents by file name. */
function pids(): Record<string, string> {
  const run = join(state, 'run');
  const out: Record<string, string> = {};
  for (const f of readdirSync(run).sort()) out[f] = readFileSync(join(run, f), 'utf8').trim();
  return out;
}

/** Table rows (split on runs of 2+ spaces) of `text` whose first cell is `first`. */
const rows = (text: string, first: RegExp) =>
  text
    .split('\n')
    .map((l) => l.trim().split(/ {2,}/))
    .filter((r) => first.test(r[0]!));

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meridian-up-test-'));
  state = join(dir, 'state');
  await writeFile(join(dir, 'topology.yaml'), TOPOLOGY);
  env = { ...process.env, MERIDIAN_CREDENTIALS: join(dir, 'credentials.yaml') };
  delete env.MERIDIAN_STATE_DIR;
  delete env.MERIDIAN_TOKEN;
  delete env.MERIDIAN_SERVER;
});

afterAll(async () => {
  // Whatever a failed test left running: down, then SIGKILL anything still naming the state dir.
  if (state && processesOf(state).length > 0) await meridian('down', '--state-dir', state);
  for (const pid of processesOf(state ?? '\0none')) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  if (dir) await rm(dir, { recursive: true, force: true });
}, 120_000);

describe('meridian up, status, demo failover, down', { timeout: 300_000 }, () => {
  let started: Record<string, string>;

  it('up starts both clusters with the demo; status reports every replica, federation and traffic', async () => {
    const r = await meridian('up', '--topology', join(dir, 'topology.yaml'), '--state-dir', state);
    expect(r.stderr, r.stdout).toBe('');
    expect(r.code, r.stdout).toBe(0);
    for (const step of [
      'topology',
      'etcd',
      'NATS',
      'mesh CA',
      'replicas',
      'admin credentials',
      'demo config',
      'demo backends',
      'demo clients',
      'federation',
    ])
      expect(r.stdout).toContain(`✔ ${step}: `);
    expect(r.stdout).toContain('contexts "uptest-east", "uptest-west"');
    started = pids();
    // etcd, NATS, replica, echo, 2 echo agents, client agent, client: 8 per cluster.
    expect(Object.keys(started)).toHaveLength(16);

    const s = await meridian('status', '--state-dir', state);
    expect(s.code, s.stderr).toBe(0);
    expect(s.stdout).toContain('processes 16/16 running');
    const replicas = rows(s.stdout, /^(east|west)-0$/);
    expect(replicas.map((x) => [x[0], x[1], x[2], x[3], x[6]])).toEqual([
      ['east-0', 'east', 'us-east1/us-east1-a', 'leader', 'ok'],
      ['west-0', 'west', 'us-west1/us-west1-a', 'leader', 'ok'],
    ]);
    // Each replica holds the echo v1 and v2 registrations of its cluster.
    expect(replicas.map((x) => x[5])).toEqual(['2', '2']);
    const federation = rows(s.stdout, /^(east|west)$/).filter((x) => x[1] === 'east' || x[1] === 'west');
    expect(federation.map((x) => [x[0], x[1], x[3], x[4]])).toEqual([
      ['east', 'west', '1', 'federated'],
      ['west', 'east', '1', 'federated'],
    ]);
    expect(rows(s.stdout, /^(mesh root|intermediate (east|west))$/)).toHaveLength(3);
    expect(s.stdout).toMatch(/client in east\s+east \d+\.\d {2}west 0\.0/);
    expect(s.stdout).toMatch(/client in west\s+east 0\.0 {2}west \d+\.\d/);
  });

  it('the demo clients’ calls succeed, each answered by its own cluster', async () => {
    await new Promise((r) => setTimeout(r, 3000));
    for (const cluster of ['east', 'west']) {
      const t = JSON.parse(
        await readFile(join(state, 'clusters', cluster, 'demo', 'traffic.json'), 'utf8'),
      ) as TrafficFile;
      // The last 3 s: answered by the client's own cluster only; a call past its 1 s deadline on a
      // loaded machine is tolerated, not one answered elsewhere.
      const last = t.recent.filter(([at]) => at > t.updatedAt - 3000);
      const answered = last.filter(([, from]) => from !== '');
      expect(answered.length).toBeGreaterThan(10);
      expect(answered.filter(([, from]) => from !== cluster)).toEqual([]);
      expect(last.length - answered.length).toBeLessThanOrEqual(answered.length / 10);
      expect(t.total.ok[cluster]).toBeGreaterThan(20);
    }
  });

  it('a second up reuses every running process', async () => {
    const r = await meridian('up', '--state-dir', state);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('✔ replicas: 2 running (reused)');
    expect(pids()).toEqual(started);
    // Another mesh shape in the same state dir is refused, and changes nothing.
    const other = await meridian('up', '--state-dir', state, '--replicas', '2');
    expect(other.code).toBe(2);
    expect(other.stderr.trim()).toMatch(/holds another mesh \(east×1, west×1\); run "meridian down --purge/);
    expect(pids()).toEqual(started);
  });

  it('demo failover moves east’s traffic to west and back', async () => {
    const r = await meridian('demo', 'failover', '--state-dir', state);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/switch-over time \(kill -> every call answered by west\): \d+\.\d\d s/);
    expect(r.stdout).toMatch(/back to east after the restore: +\d+\.\d\d s/);
    const t = JSON.parse(
      await readFile(join(state, 'clusters', 'east', 'demo', 'traffic.json'), 'utf8'),
    ) as TrafficFile;
    expect(t.total.ok.west).toBeGreaterThan(0);
  });

  it('down stops every process it started; no process of the mesh is left', async () => {
    const before = pids();
    expect(Object.keys(before)).toHaveLength(16);
    const r = await meridian('down', '--state-dir', state);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('16 processes stopped');
    // Gone, or a zombie nobody reaped yet (the CLI that started it has exited).
    const alive = (pid: number) => {
      try {
        return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
      } catch {
        return false;
      }
    };
    expect(Object.values(before).map(Number).filter(alive)).toEqual([]);
    expect(processesOf(state)).toEqual([]);
    // status of a stopped mesh: every process listed as down, exit 3.
    const s = await meridian('status', '--state-dir', state);
    expect(s.code).toBe(3);
    expect(s.stdout).toContain('processes 0/16 running');
    expect(s.stdout).toMatch(/not running or not healthy: east\/etcd-0, west\/etcd-0, /);
    const again = await meridian('down', '--purge', '--state-dir', state);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain(`${state} removed`);
  });
});
