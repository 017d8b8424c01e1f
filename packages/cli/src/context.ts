// What every command module receives: where to write, and helpers shared by commands.
import { InvalidArgumentError } from 'commander';

/** The command line is wrong (a flag's value, an address): one line on stderr and exit 2. */
export class UsageError extends Error {
  override readonly name: string = 'UsageError';
}

/** Output streams of one CLI run (tests capture them). */
export interface CliContext {
  out(line: string): void;
  err(line: string): void;
}

/** The default context: process stdout/stderr. */
export const processContext: CliContext = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
};

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses a duration such as `87600h`, `24h`, `30m`, `90d`, `3600s` (commander argument parser). */
export function parseDuration(value: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(value.trim());
  if (!m) throw new InvalidArgumentError(`"${value}" is not a duration (examples: 87600h, 24h, 30m, 90d)`);
  const ms = Number(m[1]) * UNITS[m[2]!]!;
  if (!(ms > 0)) throw new InvalidArgumentError(`"${value}" must be a positive duration`);
  return ms;
}

/** Splits a comma-separated list (commander argument parser). */
export const parseList = (value: string): string[] =>
  value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);

/** Reads a file named by a flag; the error names the flag and the file. */
export async function readFlagFile(flag: string, path: string): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new Error(`${flag} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}
