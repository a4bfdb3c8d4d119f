// Per-stage settings of a distillation run, with defaults sized for a small teacher (the tiny and
// small GPT-2 presets, contexts of 64 tokens) on a CPU. For GPT-2 124M the published recipes use
// far more: stage 1 about 20–100M tokens at 512–1024 tokens per sequence, stage 2 100–500M.
import { InputError } from '../data/input-error.js';
import type { ScheduleKind } from '../optim/index.js';
import type { TrainingSettings } from '../train/settings.js';

export type StageNumber = 1 | 2 | 3;
export const STAGE_NUMBERS: readonly StageNumber[] = [1, 2, 3];

/** Titles of the stages for headers and errors. */
export const STAGE_TITLES: Readonly<Record<StageNumber, string>> = {
  1: 'attention alignment (teacher-forced, time-mix parameters only)',
  2: 'logit distillation (KL teacher → student, full vocabulary)',
  3: 'fine-tuning (weighted KL + cross-entropy)',
};

/** Name of the loss in log lines: `stage 2 | step 120/600 | kl 1.2340 | …`. */
export const STAGE_LOSS_NAMES: Readonly<Record<StageNumber, string>> = { 1: 'align', 2: 'kl', 3: 'loss' };

export interface StageSettings {
  /** Training tokens; the step count is ⌈tokens / (batch · seqLen)⌉. */
  tokens: number;
  seqLen: number;
  batchSize: number;
  /** Peak learning rate after warm-up. */
  lr: number;
  /** Learning rate at the end of the schedule. */
  minLr: number;
  schedule: ScheduleKind;
  /** Decoupled AdamW weight decay on 2-D weights. */
  weightDecay: number;
  /** Maximum global gradient L2 norm; 0 turns clipping off. */
  gradClip: number;
}

/**
 * Stage 1 uses LR 1e-3 → 1e-5 quarter-cosine and no weight decay, as RADLADS' stage 1 does.
 * Stage 2 uses 3e-4 → 1e-5 exponential, ARWKV's schedule with a higher peak than its 1e-4
 * because the model is small. Stage 3 uses a constant 1e-5 (RADLADS uses 7e-6).
 */
export const DEFAULT_STAGE_SETTINGS: Readonly<Record<StageNumber, Readonly<StageSettings>>> = {
  1: { tokens: 100_000, seqLen: 64, batchSize: 8, lr: 1e-3, minLr: 1e-5, schedule: 'quarter-cosine', weightDecay: 0, gradClip: 1 },
  2: { tokens: 200_000, seqLen: 64, batchSize: 8, lr: 3e-4, minLr: 1e-5, schedule: 'exponential', weightDecay: 0, gradClip: 1 },
  3: { tokens: 100_000, seqLen: 64, batchSize: 8, lr: 1e-5, minLr: 1e-5, schedule: 'constant', weightDecay: 0, gradClip: 1 },
};

/** Steps that --quick runs per stage, with at most 2 sequences of 32 tokens per batch. */
export const QUICK_STEPS = 3;

/** Run-wide settings shared by every stage. */
export interface CommonSettings {
  seed: number;
  valFraction: number;
  logEvery: number;
  saveEvery: number;
  evalBatches: number;
  /** Maximum warm-up steps; each stage uses min(this, ⌊steps / 10⌋). */
  warmup: number;
}

export const DEFAULT_COMMON_SETTINGS: Readonly<CommonSettings> = {
  seed: 1337,
  valFraction: 0.05,
  logEvery: 10,
  saveEvery: 100,
  evalBatches: 4,
  warmup: 50,
};

/** Steps of a stage: enough batches to cover its token budget. */
export function stageSteps(settings: StageSettings): number {
  return Math.max(1, Math.ceil(settings.tokens / (settings.batchSize * settings.seqLen)));
}

/** Shrinks a stage to a few small steps for --quick smoke runs. */
export function quickStage(settings: StageSettings): StageSettings {
  const batchSize = Math.min(settings.batchSize, 2);
  const seqLen = Math.min(settings.seqLen, 32);
  return { ...settings, batchSize, seqLen, tokens: QUICK_STEPS * batchSize * seqLen };
}

/** Converts a stage's settings to the trainer's, with the warm-up capped at a tenth of the steps. */
export function trainingSettings(stage: StageSettings, common: CommonSettings): TrainingSettings {
  const steps = stageSteps(stage);
  return {
    steps,
    batchSize: stage.batchSize,
    seqLen: stage.seqLen,
    gradAccum: 1,
    lr: stage.lr,
    minLr: Math.min(stage.minLr, stage.lr),
    warmup: Math.min(common.warmup, Math.floor(steps / 10)),
    schedule: stage.schedule,
    weightDecay: stage.weightDecay,
    gradClip: stage.gradClip,
    betas: [0.9, 0.95],
    logEvery: common.logEvery,
    evalEvery: 0,
    evalBatches: common.evalBatches,
    saveEvery: common.saveEvery,
    seed: common.seed,
    valFraction: common.valFraction,
  };
}

/** Parses a stage list such as "1,2" or "2,3" into sorted unique stage numbers. */
export function parseStageList(value: string): StageNumber[] {
  const parts = value.split(',').map((part) => part.trim()).filter((part) => part.length > 0);
  const stages = new Set<StageNumber>();
  for (const part of parts) {
    const n = Number(part);
    if (n !== 1 && n !== 2 && n !== 3) throw new InputError(`--stages: "${part}" is not a stage; use a comma-separated list of 1, 2 and 3 such as "1,2"`);
    stages.add(n);
  }
  if (stages.size === 0) throw new InputError('--stages: no stage given; use a comma-separated list of 1, 2 and 3 such as "1,2"');
  return [...stages].sort();
}
