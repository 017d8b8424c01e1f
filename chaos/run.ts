// `pnpm chaos [name...]`: brings the chaos mesh up (chaos/topology.yaml, by `meridian up`'s code), runs
// the named scenarios (all by default) one after the other on it, prints each verdict and its figures,
// writes chaos/results/<name>.json and chaos/report.html, takes the mesh down (also on failure or
// Ctrl-C) and exits 1 when a scenario failed.
//   pnpm chaos --list        one scenario name a line
//   pnpm chaos --verbose     also prints `meridian up`'s progress
import { writeFileSync } from 'node:fs';
import { describe, RESULTS_DIR, runScenario, type ScenarioResult } from './lib/harness.js';
import { Mesh } from './lib/mesh.js';
import { REPORT_FILE, renderReport } from './report.js';
import { SCENARIOS, scenario } from './scenarios.js';

const args = process.argv.slice(2);
if (args.includes('--list')) {
  for (const s of SCENARIOS) process.stdout.write(`${s.name}\n`);
  process.exit(0);
}
const verbose = args.includes('--verbose');
const names = args.filter((a) => !a.startsWith('--'));
let chosen: typeof SCENARIOS;
try {
  chosen = names.length === 0 ? SCENARIOS : names.map(scenario);
} catch (e) {
  process.stderr.write(`chaos: ${(e as Error).message}\n`);
  process.exit(2);
}

const out = (l: string) => process.stdout.write(`${l}\n`);
out(`chaos: ${chosen.length} scenario(s): ${chosen.map((s) => s.name).join(', ')}`);
out('chaos: bringing the mesh up (meridian up, chaos/topology.yaml)...');
const mesh = await Mesh.start({ verbose });
out(`chaos: mesh up in ${(mesh.upMs / 1000).toFixed(0)} s (state in ${mesh.paths.dir})`);
let stopping = false;
const stop = async (code: number) => {
  if (stopping) return;
  stopping = true;
  out('chaos: taking the mesh down...');
  await mesh.stop();
  process.exit(code);
};
process.on('SIGINT', () => void stop(130));
process.on('SIGTERM', () => void stop(143));

const results: ScenarioResult[] = [];
try {
  for (const [i, s] of chosen.entries()) {
    out(`\n== ${s.name}: ${s.title}`);
    if (i > 0) {
      // Whatever the last scenario (or anything else on the machine) left down is started again,
      // and the whole mesh waited for, before the next steady-state check.
      // `up` is idempotent: a failed attempt (a race right after a restart) is tried again twice.
      let restored = false;
      for (let attempt = 1; attempt <= 3 && !restored; attempt++) {
        try {
          const ms = await mesh.restore();
          if (ms > 5000) out(`chaos: the mesh needed ${(ms / 1000).toFixed(0)} s to be whole again`);
          restored = true;
        } catch (e) {
          out(`chaos: restore attempt ${attempt} of 3 failed: ${(e as Error).message.split('\n')[0]}`);
        }
      }
      if (!restored) {
        out('chaos: the mesh could not be restored; stopping');
        break;
      }
    }
    const r = await runScenario(mesh, s);
    results.push(r);
    for (const l of describe(r)) out(l);
  }
} finally {
  writeFileSync(REPORT_FILE, renderReport(RESULTS_DIR));
  out('');
  for (const r of results) out(`${r.verdict}  ${r.name}`);
  out(`chaos: results in ${RESULTS_DIR}, report ${REPORT_FILE}`);
}
await stop(results.every((r) => r.verdict === 'PASS') && results.length === chosen.length ? 0 : 1);
