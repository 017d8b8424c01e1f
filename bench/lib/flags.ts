/**
 * Flag parsing for benchmarks: `--name value`, `--name=value`, `--flag` / `--no-flag` for booleans,
 * durations as `500ms`, `10s`, `2m` (returned in ms). Unknown flags are an error that lists the known ones.
 */

/** One flag's declaration. */
export type FlagSpec =
  | { type: 'number'; default: number; help: string }
  | { type: 'integer'; default: number; help: string }
  | { type: 'duration'; default: number; help: string }
  | { type: 'string'; default: string; help: string; choices?: readonly string[] }
  | { type: 'boolean'; default: boolean; help: string };

/** The parsed value type of each flag in `S`. */
export type FlagValues<S extends Record<string, FlagSpec>> = {
  -readonly [K in keyof S]: S[K] extends { type: 'string' }
    ? string
    : S[K] extends { type: 'boolean' }
      ? boolean
      : number;
};

/** Bad command line; `usage` is the text to print with it. */
export class FlagError extends Error {
  override readonly name = 'FlagError';
  readonly flag: string | undefined;
  readonly usage: string;
  constructor(message: string, usage: string, flag?: string) {
    super(message);
    this.usage = usage;
    this.flag = flag;
  }
}

/** `--help` was given: print `usage` and exit 0. */
export class HelpRequested extends Error {
  override readonly name = 'HelpRequested';
  readonly usage: string;
  constructor(usage: string) {
    super('help requested');
    this.usage = usage;
  }
}

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

/** Parses `500ms`, `10s`, `1.5m`, `2h` or a bare number of ms. */
export function parseDuration(text: string): number | undefined {
  const m = DURATION.exec(text.trim());
  if (!m) return undefined;
  return Number(m[1]) * UNIT_MS[m[2] ?? 'ms']!;
}

const kebab = (s: string) => s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/** Usage text for `spec`. */
export function usage<S extends Record<string, FlagSpec>>(
  bench: string,
  description: string,
  spec: S,
): string {
  const lines = [`usage: pnpm bench ${bench} [flags]`, '', description, '', 'flags:'];
  for (const [key, f] of Object.entries(spec)) {
    const def = f.type === 'duration' ? `${f.default}ms` : JSON.stringify(f.default);
    const choices = f.type === 'string' && f.choices ? ` (one of ${f.choices.join(', ')})` : '';
    lines.push(`${`  --${kebab(key)} <${f.type}>`.padEnd(32)}${f.help}${choices} [default ${def}]`);
  }
  lines.push(`${'  --help'.padEnd(32)}print this text`);
  return lines.join('\n');
}

/**
 * Parses `args` against `spec` (keys in camelCase; flags in kebab-case: `watchers` -> `--watchers`,
 * `warmupMs` -> `--warmup-ms`). Throws FlagError on a bad command line and HelpRequested on `--help`.
 */
export function parseFlags<S extends Record<string, FlagSpec>>(
  args: readonly string[],
  spec: S,
  about: { bench: string; description: string },
): FlagValues<S> {
  const text = usage(about.bench, about.description, spec);
  const byFlag = new Map(Object.keys(spec).map((k) => [kebab(k), k]));
  const out: Record<string, string | number | boolean> = {};
  for (const [k, f] of Object.entries(spec)) out[k] = f.default;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--help' || arg === '-h') throw new HelpRequested(text);
    if (!arg.startsWith('--')) throw new FlagError(`unexpected argument ${JSON.stringify(arg)}`, text);
    const eq = arg.indexOf('=');
    let name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
    let inline: string | undefined = eq >= 0 ? arg.slice(eq + 1) : undefined;
    let negated = false;
    if (
      !byFlag.has(name) &&
      name.startsWith('no-') &&
      spec[byFlag.get(name.slice(3)) ?? '']?.type === 'boolean'
    ) {
      name = name.slice(3);
      negated = true;
    }
    const key = byFlag.get(name);
    if (key === undefined) {
      throw new FlagError(
        `unknown flag --${name} (known: ${[...byFlag.keys()].map((f) => `--${f}`).join(', ')})`,
        text,
        name,
      );
    }
    const f = spec[key]!;
    if (f.type === 'boolean') {
      if (inline === undefined) out[key] = !negated;
      else if (inline === 'true' || inline === 'false') out[key] = (inline === 'true') !== negated;
      else throw new FlagError(`--${name} takes true or false, got ${JSON.stringify(inline)}`, text, name);
      continue;
    }
    if (inline === undefined) {
      inline = args[++i];
      if (inline === undefined) throw new FlagError(`--${name} needs a value`, text, name);
    }
    switch (f.type) {
      case 'string':
        if (f.choices && !f.choices.includes(inline)) {
          throw new FlagError(
            `--${name} must be one of ${f.choices.join(', ')}, got ${JSON.stringify(inline)}`,
            text,
            name,
          );
        }
        out[key] = inline;
        break;
      case 'duration': {
        const ms = parseDuration(inline);
        if (ms === undefined)
          throw new FlagError(
            `--${name} takes a duration like 500ms, 10s or 2m, got ${JSON.stringify(inline)}`,
            text,
            name,
          );
        out[key] = ms;
        break;
      }
      case 'number':
      case 'integer': {
        const n = Number(inline);
        if (inline.trim() === '' || !Number.isFinite(n) || (f.type === 'integer' && !Number.isInteger(n))) {
          throw new FlagError(
            `--${name} takes ${f.type === 'integer' ? 'an integer' : 'a number'}, got ${JSON.stringify(inline)}`,
            text,
            name,
          );
        }
        out[key] = n;
        break;
      }
    }
  }
  return out as FlagValues<S>;
}
