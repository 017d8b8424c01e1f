// Runs the whole vitest suite and ends with one plain summary line, "tests: N passed, N failed,
// N skipped", that CI reads. Extra arguments (a file filter, for example) run one vitest pass as given.
//
// Without arguments it runs two passes: everything else with two workers in parallel, then the
// multi-process cluster suites one file at a time. Those start 3-member etcd clusters, several
// meridiand or candidate processes and NATS gateways, and hold leases of 1-2 s; run side by side on a
// 2-core machine they starve each other's keepalives, which tests CPU scheduling, not Meridian.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';

const serialFiles = [
  'packages/server/test/replicas.test.ts',
  'packages/server/test/replicas-failover.test.ts',
  'packages/server/test/multicluster.test.ts',
  'packages/server/test/multicluster-partition.test.ts',
  'packages/server/test/large-apply.test.ts',
  'packages/server/test/restart-from-disk.test.ts',
  'packages/server/test/restart-tls-from-disk.test.ts',
  'packages/store/test/etcd-faults.test.ts',
  'packages/federation/test/gateway-cut.test.ts',
  'packages/agent/test/relay-failover.test.ts',
  'packages/agent/test/rebalance.test.ts',
  // grpc-js-xds server processes applying listener updates to open connections: slow under load.
  'packages/server/test/authz-grpc.test.ts',
  // Three in-process replicas on a 3-member etcd counting rate-limit windows.
  'packages/server/test/ratelimit-service.test.ts',
  // The rate-limit service over mTLS: etcd, two in-process replicas (one joins and leaves).
  'packages/server/test/ratelimit-mtls.test.ts',
  // Replicas bound to 0.0.0.0 with an advertised address: etcd, two in-process replicas, mTLS.
  'packages/server/test/advertise-mtls.test.ts',
  // meridian up: two clusters of etcd, NATS, replicas, agents and the demo (16 processes).
  'packages/cli/test/up.test.ts',
  // The dashboard in headless Chromium against replicas on a 3-member etcd with NATS.
  'packages/dashboard/test/browser-session.test.ts',
  'packages/dashboard/test/browser-pages.test.ts',
  'packages/dashboard/test/admin-tls.test.ts',
  // Telemetry: three in-process replicas; NATS with JetStream and two replicas.
  'packages/server/test/telemetry-replicas.test.ts',
  'packages/server/test/telemetry-federation.test.ts',
  // Convergence across clusters: two etcds, an authenticated NATS gateway pair, two replicas.
  'packages/server/test/convergence-federation.test.ts',
  // The chaos suite's CI subset: a two-cluster mesh of 22 processes with faults injected.
  'chaos/ci.test.ts',
].filter((file) => existsSync(file));

mkdirSync('.test-results', { recursive: true });

function vitest(name, args) {
  const out = `.test-results/${name}.json`;
  rmSync(out, { force: true });
  const run = spawnSync(
    'pnpm',
    ['exec', 'vitest', 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${out}`, ...args],
    { stdio: 'inherit' },
  );
  return { status: run.status, out };
}

const passes =
  process.argv.length > 2
    ? [vitest('vitest', process.argv.slice(2))]
    : [
        vitest(
          'parallel',
          serialFiles.flatMap((file) => ['--exclude', file]),
        ),
        vitest('serial', ['--maxWorkers=1', '--no-file-parallelism', ...serialFiles]),
      ];

let passed = 0;
let failed = 0;
let skipped = 0;
for (const pass of passes) {
  if (!existsSync(pass.out)) {
    failed++;
    continue;
  }
  const report = JSON.parse(readFileSync(pass.out, 'utf8'));
  passed += report.numPassedTests ?? 0;
  // A file that fails to load has no test results of its own: count it as one failure.
  const brokenFiles = (report.testResults ?? []).filter(
    (file) => file.status === 'failed' && (file.assertionResults ?? []).length === 0,
  ).length;
  failed += (report.numFailedTests ?? 0) + brokenFiles;
  skipped += (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
}
console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
const ok = passes.every((pass) => pass.status === 0) && failed === 0 && passed > 0;
process.exit(ok ? 0 : 1);
