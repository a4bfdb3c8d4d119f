// Layers, named parameters, AdamW, gradient clipping and learning-rate schedules.
import { describe, expect, it } from 'vitest';
import * as T from '../src/index.js';
import { AdamW, clipGradNorm, Embedding, LayerNorm, learningRate, Linear, Module, Rng, tensor, warmupFactor } from '../src/index.js';

class TwoLayer extends Module {
  readonly first: Linear;
  readonly norm: LayerNorm;
  readonly embed: Embedding;
  constructor(rng: Rng) {
    super();
    this.embed = this.module('wte', new Embedding(5, 3, { rng }));
    this.first = this.module('fc', new Linear(3, 2, { rng }));
    this.norm = this.module('ln', new LayerNorm(2));
  }
}

describe('Module', () => {
  it('names parameters like checkpoint keys', () => {
    const m = new TwoLayer(new Rng(0));
    expect(m.namedParameters().map(([n, p]) => `${n}:${p.shape.join('x')}`)).toEqual([
      'wte.weight:5x3',
      'fc.weight:2x3',
      'fc.bias:2',
      'ln.weight:2',
      'ln.bias:2',
    ]);
    expect(m.parameterCount()).toBe(15 + 6 + 2 + 2 + 2);
  });

  it('Linear computes x·Wᵀ + b', () => {
    const lin = new Linear(2, 2, { rng: new Rng(1) });
    lin.weight.data.set([1, 2, 3, 4]);
    lin.bias!.data.set([0.5, -0.5]);
    expect(Array.from(lin.forward(tensor([[1, 1]])).data)).toEqual([3.5, 6.5]);
  });

  it('train and eval propagate to children', () => {
    const m = new TwoLayer(new Rng(0)).eval();
    expect(m.first.training).toBe(false);
  });
});

describe('AdamW', () => {
  it('matches a hand-computed PyTorch AdamW step', () => {
    const w = tensor([1, -2], { dtype: 'float64', requiresGrad: true });
    const opt = new AdamW([{ params: [w], lr: 0.1, weightDecay: 0.01 }]);
    T.sum(T.mul(w, tensor([0.5, 3], { dtype: 'float64' }))).backward();
    opt.step();
    // Step 1: m̂ = g, v̂ = g², so the update is lr·g/(|g| + eps) plus decay w·(1 − lr·wd).
    const expected = [1 * (1 - 0.001) - (0.1 * 0.5) / (0.5 + 1e-8), -2 * (1 - 0.001) - (0.1 * 3) / (3 + 1e-8)];
    expect(w.data[0]).toBeCloseTo(expected[0], 12);
    expect(w.data[1]).toBeCloseTo(expected[1], 12);
  });

  it('gives each parameter group its own learning rate and decay', () => {
    const a = tensor([1], { dtype: 'float64', requiresGrad: true });
    const b = tensor([1], { dtype: 'float64', requiresGrad: true });
    const opt = new AdamW([
      { params: [a], lr: 0.1, weightDecay: 0 },
      { params: [b], lr: 0.01, weightDecay: 0 },
    ]);
    T.sum(T.add(a, b)).backward();
    opt.step();
    expect(1 - a.data[0]).toBeCloseTo(0.1, 6);
    expect(1 - b.data[0]).toBeCloseTo(0.01, 6);
  });

  it('restores its state for exact resumption', () => {
    const run = (split: boolean): number[] => {
      const w = tensor([0.3, -0.7], { dtype: 'float64', requiresGrad: true });
      let opt = new AdamW([{ params: [w], lr: 0.05, weightDecay: 0.1 }]);
      for (let s = 0; s < 6; s++) {
        if (split && s === 3) {
          const state = JSON.parse(JSON.stringify(opt.getState()));
          opt = new AdamW([{ params: [w], lr: 0.05, weightDecay: 0.1 }]);
          opt.setState(state);
        }
        opt.zeroGrad();
        T.sum(T.square(w)).backward();
        opt.step();
      }
      return Array.from(w.data);
    };
    expect(run(true)).toEqual(run(false));
  });

  it('rejects a negative learning rate', () => {
    expect(() => new AdamW([{ params: [], lr: -1, weightDecay: 0 }])).toThrow('AdamW: group 0 needs lr ≥ 0');
  });
});

describe('clipGradNorm', () => {
  it('scales gradients to the maximum global norm and returns the original norm', () => {
    const a = tensor([0], { dtype: 'float64', requiresGrad: true });
    const b = tensor([0], { dtype: 'float64', requiresGrad: true });
    a.accumulateGrad(Float64Array.from([3]));
    b.accumulateGrad(Float64Array.from([4]));
    expect(clipGradNorm([a, b], 1)).toBe(5);
    expect(a.grad!.data[0]).toBeCloseTo(0.6, 6);
    expect(b.grad!.data[0]).toBeCloseTo(0.8, 6);
  });

  it('returns a non-finite norm without touching the gradients', () => {
    const a = tensor([0], { dtype: 'float64', requiresGrad: true });
    a.accumulateGrad(Float64Array.from([Number.NaN]));
    expect(clipGradNorm([a], 1)).toBeNaN();
  });
});

describe('learning-rate schedules', () => {
  const base = { lr0: 1e-3, lr1: 1e-5, warmupSteps: 50, totalSteps: 1050 };

  it('warm up from 1% linearly', () => {
    expect(warmupFactor(0, 50)).toBeCloseTo(0.01, 12);
    expect(warmupFactor(25, 50)).toBeCloseTo(0.505, 12);
    expect(warmupFactor(50, 50)).toBe(1);
  });

  it('quarter-cosine decays like cos(π/2·p)', () => {
    const s = { ...base, kind: 'quarter-cosine' as const };
    // p = (step − warmup + 1)/(total − warmup); at step 549, p = 0.5.
    expect(learningRate(549, s)).toBeCloseTo(1e-5 + (1e-3 - 1e-5) * Math.cos(Math.PI / 4), 12);
    expect(learningRate(1049, s)).toBeCloseTo(1e-5, 12);
  });

  it('exponential interpolates geometrically', () => {
    const s = { ...base, kind: 'exponential' as const, lr0: 1e-4 };
    expect(learningRate(549, s)).toBeCloseTo(Math.sqrt(1e-4 * 1e-5), 12);
  });

  it('warm-up ramps toward lr0 when the run is shorter than the warm-up', () => {
    const s = { kind: 'cosine' as const, lr0: 1e-3, lr1: 1e-4, warmupSteps: 100, totalSteps: 5 };
    expect(learningRate(0, s)).toBeCloseTo(1e-5, 12);
    expect(learningRate(4, s)).toBeCloseTo(1e-3 * (0.01 + (0.99 * 4) / 100), 12);
  });

  it('cosine reaches the midpoint halfway', () => {
    const s = { ...base, kind: 'cosine' as const };
    expect(learningRate(549, s)).toBeCloseTo((1e-3 + 1e-5) / 2, 12);
  });
});
