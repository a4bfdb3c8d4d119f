// Training settings: one typed object with commented defaults, saved in every checkpoint.

import type { ScheduleKind } from '../optim/index.js';
import { InputError } from '../data/input-error.js';

export interface TrainingSettings {
  /** Optimizer steps to run in total. */
  steps: number;
  /**
   * Steps the learning-rate schedule spans (default: `steps`). A run extended on resume keeps its
   * schedule, and its steps past this span run at the schedule's final rate.
   */
  scheduleSteps?: number;
  /** B, sequences per micro-batch. */
  batchSize: number;
  /** T, tokens per sequence. */
  seqLen: number;
  /** Micro-batches whose gradients are summed (and averaged) before each optimizer step. */
  gradAccum: number;
  /** Peak learning rate, reached at the end of warm-up. */
  lr: number;
  /** Learning rate at the end of the decay. */
  minLr: number;
  /** Steps of linear warm-up from 1% of `lr`. */
  warmup: number;
  schedule: ScheduleKind;
  /** Decoupled AdamW weight decay, applied only to parameters with 2 or more dimensions. */
  weightDecay: number;
  /** Maximum global gradient L2 norm; 0 turns clipping off. */
  gradClip: number;
  /** AdamW β1, β2. */
  betas: [number, number];
  /** Optimizer steps between log lines. */
  logEvery: number;
  /** Optimizer steps between held-out evaluations; 0 evaluates only at the end. */
  evalEvery: number;
  /** Maximum held-out batches per evaluation. */
  evalBatches: number;
  /** Optimizer steps between checkpoints; 0 saves only at the end. */
  saveEvery: number;
  /** Seed of the batch sampler, an integer in [0, MAX_SEED]. */
  seed: number;
  /** Fraction of documents held out for evaluation. */
  valFraction: number;
}

/**
 * Defaults in the range nanoGPT uses for small models: AdamW β = (0.9, 0.95), weight decay 0.1,
 * clipping at 1.0, cosine decay to a tenth of the peak.
 */
export const DEFAULT_SETTINGS: Readonly<TrainingSettings> = Object.freeze({
  steps: 1000,
  batchSize: 8,
  seqLen: 64,
  gradAccum: 1,
  lr: 1e-3,
  minLr: 1e-4,
  warmup: 100,
  schedule: 'cosine',
  weightDecay: 0.1,
  gradClip: 1.0,
  betas: [0.9, 0.95] as [number, number],
  logEvery: 10,
  evalEvery: 200,
  evalBatches: 20,
  saveEvery: 500,
  seed: 1337,
  valFraction: 0.05,
});

/** Largest seed: seeds feed a 32-bit generator, so a larger value would wrap around to a smaller one. */
export const MAX_SEED = 2 ** 32 - 1;

/** Tokens one optimizer step consumes: gradAccum · B · T. */
export function tokensPerStep(settings: Pick<TrainingSettings, 'gradAccum' | 'batchSize' | 'seqLen'>): number {
  return settings.gradAccum * settings.batchSize * settings.seqLen;
}

/** Throws an InputError naming the first setting outside its valid range. */
export function validateSettings(settings: TrainingSettings): void {
  const positiveIntegers: Array<keyof TrainingSettings> = ['steps', 'batchSize', 'seqLen', 'gradAccum', 'logEvery', 'evalBatches'];
  for (const key of positiveIntegers) {
    const value = settings[key];
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
      throw new InputError(`settings: ${key} must be an integer ≥ 1, got ${String(value)}`);
    }
  }
  const nonNegativeIntegers: Array<keyof TrainingSettings> = ['warmup', 'evalEvery', 'saveEvery', 'seed'];
  for (const key of nonNegativeIntegers) {
    const value = settings[key];
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
      throw new InputError(`settings: ${key} must be an integer ≥ 0, got ${String(value)}`);
    }
  }
  const nonNegativeNumbers: Array<keyof TrainingSettings> = ['lr', 'minLr', 'weightDecay', 'gradClip'];
  for (const key of nonNegativeNumbers) {
    const value = settings[key];
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
      throw new InputError(`settings: ${key} must be a finite number ≥ 0, got ${String(value)}`);
    }
  }
  if (settings.seed > MAX_SEED) {
    throw new InputError(`settings: seed must be an integer in [0, ${MAX_SEED}], got ${settings.seed}`);
  }
  const span = settings.scheduleSteps;
  if (span !== undefined && (!Number.isInteger(span) || span < 1 || span > settings.steps)) {
    throw new InputError(`settings: scheduleSteps must be an integer in [1, steps = ${settings.steps}], got ${String(span)}`);
  }
  if (settings.minLr > settings.lr) {
    throw new InputError(`settings: minLr (${settings.minLr}) must not exceed lr (${settings.lr})`);
  }
  const [beta1, beta2] = settings.betas;
  if (!(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1)) {
    throw new InputError(`settings: betas must both be in [0, 1), got [${beta1}, ${beta2}]`);
  }
  if (!(settings.valFraction >= 0 && settings.valFraction < 1)) {
    throw new InputError(`settings: valFraction must be in [0, 1), got ${settings.valFraction}`);
  }
}
