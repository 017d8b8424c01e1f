// A line diff in unified format (what `istioctl proxy-status <pod>` prints with go-difflib), from
// Myers' O((N+M)D) algorithm ("An O(ND) Difference Algorithm and Its Variations", 1986).

/** One line of an edit script: kept (' '), removed ('-') or added ('+'). */
export interface Edit {
  readonly op: ' ' | '-' | '+';
  readonly line: string;
}

/** Edit distance past which the diff gives up on finding a shortest script (memory bound). */
const MAX_EDITS = 4000;

/** The shortest edit script turning `a` into `b` (removals before additions at each change). */
export function diffLines(a: readonly string[], b: readonly string[]): Edit[] {
  const n = a.length;
  const m = b.length;
  const max = n + m;
  const off = max + 1;
  const v = new Int32Array(2 * max + 3);
  const trace: Int32Array[] = [];
  let found = -1;
  for (let d = 0; d <= Math.min(max, MAX_EDITS); d++) {
    trace.push(v.slice());
    for (let k = -d; k <= d; k += 2) {
      let x =
        k === -d || (k !== d && v[k - 1 + off]! < v[k + 1 + off]!) ? v[k + 1 + off]! : v[k - 1 + off]! + 1;
      let y = x - k;
      while (x < n && y < m && a[x] === b[y]) {
        x++;
        y++;
      }
      v[k + off] = x;
      if (x >= n && y >= m) {
        found = d;
        break;
      }
    }
    if (found >= 0) break;
  }
  if (found < 0) {
    // Too different to search: everything removed, then everything added.
    return [
      ...a.map((line) => ({ op: '-' as const, line })),
      ...b.map((line) => ({ op: '+' as const, line })),
    ];
  }
  const edits: Edit[] = [];
  let x = n;
  let y = m;
  for (let d = found; d >= 0; d--) {
    const t = trace[d]!;
    const k = x - y;
    const prevK = k === -d || (k !== d && t[k - 1 + off]! < t[k + 1 + off]!) ? k + 1 : k - 1;
    const prevX = d === 0 ? 0 : t[prevK + off]!;
    const prevY = d === 0 ? 0 : prevX - prevK;
    while (x > prevX && y > prevY) {
      edits.push({ op: ' ', line: a[x - 1]! });
      x--;
      y--;
    }
    if (d > 0) {
      if (x === prevX) edits.push({ op: '+', line: b[y - 1]! });
      else edits.push({ op: '-', line: a[x - 1]! });
    }
    x = prevX;
    y = prevY;
  }
  return edits.reverse();
}

/**
 * A unified diff of two texts (split on newlines) with `context` lines around each change, headed
 * `--- from` / `+++ to`; the empty string when they are equal (go-difflib's `GetUnifiedDiffString`).
 */
export function unifiedDiff(from: string, to: string, a: string, b: string, context = 7): string {
  const edits = diffLines(a.split('\n'), b.split('\n'));
  if (edits.every((e) => e.op === ' ')) return '';
  const out = [`--- ${from}`, `+++ ${to}`];
  // Positions (1-based line numbers) of each edit in a and b.
  const pos: { ai: number; bi: number }[] = [];
  let ai = 1;
  let bi = 1;
  for (const e of edits) {
    pos.push({ ai, bi });
    if (e.op !== '+') ai++;
    if (e.op !== '-') bi++;
  }
  let i = 0;
  while (i < edits.length) {
    if (edits[i]!.op === ' ') {
      i++;
      continue;
    }
    const start = Math.max(0, i - context);
    let end = i;
    // Extend the hunk while the next change is within 2 * context kept lines.
    for (;;) {
      let j = end;
      while (j < edits.length && edits[j]!.op !== ' ') j++;
      let k = j;
      while (k < edits.length && edits[k]!.op === ' ' && k - j < 2 * context) k++;
      if (k < edits.length && edits[k]!.op !== ' ') {
        end = k;
        continue;
      }
      end = Math.min(edits.length, j + context);
      break;
    }
    const hunk = edits.slice(start, end);
    const aCount = hunk.filter((e) => e.op !== '+').length;
    const bCount = hunk.filter((e) => e.op !== '-').length;
    const aStart = aCount === 0 ? pos[start]!.ai - 1 : pos[start]!.ai;
    const bStart = bCount === 0 ? pos[start]!.bi - 1 : pos[start]!.bi;
    const range = (s: number, c: number) => (c === 1 ? `${s}` : `${s},${c}`);
    out.push(`@@ -${range(aStart, aCount)} +${range(bStart, bCount)} @@`);
    for (const e of hunk) out.push(`${e.op}${e.line}`);
    i = end;
  }
  return `${out.join('\n')}\n`;
}
