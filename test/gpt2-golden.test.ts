// Golden test against PyTorch: test/fixtures/gpt2-tiny was written by scripts/make_gpt2_fixture.py
// (2 layers, 2 heads, C = 32, 64 positions, V = 50257, float32, Hugging Face's eval-mode GPT-2).
// The model is loaded through loadGpt2Folder, the same path the CLI uses.
import { beforeAll, describe, expect, test } from 'vitest';
import { readSafetensorsFile, readTensor, type SafetensorsFile } from '../src/io/safetensors.js';
import { loadGpt2Folder, type Gpt2Model } from '../src/models/gpt2/index.js';
import { AdamW } from '../src/optim/index.js';

const FIXTURE = new URL('./fixtures/gpt2-tiny/', import.meta.url).pathname;
const B = 2;
const T = 8;

// The script's torch.optim.AdamW settings (PyTorch 1.13 defaults plus weight decay 0.01 on every
// parameter, one group, no clipping).
const ADAMW_LR = 1e-3;
const ADAMW_BETAS: [number, number] = [0.9, 0.999];
const ADAMW_EPS = 1e-8;
const ADAMW_WEIGHT_DECAY = 0.01;

// Tolerances. The float32 reference itself is within 1.5e-6 of float64 on logits and 1.9e-6 on
// the losses, and its gradients within 1.1e-5 × the tensor's max |gradient|.
const LOGITS_ATOL = 1e-4;
const LOSS_ATOL = 1e-4;
// Gradients are compared per tensor relative to the tensor's largest reference element:
// max |ours − ref| ≤ 1e-4 · max |ref|. An elementwise relative test would fail on elements that are
// mathematically zero (the k part of c_attn.bias), where both sides hold float32 noise.
const GRAD_RTOL_OF_MAX = 1e-4;
// A stricter elementwise bound as well: |ours − ref| ≤ 1e-4·|ref| + 2e-5·max |ref|, whose absolute
// floor covers those noise elements (measured worst: 0.35 of this bound).
const GRAD_RTOL = 1e-4;
const GRAD_FLOOR_OF_MAX = 2e-5;

let reference: SafetensorsFile;
let ids: number[];
let targets: number[];

function maxAbsDifference(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(actual[i] - expected[i]));
  return worst;
}

function maxAbs(values: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < values.length; i++) m = Math.max(m, Math.abs(values[i]));
  return m;
}

/** Finds the element with the largest |diff| relative to 1e-4·|ref| + 2e-5·max |ref|. */
function worstElement(actual: ArrayLike<number>, expected: ArrayLike<number>): { index: number; ratio: number; actual: number; expected: number } {
  const floor = GRAD_FLOOR_OF_MAX * maxAbs(expected);
  if (floor === 0) return { index: -1, ratio: maxAbs(actual) === 0 ? 0 : Infinity, actual: maxAbs(actual), expected: 0 };
  let worst = { index: -1, ratio: 0, actual: 0, expected: 0 };
  for (let i = 0; i < expected.length; i++) {
    const ratio = Math.abs(actual[i] - expected[i]) / (GRAD_RTOL * Math.abs(expected[i]) + floor);
    if (!(ratio <= worst.ratio)) worst = { index: i, ratio, actual: actual[i], expected: expected[i] };
  }
  return worst;
}

beforeAll(() => {
  reference = readSafetensorsFile(`${FIXTURE}reference.safetensors`);
  // Ids are stored as F32, which is exact for integers below 2^24.
  ids = Array.from(readTensor(reference, 'input_ids'));
  targets = Array.from(readTensor(reference, 'targets'));
});

describe('gpt2 golden fixture', () => {
  let model: Gpt2Model;

  beforeAll(() => {
    model = loadGpt2Folder(FIXTURE);
  });

  test('config matches the fixture', () => {
    expect(model.config).toEqual({
      nEmbd: 32,
      nLayer: 2,
      nHead: 2,
      nPositions: 64,
      vocabSize: 50257,
      layerNormEpsilon: 1e-5,
      nInner: 128,
      activation: 'gelu_new',
    });
    expect(ids.length).toBe(B * T);
    expect(targets.filter((t) => t === -100).length).toBe(1);
  });

  test('logits within 1e-4', () => {
    const logits = model.forward(ids, B, T);
    const expected = readTensor(reference, 'logits');
    expect(logits.shape).toEqual([B, T, 50257]);
    expect(maxAbsDifference(logits.data, expected)).toBeLessThan(LOGITS_ATOL);
  });

  test('loss and every gradient at step 0', () => {
    model.zeroGrad();
    const loss = model.loss(ids, targets, B, T);
    expect(Math.abs(loss.item() - readTensor(reference, 'loss')[0])).toBeLessThan(LOSS_ATOL);
    loss.backward();

    const names = model.namedParameters().map(([name]) => name);
    const referenceNames = [...reference.tensors.keys()].filter((k) => k.startsWith('grad.')).map((k) => k.slice(5));
    expect(names.sort()).toEqual(referenceNames.sort());

    for (const [name, p] of model.namedParameters()) {
      const expected = readTensor(reference, `grad.${name}`);
      expect(p.grad, name).not.toBeNull();
      const tolerance = GRAD_RTOL_OF_MAX * maxAbs(expected);
      const difference = maxAbsDifference(p.grad?.data ?? [], expected);
      expect(difference, `${name}: max |diff| ${difference.toExponential(2)} vs tolerance ${tolerance.toExponential(2)}`).toBeLessThanOrEqual(tolerance);
      const worst = worstElement(p.grad?.data ?? [], expected);
      expect(worst.ratio, `${name}: element ${worst.index} ours ${worst.actual} vs ref ${worst.expected}`).toBeLessThanOrEqual(1);
    }
  });

  test('ten AdamW steps follow PyTorch losses', () => {
    const trained = loadGpt2Folder(FIXTURE);
    const optimizer = new AdamW([{ params: trained.parameters(), lr: ADAMW_LR, weightDecay: ADAMW_WEIGHT_DECAY }], {
      betas: ADAMW_BETAS,
      eps: ADAMW_EPS,
    });
    const expected = readTensor(reference, 'adamw_losses');
    expect(expected.length).toBe(10);

    const losses: number[] = [];
    for (let step = 0; step < expected.length; step++) {
      optimizer.zeroGrad();
      const loss = trained.loss(ids, targets, B, T);
      loss.backward();
      losses.push(loss.item());
      optimizer.step();
    }
    for (let step = 0; step < expected.length; step++) {
      expect(Math.abs(losses[step] - expected[step]), `step ${step}: ${losses[step]} vs ${expected[step]}`).toBeLessThan(LOSS_ATOL);
    }
  });
});
