import { isMap, isScalar, isSeq, LineCounter, type Node, parseAllDocuments, Scalar } from 'yaml';
import { type FieldError, sortFieldErrors, ValidationError } from './errors.js';
import { type ConfigObject, configKey } from './kinds.js';
import { type ValidateResult, validateConfig } from './validate.js';

/** Options of `parseConfigDocuments`. */
export interface ParseOptions {
  /** Input syntax. `yaml` (the default) also reads JSON; `json` insists on strict JSON. */
  format?: 'yaml' | 'json';
  /** Name of the input (a file name), carried into errors. */
  source?: string;
}

/** The outcome for one document of the input. */
export interface DocumentResult {
  /** 0-based index of the document in the input. */
  readonly document: number;
  /** 1-based line where the document starts, when known. */
  readonly line?: number;
  readonly result: ValidateResult;
}

/**
 * Outcome of parsing a multi-document input. `ok` only when every document is a valid object;
 * otherwise `error` lists every problem of every document and `configs` is absent, so a caller
 * cannot apply part of a bad input by mistake. `documents` always has the per-document detail.
 */
export type ParseResult =
  | { ok: true; configs: ConfigObject[]; warnings: FieldError[]; documents: DocumentResult[] }
  | { ok: false; error: ValidationError; documents: DocumentResult[] };

type LineMap = Map<string, number>;

/** Map key of a path: each segment prefixed with a separator that also tells numbers from names. */
function segKey(segments: readonly (string | number)[]): string {
  let k = '';
  for (const s of segments) k += childKey(s);
  return k;
}

function childKey(s: string | number): string {
  return typeof s === 'number' ? `\u0001${s}` : `\u0000${s}`;
}

function collectLines(node: unknown, prefix: string, lines: LineMap, lc: LineCounter): void {
  if (isMap(node)) {
    for (const pair of node.items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
      const k = prefix + childKey(key);
      const start = isScalar(pair.key) ? pair.key.range?.[0] : undefined;
      if (start !== undefined) lines.set(k, lc.linePos(start).line);
      collectLines(pair.value, k, lines, lc);
    }
  } else if (isSeq(node)) {
    node.items.forEach((item, i) => {
      const k = prefix + childKey(i);
      const range = (item as { range?: [number, number, number] } | null)?.range;
      if (range !== undefined) lines.set(k, lc.linePos(range[0]).line);
      collectLines(item, k, lines, lc);
    });
  }
}

interface RawDoc {
  value: unknown;
  line?: number;
  lines?: LineMap;
  prefix: (string | number)[];
  errors: FieldError[];
}

function docError(
  document: number,
  message: string,
  line: number | undefined,
  source: string | undefined,
): FieldError {
  return {
    object: `document ${document}`,
    path: '',
    message,
    ...(line !== undefined ? { line } : {}),
    document,
    ...(source !== undefined ? { source } : {}),
  };
}

/**
 * Reads a flow-sequence item like `2001:db8::` (in `addresses: [1.2.3.4, 2001:db8::]`) as Go's YAML
 * reader does, which Istio and kubectl use: there a `:` ends a plain scalar only when a space follows,
 * so `2001:db8::` is one string. YAML 1.2 (the `yaml` package) also ends it before `,` `]` `}` and
 * makes it a one-pair mapping `{"2001:db8:": null}`. Such an item (a single key with no value, its
 * `:` directly followed by `,` `]` or `}`) is turned back into the string it was written as.
 */
function goFlowScalars(node: unknown, text: string): void {
  if (isSeq(node)) {
    node.items = node.items.map((item) => {
      if (node.flow && isMap(item) && item.items.length === 1) {
        const pair = item.items[0]!;
        const key = pair.key;
        const end = isScalar(key) ? key.range?.[1] : undefined;
        if (
          isScalar(key) &&
          key.type === 'PLAIN' &&
          (pair.value === null ||
            (isScalar(pair.value) && pair.value.value === null && !pair.value.source)) &&
          end !== undefined &&
          text[end] === ':' &&
          /[,\]}]/.test(text[end + 1] ?? '')
        ) {
          const scalar = new Scalar(`${text.slice(key.range![0], end)}:`);
          scalar.range = [key.range![0], end + 1, end + 1];
          return scalar as Node;
        }
      }
      goFlowScalars(item, text);
      return item;
    });
  } else if (isMap(node)) {
    for (const pair of node.items) goFlowScalars(pair.value, text);
  }
}

function readYaml(text: string, source: string | undefined): RawDoc[] {
  const lc = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const list = Array.isArray(docs) ? docs : [];
  const out: RawDoc[] = [];
  for (const doc of list) {
    const index = out.length;
    const start = doc.contents?.range?.[0] ?? doc.range?.[0];
    const line = start !== undefined ? lc.linePos(start).line : undefined;
    if (doc.errors.length > 0) {
      out.push({
        value: undefined,
        prefix: [],
        errors: doc.errors.map((e) =>
          docError(
            index,
            `invalid YAML: ${e.message.split('\n')[0] ?? ''}`,
            lc.linePos(e.pos[0]).line,
            source,
          ),
        ),
        ...(line !== undefined ? { line } : {}),
      });
      continue;
    }
    // An empty document (e.g. a trailing `---`, or only comments) holds nothing.
    if (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null)) continue;
    goFlowScalars(doc.contents, text);
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (e) {
      out.push({
        value: undefined,
        prefix: [],
        errors: [
          docError(index, `invalid YAML: ${e instanceof Error ? e.message : String(e)}`, line, source),
        ],
      });
      continue;
    }
    const lines: LineMap = new Map();
    collectLines(doc.contents, '', lines, lc);
    if (line !== undefined) lines.set(segKey([]), line);
    out.push({ value, lines, prefix: [], errors: [], ...(line !== undefined ? { line } : {}) });
  }
  return out;
}

function readJson(text: string, source: string | undefined): RawDoc[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    const pos = /position (\d+)/.exec(msg);
    const line = pos ? text.slice(0, Number(pos[1])).split('\n').length : undefined;
    return [{ value: undefined, prefix: [], errors: [docError(0, `invalid JSON: ${msg}`, line, source)] }];
  }
  // Positions come from reading the same text as YAML (JSON is YAML 1.2); best effort.
  let lines: LineMap | undefined;
  try {
    const lc = new LineCounter();
    const docs = parseAllDocuments(text, { lineCounter: lc });
    const first = Array.isArray(docs) ? docs[0] : undefined;
    if (first !== undefined && first.errors.length === 0) {
      lines = new Map();
      collectLines(first.contents, '', lines, lc);
    }
  } catch {
    lines = undefined;
  }
  return [{ value, prefix: [], errors: [], ...(lines !== undefined ? { lines } : {}) }];
}

/** A top-level list (JSON array or YAML sequence) holds one object per element. */
function expandLists(docs: RawDoc[]): RawDoc[] {
  const out: RawDoc[] = [];
  for (const d of docs) {
    if (Array.isArray(d.value)) {
      d.value.forEach((v, i) => {
        const line = d.lines?.get(segKey([...d.prefix, i]));
        out.push({
          value: v,
          prefix: [...d.prefix, i],
          errors: [],
          ...(d.lines !== undefined ? { lines: d.lines } : {}),
          ...(line !== undefined ? { line } : {}),
        });
      });
    } else out.push(d);
  }
  return out;
}

/**
 * Parses config objects from YAML (multi-document, `---`-separated) or JSON text and validates each
 * (see `validateConfig`). A top-level list is read as one object per element. Errors carry the
 * document index and, where known, the line of the offending field. Never throws.
 */
export function parseConfigDocuments(text: string, options: ParseOptions = {}): ParseResult {
  const source = options.source;
  if (typeof text !== 'string') {
    const error = new ValidationError([docError(0, 'input must be a string', undefined, source)]);
    return { ok: false, error, documents: [] };
  }
  let raw: RawDoc[];
  try {
    raw = expandLists(options.format === 'json' ? readJson(text, source) : readYaml(text, source));
  } catch (e) {
    const error = new ValidationError([docError(0, `unreadable input: ${String(e)}`, undefined, source)], {
      cause: e,
    });
    return { ok: false, error, documents: [] };
  }
  const documents: DocumentResult[] = [];
  const errors: FieldError[] = [];
  const seen = new Map<string, number>();
  raw.forEach((d, document) => {
    if (d.errors.length > 0) {
      const error = new ValidationError(
        d.errors.map((e) => ({ ...e, document, object: `document ${document}` })),
      );
      documents.push({
        document,
        result: { ok: false, error },
        ...(d.line !== undefined ? { line: d.line } : {}),
      });
      errors.push(...error.errors);
      return;
    }
    const lines = d.lines;
    const result = validateConfig(d.value, {
      document,
      ...(source !== undefined ? { source } : {}),
      ...(lines !== undefined ? { lineOf: (segs) => lines.get(segKey([...d.prefix, ...segs])) } : {}),
    });
    let final = result;
    if (result.ok) {
      const key = configKey(result.config);
      const prev = seen.get(key);
      if (prev !== undefined) {
        const dup: FieldError = {
          object: key,
          path: 'metadata.name',
          message: `duplicate object, also defined in document ${prev}`,
          document,
          ...(lines?.get(segKey([...d.prefix, 'metadata', 'name'])) !== undefined
            ? { line: lines?.get(segKey([...d.prefix, 'metadata', 'name'])) as number }
            : {}),
          ...(source !== undefined ? { source } : {}),
        };
        final = { ok: false, error: new ValidationError([dup]) };
      } else seen.set(key, document);
    }
    if (!final.ok) errors.push(...final.error.errors);
    documents.push({ document, result: final, ...(d.line !== undefined ? { line: d.line } : {}) });
  });
  if (errors.length > 0) return { ok: false, error: new ValidationError(errors), documents };
  const configs: ConfigObject[] = [];
  const warnings: FieldError[] = [];
  for (const d of documents) {
    if (!d.result.ok) continue;
    configs.push(d.result.config);
    warnings.push(...d.result.warnings);
  }
  return { ok: true, configs, warnings: sortFieldErrors(warnings), documents };
}
