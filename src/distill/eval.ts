// Evaluation of a distilled student against its teacher (and an optional baseline) on held-out
// text: perplexities, mean per-token KL, top-1 agreement, the student's perplexity beyond the
// teacher's position limit for each position mode, generation speed against context length, and
// sample generations. The numbers go to report.json; report-html.ts draws report.html.
//
// Dims: T = tokens per window, V = vocabulary.
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

import { noGrad } from '../autograd/index.js';
import { detectArchitecture, loadModelFolder, loadTokenizer, resolveModelFolder } from '../cli/model-folder.js';
import { createOutputFolder } from '../cli/output-folder.js';
import { loadTokenCorpus } from '../data/dataset.js';
import { InputError } from '../data/input-error.js';
import { gpt2NextLogits, type Gpt2Model } from '../models/gpt2/index.js';
import { generate } from '../models/sampling.js';
import { POSITION_MODES, STUDENT_MODEL_TYPE, studentNextLogits, type PositionMode, type StudentModel, type StudentState } from '../models/student/index.js';
import type { Gpt2Tokenizer } from '../tokenizer/index.js';
import { checkStudentMatchesTeacher, loadStudent, loadTeacher, resolveStudentFolder } from './run.js';

/** Returns the logits (T, V), row-major, of one window of token ids. */
export type WindowScorer = (ids: readonly number[]) => ArrayLike<number>;

export interface EvalOptions {
  teacher: string;
  student: string;
  baseline?: string;
  data: string[];
  /** Folder for report.json, report.html and the token cache. */
  out: string;
  /** Tokens per evaluation window (default: min(n_positions, 128)). */
  seqLen?: number;
  /** Maximum held-out tokens scored (default 20,000). */
  maxTokens: number;
  /** Context lengths at which generation speed is measured. */
  contexts: number[];
  /** Tokens generated per speed measurement. */
  timingTokens: number;
  prompts: string[];
  /** Tokens generated per sample. */
  sampleTokens: number;
  seed: number;
  /** Distill run folder whose stage<N>/metrics.jsonl give the loss curves (default: the student's parent, when it is one). */
  run?: string;
  /** Polled between windows; when it returns true the evaluation throws EvaluationInterrupted. */
  stopRequested?: () => boolean;
  extensions?: readonly string[];
  log?: (line: string) => void;
}

export interface PerplexityRow {
  name: 'teacher' | 'student' | 'baseline';
  dir: string;
  loss: number;
  perplexity: number;
}

export interface BeyondLimitRow {
  positions: PositionMode;
  /** Perplexity over targets at positions below the teacher's limit. */
  withinPerplexity: number;
  /** Perplexity over targets at or beyond the limit; null when this mode cannot go there. */
  beyondPerplexity: number | null;
  note?: string;
}

export interface TimingRow {
  context: number;
  /** Milliseconds per generated token: student in RNN mode, teacher with its key/value cache. */
  studentMs: number;
  teacherMs: number | null;
  /**
   * Timing method of the teacher: its key/value cache (the default when absent), or, past its
   * n_positions, a sliding window of its last n_positions tokens re-run for every token.
   */
  teacherMethod?: 'kv-cache' | 'sliding-window';
}

export interface EvalReport {
  createdAt: string;
  data: { files: number; tokens: number; scoredTokens: number; seqLen: number };
  perplexity: PerplexityRow[];
  /** Mean per-token KL(teacher ‖ student) at temperature 1. */
  meanKl: number;
  /** Fraction of positions where teacher and student have the same most likely token. */
  top1Agreement: number;
  beyondLimit: { limit: number; length: number; sequences: number; rows: BeyondLimitRow[] };
  timing: TimingRow[];
  samples: Array<{ prompt: string; teacher: string; student: string }>;
  stages: Array<{ stage: number; points: Array<{ step: number; loss: number }> }>;
  student: Record<string, unknown>;
}

// ---------------------------------------------------------------------------------------------------
// Scoring

/** Cuts `tokens` into consecutive windows of T + 1 tokens (stride T), at most ⌊maxTokens / T⌋ of them. */
export function evaluationWindows(tokens: ArrayLike<number>, T: number, maxTokens: number): number[][] {
  const windows: number[][] = [];
  for (let start = 0; start + T + 1 <= tokens.length && (windows.length + 1) * T <= maxTokens; start += T) {
    windows.push(Array.from({ length: T + 1 }, (_, i) => tokens[start + i]));
  }
  return windows;
}

/** Log-softmax of row `r` of a (T, V) array, in float64. */
function logSoftmaxRow(logits: ArrayLike<number>, r: number, V: number): Float64Array {
  const out = new Float64Array(V);
  let max = -Infinity;
  for (let c = 0; c < V; c++) max = Math.max(max, logits[r * V + c]);
  let sum = 0;
  for (let c = 0; c < V; c++) sum += Math.exp(logits[r * V + c] - max);
  const logSum = Math.log(sum) + max;
  for (let c = 0; c < V; c++) out[c] = logits[r * V + c] - logSum;
  return out;
}

function argmaxOf(values: Float64Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

/** Raised by an evaluation when a stop was requested; callers report an interrupted run. */
export class EvaluationInterrupted extends Error {}

/** A check run between units of evaluation work; it may throw EvaluationInterrupted. */
export type EvaluationCheckpoint = () => Promise<void>;

/**
 * Returns a checkpoint that lets pending signal handlers run (a synchronous loop would keep
 * Ctrl-C from reaching them for minutes) and then throws EvaluationInterrupted when a stop was
 * requested.
 */
export function evaluationCheckpoint(stopRequested?: () => boolean): EvaluationCheckpoint {
  return async () => {
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (stopRequested?.() === true) throw new EvaluationInterrupted('evaluation interrupted');
  };
}

const NO_CHECKPOINT: EvaluationCheckpoint = async () => {};

/** Mean next-token cross-entropy of a scorer over windows. */
export async function meanCrossEntropy(score: WindowScorer, windows: readonly number[][], V: number, checkpoint = NO_CHECKPOINT): Promise<number> {
  let total = 0;
  let count = 0;
  for (const window of windows) {
    await checkpoint();
    const inputs = window.slice(0, -1);
    const logits = score(inputs); // (T, V)
    inputs.forEach((_, t) => {
      total -= logSoftmaxRow(logits, t, V)[window[t + 1]];
      count++;
    });
  }
  return count === 0 ? Number.NaN : total / count;
}

/** Teacher and student compared on the same windows. */
export interface PairScores {
  teacherLoss: number;
  studentLoss: number;
  /** Mean per-token KL(teacher ‖ student) at temperature 1. */
  meanKl: number;
  /** Fraction of positions where both models rank the same token first. */
  top1Agreement: number;
}

/**
 * Scores teacher and student on every window with one forward pass each: both cross-entropies,
 * the mean per-token KL(teacher ‖ student) and the top-1 agreement.
 */
export async function scorePair(teacher: WindowScorer, student: WindowScorer, windows: readonly number[][], V: number, checkpoint = NO_CHECKPOINT): Promise<PairScores> {
  let teacherLoss = 0;
  let studentLoss = 0;
  let kl = 0;
  let agree = 0;
  let count = 0;
  for (const window of windows) {
    await checkpoint();
    const inputs = window.slice(0, -1);
    const t = teacher(inputs); // (T, V)
    const s = student(inputs); // (T, V)
    inputs.forEach((_, row) => {
      const logPt = logSoftmaxRow(t, row, V);
      const logPs = logSoftmaxRow(s, row, V);
      const target = window[row + 1];
      teacherLoss -= logPt[target];
      studentLoss -= logPs[target];
      for (let c = 0; c < V; c++) if (logPt[c] > -Infinity) kl += Math.exp(logPt[c]) * (logPt[c] - logPs[c]);
      if (argmaxOf(logPt) === argmaxOf(logPs)) agree++;
      count++;
    });
  }
  return { teacherLoss: teacherLoss / count, studentLoss: studentLoss / count, meanKl: kl / count, top1Agreement: agree / count };
}

export function teacherScorer(teacher: Gpt2Model): WindowScorer {
  return (ids) => noGrad(() => teacher.forward(ids, 1, ids.length)).data;
}

export function studentScorer(student: StudentModel, positions?: PositionMode): WindowScorer {
  return (ids) => noGrad(() => student.forward(ids, 1, ids.length, { positions })).logits.data;
}

/** Summed next-token losses and their counts, below and at or beyond the position limit. */
export interface SplitLosses {
  withinSum: number;
  withinCount: number;
  beyondSum: number;
  beyondCount: number;
}

/**
 * Sums the student's next-token losses over one long sequence, split at the teacher's position
 * limit. The sequence runs in chunks of `chunk` tokens that carry the recurrent state, so memory
 * stays flat.
 */
export function beyondLimitLosses(student: StudentModel, ids: readonly number[], limit: number, positions: PositionMode, chunk = 256): SplitLosses {
  const V = student.config.teacher.vocabSize;
  let state: StudentState | null = null;
  const sums: SplitLosses = { withinSum: 0, withinCount: 0, beyondSum: 0, beyondCount: 0 };
  for (let start = 0; start < ids.length - 1; start += chunk) {
    const end = Math.min(start + chunk, ids.length - 1);
    const inputs = ids.slice(start, end);
    const out = noGrad(() => student.forward(inputs, 1, inputs.length, { state, positions }));
    state = out.state;
    inputs.forEach((_, t) => {
      const position = start + t;
      const loss = -logSoftmaxRow(out.logits.data, t, V)[ids[position + 1]];
      if (position < limit) {
        sums.withinSum += loss;
        sums.withinCount++;
      } else {
        sums.beyondSum += loss;
        sums.beyondCount++;
      }
    });
  }
  return sums;
}

// ---------------------------------------------------------------------------------------------------
// Speed and samples

/** Untimed tokens generated before each speed measurement, so the prefill's garbage collection and JIT warm-up are not counted. */
const WARM_UP_TOKENS = 2;

/** Milliseconds per generated token after a prefilled context, student in RNN mode. */
function studentMsPerToken(student: StudentModel, context: readonly number[], tokens: number): number {
  let { state } = noGrad(() => student.forward(context, 1, context.length, { positions: speedPositions(student) }));
  let id = context[context.length - 1];
  let started = performance.now();
  for (let i = 0; i < WARM_UP_TOKENS + tokens; i++) {
    if (i === WARM_UP_TOKENS) started = performance.now();
    const step = student.step(id, state, speedPositions(student));
    state = step.state;
    id = argmaxOf(Float64Array.from(step.logits.data));
  }
  return (performance.now() - started) / tokens;
}

/** Returns the position mode for speed runs and samples: the student's own, or 'clamp' in place of 'keep', which cannot pass the limit. */
function speedPositions(student: StudentModel): PositionMode {
  return student.config.positions === 'keep' ? 'clamp' : student.config.positions;
}

/** Milliseconds per generated token after a prefilled context, teacher with its key/value cache. */
function teacherMsPerToken(teacher: Gpt2Model, context: readonly number[], tokens: number): number {
  const cache = teacher.createCache();
  const prefill = teacher.forward(context, 1, context.length, { cache }); // (1, T, V)
  let id = argmaxOf(Float64Array.from(prefill.data.subarray((context.length - 1) * teacher.config.vocabSize)));
  let started = performance.now();
  for (let i = 0; i < WARM_UP_TOKENS + tokens; i++) {
    if (i === WARM_UP_TOKENS) started = performance.now();
    const logits = teacher.forward([id], 1, 1, { cache }); // (1, 1, V)
    id = argmaxOf(Float64Array.from(logits.data));
  }
  return (performance.now() - started) / tokens;
}

/** Cuts a context of `length` tokens from the corpus (repeated when the corpus is shorter). */
function contextOf(tokens: ArrayLike<number>, length: number): number[] {
  return Array.from({ length }, (_, i) => tokens[i % tokens.length]);
}

// ---------------------------------------------------------------------------------------------------
// Loss curves

/** Reads the train records of `<run>/stage<N>/metrics.jsonl` for N = 1, 2, 3. */
export function readStageCurves(run: string | undefined): EvalReport['stages'] {
  if (run === undefined) return [];
  const curves: EvalReport['stages'] = [];
  for (const stage of [1, 2, 3]) {
    const path = join(run, `stage${stage}`, 'metrics.jsonl');
    if (!existsSync(path)) continue;
    const points = readFileSync(path, 'utf8')
      .split('\n')
      .filter((line) => line.trim().length > 0)
      .map((line) => JSON.parse(line) as { kind?: string; step?: number; loss?: number })
      .filter((r) => r.kind === 'train' && typeof r.step === 'number' && typeof r.loss === 'number')
      .map((r) => ({ step: r.step as number, loss: r.loss as number }));
    curves.push({ stage, points });
  }
  return curves;
}

// ---------------------------------------------------------------------------------------------------
// Baseline

/** Loads a baseline folder of any architecture rwkvify reads, as a window scorer. */
function baselineScorer(dir: string, V: number): { dir: string; score: WindowScorer } {
  const resolved = existsSync(join(dir, 'config.json')) ? dir : resolveModelFolder(dir);
  const configType = (JSON.parse(readFileSync(join(resolved, 'config.json'), 'utf8')) as { model_type?: unknown }).model_type;
  if (configType === STUDENT_MODEL_TYPE) {
    const student = loadStudent(resolved);
    if (student.config.teacher.vocabSize !== V) throw new InputError(`baseline "${resolved}" has vocab_size ${student.config.teacher.vocabSize}, the teacher ${V}; compare models with one vocabulary`);
    return { dir: resolved, score: studentScorer(student) };
  }
  detectArchitecture(resolved);
  const { model } = loadModelFolder(resolved);
  if (model.vocabSize !== V) throw new InputError(`baseline "${resolved}" has vocab_size ${model.vocabSize}, the teacher ${V}; compare models with one vocabulary`);
  return { dir: resolved, score: (ids) => model.sequenceLogits([...ids]) };
}

// ---------------------------------------------------------------------------------------------------
// Evaluation

/**
 * Runs every measurement and returns the report (nothing is written; see report-html.ts). Throws
 * EvaluationInterrupted when `options.stopRequested` turns true.
 */
export async function evaluateDistillation(options: EvalOptions): Promise<{ report: EvalReport; tokenizer: Gpt2Tokenizer }> {
  const log = options.log ?? ((line: string): void => void process.stdout.write(line + '\n'));
  const checkpoint = evaluationCheckpoint(options.stopRequested);
  const { dir: teacherDir, model: teacher } = loadTeacher(options.teacher);
  const studentDir = resolveStudentFolder(options.student);
  const student = loadStudent(studentDir);
  checkStudentMatchesTeacher(student, teacher, studentDir, teacherDir);
  const { nPositions: limit, vocabSize: V } = teacher.config;
  const seqLen = options.seqLen ?? Math.min(limit, 128);
  if (seqLen > limit) throw new InputError(`eval: --seq-len ${seqLen} exceeds the teacher's ${limit} positions; pass ${limit} or less`);

  const { tokenizer } = loadTokenizer(teacherDir);
  // Created before the corpus is tokenized into it, after the models loaded, so a typo in a model
  // path leaves no empty report folder behind.
  createOutputFolder(options.out);
  const purpose = { use: 'score', rule: `one window of --seq-len + 1 = ${seqLen} + 1` };
  const corpus = loadTokenCorpus({ paths: options.data, outDir: options.out, tokenizer, extensions: options.extensions, requiredTokens: seqLen + 1, purpose, log });
  const windows = evaluationWindows(corpus.tokens, seqLen, options.maxTokens);
  if (windows.length === 0) {
    throw new InputError(`eval: the data has ${corpus.tokens.length} tokens, fewer than one window of --seq-len + 1 = ${seqLen + 1}; add text or lower --seq-len`);
  }
  const scored = windows.length * seqLen;
  log(`eval: ${windows.length} windows of ${seqLen} tokens (${scored.toLocaleString('en-US')} scored tokens)`);

  const pair = await scorePair(teacherScorer(teacher), studentScorer(student), windows, V, checkpoint);
  const { meanKl, top1Agreement } = pair;
  const rows: PerplexityRow[] = [
    { name: 'teacher', dir: teacherDir, loss: pair.teacherLoss, perplexity: Math.exp(pair.teacherLoss) },
    { name: 'student', dir: studentDir, loss: pair.studentLoss, perplexity: Math.exp(pair.studentLoss) },
  ];
  if (options.baseline !== undefined) {
    const baseline = baselineScorer(options.baseline, V);
    const loss = await meanCrossEntropy(baseline.score, windows, V, checkpoint);
    rows.push({ name: 'baseline', dir: baseline.dir, loss, perplexity: Math.exp(loss) });
  }
  for (const row of rows) log(`eval: ${row.name} perplexity ${row.perplexity.toFixed(3)}`);
  log(`eval: mean KL(teacher ‖ student) ${meanKl.toFixed(4)}, top-1 agreement ${(100 * top1Agreement).toFixed(1)}%`);

  const beyondLimit = await measureBeyondLimit(student, corpus.tokens, limit, options.maxTokens, checkpoint);
  const timing: EvalReport['timing'] = [];
  for (const context of options.contexts) {
    await checkpoint();
    timing.push({
      context,
      studentMs: studentMsPerToken(student, contextOf(corpus.tokens, context), options.timingTokens),
      teacherMs: context + WARM_UP_TOKENS + options.timingTokens <= limit ? teacherMsPerToken(teacher, contextOf(corpus.tokens, context), options.timingTokens) : null,
    });
  }
  await checkpoint();

  const samples = options.prompts.map((prompt) => {
    const ids = tokenizer.encode(prompt, { specialTokens: 'allow' });
    const prompted = ids.length === 0 ? [tokenizer.eotId] : ids;
    const sampling = { maxNewTokens: options.sampleTokens, temperature: 0.8, topK: 40, seed: options.seed };
    const teacherText = tokenizer.decode(generate(gpt2NextLogits(teacher), prompted, sampling));
    const studentText = tokenizer.decode(generate(studentNextLogits(student, speedPositions(student)), prompted, sampling));
    return { prompt, teacher: teacherText, student: studentText };
  });

  const run = options.run ?? (basename(studentDir) === 'student' ? dirname(studentDir) : undefined);
  const report: EvalReport = {
    createdAt: new Date().toISOString(),
    data: { files: corpus.files.length, tokens: corpus.tokens.length, scoredTokens: scored, seqLen },
    perplexity: rows,
    meanKl,
    top1Agreement,
    beyondLimit,
    timing,
    samples,
    stages: readStageCurves(run),
    student: { dir: studentDir, init: student.config.init, positions: student.config.positions, tokenShift: student.config.tokenShift, bonus: student.config.bonus },
  };
  return { report, tokenizer };
}

/**
 * Measures student perplexity below and beyond the teacher's limit for each position mode the
 * student can run. It reads consecutive sequences of 2·limit + 1 corpus tokens: as many as fit in
 * `maxTokens` and at least one, which is shorter when the corpus is.
 */
async function measureBeyondLimit(student: StudentModel, tokens: ArrayLike<number>, limit: number, maxTokens: number, checkpoint: EvaluationCheckpoint): Promise<EvalReport['beyondLimit']> {
  const length = Math.min(tokens.length, 2 * limit + 1);
  const count = Math.max(1, Math.floor(Math.min(tokens.length, maxTokens) / length));
  const sequences = Array.from({ length: count }, (_, s) => Array.from({ length }, (_, i) => tokens[s * length + i]));
  const modes = student.wpe === null ? (['drop'] as PositionMode[]) : [...POSITION_MODES];
  const reachesBeyond = length > limit + 1;
  const rows: BeyondLimitRow[] = [];
  for (const positions of modes) {
    // 'keep' cannot read past the limit, so it scores only the first limit + 1 tokens.
    const canPass = positions !== 'keep' && reachesBeyond;
    const total: SplitLosses = { withinSum: 0, withinCount: 0, beyondSum: 0, beyondCount: 0 };
    for (const ids of sequences) {
      await checkpoint();
      const part = beyondLimitLosses(student, canPass ? ids : ids.slice(0, Math.min(length, limit + 1)), limit, positions);
      total.withinSum += part.withinSum;
      total.withinCount += part.withinCount;
      total.beyondSum += part.beyondSum;
      total.beyondCount += part.beyondCount;
    }
    const withinPerplexity = Math.exp(total.withinSum / total.withinCount);
    if (canPass) {
      rows.push({ positions, withinPerplexity, beyondPerplexity: Math.exp(total.beyondSum / total.beyondCount) });
      continue;
    }
    const note = positions === 'keep' ? 'keep stops at the teacher limit' : 'the data is too short to pass the limit';
    rows.push({ positions, withinPerplexity, beyondPerplexity: null, note });
  }
  return { limit, length, sequences: count, rows };
}
