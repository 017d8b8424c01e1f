// Child process for servers-teardown.test.ts: starts real servers, prints their PIDs and dirs as one
// JSON line, then dies the way argv[2] says. Run as
//   node --conditions=@meridian/source --import tsx servers-orphan-child.ts <throw|reject|wait>
// and dies (throw, reject) when a line arrives on stdin.
import { startEtcdCluster, startNats } from '@meridian/testkit';

const mode = process.argv[2] ?? 'throw';
const etcd = await startEtcdCluster({ size: 3, fastElection: true });
const nats = await startNats({ jetstream: true });
const pids = [...etcd.members.map((m) => m.pid), nats.pid];
const dirs = [...etcd.members.map((m) => m.dataDir), nats.storeDir];
process.stdout.write(`${JSON.stringify({ pids, dirs })}\n`);

// Die only when the test says so (a line on stdin), after it has checked that the PIDs are alive.
process.stdin.once('data', () => {
  if (mode === 'throw') throw new Error('orphan-child: uncaught error on purpose');
  if (mode === 'reject') void Promise.reject(new Error('orphan-child: unhandled rejection on purpose'));
});
setInterval(() => {}, 1_000); // in 'wait' mode, wait for the test's signal
