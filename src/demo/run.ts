// `rwkvify demo`: the whole job on the bundled teacher and corpora, end to end. Phases:
//   data       write SOTU train / held-out and Moby-Dick into <out>/data (skipped when complete)
//   convert    GPT-2 teacher → RWKV-7 student (copy init) in <out>/student-init
//   distill    the requested stages on SOTU train, in <out>/distill
//   baseline   an RWKV-7 trained from scratch on as many tokens as the student saw, <out>/baseline
//   eval-sotu  teacher / student / baseline on SOTU held-out, cache in <out>/eval-sotu
//   eval-moby  the same on Moby-Dick, cache in <out>/eval-moby
//   speed      ms per generated token at long contexts (see speed.ts)
//   report     <out>/report.json + report.html (SOTU), <out>/moby-dick/report.* and the summary
// Each finished phase is recorded in <out>/demo-state.json (see state.ts); a re-run with the same
// settings skips finished phases and continues distillation and baseline from their checkpoints.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { hasTokenizerFiles, loadTokenizer, resolveModelFolder } from '../cli/model-folder.js';
import { makeFolders, probeWritable } from '../cli/output-folder.js';
import { loadBundledCorpora, writeBundledCorpora } from '../data/bundled-corpora.js';
import { loadTokenCorpus } from '../data/dataset.js';
import { InputError } from '../data/input-error.js';
import { evaluateDistillation, evaluationCheckpoint, EvaluationInterrupted, type EvalReport, type TimingRow } from '../distill/eval.js';
import { writeReport } from '../distill/report-html.js';
import { loadStudent, loadTeacher, runDistill } from '../distill/run.js';
import type { StageNumber } from '../distill/settings.js';
import { AtomicWriteError, type AtomicFileSystem } from '../io/atomic.js';
import type { Gpt2Config } from '../models/gpt2/index.js';
import { convertTeacher, saveStudentFolder, type PositionMode } from '../models/student/index.js';
import { formatDuration, type ProgressStream } from '../train/report.js';
import type { TrainingSettings } from '../train/settings.js';
import { closestRwkv7Preset, trainBaseline } from './baseline.js';
import { demoCommonSettings, demoStageSettings, demoSettings, demoStageTrainingSettings, changedSettings, studentTrainingTokens, type DemoSettings } from './settings.js';
import { measureSpeed, type SpeedRow } from './speed.js';
import {
  DEMO_PHASES,
  existingDemoOutputs,
  finishedPhase,
  newDemoState,
  phaseResult,
  readDemoState,
  removeDemoOutputs,
  writeDemoState,
  type DemoPhase,
  type DemoState,
} from './state.js';
import { checkGoals, formatDemoSummary, type GoalCheck } from './summary.js';

/** The teacher shipped with rwkvify, relative to the package root (not the working directory). */
export const BUNDLED_TEACHER_DIR = fileURLToPath(new URL('../../models/gpt2-sotu', import.meta.url));

export interface DemoOptions {
  out: string;
  quick: boolean;
  /** Teacher GPT-2 folder (default: the bundled one). */
  teacher?: string;
  stages: StageNumber[];
  positions: PositionMode;
  resume: boolean;
  restart: boolean;
  seed: number;
  log?: (line: string) => void;
  progress?: ProgressStream;
  stopRequested?: () => boolean;
  /** Throws when `dir` cannot be written; tests replace it to simulate a read-only folder. */
  checkWritable?: (dir: string) => void;
  /** File-system calls of the state-file writes; tests replace them to simulate a full disk. */
  fileSystem?: AtomicFileSystem;
}

export interface DemoResult {
  interrupted: boolean;
  /** The printed summary table; absent when interrupted. */
  summary?: string;
  goals?: GoalCheck[];
  runId: string;
  /** Phases that ran in this call (the others were finished before). */
  ranPhases: DemoPhase[];
}

/** Data folders under <out>/data. */
interface DataPaths {
  sotuTrain: string;
  sotuHeldOut: string;
  mobyDick: string;
}

/** Marker written after the corpora, so a half-written data folder is rewritten. */
const DATA_MARKER = 'complete.json';

/**
 * Throughput of the full demo's phases on the idle 2-core build machine, in tokens per second (see
 * the budget in settings.ts): distillation averaged over stages 1 and 2, and evaluation per
 * scored token and model. The overall ETA uses it until a phase has finished, and later scales it
 * by the measured time of the finished phases.
 */
const ESTIMATED_RATES = { distill: 390, baseline: 260, eval: 330 };

// ---------------------------------------------------------------------------------------------------
// Output folder and teacher

function prepareOutFolder(out: string, checkWritable: (dir: string) => void): void {
  try {
    makeFolders(out);
    checkWritable(out);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new InputError(`demo: cannot write to the --out folder "${out}": ${reason}; choose a folder you can write to, such as ./rwkvify-demo`);
  }
}

function resolveTeacher(given: string | undefined): string {
  const dir = resolve(given ?? BUNDLED_TEACHER_DIR);
  if (!existsSync(dir)) {
    const hint = given === undefined ? 'the bundled teacher is missing from this installation; pass --teacher DIR with a GPT-2 folder' : 'pass --teacher with an existing GPT-2 folder';
    throw new InputError(`demo: teacher folder "${dir}" does not exist; ${hint}`);
  }
  return resolveModelFolder(dir);
}

/** SHA-256 of the teacher's config.json and weights, so a changed teacher makes old results stale. */
function hashTeacher(dir: string): string {
  const hash = createHash('sha256');
  for (const file of ['config.json', 'model.safetensors']) {
    const path = join(dir, file);
    if (existsSync(path)) hash.update(readFileSync(path));
  }
  return hash.digest('hex').slice(0, 16);
}

// ---------------------------------------------------------------------------------------------------
// State: resume or restart

function openState(out: string, settings: DemoSettings, options: DemoOptions, log: (line: string) => void): DemoState {
  if (options.restart) {
    const removed = removeDemoOutputs(out);
    if (removed.length > 0) log(`demo: --restart removed ${removed.join(', ')} from ${out}`);
    return newDemoState(settings);
  }
  const previous = readDemoState(out);
  if (previous === undefined) {
    if (options.resume) throw new InputError(`demo: --resume: "${out}" has no demo-state.json from an earlier demo; run without --resume to start`);
    const leftovers = existingDemoOutputs(out);
    if (leftovers.length > 0) {
      throw new InputError(`demo: "${out}" contains ${leftovers.join(', ')} but no demo-state.json, so their settings are unknown; pass --restart to remove them, or choose another --out`);
    }
    return newDemoState(settings);
  }
  const fresh = newDemoState(settings);
  if (previous.settingsHash !== fresh.settingsHash) {
    const changed = changedSettings(previous.settings, settings);
    throw new InputError(
      `demo: "${out}" contains run ${previous.runId} with other settings (${changed.join(', ') || 'format'} changed); ` +
        'pass --restart to discard it and start again, or repeat the earlier options to resume it',
    );
  }
  const done = DEMO_PHASES.filter((phase) => finishedPhase(previous, phase) !== undefined);
  log(`demo: resuming run ${previous.runId}; finished phases: ${done.length === 0 ? 'none' : done.join(', ')}`);
  return previous;
}

// ---------------------------------------------------------------------------------------------------
// Phases

function dataFolders(out: string): DataPaths {
  const dir = join(out, 'data');
  return { sotuTrain: join(dir, 'sotu-train'), sotuHeldOut: join(dir, 'sotu-heldout'), mobyDick: join(dir, 'moby-dick') };
}

function countTextFiles(dir: string): number {
  return existsSync(dir) ? readdirSync(dir).filter((name) => name.endsWith('.txt')).length : 0;
}

/** Writes the bundled corpora unless the marker shows that an earlier run wrote all of them. */
function writeCorporaOnce(out: string, log: (line: string) => void): DataPaths {
  const folders = dataFolders(out);
  const marker = join(out, 'data', DATA_MARKER);
  if (existsSync(marker)) {
    const counts = JSON.parse(readFileSync(marker, 'utf8')) as Record<keyof DataPaths, number>;
    const complete = (Object.keys(folders) as Array<keyof DataPaths>).every((key) => countTextFiles(folders[key]) === counts[key]);
    if (complete) {
      log(`data: corpora already in ${join(out, 'data')}`);
      return folders;
    }
  }
  const corpora = loadBundledCorpora();
  writeBundledCorpora(join(out, 'data'));
  const counts = { sotuTrain: corpora.sotuTrain.length, sotuHeldOut: corpora.sotuHeldOut.length, mobyDick: corpora.mobyDick.length };
  writeFileSync(marker, JSON.stringify(counts) + '\n');
  log(`data: wrote ${counts.sotuTrain} SOTU training addresses, ${counts.sotuHeldOut} held-out addresses (2000 on) and ${counts.mobyDick} Moby-Dick chapters to ${join(out, 'data')}`);
  return folders;
}

/** Returns the folder itself, or its first `limit` text files in name order. */
function firstDocuments(dir: string, limit: number | null): string[] {
  if (limit === null) return [dir];
  return readdirSync(dir).filter((name) => name.endsWith('.txt')).sort().slice(0, limit).map((name) => join(dir, name));
}

interface Context {
  out: string;
  teacherDir: string;
  settings: DemoSettings;
  state: DemoState;
  data: DataPaths;
  log: (line: string) => void;
  options: DemoOptions;
}

function convertPhase(ctx: Context): { studentDir: string } {
  const { model: teacher } = loadTeacher(ctx.teacherDir);
  const student = convertTeacher(teacher, { init: 'copy', bonus: true, tokenShift: true, groupNorm: true, positions: ctx.settings.positions }, ctx.settings.seed);
  const tokenizer = hasTokenizerFiles(ctx.teacherDir) ? loadTokenizer(ctx.teacherDir).tokenizer : undefined;
  const studentDir = join(ctx.out, 'student-init');
  saveStudentFolder(student, studentDir, { tokenizer });
  ctx.log(`convert: ${ctx.teacherDir} → ${studentDir} (init copy, positions ${ctx.settings.positions}, ${student.parameterCount().toLocaleString('en-US')} parameters)`);
  return { studentDir };
}

async function distillPhase(ctx: Context): Promise<{ studentDir: string; tokens: number } | null> {
  const result = await runDistill({
    teacher: ctx.teacherDir,
    student: join(ctx.out, 'student-init'),
    data: firstDocuments(ctx.data.sotuTrain, ctx.settings.trainDocuments),
    out: join(ctx.out, 'distill'),
    stages: ctx.settings.stages,
    stageSettings: demoStageSettings(ctx.settings),
    common: demoCommonSettings(ctx.settings),
    temperature: 1,
    klWeight: 0.5,
    ceWeight: 0.5,
    freezeMlp: false,
    freezeEmbeddings: ctx.settings.freezeEmbeddings,
    quick: ctx.settings.quick,
    // A stage with a checkpoint continues from it, one without starts fresh.
    resume: true,
    log: ctx.log,
    progress: ctx.options.progress,
    stopRequested: ctx.options.stopRequested,
  });
  if (result.interrupted || result.studentDir === null) return null;
  return { studentDir: result.studentDir, tokens: studentTrainingTokens(ctx.settings) };
}

/** Settings of the from-scratch run: the last stage's batch shape, for as many tokens as the student saw. */
function baselineSettings(settings: DemoSettings): TrainingSettings {
  const stages = demoStageTrainingSettings(settings);
  const shape = stages[settings.stages[settings.stages.length - 1]];
  const steps = Math.max(1, Math.ceil(studentTrainingTokens(settings) / (shape.batchSize * shape.seqLen)));
  return {
    ...shape,
    steps,
    // The usual from-scratch recipe for a model this size, not the distillation's schedule.
    lr: 1e-3,
    minLr: 1e-4,
    warmup: Math.min(50, Math.floor(steps / 10)),
    schedule: 'cosine',
    weightDecay: 0.1,
    gradClip: 1,
  };
}

async function baselinePhase(ctx: Context, teacher: Gpt2Config): Promise<{ modelDir: string; preset: string; tokens: number } | null> {
  const settings = baselineSettings(ctx.settings);
  const preset = closestRwkv7Preset(teacher);
  const tokens = settings.steps * settings.batchSize * settings.seqLen;
  ctx.log(`baseline: RWKV-7 preset ${preset} (vocabulary ${teacher.vocabSize}) from scratch, ${settings.steps} steps × ${settings.batchSize} × ${settings.seqLen} = ${tokens.toLocaleString('en-US')} tokens`);
  const modelDir = await trainBaseline({
    out: join(ctx.out, 'baseline'),
    data: firstDocuments(ctx.data.sotuTrain, ctx.settings.trainDocuments),
    tokenizer: loadTokenizer(ctx.teacherDir).tokenizer,
    vocabSize: teacher.vocabSize,
    preset,
    settings,
    log: ctx.log,
    progress: ctx.options.progress,
    stopRequested: ctx.options.stopRequested,
  });
  return modelDir === null ? null : { modelDir, preset, tokens };
}

/** Scores teacher, student and baseline on one test set; returns null when the user stopped it. */
async function evalPhase(ctx: Context, testSet: 'sotu' | 'moby'): Promise<EvalReport | null> {
  const paths = firstDocuments(testSet === 'sotu' ? ctx.data.sotuHeldOut : ctx.data.mobyDick, ctx.settings.testDocuments);
  try {
    return await evaluateFor(ctx, testSet, paths);
  } catch (error) {
    if (error instanceof EvaluationInterrupted) return null;
    throw error;
  }
}

async function evaluateFor(ctx: Context, testSet: 'sotu' | 'moby', paths: string[]): Promise<EvalReport> {
  const { report } = await evaluateDistillation({
    teacher: ctx.teacherDir,
    student: join(ctx.out, 'distill', 'student'),
    baseline: join(ctx.out, 'baseline', 'model'),
    data: paths,
    out: join(ctx.out, `eval-${testSet}`),
    maxTokens: ctx.settings.evalTokens,
    // Speed is measured once, in the speed phase, with a teacher that can pass its limit.
    contexts: [],
    timingTokens: 1,
    prompts: [testSet === 'sotu' ? 'The state of the Union is' : 'Call me Ishmael.'],
    sampleTokens: ctx.settings.sampleTokens,
    seed: ctx.settings.seed,
    run: join(ctx.out, 'distill'),
    log: (line) => ctx.log(`${testSet}: ${line}`),
    stopRequested: ctx.options.stopRequested,
  });
  return report;
}

/** Times both models at the demo's contexts; returns null when the user stopped the measurement. */
async function speedPhase(ctx: Context): Promise<SpeedRow[] | null> {
  const { model: teacher } = loadTeacher(ctx.teacherDir);
  const student = loadStudent(join(ctx.out, 'distill', 'student'));
  const { tokenizer } = loadTokenizer(ctx.teacherDir);
  const corpus = loadTokenCorpus({ paths: firstDocuments(ctx.data.sotuHeldOut, ctx.settings.testDocuments), outDir: join(ctx.out, 'eval-sotu'), tokenizer, requiredTokens: 2 });
  // 'keep' cannot pass the teacher's limit, so the speed run uses 'clamp' for such a student.
  const positions = ctx.settings.positions === 'keep' ? 'clamp' : ctx.settings.positions;
  try {
    return await measureSpeed(student, teacher, corpus.tokens, ctx.settings.contexts, ctx.settings.timingTokens, positions, ctx.log, evaluationCheckpoint(ctx.options.stopRequested));
  } catch (error) {
    if (error instanceof EvaluationInterrupted) return null;
    throw error;
  }
}

/** Writes both reports and returns the summary, computed only from results of this run and settings. */
function reportPhase(ctx: Context): { summary: string; goals: GoalCheck[] } {
  const sotu = phaseResult<EvalReport>(ctx.state, 'eval-sotu');
  const moby = phaseResult<EvalReport>(ctx.state, 'eval-moby');
  const speed = phaseResult<SpeedRow[]>(ctx.state, 'speed');
  const distill = phaseResult<{ tokens: number }>(ctx.state, 'distill');
  const baseline = phaseResult<{ preset: string; tokens: number }>(ctx.state, 'baseline');
  const goals = checkGoals(sotu);
  const demo = {
    runId: ctx.state.runId,
    settingsHash: ctx.state.settingsHash,
    settings: ctx.settings,
    teacher: ctx.teacherDir,
    studentTokens: distill.tokens,
    baseline: { preset: baseline.preset, tokens: baseline.tokens },
    speed,
    goals,
    mobyDick: { perplexity: moby.perplexity, meanKl: moby.meanKl, top1Agreement: moby.top1Agreement },
  };
  const timing: TimingRow[] = speed.map((row) => ({ context: row.context, studentMs: row.studentMs, teacherMs: row.teacherMs, teacherMethod: row.teacherMethod }));
  const paths = writeReport({ ...sotu, timing, demo } as EvalReport, ctx.out);
  const mobyPaths = writeReport({ ...moby, timing: [], demo } as EvalReport, join(ctx.out, 'moby-dick'));
  ctx.log(`report: wrote ${paths.json}, ${paths.html} (SOTU held-out) and ${mobyPaths.html} (Moby-Dick)`);
  const summary = formatDemoSummary({ sotu, moby, speed, positions: ctx.settings.positions, trainingTokens: distill.tokens, runId: ctx.state.runId, settingsHash: ctx.state.settingsHash });
  return { summary, goals };
}

// ---------------------------------------------------------------------------------------------------
// Progress across phases

/** Estimated seconds of each phase, from the token counts and ESTIMATED_RATES. */
function estimatePhaseSeconds(settings: DemoSettings): Record<DemoPhase, number> {
  const tokens = studentTrainingTokens(settings);
  const evalSeconds = (4 * settings.evalTokens) / ESTIMATED_RATES.eval;
  return {
    data: 2,
    convert: 2,
    distill: tokens / ESTIMATED_RATES.distill,
    baseline: tokens / ESTIMATED_RATES.baseline,
    'eval-sotu': evalSeconds,
    'eval-moby': evalSeconds,
    speed: settings.contexts.reduce((sum, c) => sum + c / ESTIMATED_RATES.eval, 0) + 4 * settings.timingTokens,
    report: 1,
  };
}

/**
 * Prints `demo [3/8] distill | elapsed 1m02s | ETA 6m10s` before each phase. The ETA scales the
 * remaining estimates by how long the finished phases of this call took against their estimates.
 */
class PhaseProgress {
  private readonly started = performance.now();
  private spentSeconds = 0;
  private estimatedSpent = 0;

  constructor(private readonly estimates: Record<DemoPhase, number>, private readonly log: (line: string) => void) {}

  begin(phase: DemoPhase, detail: string): void {
    const index = DEMO_PHASES.indexOf(phase);
    const remaining = DEMO_PHASES.slice(index).reduce((sum, p) => sum + this.estimates[p], 0);
    const scale = this.estimatedSpent > 5 ? this.spentSeconds / this.estimatedSpent : 1;
    const elapsed = (performance.now() - this.started) / 1000;
    this.log(`demo [${index + 1}/${DEMO_PHASES.length}] ${phase}: ${detail} | elapsed ${formatDuration(elapsed)} | ETA ${formatDuration(remaining * scale)}`);
  }

  end(phase: DemoPhase, seconds: number): void {
    this.spentSeconds += seconds;
    this.estimatedSpent += this.estimates[phase];
  }
}

// ---------------------------------------------------------------------------------------------------
// Run

/** Runs the demo; see the file header for the phases. Throws InputError for user mistakes. */
export async function runDemo(options: DemoOptions): Promise<DemoResult> {
  const out = resolve(options.out);
  try {
    return await runDemoIn(out, options);
  } catch (error) {
    throw asInputErrorWhenDiskFails(error, out);
  }
}

/** Converts a failed write (full disk, read-only file system) into an InputError that keeps the writer's message, because the user has to fix it. */
function asInputErrorWhenDiskFails(error: unknown, out: string): unknown {
  const code = (error as { code?: unknown } | null)?.code;
  const diskError = error instanceof AtomicWriteError || code === 'ENOSPC' || code === 'EDQUOT' || code === 'EROFS';
  if (!diskError) return error;
  return new InputError(`demo: ${(error as Error).message} Finished phases and checkpoints in "${out}" are kept, so the same command resumes the demo.`);
}

async function runDemoIn(out: string, options: DemoOptions): Promise<DemoResult> {
  const log = options.log ?? ((line: string): void => void process.stdout.write(line + '\n'));
  prepareOutFolder(out, options.checkWritable ?? probeWritable);
  const teacherDir = resolveTeacher(options.teacher);
  const { model: teacher } = loadTeacher(teacherDir);
  const settings = demoSettings({ quick: options.quick, stages: options.stages, positions: options.positions, teacherHash: hashTeacher(teacherDir), teacherPositions: teacher.config.nPositions, seed: options.seed });
  const state = openState(out, settings, options, log);
  writeDemoState(out, state, options.fileSystem);
  log(`demo: run ${state.runId} (settings ${state.settingsHash}) in ${out}; teacher ${teacherDir}; stages ${settings.stages.join(',')}; positions ${settings.positions}${settings.quick ? '; quick' : ''}`);

  const data = dataFolders(out);
  const ctx: Context = { out, teacherDir, settings, state, data, log, options };
  const progress = new PhaseProgress(estimatePhaseSeconds(settings), log);
  const ranPhases: DemoPhase[] = [];

  /** Runs a phase unless this run finished it; returns false when it was interrupted. */
  const phase = async (name: DemoPhase, detail: string, work: () => unknown): Promise<boolean> => {
    if (finishedPhase(state, name) !== undefined) {
      // The corpora are checked again, because a user may have deleted part of <out>/data.
      if (name === 'data') await work();
      log(`demo [${DEMO_PHASES.indexOf(name) + 1}/${DEMO_PHASES.length}] ${name}: finished earlier in run ${state.runId}; skipped`);
      return true;
    }
    progress.begin(name, detail);
    const started = performance.now();
    const result = await work();
    if (result === null) return false;
    const seconds = (performance.now() - started) / 1000;
    progress.end(name, seconds);
    state.phases[name] = { runId: state.runId, settingsHash: state.settingsHash, finishedAt: new Date().toISOString(), seconds, result };
    writeDemoState(out, state, options.fileSystem);
    ranPhases.push(name);
    return true;
  };

  const tokens = studentTrainingTokens(settings);
  const steps: Array<[DemoPhase, string, () => unknown]> = [
    ['data', 'bundled corpora', () => ({ folders: writeCorporaOnce(out, log) })],
    ['convert', 'GPT-2 → RWKV-7 student', () => convertPhase(ctx)],
    ['distill', `stages ${settings.stages.join(',')}, ${tokens.toLocaleString('en-US')} tokens`, () => distillPhase(ctx)],
    ['baseline', `RWKV-7 from scratch on ${tokens.toLocaleString('en-US')} tokens`, () => baselinePhase(ctx, teacher.config)],
    ['eval-sotu', `SOTU held-out, up to ${settings.evalTokens.toLocaleString('en-US')} tokens`, () => evalPhase(ctx, 'sotu')],
    ['eval-moby', `Moby-Dick, up to ${settings.evalTokens.toLocaleString('en-US')} tokens`, () => evalPhase(ctx, 'moby')],
    ['speed', `ms/token at contexts ${settings.contexts.join(', ')}`, () => speedPhase(ctx)],
  ];
  for (const [name, detail, work] of steps) {
    if (!(await phase(name, detail, work))) {
      log(`demo: interrupted in phase ${name}; run the same command again to resume`);
      return { interrupted: true, runId: state.runId, ranPhases };
    }
  }

  progress.begin('report', 'report.json, report.html and summary');
  const { summary, goals } = reportPhase(ctx);
  state.phases.report = { runId: state.runId, settingsHash: state.settingsHash, finishedAt: new Date().toISOString(), seconds: 0 };
  writeDemoState(out, state, options.fileSystem);
  ranPhases.push('report');
  log(summary);
  return { interrupted: false, summary, goals, runId: state.runId, ranPhases };
}
