// The TensorFlow.js GPT-2 used as the benchmark peer computes what rwkvify's Gpt2Model computes,
// so the speed comparison in bench/models.bench.ts is between two implementations of one function.
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { TfjsGpt2, startTfjsWasm } from '../bench/tfjs-gpt2.js';
import { Gpt2Model, type Gpt2Config } from '../src/models/gpt2/index.js';
import { AdamW } from '../src/optim/index.js';
import { Rng } from '../src/tensor/random.js';

/** The tiny training config of the models benchmark: 2 layers, 2 heads, C = 64, V = 512. */
const TINY: Gpt2Config = { nEmbd: 64, nLayer: 2, nHead: 2, nPositions: 64, vocabSize: 512, layerNormEpsilon: 1e-5, nInner: 256, activation: 'gelu_new' };
const B = 2;
const T = 16;

/**
 * Builds a model whose weights are N(0, 0.1²) (LayerNorm gains around 1), so attention is far from
 * uniform and a wiring mistake moves the logits by much more than the tolerance.
 */
function randomModel(seed: number): Gpt2Model {
  const model = new Gpt2Model(TINY, 'zeros');
  const rng = new Rng(seed);
  for (const [name, p] of model.namedParameters()) {
    const gain = /ln_\d\.weight$|ln_f\.weight$/.test(name) ? 1 : 0;
    for (let i = 0; i < p.size; i++) p.data[i] = gain + 0.1 * rng.normal();
  }
  return model;
}

function randomIds(count: number, seed: number): number[] {
  const rng = new Rng(seed);
  return Array.from({ length: count }, () => Math.floor(rng.uniform() * TINY.vocabSize));
}

function maxAbsDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

function maxAbs(a: ArrayLike<number>): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]));
  return max;
}

describe('tfjs GPT-2 peer', () => {
  let model: Gpt2Model;
  let peer: TfjsGpt2;
  const ids = randomIds(B * T, 2);
  const targets = randomIds(B * T, 3);

  beforeAll(async () => {
    await startTfjsWasm();
    model = randomModel(1);
    peer = TfjsGpt2.fromGpt2Model(model);
  });

  afterAll(() => peer.dispose());

  test('logits match rwkvify', () => {
    const expected = model.forward(ids, B, T).data; // (B, T, V)
    const logits = peer.forward(ids, B, T);
    const actual = logits.dataSync();
    logits.dispose();
    expect(actual.length).toBe(expected.length);
    expect(maxAbs(expected)).toBeGreaterThan(0.5);
    expect(maxAbsDifference(actual, expected)).toBeLessThan(1e-4);
  });

  test('loss matches rwkvify', () => {
    const expected = model.loss(ids, targets, B, T).item();
    const loss = peer.loss(ids, targets, B, T);
    const actual = loss.dataSync()[0];
    loss.dispose();
    expect(Math.abs(actual - expected)).toBeLessThan(1e-5 * Math.abs(expected));
  });

  test('gradients match rwkvify', () => {
    model.zeroGrad();
    model.loss(ids, targets, B, T).backward();
    const { grads } = peer.gradients(ids, targets, B, T);
    for (const [name, p] of model.namedParameters()) {
      const expected = p.grad?.data;
      const actual = grads.get(name);
      expect(expected, `rwkvify gradient of ${name}`).toBeDefined();
      expect(actual, `tfjs gradient of ${name}`).toBeDefined();
      const scale = Math.max(maxAbs(expected as ArrayLike<number>), 1e-3);
      expect(maxAbsDifference(actual as Float32Array, expected as ArrayLike<number>) / scale, name).toBeLessThan(1e-3);
    }
  });

  test('Adam step matches AdamW without decay', () => {
    const trained = randomModel(4);
    const trainedPeer = TfjsGpt2.fromGpt2Model(trained);
    const optimizer = new AdamW([{ params: trained.parameters(), lr: 1e-3, weightDecay: 0 }]);
    const lossesRwkvify: number[] = [];
    const lossesTfjs: number[] = [];
    const tensorCounts: number[] = [];
    for (let step = 0; step < 3; step++) {
      trained.zeroGrad();
      const loss = trained.loss(ids, targets, B, T);
      lossesRwkvify.push(loss.item());
      loss.backward();
      optimizer.step();
      lossesTfjs.push(trainedPeer.trainStep(ids, targets, B, T, { learningRate: 1e-3 }));
      tensorCounts.push(tf.memory().numTensors);
    }
    trainedPeer.dispose();
    expect(lossesRwkvify[2]).toBeLessThan(lossesRwkvify[0]);
    // Adam's moment tensors exist from the first step on, so later steps must not add tensors.
    expect(tensorCounts[2], 'tfjs tensors alive after steps 1 and 3').toBe(tensorCounts[0]);
    for (let step = 0; step < 3; step++) {
      expect(Math.abs(lossesTfjs[step] - lossesRwkvify[step]), `step ${step}`).toBeLessThan(1e-3);
    }
  });
});
