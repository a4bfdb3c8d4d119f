// Settings of `rwkvify demo`: token budgets of the distillation stages and the from-scratch
// baseline, evaluation sizes and speed contexts, and the hash that ties saved results to them.
//
// Budget of the full demo (target: at most 10 minutes on a 2-core laptop). The bundled teacher is
// the GPT-2 small preset (C 128, 4 layers, 50,257-token vocabulary). One full `rwkvify demo` with
// it on this project's 2-core build machine (AMD EPYC, cores otherwise idle) took 5 min 49 s:
//   stage 1  16,384 tokens (32 steps of 4 × 128) at ~735 tok/s, time-mix parameters only   22 s
//   stage 2  20,480 tokens (40 steps of 4 × 128) at ~305 tok/s, teacher + student + KL     68 s
//   baseline 36,864 tokens (the student's total) at ~295 tok/s                            140 s
//   eval     2 × 4,096 scored tokens × 3 models, positions beyond the limit               100 s
//   speed    contexts 256, 1024 and 4096, 8 timed tokens each                              11 s
// The 50,257 × 128 output layer dominates every step of stage 2 and of the baseline, so the
// student trains on only ~37,000 tokens. That run met both goals (student held-out perplexity 525
// against the teacher's 456 and the from-scratch baseline's 1,460); a slower machine takes
// proportionally longer.
import { createHash } from 'node:crypto';

import { DEFAULT_COMMON_SETTINGS, DEFAULT_STAGE_SETTINGS, quickStage, STAGE_NUMBERS, trainingSettings, type CommonSettings, type StageNumber, type StageSettings } from '../distill/settings.js';
import type { PositionMode } from '../models/student/index.js';
import type { TrainingSettings } from '../train/settings.js';

// Stage-2 recipe, from runs of 8,192 stage-1 and 8,192 stage-2 tokens on a briefly trained teacher
// (the small preset after 300 pretraining steps). Held-out KL after stage 2, lower is better: lr 1e-3 0.238, 3e-4 0.069, 1e-4 0.052, 3e-5 0.057; with the
// embeddings frozen, 3e-4 0.071 and 1e-4 0.052 at about 25 % more tokens per second.

/** Peak learning rate of the demo's stage 2. */
export const DEMO_STAGE2_LR = 1e-4;

/** Whether the demo freezes wte (and so the tied head) and wpe after stage 1. */
export const DEMO_FREEZE_EMBEDDINGS = true;

/** Token budgets and batch shapes of the full demo's stages. */
export const DEMO_STAGE_SETTINGS: Readonly<Record<StageNumber, Readonly<StageSettings>>> = {
  1: { ...DEFAULT_STAGE_SETTINGS[1], tokens: 16_384, seqLen: 128, batchSize: 4 },
  2: { ...DEFAULT_STAGE_SETTINGS[2], tokens: 20_480, seqLen: 128, batchSize: 4, lr: DEMO_STAGE2_LR },
  3: { ...DEFAULT_STAGE_SETTINGS[3], tokens: 8_192, seqLen: 128, batchSize: 4 },
};

/** Everything that decides the demo's results; a change makes earlier results stale. */
export interface DemoSettings {
  quick: boolean;
  stages: StageNumber[];
  positions: PositionMode;
  /** SHA-256 of the teacher's config.json and weights. */
  teacherHash: string;
  /** The teacher's n_positions, which caps the training sequence length. */
  teacherPositions: number;
  seed: number;
  /** Training documents read by distillation and the baseline; null reads all of them. */
  trainDocuments: number | null;
  /** Documents read from each test set; null reads all of them. */
  testDocuments: number | null;
  /** Maximum tokens scored per test set. */
  evalTokens: number;
  /** Context lengths of the generation-speed measurement. */
  contexts: number[];
  /** Tokens generated per speed measurement. */
  timingTokens: number;
  /** Tokens generated per sample. */
  sampleTokens: number;
  /** Keeps wte (and so the tied head) and wpe frozen in stages 2 and 3. */
  freezeEmbeddings: boolean;
}

/** Stage settings in the trainer's form, as the distillation will run them. */
export function demoStageTrainingSettings(settings: DemoSettings): Record<StageNumber, TrainingSettings> {
  const result = {} as Record<StageNumber, TrainingSettings>;
  const stages = demoStageSettings(settings);
  for (const stage of settings.stages) {
    result[stage] = trainingSettings(settings.quick ? quickStage(stages[stage]) : stages[stage], demoCommonSettings(settings));
  }
  return result;
}

/** Returns the demo's stage settings with sequences cut to the teacher's n_positions, which a distillation batch cannot exceed. */
export function demoStageSettings(settings: DemoSettings): Record<StageNumber, StageSettings> {
  const result = {} as Record<StageNumber, StageSettings>;
  for (const stage of STAGE_NUMBERS) {
    const base = DEMO_STAGE_SETTINGS[stage];
    result[stage] = { ...base, seqLen: Math.min(base.seqLen, settings.teacherPositions) };
  }
  return result;
}

export function demoCommonSettings(settings: DemoSettings): CommonSettings {
  return { ...DEFAULT_COMMON_SETTINGS, seed: settings.seed, evalBatches: settings.quick ? 1 : 2, logEvery: settings.quick ? 1 : 10, saveEvery: settings.quick ? 0 : 20 };
}

/** Tokens the student trains on over all requested stages: the baseline gets the same number. */
export function studentTrainingTokens(settings: DemoSettings): number {
  return Object.values(demoStageTrainingSettings(settings)).reduce((sum, s) => sum + s.steps * s.batchSize * s.seqLen, 0);
}

/** Returns the settings of a full or quick demo; quick runs the distill command's --quick steps per stage on a few documents. */
export function demoSettings(options: { quick: boolean; stages: StageNumber[]; positions: PositionMode; teacherHash: string; teacherPositions: number; seed: number }): DemoSettings {
  const quick = options.quick;
  return {
    ...options,
    trainDocuments: quick ? 12 : null,
    testDocuments: quick ? 3 : null,
    evalTokens: quick ? 256 : 4_096,
    contexts: quick ? [32, 128, 256] : [256, 1_024, 4_096],
    timingTokens: quick ? 2 : 8,
    sampleTokens: quick ? 4 : 24,
    freezeEmbeddings: DEMO_FREEZE_EMBEDDINGS,
  };
}

/** Returns a short hex digest of the settings, stored with every saved result. */
export function settingsHash(settings: DemoSettings): string {
  return createHash('sha256').update(JSON.stringify(settings)).digest('hex').slice(0, 16);
}

/** Names of the settings that differ between two runs, for the mismatch message. */
export function changedSettings(previous: DemoSettings, current: DemoSettings): string[] {
  const keys = Object.keys(current) as Array<keyof DemoSettings>;
  return keys.filter((key) => JSON.stringify(previous[key]) !== JSON.stringify(current[key]));
}
