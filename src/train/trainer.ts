// The training loop, generic over any model with a next-token loss: AdamW with decay on matrices
// only, gradient clipping, warm-up + decay schedule, gradient accumulation, held-out evaluation,
// atomic checkpoints and exact resumption.
//
// Exact resumption: a checkpoint stores bit-exact copies of everything a step depends on (weights,
// AdamW moments and step count, sampler generator). The loop itself is deterministic, so a run
// stopped after step k and resumed logs the same losses as a run that never stopped.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

import type { Batch, BatchSampler } from '../data/dataset.js';
import { AdamW, clipGradNorm, learningRate, type ParamGroup } from '../optim/index.js';
import { noGrad } from '../autograd/index.js';
import type { Tensor } from '../tensor/index.js';
import { type TrainerState, readTrainerState, restoreOptimizer, writeCheckpoint } from './checkpoint.js';
import { formatEvalLine, formatStepLine, MetricsFile, Progress, type ProgressStream } from './report.js';
import { type TrainingSettings, tokensPerStep, validateSettings } from './settings.js';

/** The model interface the trainer uses. Ids and targets are row-major (B, T). */
export interface TrainableModel {
  loss(ids: Int32Array, targets: Int32Array, B: number, T: number): Tensor;
  parameters(): Tensor[];
  namedParameters(): Array<[string, Tensor]>;
  /** Switches training mode (true) or evaluation mode (false), when the model has one. */
  train?(flag?: boolean): unknown;
}

export interface TrainerOptions {
  model: TrainableModel;
  settings: TrainingSettings;
  sampler: BatchSampler;
  /** Fixed held-out batches; [] turns evaluation off. */
  heldOut: readonly Batch[];
  /** Run folder: receives metrics.jsonl and the checkpoint folder `model/`. */
  outDir: string;
  /** Writes a complete model folder (config.json, weights, tokenizer) into the given folder. */
  saveModel: (dir: string) => void;
  /** Architecture name and configuration, stored in trainer-state.json. */
  modelInfo: { arch: string; config: unknown };
  /** Command-line arguments, stored in trainer-state.json. */
  args: Record<string, unknown>;
  /** Checkpoint folder to continue from; the model must already hold its weights. */
  resumeFrom?: string;
  /** Receives each log line (default: stdout). */
  log?: (line: string) => void;
  /** Progress display target (default: stderr). */
  progress?: ProgressStream;
  /** Polled between steps; when it returns true the trainer saves a checkpoint and stops. */
  stopRequested?: () => boolean;
  /** Clock in milliseconds (default performance.now), replaceable in tests. */
  now?: () => number;
}

export interface TrainResult {
  /** Optimizer steps completed. */
  step: number;
  /** True when `stopRequested` stopped the run before the last step. */
  interrupted: boolean;
  /** Folder of the last checkpoint written. */
  checkpoint: string;
  /** Mean loss of the last step, or NaN when no step ran. */
  lastLoss: number;
  /** Held-out loss of the last evaluation, when one ran. */
  lastValLoss?: number;
}

/**
 * A non-finite loss or gradient norm. Nothing is saved for the failing step, so the last
 * checkpoint on disk is the last good state.
 */
export class TrainingDivergedError extends Error {
  override readonly name = 'TrainingDivergedError';
}

/** Steps at the start of a run (or resume) left out of the tok/s figure: they include warm-up costs. */
const SETTLE_STEPS = 2;

/** Splits parameters into a decayed group (2-D and larger: matrices, embeddings) and the rest. */
export function parameterGroups(named: ReadonlyArray<readonly [string, Tensor]>, settings: TrainingSettings): { groups: ParamGroup[]; order: Array<[string, Tensor]> } {
  const decayed = named.filter(([, p]) => p.rank >= 2);
  const plain = named.filter(([, p]) => p.rank < 2);
  const groups: ParamGroup[] = [
    { params: decayed.map(([, p]) => p), lr: settings.lr, weightDecay: settings.weightDecay },
    { params: plain.map(([, p]) => p), lr: settings.lr, weightDecay: 0 },
  ];
  return { groups, order: [...decayed, ...plain].map(([name, p]) => [name, p]) };
}

/** Returns the mean held-out loss over all tokens of `batches`, without recording a graph. */
export function evaluate(model: TrainableModel, batches: readonly Batch[]): number {
  model.train?.(false);
  try {
    let total = 0;
    let count = 0;
    noGrad(() => {
      for (const batch of batches) {
        const tokens = batch.B * batch.T;
        total += model.loss(batch.ids, batch.targets, batch.B, batch.T).item() * tokens;
        count += tokens;
      }
    });
    return total / count;
  } finally {
    model.train?.(true);
  }
}

/** Lets pending events (a SIGINT handler) run between steps. */
function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Runs one optimizer step: gradients of `gradAccum` micro-batches (each loss scaled by
 * 1/gradAccum), clipping, then the AdamW update. Returns the mean loss and the gradient norm
 * before clipping. A non-finite loss or norm throws before the weights change.
 */
function optimizerStep(
  model: TrainableModel,
  sampler: BatchSampler,
  optimizer: AdamW,
  parameters: readonly Tensor[],
  settings: TrainingSettings,
  stepNumber: number,
  lastCheckpoint: string,
): { loss: number; gradNorm: number } {
  optimizer.zeroGrad();
  let lossSum = 0;
  for (let micro = 0; micro < settings.gradAccum; micro++) {
    const batch = sampler.next();
    const loss = model.loss(batch.ids, batch.targets, batch.B, batch.T); // scalar
    const value = loss.item();
    if (!Number.isFinite(value)) throw divergedError(stepNumber, 'loss', value, lastCheckpoint);
    if (settings.gradAccum === 1) loss.backward();
    else loss.mul(1 / settings.gradAccum).backward();
    lossSum += value;
  }

  // With clipping off, an infinite limit still measures the norm, so a NaN gradient stops the run
  // before it reaches the weights.
  const gradNorm = clipGradNorm(parameters, settings.gradClip > 0 ? settings.gradClip : Infinity);
  if (!Number.isFinite(gradNorm)) throw divergedError(stepNumber, 'gradient norm', gradNorm, lastCheckpoint);
  optimizer.step();
  return { loss: lossSum / settings.gradAccum, gradNorm };
}

/** Runs the training loop; see the file header for what it does and saves. */
export async function train(options: TrainerOptions): Promise<TrainResult> {
  const { model, settings, sampler, outDir } = options;
  validateSettings(settings);
  if (sampler.B !== settings.batchSize || sampler.T !== settings.seqLen) {
    throw new Error(`train: the sampler draws ${sampler.B}×${sampler.T} batches but the settings say batchSize ${settings.batchSize}, seqLen ${settings.seqLen}`);
  }
  const log = options.log ?? ((line: string): void => void process.stdout.write(line + '\n'));
  const now = options.now ?? ((): number => performance.now());
  const stepTokens = tokensPerStep(settings);
  // Past the schedule's span the schedule returns its final rate (see TrainingSettings.scheduleSteps).
  const scheduleSteps = settings.scheduleSteps ?? settings.steps;
  mkdirSync(outDir, { recursive: true });

  const { groups, order } = parameterGroups(model.namedParameters(), settings);
  const optimizer = new AdamW(groups, { betas: settings.betas, eps: 1e-8 });
  const parameters = order.map(([, p]) => p);
  const metrics = new MetricsFile(join(outDir, 'metrics.jsonl'));

  let startStep = 0;
  if (options.resumeFrom !== undefined) {
    const state = readTrainerState(options.resumeFrom);
    restoreOptimizer(options.resumeFrom, state, optimizer, order);
    sampler.setState(state.sampler);
    startStep = state.step;
  }
  // A fresh run drops every record, left over from an attempt that ended before its first checkpoint.
  metrics.truncateAfter(startStep);

  const progress = new Progress(options.progress ?? process.stderr, settings.steps, startStep, now);
  const emit = (line: string): void => {
    progress.clear();
    log(line);
  };

  let lastCheckpoint = options.resumeFrom ?? '';
  const saveCheckpoint = (step: number): void => {
    const state: Omit<TrainerState, 'format' | 'savedAt' | 'optimizer'> = {
      step,
      tokensSeen: step * stepTokens,
      settings,
      model: options.modelInfo,
      args: options.args,
      sampler: sampler.getState(),
    };
    lastCheckpoint = writeCheckpoint(outDir, { state, optimizer, parameterNames: order.map(([name]) => name), saveModel: options.saveModel });
  };

  const runEvaluation = (step: number): number => {
    const valLoss = evaluate(model, options.heldOut);
    emit(formatEvalLine(step, valLoss));
    metrics.append({ kind: 'eval', step, valLoss, valPerplexity: Math.exp(valLoss), time: new Date().toISOString() });
    return valLoss;
  };

  let lastLoss = Number.NaN;
  let lastValLoss: number | undefined;
  // Throughput of the current log interval, counting only steps after the settle period.
  let intervalTokens = 0;
  let intervalMs = 0;

  for (let step = startStep; step < settings.steps; step++) {
    await yieldToEventLoop();
    if (options.stopRequested?.() === true) {
      progress.clear();
      saveCheckpoint(step);
      return { step, interrupted: true, checkpoint: lastCheckpoint, lastLoss, lastValLoss };
    }

    const stepNumber = step + 1; // steps completed once this one finishes
    const started = now();
    const lr = learningRate(step, { kind: settings.schedule, lr0: settings.lr, lr1: settings.minLr, warmupSteps: settings.warmup, totalSteps: scheduleSteps });
    for (const group of groups) group.lr = lr;

    const { loss, gradNorm } = optimizerStep(model, sampler, optimizer, parameters, settings, stepNumber, lastCheckpoint);
    const elapsed = now() - started;

    lastLoss = loss;
    if (step - startStep >= SETTLE_STEPS) {
      intervalTokens += stepTokens;
      intervalMs += elapsed;
    }

    const isLast = stepNumber === settings.steps;
    // Step 1 is always logged, but the first step after a resume is not, so that a resumed run
    // logs exactly the lines the uninterrupted run would have.
    if (stepNumber % settings.logEvery === 0 || isLast || stepNumber === 1) {
      const rate = intervalMs > 0 ? (intervalTokens * 1000) / intervalMs : null;
      emit(formatStepLine(stepNumber, settings.steps, lastLoss, lr, rate));
      progress.line(stepNumber);
      metrics.append({ kind: 'train', step: stepNumber, loss: lastLoss, lr, gradNorm, tokens: stepNumber * stepTokens, tokensPerSecond: rate, time: new Date().toISOString() });
      intervalTokens = 0;
      intervalMs = 0;
    }
    progress.update(stepNumber);

    const evalDue = settings.evalEvery > 0 && stepNumber % settings.evalEvery === 0;
    if (options.heldOut.length > 0 && (evalDue || isLast)) lastValLoss = runEvaluation(stepNumber);
    if (settings.saveEvery > 0 && stepNumber % settings.saveEvery === 0 && !isLast) saveCheckpoint(stepNumber);
  }

  progress.clear();
  const finalStep = Math.max(startStep, settings.steps);
  if (finalStep > startStep || options.resumeFrom === undefined) saveCheckpoint(finalStep);
  return { step: finalStep, interrupted: false, checkpoint: lastCheckpoint, lastLoss, lastValLoss };
}

function divergedError(step: number, what: string, value: number, checkpoint: string): TrainingDivergedError {
  const kept = checkpoint === '' ? 'no checkpoint was written yet' : `the last good checkpoint is "${checkpoint}"`;
  return new TrainingDivergedError(
    `training stopped at step ${step}: the ${what} is ${value}; ${kept}. ` +
      'Lower --lr or raise --warmup, then continue with --resume or start again.',
  );
}
