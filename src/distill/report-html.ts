// Rendering an evaluation report: a self-contained report.html (inline SVG charts, no scripts or
// external files), report.json, and a plain-text summary table for the terminal.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

import { writeFileAtomic } from '../io/atomic.js';
import type { EvalReport, TimingRow } from './eval.js';

const WIDTH = 560;
const HEIGHT = 240;
const MARGIN = { left: 56, right: 16, top: 16, bottom: 36 };
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd'];

/** Escapes text for HTML element content and attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

function formatNumber(value: number | null, digits = 3): string {
  if (value === null || !Number.isFinite(value)) return '–';
  return Math.abs(value) >= 1000 ? value.toFixed(0) : value.toPrecision(digits + 1);
}

interface Series {
  name: string;
  points: Array<{ x: number; y: number }>;
}

/** Draws a line chart of several series with axis labels, or the text "no data" when no point is finite. */
export function lineChartSvg(series: readonly Series[], xLabel: string, yLabel: string): string {
  const all = series.flatMap((s) => s.points).filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
  if (all.length === 0) return `<svg width="${WIDTH}" height="60" role="img"><text x="10" y="30">no data</text></svg>`;
  const xMin = Math.min(...all.map((p) => p.x));
  const xMax = Math.max(...all.map((p) => p.x));
  const yMin = Math.min(0, ...all.map((p) => p.y));
  const yMax = Math.max(...all.map((p) => p.y));
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const sx = (x: number): number => MARGIN.left + (xMax === xMin ? plotW / 2 : ((x - xMin) / (xMax - xMin)) * plotW);
  const sy = (y: number): number => MARGIN.top + plotH - (yMax === yMin ? plotH / 2 : ((y - yMin) / (yMax - yMin)) * plotH);

  const parts: string[] = [];
  parts.push(`<line x1="${MARGIN.left}" y1="${MARGIN.top + plotH}" x2="${MARGIN.left + plotW}" y2="${MARGIN.top + plotH}" stroke="#444"/>`);
  parts.push(`<line x1="${MARGIN.left}" y1="${MARGIN.top}" x2="${MARGIN.left}" y2="${MARGIN.top + plotH}" stroke="#444"/>`);
  parts.push(`<text x="${MARGIN.left - 4}" y="${MARGIN.top + 4}" text-anchor="end" font-size="10">${formatNumber(yMax)}</text>`);
  parts.push(`<text x="${MARGIN.left - 4}" y="${MARGIN.top + plotH}" text-anchor="end" font-size="10">${formatNumber(yMin)}</text>`);
  parts.push(`<text x="${MARGIN.left}" y="${HEIGHT - 20}" font-size="10">${formatNumber(xMin)}</text>`);
  parts.push(`<text x="${MARGIN.left + plotW}" y="${HEIGHT - 20}" text-anchor="end" font-size="10">${formatNumber(xMax)}</text>`);
  parts.push(`<text x="${MARGIN.left + plotW / 2}" y="${HEIGHT - 4}" text-anchor="middle" font-size="11">${escapeHtml(xLabel)}</text>`);
  parts.push(`<text x="12" y="${MARGIN.top + plotH / 2}" font-size="11" transform="rotate(-90 12 ${MARGIN.top + plotH / 2})" text-anchor="middle">${escapeHtml(yLabel)}</text>`);
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const points = s.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
    if (points.length === 0) return;
    const path = points.map((p) => `${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(' ');
    parts.push(`<polyline fill="none" stroke="${color}" stroke-width="1.5" points="${path}"/>`);
    for (const p of points) parts.push(`<circle cx="${sx(p.x).toFixed(1)}" cy="${sy(p.y).toFixed(1)}" r="2" fill="${color}"/>`);
    parts.push(`<text x="${MARGIN.left + 8}" y="${MARGIN.top + 12 + 14 * i}" font-size="11" fill="${color}">${escapeHtml(s.name)}</text>`);
  });
  return `<svg width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img">${parts.join('')}</svg>`;
}

/** Draws a horizontal bar chart with the value printed after each bar. */
export function barChartSvg(bars: ReadonlyArray<{ label: string; value: number }>): string {
  const rowHeight = 28;
  const height = MARGIN.top + rowHeight * bars.length + 8;
  const max = Math.max(1e-12, ...bars.map((b) => (Number.isFinite(b.value) ? b.value : 0)));
  const labelWidth = 110;
  const plotW = WIDTH - labelWidth - 80;
  const parts = bars.map((bar, i) => {
    const y = MARGIN.top + i * rowHeight;
    const w = Number.isFinite(bar.value) ? (bar.value / max) * plotW : 0;
    return (
      `<text x="${labelWidth - 6}" y="${y + 16}" text-anchor="end" font-size="12">${escapeHtml(bar.label)}</text>` +
      `<rect x="${labelWidth}" y="${y + 4}" width="${w.toFixed(1)}" height="${rowHeight - 10}" fill="${COLORS[i % COLORS.length]}"/>` +
      `<text x="${(labelWidth + w + 6).toFixed(1)}" y="${y + 16}" font-size="12">${formatNumber(bar.value)}</text>`
    );
  });
  return `<svg width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" role="img">${parts.join('')}</svg>`;
}

function table(headers: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const head = headers.map((h) => `<th>${escapeHtml(h)}</th>`).join('');
  const body = rows.map((row) => `<tr>${row.map((cell) => `<td>${escapeHtml(cell)}</td>`).join('')}</tr>`).join('');
  return `<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}

/** Formats the teacher's ms/token, naming the method when it is not the key/value cache. */
function teacherTimingCell(row: TimingRow): string {
  const value = formatNumber(row.teacherMs);
  return row.teacherMethod === 'sliding-window' && row.teacherMs !== null ? `${value} (sliding window)` : value;
}

/** Builds the self-contained HTML page of a report. */
export function renderReportHtml(report: EvalReport): string {
  const lossSeries = report.stages.map((s) => ({ name: `stage ${s.stage}`, points: s.points.map((p) => ({ x: p.step, y: p.loss })) }));
  const speedSeries: Series[] = [
    { name: 'student (RNN state)', points: report.timing.map((t) => ({ x: t.context, y: t.studentMs })) },
    { name: 'teacher (key/value cache; sliding window past its positions)', points: report.timing.filter((t) => t.teacherMs !== null).map((t) => ({ x: t.context, y: t.teacherMs as number })) },
  ];
  const ppl = report.perplexity.map((row) => ({ label: row.name, value: row.perplexity }));
  const beyond = report.beyondLimit.rows.map((row) => [row.positions, formatNumber(row.withinPerplexity), formatNumber(row.beyondPerplexity), row.note ?? '']);
  const samples = report.samples
    .map((s) => `<h3>${escapeHtml(s.prompt)}</h3><div class="pair"><div><h4>teacher</h4><pre>${escapeHtml(s.prompt + s.teacher)}</pre></div><div><h4>student</h4><pre>${escapeHtml(s.prompt + s.student)}</pre></div></div>`)
    .join('');
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>rwkvify distillation report</title>
<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
pre{white-space:pre-wrap;background:#f6f6f6;padding:8px}.pair{display:flex;gap:1em}.pair>div{flex:1}</style></head><body>
<h1>rwkvify distillation report</h1>
<p>${escapeHtml(report.createdAt)} · ${report.data.scoredTokens.toLocaleString('en-US')} scored tokens in windows of ${report.data.seqLen} · student ${escapeHtml(String(report.student.dir))}</p>
${table(['metric', 'value'], [
  ...report.perplexity.map((row) => [`${row.name} perplexity`, formatNumber(row.perplexity)]),
  ['mean per-token KL(teacher ‖ student)', formatNumber(report.meanKl)],
  ['top-1 agreement', `${(100 * report.top1Agreement).toFixed(1)}%`],
])}
<h2>Perplexity</h2>${barChartSvg(ppl)}
<h2>Loss per stage</h2>${lineChartSvg(lossSeries, 'step', 'training loss')}
<h2>Beyond the teacher's ${report.beyondLimit.limit} positions</h2>
<p>${report.beyondLimit.sequences} sequence(s) of ${report.beyondLimit.length} tokens. Perplexity of the targets before position ${report.beyondLimit.limit}, and at or after it.</p>
${table(['positions', 'perplexity < limit', 'perplexity ≥ limit', 'note'], beyond)}
<h2>Generation speed</h2>${lineChartSvg(speedSeries, 'context tokens', 'ms per generated token')}
${table(['context', 'student ms/token', 'teacher ms/token'], report.timing.map((t) => [String(t.context), formatNumber(t.studentMs), teacherTimingCell(t)]))}
<h2>Samples</h2>${samples}
</body></html>
`;
}

/** Returns the terminal summary table of a report. */
export function formatSummary(report: EvalReport): string {
  const rows: Array<[string, string]> = [
    ...report.perplexity.map((row): [string, string] => [`${row.name} perplexity`, formatNumber(row.perplexity)]),
    ['mean KL(teacher ‖ student)', formatNumber(report.meanKl)],
    ['top-1 agreement', `${(100 * report.top1Agreement).toFixed(1)}%`],
    ...report.beyondLimit.rows.map((row): [string, string] => [`student ppl < ${report.beyondLimit.limit} / ≥ ${report.beyondLimit.limit} positions (${row.positions})`, `${formatNumber(row.withinPerplexity)} / ${formatNumber(row.beyondPerplexity)}`]),
    ...report.timing.map((t): [string, string] => [`ms/token at context ${t.context}`, `student ${formatNumber(t.studentMs)} | teacher ${formatNumber(t.teacherMs)}`]),
  ];
  const width = Math.max(...rows.map(([name]) => name.length));
  return rows.map(([name, value]) => `  ${name.padEnd(width)}  ${value}`).join('\n');
}

/** Writes report.json and report.html into `dir`; returns their paths. */
export function writeReport(report: EvalReport, dir: string): { json: string; html: string } {
  mkdirSync(dir, { recursive: true });
  const json = join(dir, 'report.json');
  const html = join(dir, 'report.html');
  writeFileAtomic(json, JSON.stringify(report, null, 2) + '\n');
  writeFileAtomic(html, renderReportHtml(report));
  return { json, html };
}
