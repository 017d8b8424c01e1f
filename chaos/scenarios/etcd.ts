// Scenarios of etcd: its leader killed, quorum lost, a member's disk full.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { ClusterPlan } from '../../packages/cli/src/local/plan.js';
import { ensureStarted, probe, waitHealthy } from '../../packages/cli/src/local/procs.js';
import type { Scenario } from '../lib/harness.js';
import { type Mesh, poll, sleep } from '../lib/mesh.js';

/** etcd's own view: the member index of `c`'s leader, from `etcdctl endpoint status` of `members`. */
function etcdLeader(mesh: Mesh, c: ClusterPlan, members: readonly number[]): number | undefined {
  const out = mesh.etcdctl(c, ['endpoint', 'status', '-w', 'json'], members);
  const rows = JSON.parse(out) as {
    Endpoint: string;
    Status: { header: { member_id: number }; leader: number };
  }[];
  const leaderId = rows.find((r) => r.Status.leader !== 0)?.Status.leader;
  const row = rows.find((r) => r.Status.header.member_id === leaderId);
  if (!row) return undefined;
  return c.etcd.findIndex((e) => row.Endpoint.endsWith(`:${e.client}`));
}

export const etcdLeaderKill: Scenario = {
  name: 'etcd-leader-kill',
  title: "SIGKILL of east's etcd leader under config writes",
  async run(h) {
    const east = h.mesh.cluster('east');
    const writer = h.startWriter('east');
    await sleep(5000);
    const all = east.etcd.map((_, i) => i);
    const leader = etcdLeader(h.mesh, east, all);
    if (leader === undefined) throw new Error("east's etcd reports no leader");
    h.notes.push(`killed etcd member ${leader}`);
    const at = h.mark(`SIGKILL etcd-${leader}`);
    await h.mesh.kill(h.mesh.etcd(east, leader));
    const others = all.filter((i) => i !== leader);
    const elected = await poll(async () => {
      const l = etcdLeader(h.mesh, east, others);
      return l !== undefined && l !== leader ? Date.now() : undefined;
    }, 30_000);
    h.figure('timeToNewLeaderS', elected === undefined ? null : h.secs(elected - at));
    if (elected !== undefined) h.mark('new etcd leader', elected);
    // The first write acknowledged after the kill.
    const firstAck = await poll(
      async () => writer.log.find((e) => e.at > at && e.outcome === 'ack')?.at,
      30_000,
    );
    h.figure('firstWriteAckedAfterKillS', firstAck === undefined ? null : h.secs(firstAck - at));
    await sleep(10_000);
    await h.restoreAfterOutage(`etcd-${leader} down`, at, writer);
  },
};

export const etcdQuorumLoss: Scenario = {
  name: 'etcd-quorum-loss',
  title: "east's etcd loses quorum for 30 s (2 of 3 members SIGKILLed) under writes and traffic",
  async run(h) {
    const east = h.mesh.cluster('east');
    const writer = h.startWriter('east');
    await sleep(5000);
    const at = h.mark('SIGKILL etcd-1, etcd-2');
    await Promise.all([h.mesh.kill(h.mesh.etcd(east, 1)), h.mesh.kill(h.mesh.etcd(east, 2))]);
    await sleep(30_000);
    const restoreAt = h.mark('restart (meridian up)');
    h.fault('quorum lost', at, restoreAt);
    // Calls ending 6 s after the kill or later: writes started after etcd's loss was detectable.
    h.figure('writesAcceptedWithoutQuorum', writer.count('apply', 'ack', at + 6000, restoreAt));
    h.figure('writesRefusedWithoutQuorum', writer.count('apply', 'refused', at, restoreAt));
    h.figure('writesUnknownWithoutQuorum', writer.count('apply', 'unknown', at, restoreAt));
    h.invariant('writesAcceptedWithoutQuorum', writer.count('apply', 'ack', at + 6000, restoreAt));
    h.figure('restoreS', h.secs(await h.mesh.restore()));
    const firstAck = await poll(
      async () => writer.log.find((e) => e.at > restoreAt && e.outcome === 'ack')?.at,
      60_000,
    );
    h.figure('firstWriteAckedAfterRestoreS', firstAck === undefined ? null : h.secs(firstAck - restoreAt));
    await sleep(5000);
    // Serving continues from the watched state: no failure at all, the window is 0.
    h.rpcFigures(['east', 'west'], at, 0);
  },
};

/** Whether `dir` is a mount point. */
function mounted(dir: string): boolean {
  try {
    execFileSync('mountpoint', ['-q', dir]);
    return true;
  } catch {
    return false;
  }
}

export const etcdDiskFull: Scenario = {
  name: 'etcd-disk-full',
  title:
    "one of east's etcd members (a follower) on a small tmpfs that fills up, under writes and traffic; space freed after 20 s",
  async run(h) {
    const east = h.mesh.cluster('east');
    const writer = h.startWriter('east');
    await sleep(5000);
    const all = east.etcd.map((_, i) => i);
    const leader = etcdLeader(h.mesh, east, all);
    if (leader === undefined) throw new Error("east's etcd reports no leader");
    const victim = (leader + 1) % all.length;
    const spec = h.mesh.etcd(east, victim);
    const dataDir = spec.args[spec.args.indexOf('--data-dir') + 1]!;
    const saved = `${dataDir}.disk`;
    const filler = join(dataDir, 'chaos-filler');
    h.notes.push(`member ${victim} (etcd leader: ${leader}) moved onto a tmpfs`);
    // Back on its disk (also on failure): the member stopped, what it wrote on the tmpfs copied to a
    // new directory, the tmpfs unmounted, that directory put in its place. Nothing it persisted is lost
    // (a member that forgot entries it acknowledged would break raft's guarantees, not test them).
    const offTmpfs = async () => {
      if (!mounted(dataDir)) return;
      if (h.mesh.pid(spec) !== undefined) await h.mesh.kill(spec);
      rmSync(filler, { force: true });
      const back = `${dataDir}.back`;
      rmSync(back, { recursive: true, force: true });
      mkdirSync(back, { mode: 0o700 });
      execFileSync('cp', ['-a', `${dataDir}/.`, back]);
      execFileSync('umount', [dataDir]);
      rmSync(dataDir, { recursive: true, force: true });
      renameSync(back, dataDir);
      rmSync(saved, { recursive: true, force: true });
    };
    h.cleanups.push(offTmpfs);
    // Onto a tmpfs with room for what it holds and one more WAL segment (64 MB), nothing else.
    await h.mesh.kill(spec);
    const used = Number(execFileSync('du', ['-sb', dataDir], { encoding: 'utf8' }).split('\t')[0]);
    const sizeMiB = Math.ceil(used / 2 ** 20) + 72;
    renameSync(dataDir, saved);
    mkdirSync(dataDir, { mode: 0o700 });
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeMiB}m,mode=0700`, 'tmpfs', dataDir]);
    execFileSync('cp', ['-a', `${saved}/.`, dataDir]);
    h.figure('tmpfsMiB', sizeMiB);
    await ensureStarted(spec);
    await waitHealthy(spec, 60_000);
    await sleep(3000);
    const at = h.mark(`etcd-${victim}'s disk filled`);
    // The disk fills up: a file takes every byte left.
    try {
      execFileSync('dd', ['if=/dev/zero', `of=${filler}`, 'bs=1M'], { stdio: 'ignore' });
    } catch {
      // dd ends with ENOSPC: that is the point
    }
    const free = execFileSync('df', ['-B1', '--output=avail', dataDir], { encoding: 'utf8' }).split('\n')[1];
    h.figure('freeBytesAfterFill', Number(free));
    const exited = await poll(
      async () => (h.mesh.pid(spec) === undefined ? Date.now() : undefined),
      20_000,
      100,
    );
    h.figure('memberExitedAfterS', exited === undefined ? null : h.secs(exited - at));
    if (exited !== undefined) h.mark(`etcd-${victim} exited`, exited);
    const log = readFileSync(spec.log, 'utf8');
    h.figure('memberLoggedNoSpace', /no space left on device/.test(log) ? 'yes' : 'no');
    await sleep(Math.max(0, at + 20_000 - Date.now()));
    const freedAt = h.mark('space freed, member restarted');
    h.fault(`etcd-${victim} disk full`, at, freedAt);
    h.figure('writesAcceptedWhileFull', writer.count('apply', 'ack', at, freedAt));
    h.figure('writesRefusedWhileFull', writer.count('apply', 'refused', at, freedAt));
    h.figure('writesUnknownWhileFull', writer.count('apply', 'unknown', at, freedAt));
    // Two members of three keep the quorum: writes go on.
    h.invariant(
      'noWriteAcceptedWhileOneMemberFull',
      writer.count('apply', 'ack', at + 3000, freedAt) > 0 ? 0 : 1,
    );
    rmSync(filler, { force: true });
    await ensureStarted(spec);
    const healthy = await poll(
      async () => ((await probe(spec.health)) ? Date.now() : undefined),
      60_000,
      200,
    );
    h.figure('memberHealthyAfterFreeS', healthy === undefined ? null : h.secs(healthy - freedAt));
    h.invariant('memberRejoined', healthy === undefined ? 0 : 1, 1);
    // Caught up: its raft applied index is the leader's (etcd's own status of each member).
    const caughtUp = await poll(
      async () => {
        const rows = JSON.parse(h.mesh.etcdctl(east, ['endpoint', 'status', '-w', 'json'])) as {
          Endpoint: string;
          Status: { raftAppliedIndex: number; raftIndex: number; header: { revision: number } };
        }[];
        const mine = rows.find((r) => r.Endpoint.endsWith(`:${east.etcd[victim]!.client}`));
        const max = Math.max(...rows.map((r) => r.Status.header.revision));
        return mine && rows.length === all.length && mine.Status.header.revision === max
          ? Date.now()
          : undefined;
      },
      60_000,
      500,
    );
    h.figure('memberCaughtUpAfterFreeS', caughtUp === undefined ? null : h.secs(caughtUp - freedAt));
    h.invariant('memberCaughtUp', caughtUp === undefined ? 0 : 1, 1);
    if (caughtUp !== undefined) h.mark(`etcd-${victim} caught up`, caughtUp);
    await sleep(3000);
    await offTmpfs();
    h.figure('restoreS', h.secs(await h.mesh.restore()));
    h.invariant('tmpfsLeftMounted', mounted(dataDir) || existsSync(saved) ? 1 : 0);
    await sleep(3000);
    h.rpcFigures(['east', 'west'], at, 0);
  },
};
