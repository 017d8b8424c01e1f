/** One problem with one field of one config object. */
export interface FieldError {
  /** `Kind/namespace/name` of the object (see `configKey`); `?` stands in for what is unknown. */
  readonly object: string;
  /** Field path, e.g. `spec.http[0].route[1].weight`; empty for a whole-document problem. */
  readonly path: string;
  /** The reason, e.g. `weights must sum to 100, got 90`. */
  readonly message: string;
  /** 1-based line of the field (or its nearest present parent) when parsed from text. */
  readonly line?: number;
  /** 0-based index of the document in a multi-document input. */
  readonly document?: number;
  /** Name of the input (file name), when one was given to the parser. */
  readonly source?: string;
}

/**
 * Formats one error as a single line: `VirtualService default/reviews: spec.x: message`, followed by
 * ` (at <source>:<line>, document <n>)` when the position is known.
 */
export function formatFieldError(e: FieldError): string {
  const parts = e.object.split('/');
  const head = parts.length === 3 ? `${parts[0]} ${parts[1]}/${parts[2]}` : e.object;
  const body = e.path === '' ? `${head}: ${e.message}` : `${head}: ${e.path}: ${e.message}`;
  const where: string[] = [];
  if (e.line !== undefined) where.push(`${e.source ?? 'line'}${e.source === undefined ? ' ' : ':'}${e.line}`);
  if (e.document !== undefined) where.push(`document ${e.document}`);
  return where.length === 0 ? body : `${body} (at ${where.join(', ')})`;
}

/** Splits a field path into comparable tokens: names and numeric indices. */
function pathTokens(path: string): Array<string | number> {
  const out: Array<string | number> = [];
  const re = /\[(\d+)\]|\[([^\]]*)\]|\.?([^.[]+)/g;
  for (const m of path.matchAll(re)) {
    if (m[1] !== undefined) out.push(Number(m[1]));
    else out.push(m[2] ?? m[3] ?? '');
  }
  return out;
}

function compareTokens(a: Array<string | number>, b: Array<string | number>): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a[i] as string | number;
    const y = b[i] as string | number;
    if (x === y) continue;
    if (typeof x === 'number' && typeof y === 'number') return x - y;
    if (typeof x === 'number') return -1;
    if (typeof y === 'number') return 1;
    return x < y ? -1 : 1;
  }
  return a.length - b.length;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Sorts errors into the deterministic order every API returns: by document, object, field path
 * (array indices numerically) and message. Exact duplicates are removed.
 */
export function sortFieldErrors(errors: readonly FieldError[]): FieldError[] {
  const sorted = [...errors].sort(
    (a, b) =>
      (a.document ?? -1) - (b.document ?? -1) ||
      cmp(a.object, b.object) ||
      compareTokens(pathTokens(a.path), pathTokens(b.path)) ||
      cmp(a.message, b.message),
  );
  return sorted.filter(
    (e, i) =>
      i === 0 ||
      formatFieldError(e) !== formatFieldError(sorted[i - 1] as FieldError) ||
      e.document !== sorted[i - 1]?.document,
  );
}

/**
 * Invalid config: carries every problem found, one `FieldError` each, in deterministic order.
 * `message` is the errors formatted one per line (see `formatFieldError`).
 */
export class ValidationError extends Error {
  override readonly name = 'ValidationError';
  /** Stable machine-readable code. */
  readonly code = 'INVALID_CONFIG';
  /** The problems, sorted (see `sortFieldErrors`). */
  readonly errors: readonly FieldError[];
  /** `Kind/namespace/name` of the object when every error concerns the same one. */
  readonly key: string | undefined;
  /** Path of the first error's field. */
  readonly field: string | undefined;

  constructor(errors: readonly FieldError[], options?: { cause?: unknown }) {
    const sorted = sortFieldErrors(errors);
    super(sorted.map(formatFieldError).join('\n'), options);
    this.errors = Object.freeze(sorted);
    const objects = new Set(sorted.map((e) => e.object));
    this.key = objects.size === 1 ? sorted[0]?.object : undefined;
    this.field = sorted[0]?.path;
  }

  /** The errors formatted one per line, without positions (stable across file layout changes). */
  lines(): string[] {
    return this.errors.map((e) => formatFieldError({ object: e.object, path: e.path, message: e.message }));
  }
}
