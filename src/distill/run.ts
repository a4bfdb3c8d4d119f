// A distillation run: load the teacher and the converted student, check that they belong
// together, tokenize the corpus once, and run the requested stages in order with the generic
// trainer. Layout of the run folder:
//   <out>/data-cache/             token cache shared by all stages
//   <out>/stage<N>/model/         checkpoint of stage N (a student folder + trainer state)
//   <out>/stage<N>/metrics.jsonl  per-step losses of stage N
//   <out>/student/                the final student, written after the last stage
// A stage starts from the student that the previous stage ended with. With `resume`, a stage
// whose checkpoint has all its steps is skipped, a partial one continues from its checkpoint
// (bit-exact, see trainer.ts), and a missing one starts fresh.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { plainLoadReason, resolveModelFolder, loadTokenizer } from '../cli/model-folder.js';
import { createOutputFolder } from '../cli/output-folder.js';
import { BatchSampler, heldOutBatches, loadTokenCorpus, splitHeldOut, type Batch, type TokenCorpus } from '../data/dataset.js';
import { InputError } from '../data/input-error.js';
import { loadGpt2Folder, type Gpt2Model } from '../models/gpt2/index.js';
import { loadStudentFolder, saveStudentFolder, teacherFingerprint, type StudentModel } from '../models/student/index.js';
import type { Gpt2Tokenizer } from '../tokenizer/index.js';
import { findCheckpoint, readTrainerState } from '../train/checkpoint.js';
import type { ProgressStream } from '../train/report.js';
import type { TrainingSettings } from '../train/settings.js';
import { train, TrainingDivergedError } from '../train/trainer.js';
import { AlignmentObjective, LogitObjective, type StageObjective } from './objectives.js';
import { quickStage, STAGE_LOSS_NAMES, STAGE_TITLES, trainingSettings, type CommonSettings, type StageNumber, type StageSettings } from './settings.js';

export interface DistillOptions {
  /** Teacher GPT-2 folder (config.json + model.safetensors, tokenizer files optional). */
  teacher: string;
  /** Student folder written by `rwkvify convert`, or a distill run folder (its student/ is used). */
  student: string;
  /** Text files or folders of the training corpus. */
  data: string[];
  /** Run folder. */
  out: string;
  stages: readonly StageNumber[];
  stageSettings: Readonly<Record<StageNumber, StageSettings>>;
  common: CommonSettings;
  /** Softmax temperature of the KL in stages 2 and 3. */
  temperature: number;
  /** Stage-3 weights of KL and cross-entropy (stage 2 is pure KL). */
  klWeight: number;
  ceWeight: number;
  /** Keeps the MLPs frozen in stages 2 and 3. */
  freezeMlp: boolean;
  /** Keeps wte (and so the tied head) and wpe frozen in stages 2 and 3. */
  freezeEmbeddings: boolean;
  /** Runs a few small steps per stage (see settings.ts). */
  quick: boolean;
  resume: boolean;
  extensions?: readonly string[];
  /** Receives every log line (default: stdout). */
  log?: (line: string) => void;
  progress?: ProgressStream;
  /** Polled between steps; true saves a checkpoint and stops the run. */
  stopRequested?: () => boolean;
}

export interface StageResult {
  stage: StageNumber;
  steps: number;
  /** Loss of the last step run in this call; NaN when the stage was already complete. */
  lastLoss: number;
  checkpoint: string;
  skipped: boolean;
}

export interface DistillResult {
  interrupted: boolean;
  stages: StageResult[];
  /** Folder of the final student; null when the run was interrupted. */
  studentDir: string | null;
}

// ---------------------------------------------------------------------------------------------------
// Loading and checking models

/** Loads the teacher with every parameter frozen. */
export function loadTeacher(given: string): { dir: string; model: Gpt2Model } {
  const dir = resolveModelFolder(given);
  try {
    return { dir, model: loadGpt2Folder(dir).setRequiresGrad(false).eval() };
  } catch (error) {
    throw new InputError(`cannot load the teacher GPT-2 in "${dir}": ${plainLoadReason(error, dir)}`);
  }
}

/** Returns the student folder: `dir` itself, or `dir/student` for a distill run folder. */
export function resolveStudentFolder(dir: string): string {
  if (existsSync(join(dir, 'config.json'))) return dir;
  if (existsSync(join(dir, 'student', 'config.json'))) return join(dir, 'student');
  throw new InputError(`student folder "${dir}" has no config.json; create one with \`rwkvify convert --teacher DIR --out DIR\``);
}

export function loadStudent(dir: string): StudentModel {
  try {
    return loadStudentFolder(dir);
  } catch (error) {
    throw new InputError(`cannot load the student in "${dir}": ${plainLoadReason(error, dir)}`);
  }
}

/**
 * Throws an InputError unless the student was converted from this teacher: same vocabulary,
 * width, heads and depth, and the same teacher fingerprint.
 */
export function checkStudentMatchesTeacher(student: StudentModel, teacher: Gpt2Model, studentDir: string, teacherDir: string): void {
  const s = student.config.teacher;
  const t = teacher.config;
  const fields: Array<[string, number, number]> = [
    ['vocab_size', s.vocabSize, t.vocabSize],
    ['n_embd (width)', s.nEmbd, t.nEmbd],
    ['n_head', s.nHead, t.nHead],
    ['n_layer', s.nLayer, t.nLayer],
  ];
  for (const [name, studentValue, teacherValue] of fields) {
    if (studentValue !== teacherValue) {
      throw new InputError(
        `the student "${studentDir}" has ${name} ${studentValue} but the teacher "${teacherDir}" has ${teacherValue}; ` +
          'convert a student from this teacher with `rwkvify convert`',
      );
    }
  }
  if (student.config.teacherFingerprint !== teacherFingerprint(teacher)) {
    throw new InputError(
      `the student "${studentDir}" was converted from another teacher than "${teacherDir}" (teacher fingerprints differ); ` +
        'pass the teacher it was converted from, or convert a new student from this teacher',
    );
  }
}

// ---------------------------------------------------------------------------------------------------
// Stages

/** A stage ready to run: its settings, data and where it writes. */
interface PlannedStage {
  stage: StageNumber;
  dir: string;
  settings: TrainingSettings;
  sampler: BatchSampler;
  heldOut: Batch[];
}

function stageDir(out: string, stage: StageNumber): string {
  return join(out, `stage${stage}`);
}

/** Returns the settings a stage runs with: the checkpoint's when resuming it, else the requested ones. */
function settingsOfStage(options: DistillOptions, stage: StageNumber): TrainingSettings {
  const checkpoint = findCheckpoint(stageDir(resolve(options.out), stage));
  if (checkpoint !== undefined) {
    if (!options.resume) {
      const step = readTrainerState(checkpoint).step;
      throw new InputError(`"${checkpoint}" already contains a stage-${stage} checkpoint (step ${step}); pass --resume to continue the run, or choose another --out`);
    }
    const saved = readTrainerState(checkpoint).settings;
    const requested = requestedSettings(options, stage);
    rejectChangedSettings(stage, checkpoint, saved, requested);
    return { ...saved, logEvery: requested.logEvery, evalBatches: requested.evalBatches, saveEvery: requested.saveEvery };
  }
  return requestedSettings(options, stage);
}

/**
 * Settings that change only what a run logs, evaluates or saves, never its weights, so a resumed
 * stage takes them from the command line (as `pretrain --resume` does).
 */
const REPORTING_SETTINGS: ReadonlySet<keyof TrainingSettings> = new Set(['logEvery', 'evalBatches', 'saveEvery']);

function requestedSettings(options: DistillOptions, stage: StageNumber): TrainingSettings {
  const requested = options.quick ? quickStage(options.stageSettings[stage]) : options.stageSettings[stage];
  return trainingSettings(requested, options.common);
}

/**
 * A resumed stage continues with its checkpoint's settings. A command that requests different
 * ones (another learning rate, token budget, …) is rejected rather than silently ignored.
 */
function rejectChangedSettings(stage: StageNumber, checkpoint: string, saved: TrainingSettings, requested: TrainingSettings): void {
  const changed = (Object.keys(saved) as Array<keyof TrainingSettings>).filter(
    (key) => !REPORTING_SETTINGS.has(key) && JSON.stringify(saved[key]) !== JSON.stringify(requested[key]),
  );
  if (changed.length === 0) return;
  const details = changed.map((key) => `${key} ${JSON.stringify(saved[key])} → ${JSON.stringify(requested[key])}`).join(', ');
  throw new InputError(
    `stage ${stage}: the checkpoint in "${checkpoint}" was made with other settings (${details}); ` +
      `resume with the original options, or start a new run in another --out`,
  );
}

function describeStage(stage: StageNumber, s: TrainingSettings): string {
  const tokens = s.steps * s.batchSize * s.seqLen;
  return (
    `stage ${stage}: ${STAGE_TITLES[stage]}\n` +
    `  ${s.steps} ${s.steps === 1 ? 'step' : 'steps'} × ${s.batchSize} sequences × ${s.seqLen} tokens = ${tokens.toLocaleString('en-US')} tokens\n` +
    `  lr ${s.lr.toExponential(1)} → ${s.minLr.toExponential(1)} (${s.schedule}, ${s.warmup} warm-up steps), ` +
    `AdamW betas (${s.betas.join(', ')}), weight decay ${s.weightDecay}, grad clip ${s.gradClip === 0 ? 'off' : s.gradClip}`
  );
}

/** Builds the samplers and held-out batches of every stage before any training, so data errors come first. */
function planStages(options: DistillOptions, corpus: TokenCorpus, teacher: Gpt2Model, log: (line: string) => void): PlannedStage[] {
  const out = resolve(options.out);
  const split = splitHeldOut(corpus.tokens.length, corpus.documentStarts, options.common.valFraction);
  return options.stages.map((stage) => {
    const settings = settingsOfStage(options, stage);
    if (settings.seqLen > teacher.config.nPositions) {
      throw new InputError(`stage ${stage}: --stage${stage}-seq-len ${settings.seqLen} exceeds the teacher's ${teacher.config.nPositions} positions; pass ${teacher.config.nPositions} or less`);
    }
    let sampler: BatchSampler;
    let heldOut: Batch[];
    try {
      sampler = new BatchSampler(corpus.tokens, split.train, settings.batchSize, settings.seqLen, settings.seed + stage);
      heldOut = heldOutBatches(corpus.tokens, split.validation, settings.batchSize, settings.seqLen, settings.evalBatches);
    } catch (error) {
      if (error instanceof InputError) throw new InputError(`stage ${stage}: ${error.message}`);
      throw error;
    }
    log(describeStage(stage, settings));
    return { stage, dir: stageDir(out, stage), settings, sampler, heldOut };
  });
}

function createObjective(stage: StageNumber, teacher: Gpt2Model, student: StudentModel, options: DistillOptions): StageObjective {
  if (stage === 1) return new AlignmentObjective(teacher, student);
  const weights = stage === 2 ? { klWeight: 1, ceWeight: 0 } : { klWeight: options.klWeight, ceWeight: options.ceWeight };
  return new LogitObjective(teacher, student, { temperature: options.temperature, freezeMlp: options.freezeMlp, freezeEmbeddings: options.freezeEmbeddings, ...weights });
}

/**
 * Rewrites the trainer's `step 3/10 | loss …` lines as `stage 2 | step 3/10 | kl …`, and its
 * `eval step …` lines as `stage 2 | eval step 10 | val kl …` without the perplexity, which only
 * means something for a cross-entropy loss.
 */
function stageLogLine(stage: StageNumber, line: string): string {
  const name = STAGE_LOSS_NAMES[stage];
  let renamed = line;
  if (line.startsWith('step ')) renamed = line.replace(' | loss ', ` | ${name} `);
  if (line.startsWith('eval step ')) renamed = line.replace(' | val loss ', ` | val ${name} `).replace(/ \| val ppl [^|]*$/, '');
  return `stage ${stage} | ${renamed}`;
}

// ---------------------------------------------------------------------------------------------------
// Run

/** Loads the corpus with the teacher's tokenizer (or the bundled GPT-2 one) into `<out>/data-cache`. */
function loadCorpus(options: DistillOptions, teacherDir: string, teacher: Gpt2Model, log: (line: string) => void): { corpus: TokenCorpus; tokenizer: Gpt2Tokenizer } {
  const { tokenizer } = loadTokenizer(teacherDir);
  if (tokenizer.vocabSize > teacher.config.vocabSize) {
    throw new InputError(`the tokenizer of "${teacherDir}" has ${tokenizer.vocabSize} tokens but the teacher only ${teacher.config.vocabSize}; save the teacher with its own tokenizer files`);
  }
  const largestBatch = Math.max(...options.stages.map((stage) => {
    const s = options.quick ? quickStage(options.stageSettings[stage]) : options.stageSettings[stage];
    return s.batchSize * (s.seqLen + 1);
  }));
  const corpus = loadTokenCorpus({ paths: options.data, outDir: resolve(options.out), tokenizer, extensions: options.extensions, requiredTokens: largestBatch, log });
  log(`data: ${corpus.tokens.length.toLocaleString('en-US')} tokens in ${corpus.files.length} file(s)`);
  return { corpus, tokenizer };
}

/** Runs the requested stages; see the file header for the folder layout and resumption. */
export async function runDistill(options: DistillOptions): Promise<DistillResult> {
  const log = options.log ?? ((line: string): void => void process.stdout.write(line + '\n'));
  const out = createOutputFolder(options.out);

  const { dir: teacherDir, model: teacher } = loadTeacher(options.teacher);
  const initialDir = resolveStudentFolder(options.student);
  let student = loadStudent(initialDir);
  checkStudentMatchesTeacher(student, teacher, initialDir, teacherDir);
  log(`teacher: ${teacherDir} (${teacher.config.nLayer} layers, C ${teacher.config.nEmbd}, ${teacher.config.nHead} heads, V ${teacher.config.vocabSize})`);
  log(`student: ${initialDir} (init ${student.config.init}, positions ${student.config.positions}, token shift ${onOff(student.config.tokenShift)}, bonus ${onOff(student.config.bonus)})`);
  log(`losses: stage 2 KL at temperature ${options.temperature} (× T²); stage 3 ${options.klWeight}·KL + ${options.ceWeight}·CE${options.freezeMlp ? '; MLPs frozen in stages 2 and 3' : ''}${options.freezeEmbeddings ? '; wte, wpe and the head frozen in stages 2 and 3' : ''}`);

  const { corpus, tokenizer } = loadCorpus(options, teacherDir, teacher, log);
  const planned = planStages(options, corpus, teacher, log);
  const results: StageResult[] = [];

  for (const plan of planned) {
    const checkpoint = findCheckpoint(plan.dir);
    let resumeFrom: string | undefined;
    if (checkpoint !== undefined) {
      const state = readTrainerState(checkpoint);
      student = loadStudent(checkpoint);
      if (state.step >= plan.settings.steps) {
        log(`stage ${plan.stage} | already complete (${state.step} steps); using its checkpoint ${checkpoint}`);
        results.push({ stage: plan.stage, steps: state.step, lastLoss: Number.NaN, checkpoint, skipped: true });
        continue;
      }
      resumeFrom = checkpoint;
      log(`stage ${plan.stage} | resuming after step ${state.step}`);
    }

    const objective = createObjective(plan.stage, teacher, student, options);
    const trainableCount = objective.trainable.reduce((n, [, p]) => n + p.size, 0);
    log(`stage ${plan.stage} | training ${trainableCount.toLocaleString('en-US')} of ${student.parameterCount().toLocaleString('en-US')} student parameters`);
    const current = student;
    let result;
    try {
      result = await train({
        model: objective,
        settings: plan.settings,
        sampler: plan.sampler,
        heldOut: plan.heldOut,
        outDir: plan.dir,
        saveModel: (dir) => saveStudentFolder(current, dir, { tokenizer }),
        modelInfo: { arch: 'rwkv7-student', config: { stage: plan.stage, ...current.config } },
        args: { stage: plan.stage, teacher: teacherDir, student: initialDir, temperature: options.temperature, klWeight: options.klWeight, ceWeight: options.ceWeight, freezeMlp: options.freezeMlp, freezeEmbeddings: options.freezeEmbeddings },
        resumeFrom,
        log: (line) => log(stageLogLine(plan.stage, line)),
        progress: options.progress,
        stopRequested: options.stopRequested,
      });
    } catch (error) {
      if (error instanceof TrainingDivergedError) throw new TrainingDivergedError(`stage ${plan.stage}: ${error.message}`);
      throw error;
    }
    results.push({ stage: plan.stage, steps: result.step, lastLoss: result.lastLoss, checkpoint: result.checkpoint, skipped: false });
    if (result.interrupted) {
      log(`stage ${plan.stage} | interrupted after step ${result.step}; checkpoint saved in ${result.checkpoint}`);
      return { interrupted: true, stages: results, studentDir: null };
    }
  }

  const studentDir = join(out, 'student');
  saveStudentFolder(student, studentDir, { tokenizer });
  log(`done: final student saved in ${studentDir}`);
  return { interrupted: false, stages: results, studentDir };
}

function onOff(flag: boolean): string {
  return flag ? 'on' : 'off';
}
