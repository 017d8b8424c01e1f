// chaos/report.html from chaos/results/*.json: one self-contained page (no script, no external file),
// one section per scenario with its verdict, an inline SVG of the demo clients' request success rate
// per cluster over time (fault windows shaded, recovery marked, the run's marks as ticks) and tables of
// its invariants and figures. `node --import tsx chaos/report.ts` regenerates it alone.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ScenarioResult } from './lib/harness.js';

export const REPORT_FILE = fileURLToPath(new URL('./report.html', import.meta.url));

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd'];

const esc = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** The success-rate chart of one result. */
export function chart(r: ScenarioResult): string {
  const W = 760;
  const H = 220;
  const L = 44;
  const R = 12;
  const T = 14;
  const B = 30;
  const clusters = Object.keys(r.timeline);
  const span = Math.max(1, r.durationMs / 1000);
  const x = (t: number) => L + (t / span) * (W - L - R);
  const y = (pct: number) => T + (1 - pct / 100) * (H - T - B);
  const parts: string[] = [];
  for (const f of r.faultWindows)
    parts.push(
      `<rect x="${x(f.from).toFixed(1)}" y="${T}" width="${Math.max(1, x(f.to) - x(f.from)).toFixed(1)}" height="${H - T - B}" fill="#f4a261" fill-opacity="0.25"><title>${esc(f.label)}</title></rect>`,
    );
  for (const pct of [0, 50, 100])
    parts.push(
      `<line x1="${L}" x2="${W - R}" y1="${y(pct)}" y2="${y(pct)}" stroke="#ddd"/><text x="${L - 6}" y="${y(pct) + 4}" text-anchor="end" font-size="11">${pct}%</text>`,
    );
  const step = span > 120 ? 30 : 10;
  for (let t = 0; t <= span; t += step)
    parts.push(
      `<text x="${x(t).toFixed(1)}" y="${H - B + 16}" text-anchor="middle" font-size="11">${t}s</text>`,
    );
  for (const m of r.marks)
    parts.push(
      `<line x1="${x(m.t).toFixed(1)}" x2="${x(m.t).toFixed(1)}" y1="${T}" y2="${H - B}" stroke="#888" stroke-dasharray="2,3"><title>${esc(`${m.label} at ${m.t} s`)}</title></line>`,
    );
  if (r.recoveredAt !== undefined)
    parts.push(
      `<line x1="${x(r.recoveredAt).toFixed(1)}" x2="${x(r.recoveredAt).toFixed(1)}" y1="${T}" y2="${H - B}" stroke="#2a9d8f" stroke-width="2"><title>recovered at ${r.recoveredAt} s</title></line>`,
      `<text x="${(x(r.recoveredAt) + 3).toFixed(1)}" y="${T + 10}" font-size="11" fill="#2a9d8f">recovered</text>`,
    );
  clusters.forEach((c, i) => {
    const seconds = r.timeline[c]!.filter((b) => b.ok + b.failed > 0);
    const line = (pct: (b: (typeof seconds)[number]) => number) =>
      seconds.map((b) => `${x(b.t + 0.5).toFixed(1)},${y(pct(b)).toFixed(1)}`).join(' ');
    const color = COLORS[i % COLORS.length]!;
    // A cluster's demo client, or another series a scenario added (named with spaces, e.g. "mTLS calls").
    const label = c.includes(' ') ? c : `client in ${c}`;
    // The first client's lines drawn wide underneath, so equal lines stay visible.
    const width = i === 0 ? 4.5 : 1.6;
    const opacity = i === 0 ? 0.55 : 1;
    if (seconds.length > 0)
      parts.push(
        `<polyline fill="none" stroke="${color}" stroke-width="${width}" stroke-opacity="${opacity}" points="${line((b) => (100 * b.ok) / (b.ok + b.failed))}"><title>${esc(label)}: success rate</title></polyline>`,
        `<polyline fill="none" stroke="${color}" stroke-width="${width}" stroke-opacity="${opacity}" stroke-dasharray="5,4" points="${line((b) => (100 * (b.by[c] ?? 0)) / (b.ok + b.failed))}"><title>${esc(label)}: answered by ${esc(c)}</title></polyline>`,
      );
    parts.push(
      `<rect x="${L + 8 + i * 120}" y="${H - 12}" width="10" height="10" fill="${color}"/><text x="${L + 22 + i * 120}" y="${H - 3}" font-size="11">${esc(label)}</text>`,
    );
  });
  const k = L + 8 + clusters.length * 120;
  parts.push(
    `<rect x="${k}" y="${H - 12}" width="10" height="10" fill="#f4a261" fill-opacity="0.4"/><text x="${k + 14}" y="${H - 3}" font-size="11">fault</text>`,
    `<line x1="${k + 60}" x2="${k + 84}" y1="${H - 7}" y2="${H - 7}" stroke="#555" stroke-dasharray="5,4"/><text x="${k + 88}" y="${H - 3}" font-size="11">answered by the client's own cluster</text>`,
  );
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="request success rate per cluster">${parts.join('')}</svg>`;
}

function section(r: ScenarioResult): string {
  const inv = r.invariants
    .map(
      (i) =>
        `<tr><td>${esc(i.name)}</td><td>${i.value}</td><td>${i.expected}</td><td class="${i.ok ? 'ok' : 'bad'}">${i.ok ? 'ok' : 'FAIL'}</td></tr>`,
    )
    .join('');
  const figs = Object.entries(r.figures)
    .map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(String(v ?? 'n/a'))}</td></tr>`)
    .join('');
  const notes = [...r.notes, ...(r.error ? [`error: ${r.error.split('\n')[0]}`] : [])]
    .map((n) => `<li>${esc(n)}</li>`)
    .join('');
  return `<section><h2><span class="${r.verdict === 'PASS' ? 'ok' : 'bad'}">${r.verdict}</span> ${esc(r.name)}</h2>
<p>${esc(r.title)}. Started ${esc(r.startedAt)}, ${(r.durationMs / 1000).toFixed(0)} s.</p>
${chart(r)}
<div class="tables"><table><tr><th>invariant</th><th>value</th><th>expected</th><th></th></tr>${inv}</table>
<table><tr><th>figure</th><th>value</th></tr>${figs}</table></div>
${notes ? `<ul>${notes}</ul>` : ''}</section>`;
}

/** The whole page from the JSON results in `dir`. */
export function renderReport(dir: string): string {
  let files: string[] = [];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.json'));
  } catch {
    // no results yet
  }
  const results = files
    .map((f) => JSON.parse(readFileSync(`${dir}/${f}`, 'utf8')) as ScenarioResult)
    .sort((a, b) => a.startedAt.localeCompare(b.startedAt));
  const summary = results
    .map(
      (r) =>
        `<li><span class="${r.verdict === 'PASS' ? 'ok' : 'bad'}">${r.verdict}</span> ${esc(r.name)}</li>`,
    )
    .join('');
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Meridian chaos report</title>
<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:900px}h2{font-size:17px;margin-top:2em}
.ok{color:#2a9d8f;font-weight:600}.bad{color:#d62728;font-weight:600}table{border-collapse:collapse;margin:.5em 1em .5em 0;vertical-align:top;display:inline-table}
td,th{border:1px solid #ddd;padding:2px 8px;text-align:left}svg{border:1px solid #eee}</style></head><body>
<h1>Meridian chaos report</h1><p>Request success rate of each cluster's demo client (its own record of every call), one point per second (solid: calls answered; dashed: calls answered by the client's own cluster); shaded: the fault; green line: recovery (the last failed call after the fault, or the fault itself when no call failed); dotted: the run's marks (hover for their labels).</p>
<ul>${summary}</ul>${results.map(section).join('\n')}</body></html>
`;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const dir = fileURLToPath(new URL('./results/', import.meta.url));
  writeFileSync(REPORT_FILE, renderReport(dir));
  process.stdout.write(`${REPORT_FILE}\n`);
}
