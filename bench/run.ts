// `pnpm bench <name> [flags]`: runs bench/<name>.ts's exported `main(args)`. Benchmarks print readable
// figures and end with one JSON line (emitResult). Without a known name, lists the benchmarks.
import { readdirSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { FlagError, HelpRequested, resultEmitted, setBenchName } from './lib/index.js';

const benchDir = fileURLToPath(new URL('.', import.meta.url));

function available(): string[] {
  return readdirSync(benchDir)
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts') && f !== 'run.ts' && !f.startsWith('_'))
    .map((f) => f.slice(0, -3))
    .sort();
}

function listBenchmarks(out: NodeJS.WriteStream): void {
  const names = available();
  out.write(`usage: pnpm bench <name> [flags]   (pnpm bench <name> --help for its flags)\n`);
  out.write(names.length ? `benchmarks:\n${names.map((n) => `  ${n}`).join('\n')}\n` : 'no benchmarks yet\n');
}

interface BenchModule {
  main(args: string[]): Promise<void> | void;
}

async function run(): Promise<number> {
  const [name, ...args] = process.argv.slice(2);
  if (name === undefined || name === '--help' || name === '-h' || name === '--list') {
    listBenchmarks(process.stdout);
    return name === undefined ? 2 : 0;
  }
  if (!available().includes(name)) {
    process.stderr.write(`unknown benchmark ${JSON.stringify(name)}\n`);
    listBenchmarks(process.stderr);
    return 2;
  }
  const mod = (await import(pathToFileURL(`${benchDir}${name}.ts`).href)) as Partial<BenchModule>;
  if (typeof mod.main !== 'function') {
    process.stderr.write(`bench/${name}.ts does not export main(args: string[])\n`);
    return 2;
  }
  setBenchName(name);
  try {
    await mod.main(args);
  } catch (err) {
    if (err instanceof HelpRequested) {
      process.stdout.write(`${err.usage}\n`);
      return 0;
    }
    if (err instanceof FlagError) {
      process.stderr.write(`${err.message}\n\n${err.usage}\n`);
      return 2;
    }
    throw err;
  }
  if (!resultEmitted()) {
    // Not fatal: a benchmark may print its own JSON line; bench/lib's emitResult is the shared way.
    process.stderr.write(`note: bench/${name}.ts did not call emitResult() from bench/lib\n`);
  }
  return 0;
}

// Exit explicitly: the testkit's exit hook then kills any server a benchmark left running.
run().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(
      `benchmark failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  },
);
