// The demo's final summary: perplexities of teacher, student and from-scratch baseline on both
// test sets, KL and top-1 agreement, speed, and whether the goals were met, with the numbers.
import type { EvalReport } from '../distill/eval.js';
import type { PositionMode } from '../models/student/index.js';
import type { SpeedRow } from './speed.js';

/** The student's held-out perplexity may be at most this multiple of the teacher's. */
export const PERPLEXITY_GOAL_RATIO = 1.3;

export interface GoalCheck {
  name: string;
  met: boolean;
  /** The comparison with its numbers, such as "16.2 ≤ 1.3 × 14.1 = 18.3". */
  detail: string;
}

export interface DemoSummaryInput {
  sotu: EvalReport;
  moby: EvalReport;
  speed: SpeedRow[];
  positions: PositionMode;
  /** Training tokens of the student over all stages, and of the baseline. */
  trainingTokens: number;
  runId: string;
  settingsHash: string;
}

function perplexityOf(report: EvalReport, name: 'teacher' | 'student' | 'baseline'): number {
  const row = report.perplexity.find((r) => r.name === name);
  return row === undefined ? Number.NaN : row.perplexity;
}

function fixed(value: number | null, digits = 2): string {
  return value === null || !Number.isFinite(value) ? '–' : value.toFixed(digits);
}

/** Checks the two goals on the SOTU held-out numbers. */
export function checkGoals(sotu: EvalReport): GoalCheck[] {
  const teacher = perplexityOf(sotu, 'teacher');
  const student = perplexityOf(sotu, 'student');
  const baseline = perplexityOf(sotu, 'baseline');
  const bound = PERPLEXITY_GOAL_RATIO * teacher;
  return [
    {
      name: `student held-out perplexity within ${PERPLEXITY_GOAL_RATIO}× the teacher's`,
      met: student <= bound,
      detail: `${fixed(student)} ${student <= bound ? '≤' : '>'} ${PERPLEXITY_GOAL_RATIO} × ${fixed(teacher)} = ${fixed(bound)}`,
    },
    {
      name: 'student better than the from-scratch RWKV-7',
      met: student < baseline,
      detail: `${fixed(student)} ${student < baseline ? '<' : '≥'} ${fixed(baseline)}`,
    },
  ];
}

/** Lays out rows of cells as left-aligned columns. */
function columns(rows: ReadonlyArray<readonly string[]>): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => (row[c] ?? '').length)));
  return rows.map((row) => '  ' + row.map((cell, c) => cell.padEnd(widths[c])).join('  ').trimEnd()).join('\n');
}

/** Returns the summary table printed at the end of the demo. */
export function formatDemoSummary(input: DemoSummaryInput): string {
  const { sotu, moby, speed } = input;
  const beyond = sotu.beyondLimit.rows.find((row) => row.positions === input.positions);
  const limit = sotu.beyondLimit.limit;
  const rows: string[][] = [
    ['', 'teacher (GPT-2)', 'student (RWKV-7)', 'from scratch (RWKV-7)'],
    ['perplexity, SOTU held-out', fixed(perplexityOf(sotu, 'teacher')), fixed(perplexityOf(sotu, 'student')), fixed(perplexityOf(sotu, 'baseline'))],
    ['perplexity, Moby-Dick', fixed(perplexityOf(moby, 'teacher')), fixed(perplexityOf(moby, 'student')), fixed(perplexityOf(moby, 'baseline'))],
    ['mean KL(teacher ‖ student), SOTU / Moby', '', `${fixed(sotu.meanKl, 3)} / ${fixed(moby.meanKl, 3)}`, ''],
    ['top-1 agreement, SOTU / Moby', '', `${(100 * sotu.top1Agreement).toFixed(1)}% / ${(100 * moby.top1Agreement).toFixed(1)}%`, ''],
    [
      `student ppl < ${limit} / ≥ ${limit} positions (${input.positions})`,
      `stops at ${limit}`,
      beyond === undefined ? '–' : `${fixed(beyond.withinPerplexity)} / ${fixed(beyond.beyondPerplexity)}`,
      '',
    ],
    ...speed.map((row) => [
      `ms/token at context ${row.context}`,
      `${fixed(row.teacherMs)}${row.teacherMethod === 'sliding-window' ? ` (sliding ${limit}-token window)` : ' (KV cache)'}`,
      `${fixed(row.studentMs)} (RNN state)`,
      '',
    ]),
  ];
  const goals = checkGoals(sotu).map((goal) => `  ${goal.met ? 'met    ' : 'NOT met'}  ${goal.name}: ${goal.detail}`);
  return [
    `summary (run ${input.runId}, settings ${input.settingsHash}; student and baseline each trained on ${input.trainingTokens.toLocaleString('en-US')} tokens; ` +
      `${sotu.data.scoredTokens.toLocaleString('en-US')} SOTU and ${moby.data.scoredTokens.toLocaleString('en-US')} Moby-Dick tokens scored)`,
    columns(rows),
    'goals',
    ...goals,
  ].join('\n');
}
