// Trainer: exact resumption, stopping on a non-finite loss, parameter groups and log formats.
// Uses a real GPT-2 (Gpt2Model) shrunk to a 64-token vocabulary so each step takes milliseconds.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { BatchSampler, heldOutBatches, type TokenArray } from '../src/data/dataset.js';
import { InputError } from '../src/data/input-error.js';
import { Gpt2Model, loadGpt2Folder, saveGpt2Folder, type Gpt2Config } from '../src/models/gpt2/index.js';
import { loadRwkv7Safetensors, Rwkv7Model, saveRwkv7Safetensors } from '../src/models/rwkv7/index.js';
import { Rng, type Tensor } from '../src/tensor/index.js';
import { readTrainerState } from '../src/train/checkpoint.js';
import { MetricsFile, Progress, formatDuration, formatEvalLine, formatStepLine, type MetricsRecord } from '../src/train/report.js';
import { DEFAULT_SETTINGS, type TrainingSettings } from '../src/train/settings.js';
import { evaluate, parameterGroups, train, TrainingDivergedError, type TrainableModel, type TrainResult } from '../src/train/trainer.js';

const CONFIG: Gpt2Config = { nEmbd: 16, nLayer: 1, nHead: 2, nPositions: 16, vocabSize: 64, layerNormEpsilon: 1e-5, nInner: 32, activation: 'gelu_new' };
const B = 2;
const T = 8;

let root: string;
let tokens: TokenArray;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'rwkvify-train-'));
  // A learnable stream: mostly counting modulo 64, with some noise.
  const rng = new Rng(5);
  tokens = Uint16Array.from({ length: 2000 }, (_, i) => (rng.uniform() < 0.2 ? rng.int(64) : i % 64));
});

afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

function settings(overrides: Partial<TrainingSettings> = {}): TrainingSettings {
  return { ...DEFAULT_SETTINGS, steps: 6, batchSize: B, seqLen: T, lr: 3e-3, minLr: 3e-4, warmup: 2, logEvery: 1, evalEvery: 3, evalBatches: 2, saveEvery: 0, seed: 11, ...overrides };
}

interface RunOptions {
  outDir: string;
  model: TrainableModel & { namedParameters(): Array<[string, Tensor]> };
  settings: TrainingSettings;
  resumeFrom?: string;
  stopAfterSteps?: number;
  lines?: string[];
}

/** Runs the trainer on the fixed token stream, silencing output (lines are collected). */
async function run(options: RunOptions, saveSource: Gpt2Model | Rwkv7Model): Promise<TrainResult> {
  const lines = options.lines ?? [];
  const { batchSize, seqLen } = options.settings;
  const sampler = new BatchSampler(tokens, { start: 0, end: 1800 }, batchSize, seqLen, options.settings.seed + 1);
  const heldOut = heldOutBatches(tokens, { start: 1800, end: 2000 }, batchSize, seqLen, options.settings.evalBatches);
  let polls = 0;
  return train({
    model: options.model,
    settings: options.settings,
    sampler,
    heldOut,
    outDir: options.outDir,
    saveModel: (dir) => (saveSource instanceof Gpt2Model ? saveGpt2Folder(saveSource, dir) : saveRwkv7Safetensors(saveSource, join(dir, 'model.safetensors'))),
    modelInfo: { arch: 'gpt2', config: CONFIG },
    args: { test: true },
    resumeFrom: options.resumeFrom,
    log: (line) => lines.push(line),
    progress: { write: () => true, isTTY: false },
    // Polled once before each step, so returning true on poll k stops after k steps.
    stopRequested: () => options.stopAfterSteps !== undefined && polls++ >= options.stopAfterSteps,
  });
}

function freshModel(): Gpt2Model {
  return new Gpt2Model(CONFIG, { rng: new Rng(3) });
}

function records(outDir: string, kind: MetricsRecord['kind']): MetricsRecord[] {
  return new MetricsFile(join(outDir, 'metrics.jsonl')).read().filter((r) => r.kind === kind);
}

describe('trainer', () => {
  it('resumes with bitwise equal losses', async () => {
    const straight = join(root, 'straight');
    const straightModel = freshModel();
    const straightLines: string[] = [];
    const full = await run({ outDir: straight, model: straightModel, settings: settings(), lines: straightLines }, straightModel);
    expect(full.step).toBe(6);
    expect(full.interrupted).toBe(false);

    const split = join(root, 'split');
    const firstModel = freshModel();
    const half = await run({ outDir: split, model: firstModel, settings: settings(), stopAfterSteps: 3 }, firstModel);
    expect(half.interrupted).toBe(true);
    expect(half.step).toBe(3);
    expect(readTrainerState(half.checkpoint).step).toBe(3);

    const resumedModel = loadGpt2Folder(half.checkpoint);
    const resumedLines: string[] = [];
    const rest = await run({ outDir: split, model: resumedModel, settings: settings(), resumeFrom: half.checkpoint, lines: resumedLines }, resumedModel);
    expect(rest.step).toBe(6);

    const straightTrain = records(straight, 'train');
    const splitTrain = records(split, 'train');
    expect(splitTrain.map((r) => r.step)).toEqual([1, 2, 3, 4, 5, 6]);
    splitTrain.forEach((r, i) => {
      const reference = straightTrain[i];
      if (r.kind !== 'train' || reference.kind !== 'train') throw new Error(`expected train records at index ${i}`);
      expect(Object.is(r.loss, reference.loss), `loss of step ${r.step}`).toBe(true);
      expect(Object.is(r.lr, reference.lr), `lr of step ${r.step}`).toBe(true);
    });
    const straightEval = records(straight, 'eval').map((r) => (r.kind === 'eval' ? r.valLoss : NaN));
    const splitEval = records(split, 'eval').map((r) => (r.kind === 'eval' ? r.valLoss : NaN));
    expect(splitEval).toEqual(straightEval);
    expect(straightEval).toHaveLength(2);

    // The printed lines after the resume are the straight run's lines 4-6, apart from tok/s.
    const withoutRate = (line: string): string => line.replace(/\| [^|]* tok\/s$/, '');
    const straightAfter = straightLines.filter((l) => /^(step [456]\/|eval step 6)/.test(l)).map(withoutRate);
    expect(resumedLines.map(withoutRate)).toEqual(straightAfter);

    // Final weights are identical too.
    const a = straightModel.namedParameters();
    const b = resumedModel.namedParameters();
    a.forEach(([name, p], i) => expect(Buffer.from(b[i][1].data.buffer).equals(Buffer.from(p.data.buffer)), name).toBe(true));
  });

  it('resumes an RWKV-7 bitwise', async () => {
    const config = { nEmbd: 16, nLayer: 1, headSize: 8, vocabSize: 64 };
    const straightModel = new Rwkv7Model(config, { seed: 4 });
    const straight = join(root, 'rwkv-straight');
    await run({ outDir: straight, model: straightModel, settings: settings({ steps: 4, evalEvery: 0 }) }, straightModel);

    const split = join(root, 'rwkv-split');
    const firstModel = new Rwkv7Model(config, { seed: 4 });
    const half = await run({ outDir: split, model: firstModel, settings: settings({ steps: 4, evalEvery: 0 }), stopAfterSteps: 2 }, firstModel);
    expect(half.step).toBe(2);
    const resumedModel = loadRwkv7Safetensors(join(half.checkpoint, 'model.safetensors'));
    await run({ outDir: split, model: resumedModel, settings: settings({ steps: 4, evalEvery: 0 }), resumeFrom: half.checkpoint }, resumedModel);

    const losses = (dir: string): number[] => records(dir, 'train').map((r) => (r.kind === 'train' ? r.loss : NaN));
    const expected = losses(straight);
    expect(expected).toHaveLength(4);
    losses(split).forEach((loss, i) => expect(Object.is(loss, expected[i]), `loss of step ${i + 1}`).toBe(true));
  });

  it('learns the token stream', async () => {
    const model = freshModel();
    const outDir = join(root, 'learn');
    await run({ outDir, model, settings: settings({ steps: 40, evalEvery: 40, lr: 1e-2, minLr: 1e-3 }) }, model);
    const [evaluation] = records(outDir, 'eval');
    const [first] = records(outDir, 'train');
    if (first.kind !== 'train' || evaluation.kind !== 'eval') throw new Error('expected one train and one eval record');
    // ln(64) ≈ 4.16 is chance level; 40 steps on counting data get clearly below it.
    expect(first.loss).toBeGreaterThan(3.9);
    expect(evaluation.valLoss).toBeLessThan(3.9);
  });

  it('stops on NaN and keeps the checkpoint', async () => {
    const inner = freshModel();
    let calls = 0;
    const poisoned: TrainableModel = {
      // The 4th training loss (step 4) becomes NaN.
      loss: (ids, targets, b, t) => {
        const loss = inner.loss(ids, targets, b, t);
        calls++;
        return calls === 4 ? loss.mul(Number.NaN) : loss;
      },
      parameters: () => inner.parameters(),
      namedParameters: () => inner.namedParameters(),
    };
    const outDir = join(root, 'nan');
    const attempt = run({ outDir, model: poisoned as TrainableModel & { namedParameters(): Array<[string, Tensor]> }, settings: settings({ saveEvery: 2, evalEvery: 0 }) }, inner);
    await expect(attempt).rejects.toThrow(TrainingDivergedError);
    await expect(attempt).rejects.toThrow(/step 4: the loss is NaN/);
    await expect(attempt).rejects.toThrow(join(outDir, 'model'));
    expect(readTrainerState(join(outDir, 'model')).step).toBe(2);
    expect(existsSync(join(outDir, 'model', 'model.safetensors'))).toBe(true);
  });

  it('accumulates gradients like a bigger batch', async () => {
    const big = freshModel();
    const accumulated = freshModel();
    const bigDir = join(root, 'big');
    const accDir = join(root, 'acc');
    await run({ outDir: bigDir, model: big, settings: settings({ steps: 1, batchSize: 4, evalEvery: 0 }) }, big);
    // Two micro-batches of 2 rows draw the same windows, in the same order, as one batch of 4.
    await run({ outDir: accDir, model: accumulated, settings: settings({ steps: 1, batchSize: 2, gradAccum: 2, evalEvery: 0 }) }, accumulated);
    const [bigStep] = records(bigDir, 'train');
    const [accStep] = records(accDir, 'train');
    if (bigStep.kind !== 'train' || accStep.kind !== 'train') throw new Error('expected train records');
    expect(accStep.loss).toBeCloseTo(bigStep.loss, 5);
    // The norm is taken before clipping, so it checks the 1/accumulation scaling of the gradient.
    // Later steps are not compared: Adam's first update is lr·sign(g), so float rounding in
    // near-zero gradient entries flips whole updates.
    expect(accStep.gradNorm).toBeCloseTo(bigStep.gradNorm, 5);
  });

  it('decays only matrices', () => {
    const model = freshModel();
    const { groups, order } = parameterGroups(model.namedParameters(), settings({ weightDecay: 0.1 }));
    expect(groups[0].weightDecay).toBe(0.1);
    expect(groups[1].weightDecay).toBe(0);
    expect(groups[0].params.every((p) => p.rank >= 2)).toBe(true);
    expect(groups[1].params.every((p) => p.rank < 2)).toBe(true);
    const names = order.map(([name]) => name);
    expect(names).toContain('wte.weight');
    expect(names.indexOf('ln_f.bias')).toBeGreaterThan(names.indexOf('h.0.attn.c_attn.weight'));
    expect(order).toHaveLength(model.namedParameters().length);
  });

  it('evaluates without building a graph', () => {
    const model = freshModel();
    const batches = heldOutBatches(tokens, { start: 1800, end: 2000 }, B, T, 3);
    const loss = evaluate(model, batches);
    expect(loss).toBeGreaterThan(3.5);
    expect(model.parameters().every((p) => p.grad === null)).toBe(true);
  });

  it('extends a finished schedule at its final rate', async () => {
    const outDir = join(root, 'extended');
    const model = freshModel();
    const first = await run({ outDir, model, settings: settings({ steps: 4 }) }, model);
    expect(first.step).toBe(4);

    const resumed = loadGpt2Folder(first.checkpoint);
    const rest = await run({ outDir, model: resumed, settings: settings({ steps: 6, scheduleSteps: 4 }), resumeFrom: first.checkpoint }, resumed);
    expect(rest.step).toBe(6);
    const rates = records(outDir, 'train').map((r) => (r.kind === 'train' ? r.lr : NaN));
    expect(rates).toHaveLength(6);
    // Cosine from 3e-3 reaches --min-lr 3e-4 at step 4, the end of its span, and stays there.
    expect(rates[3]).toBe(3e-4);
    expect(rates[4]).toBe(3e-4);
    expect(rates[5]).toBe(3e-4);
    expect(rates[2]).toBeGreaterThan(3e-4);
  });

  it('rejects a schedule span beyond the steps', async () => {
    const model = freshModel();
    const failure = await run({ outDir: join(root, 'bad-span'), model, settings: settings({ steps: 4, scheduleSteps: 5 }) }, model).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(InputError);
    expect((failure as Error).message).toContain('scheduleSteps must be an integer in [1, steps = 4], got 5');
  });

  it('rejects seeds beyond 32 bits', async () => {
    const model = freshModel();
    const failure = await run({ outDir: join(root, 'bad-seed'), model, settings: settings({ seed: 2 ** 32 }) }, model).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(InputError);
    expect((failure as Error).message).toContain('seed must be an integer in [0, 4294967295], got 4294967296');
  });

  it('rejects optimizer moments of other parameters', async () => {
    const outDir = join(root, 'two-layers');
    const twoLayers = new Gpt2Model({ ...CONFIG, nLayer: 2 }, { rng: new Rng(3) });
    const first = await run({ outDir, model: twoLayers, settings: settings({ steps: 2 }) }, twoLayers);

    const oneLayer = freshModel();
    const failure = await run({ outDir, model: oneLayer, settings: settings({ steps: 4 }), resumeFrom: first.checkpoint }, oneLayer).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(InputError);
    expect((failure as Error).message).toMatch(/contains optimizer moments of \d+ parameter\(s\) that this run does not train, such as "h\.1\./);
  });

  it('writes the trainer state', async () => {
    const model = freshModel();
    const outDir = join(root, 'state');
    await run({ outDir, model, settings: settings({ steps: 2, evalEvery: 0 }) }, model);
    const state = JSON.parse(readFileSync(join(outDir, 'model', 'trainer-state.json'), 'utf8')) as Record<string, unknown>;
    expect(state.step).toBe(2);
    expect(state.tokensSeen).toBe(2 * B * T);
    expect((state.settings as TrainingSettings).lr).toBe(3e-3);
    expect(state.args).toEqual({ test: true });
    expect((state.sampler as { batchesDrawn: number }).batchesDrawn).toBe(2);
    expect(existsSync(join(outDir, 'model', 'optimizer.safetensors'))).toBe(true);
    expect(existsSync(join(outDir, 'model.old'))).toBe(false);
  });
});

describe('log formats', () => {
  it('formats step lines', () => {
    expect(formatStepLine(120, 600, 2.34564, 3e-4, 1234.4)).toBe('step 120/600 | loss 2.3456 | lr 3.0e-4 | 1,234 tok/s');
    expect(formatStepLine(1, 600, 10.9, 1e-5, null)).toBe('step 1/600 | loss 10.9000 | lr 1.0e-5 | - tok/s');
  });

  it('formats eval lines', () => {
    expect(formatEvalLine(120, 2.3456)).toBe('eval step 120 | val loss 2.3456 | val ppl 10.44');
  });
});

describe('progress display', () => {
  /** Builds a progress display on a fake stream and a fake clock that `tick` advances by 2 s. */
  function setup(isTTY: boolean): { progress: Progress; output: string[]; tick: () => void } {
    const output: string[] = [];
    let time = 0;
    const progress = new Progress({ write: (text: string) => output.push(text), isTTY }, 10, 0, () => time);
    return { progress, output, tick: () => void (time += 2000) };
  }

  it('redraws a bar on a terminal', () => {
    const { progress, output, tick } = setup(true);
    tick();
    tick();
    tick();
    progress.update(3);
    progress.line(3);
    expect(output).toEqual(['\r\x1b[K[#########.....................] 3/10 30% ETA 14s']);
    progress.clear();
    expect(output[1]).toBe('\r\x1b[K');
  });

  it('writes plain lines elsewhere', () => {
    const { progress, output, tick } = setup(false);
    for (let i = 0; i < 5; i++) tick();
    progress.update(5);
    progress.line(5);
    progress.clear();
    expect(output).toEqual(['progress 5/10 (50.0%) | elapsed 10s | ETA 10s\n']);
  });

  it('formats durations', () => {
    expect(formatDuration(45)).toBe('45s');
    expect(formatDuration(187)).toBe('3m07s');
    expect(formatDuration(7500)).toBe('2h05m');
    expect(formatDuration(Number.NaN)).toBe('?');
  });
});
