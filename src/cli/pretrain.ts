// `rwkvify pretrain`: train a GPT-2 or RWKV-7 from scratch on a text corpus, or resume a run.

import { resolve } from 'node:path';

import { formatBytes } from '../data/corpus.js';
import { BatchSampler, heldOutBatches, loadTokenCorpus, splitHeldOut, type DataSplit, type TokenCorpus } from '../data/dataset.js';
import { InputError } from '../data/input-error.js';
import { describeBackendChoice } from '../kernels/index.js';
import type { ScheduleKind } from '../optim/index.js';
import { Gpt2Tokenizer } from '../tokenizer/index.js';
import { findCheckpoint, readTrainerState } from '../train/checkpoint.js';
import { type TrainingSettings, tokensPerStep, validateSettings } from '../train/settings.js';
import { train } from '../train/trainer.js';
import { INTERRUPTED_EXIT_CODE, withInterruptHandling } from './interrupt.js';
import { createModel, type Architecture, type LanguageModel } from './model-folder.js';
import { createOutputFolder } from './output-folder.js';
import { loadCheckpointModel, resumedSettings, scheduleSpan, scheduleTailNote } from './pretrain-resume.js';

/** Parsed options of `rwkvify pretrain`. */
export interface PretrainOptions {
  arch: Architecture;
  data: string[];
  out: string;
  preset: string;
  steps: number;
  batchSize: number;
  seqLen: number;
  gradAccum: number;
  lr: number;
  minLr?: number;
  warmup: number;
  schedule: ScheduleKind;
  weightDecay: number;
  gradClip: number;
  evalEvery: number;
  evalBatches: number;
  saveEvery: number;
  logEvery: number;
  seed: number;
  valFraction: number;
  extensions: string[];
  resume: boolean;
}

export { INTERRUPTED_EXIT_CODE } from './interrupt.js';

function settingsFromOptions(options: PretrainOptions): TrainingSettings {
  return {
    steps: options.steps,
    scheduleSteps: options.steps,
    batchSize: options.batchSize,
    seqLen: options.seqLen,
    gradAccum: options.gradAccum,
    lr: options.lr,
    minLr: options.minLr ?? options.lr / 10,
    warmup: options.warmup,
    schedule: options.schedule,
    weightDecay: options.weightDecay,
    gradClip: options.gradClip,
    betas: [0.9, 0.95],
    logEvery: options.logEvery,
    evalEvery: options.evalEvery,
    evalBatches: options.evalBatches,
    saveEvery: options.saveEvery,
    seed: options.seed,
    valFraction: options.valFraction,
  };
}

// ---------------------------------------------------------------------------------------------------
// Printing

function countSteps(count: number): string {
  return count === 1 ? '1 step' : `${count} steps`;
}

function printTable(title: string, rows: ReadonlyArray<readonly [string, string]>): void {
  const width = Math.max(...rows.map(([name]) => name.length));
  console.log(title);
  for (const [name, value] of rows) console.log(`  ${name.padEnd(width)}  ${value}`);
}

function describeSplit(corpus: TokenCorpus, split: DataSplit): string {
  const trainTokens = split.train.end - split.train.start;
  const heldTokens = split.validation.end - split.validation.start;
  const held = split.unit === 'documents' ? `${split.validationDocuments} of ${corpus.documentStarts.length} documents` : 'the token tail of a single document';
  return `${trainTokens.toLocaleString('en-US')} training tokens | ${heldTokens.toLocaleString('en-US')} held-out tokens (${held})`;
}

function describeSchedule(s: TrainingSettings): string {
  const span = scheduleSpan(s);
  const shape = span < s.steps ? `${s.schedule} over the first ${countSteps(span)}, then constant` : s.schedule;
  return `${s.lr.toExponential(1)} → ${s.minLr.toExponential(1)} (${shape}), warm-up ${countSteps(s.warmup)}`;
}

function printSettings(options: PretrainOptions, preset: string, settings: TrainingSettings, model: LanguageModel, resumeStep: number | undefined): void {
  const s = settings;
  printTable('rwkvify pretrain', [
    ['arch', `${model.arch} (preset ${preset}, ${model.parameterCount().toLocaleString('en-US')} parameters)`],
    ['out', resolve(options.out)],
    ['start', resumeStep === undefined ? 'new run' : `resuming after step ${resumeStep}`],
    ['steps', String(s.steps)],
    ['batch', `${s.batchSize} sequences × ${s.seqLen} tokens × ${s.gradAccum} accumulation = ${tokensPerStep(s).toLocaleString('en-US')} tokens/step`],
    ['learning rate', describeSchedule(s)],
    ['AdamW', `betas (${s.betas.join(', ')}), weight decay ${s.weightDecay} on 2-D weights, grad clip ${s.gradClip === 0 ? 'off' : s.gradClip}`],
    ['log', `every ${countSteps(s.logEvery)}`],
    ['evaluation', `${s.evalEvery === 0 ? 'at the end' : `every ${countSteps(s.evalEvery)}`}, on at most ${s.evalBatches} held-out batch(es)`],
    ['checkpoints', s.saveEvery === 0 ? 'at the end' : `every ${countSteps(s.saveEvery)} and at the end`],
    ['seed', String(s.seed)],
    ['backend', describeBackendChoice().replace(/^backend: /, '')],
    ['held-out fraction', String(s.valFraction)],
  ]);
}

// ---------------------------------------------------------------------------------------------------
// Command

/** Runs `rwkvify pretrain`; returns the exit code. `explicit` names the options given on the command line. */
export async function runPretrain(options: PretrainOptions, explicit: ReadonlySet<string>): Promise<number> {
  const outDir = createOutputFolder(options.out);
  const existing = findCheckpoint(outDir);

  let model: LanguageModel;
  let tokenizer: Gpt2Tokenizer;
  let settings: TrainingSettings;
  let resumeFrom: string | undefined;
  let resumeStep: number | undefined;
  let preset = options.preset;
  let savedCorpusTokens: unknown;

  if (options.resume) {
    if (existing === undefined) throw new InputError(`--resume: "${outDir}" has no checkpoint (no model/trainer-state.json); run without --resume to start`);
    const state = readTrainerState(existing);
    if (state.model.arch !== options.arch) {
      throw new InputError(`--resume: the checkpoint in "${existing}" is a ${state.model.arch} model, but --arch is ${options.arch}`);
    }
    settings = resumedSettings(state, settingsFromOptions(options), explicit);
    preset = typeof state.args.preset === 'string' ? state.args.preset : options.preset;
    if (explicit.has('preset') && options.preset !== preset) {
      throw new InputError(`--resume: the checkpoint in "${existing}" uses preset ${preset}, but --preset is ${options.preset}`);
    }
    savedCorpusTokens = state.args.corpusTokens;
    const loaded = loadCheckpointModel(existing, state, outDir);
    model = loaded.model;
    tokenizer = loaded.tokenizer;
    resumeFrom = existing;
    resumeStep = state.step;
  } else {
    if (existing !== undefined) {
      const step = readTrainerState(existing).step;
      throw new InputError(`"${outDir}" already has a checkpoint (step ${step}); pass --resume to continue it, or choose another --out`);
    }
    settings = settingsFromOptions(options);
    validateSettings(settings);
    model = createModel(options.arch, options.preset, options.seed);
    tokenizer = Gpt2Tokenizer.bundled();
  }

  if (settings.seqLen > model.maxSequenceLength) {
    throw new InputError(`--seq-len ${settings.seqLen} exceeds the ${model.maxSequenceLength} positions of this ${model.arch} preset; pass --seq-len ${model.maxSequenceLength} or less`);
  }
  printSettings(options, preset, settings, model, resumeStep);
  const tailNote = scheduleTailNote(settings);
  if (tailNote !== undefined) process.stderr.write(`${tailNote}\n`);

  const B = settings.batchSize;
  const T = settings.seqLen;
  const corpus = loadTokenCorpus({
    paths: options.data,
    outDir,
    tokenizer,
    extensions: options.extensions,
    requiredTokens: B * (T + 1),
    log: (line) => console.log(line),
  });
  const bytes = corpus.files.reduce((sum, file) => sum + file.size, 0);
  if (savedCorpusTokens !== undefined && savedCorpusTokens !== corpus.tokens.length) {
    process.stderr.write(
      `warning: the corpus has ${corpus.tokens.length} tokens but had ${String(savedCorpusTokens)} when the checkpoint was written; ` +
        'the resumed run will not draw the batches an uninterrupted run would have drawn\n',
    );
  }
  const split = splitHeldOut(corpus.tokens.length, corpus.documentStarts, settings.valFraction);
  console.log(`data: ${corpus.files.length} file(s), ${formatBytes(bytes)}, ${corpus.tokens.length.toLocaleString('en-US')} tokens: ${describeSplit(corpus, split)}`);

  // The sampler gets its own seed so its stream does not depend on how many numbers the
  // initialisation drew from the model's generator.
  const sampler = new BatchSampler(corpus.tokens, split.train, B, T, settings.seed + 1);
  const heldOut = heldOutBatches(corpus.tokens, split.validation, B, T, settings.evalBatches);

  return withInterruptHandling(
    {
      first: 'Ctrl-C: saving a checkpoint after the current step (press Ctrl-C again to exit without saving)',
      second: 'second Ctrl-C: exiting now; the last checkpoint on disk is unchanged',
    },
    async (stopRequested) => {
      const result = await train({
        model,
        settings,
        sampler,
        heldOut,
        outDir,
        saveModel: (dir) => model.save(dir, tokenizer),
        modelInfo: { arch: model.arch, config: model.configJson },
        args: { ...options, preset, corpusTokens: corpus.tokens.length, backend: describeBackendChoice() },
        resumeFrom,
        stopRequested,
      });
      if (result.interrupted) {
        console.log(`interrupted after step ${result.step}; checkpoint saved in ${result.checkpoint}`);
        console.log(`continue with the same command plus --resume`);
        return INTERRUPTED_EXIT_CODE;
      }
      console.log(`done: ${result.step} steps; model saved in ${result.checkpoint}`);
      console.log(`try: rwkvify generate --model ${result.checkpoint} --prompt "Once upon a time"`);
      return 0;
    },
  );
}
