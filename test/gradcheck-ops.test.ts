// A gradient property test for every op in the op table: random shapes (including size-1 and
// broadcast dimensions) and random values, analytic gradients against float64 central
// differences with a random upstream gradient.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as T from '../src/index.js';
import { assertGradients, OP_NAMES, Rng, Tensor, type OpName } from '../src/index.js';
import { broadcastPartner, distinctTensor, randomTensor } from './helpers/random-tensors.js';

interface GradCase {
  fn: (...inputs: Tensor[]) => Tensor;
  inputs: Tensor[];
  /** Looser tolerances only where a float32 step is part of the op (cast). */
  options?: { eps?: number; rtol?: number; atol?: number };
}

type CaseBuilder = (rng: Rng) => GradCase;

function randomShape(rng: Rng, maxRank = 3, maxDim = 4): number[] {
  const rank = 1 + rng.int(maxRank);
  return Array.from({ length: rank }, () => 1 + rng.int(maxDim));
}

function unary(op: (x: Tensor) => Tensor, range: { low?: number; high?: number; awayFromZero?: number } = {}): CaseBuilder {
  return (rng) => ({ fn: op, inputs: [randomTensor(rng, randomShape(rng), range)] });
}

function binary(op: (a: Tensor, b: Tensor) => Tensor, bRange: { low?: number; high?: number; awayFromZero?: number } = {}): CaseBuilder {
  return (rng) => {
    const shape = randomShape(rng);
    const partner = broadcastPartner(rng, shape);
    const swap = rng.uniform() < 0.5;
    const a = randomTensor(rng, swap ? partner : shape);
    const b = randomTensor(rng, swap ? shape : partner, bRange);
    return { fn: op, inputs: [a, b] };
  };
}

function randomAxes(rng: Rng, rank: number): number[] | undefined {
  if (rng.uniform() < 0.2) return undefined;
  const axes = Array.from({ length: rank }, (_, i) => i).filter(() => rng.uniform() < 0.5);
  return axes.length === 0 ? [rng.int(rank)] : axes.map((a) => (rng.uniform() < 0.3 ? a - rank : a));
}

const cases: Record<OpName, CaseBuilder> = {
  add: binary(T.add),
  sub: binary(T.sub),
  mul: binary(T.mul),
  div: binary(T.div, { awayFromZero: 0.5 }),
  maximum: (rng) => {
    const shape = randomShape(rng);
    const a = randomTensor(rng, shape);
    // Shift b by at least 0.05 from a so no pair ties within the finite-difference step.
    const b = randomTensor(rng, broadcastPartner(rng, shape));
    return { fn: (x, y) => T.maximum(x, T.addScalar(y, 0.05)), inputs: [a, b], options: { atol: 1e-7 } };
  },
  neg: unary(T.neg),
  exp: unary(T.exp),
  log: unary(T.log, { low: 0.3, high: 2 }),
  sqrt: unary(T.sqrt, { low: 0.3, high: 2 }),
  tanh: unary(T.tanh, { low: -2, high: 2 }),
  sigmoid: unary(T.sigmoid, { low: -4, high: 4 }),
  relu: unary(T.relu, { awayFromZero: 0.01 }),
  gelu: unary(T.gelu, { low: -4, high: 4 }),
  softplus: unary(T.softplus, { low: -4, high: 4 }),
  square: unary(T.square),
  abs: unary(T.abs, { awayFromZero: 0.01 }),
  powScalar: (rng) => {
    const p = -2 + 5 * rng.uniform();
    return { fn: (x) => T.powScalar(x, p), inputs: [randomTensor(rng, randomShape(rng), { low: 0.5, high: 2 })] };
  },
  mulScalar: (rng) => {
    const s = -3 + 6 * rng.uniform();
    return { fn: (x) => T.mulScalar(x, s), inputs: [randomTensor(rng, randomShape(rng))] };
  },
  addScalar: (rng) => {
    const s = -3 + 6 * rng.uniform();
    return { fn: (x) => T.addScalar(x, s), inputs: [randomTensor(rng, randomShape(rng))] };
  },
  clamp: (rng) => {
    // Values at distance ≥ 0.01 from the bounds ±0.5.
    const x = randomTensor(rng, randomShape(rng));
    for (let i = 0; i < x.size; i++) if (Math.abs(Math.abs(x.data[i]) - 0.5) < 0.01) x.data[i] += 0.02;
    return { fn: (v) => T.clamp(v, -0.5, 0.5), inputs: [x] };
  },
  sum: (rng) => {
    const shape = randomShape(rng, 4);
    const axes = randomAxes(rng, shape.length);
    const keep = rng.uniform() < 0.5;
    return { fn: (x) => T.sum(x, axes, keep), inputs: [randomTensor(rng, shape)] };
  },
  mean: (rng) => {
    const shape = randomShape(rng, 4);
    const axes = randomAxes(rng, shape.length);
    const keep = rng.uniform() < 0.5;
    return { fn: (x) => T.mean(x, axes, keep), inputs: [randomTensor(rng, shape)] };
  },
  max: (rng) => {
    const shape = randomShape(rng, 4);
    const axes = randomAxes(rng, shape.length);
    const keep = rng.uniform() < 0.5;
    return { fn: (x) => T.max(x, axes, keep), inputs: [distinctTensor(rng, shape)] };
  },
  matmul: (rng) => {
    const [M, N, K] = [1 + rng.int(4), 1 + rng.int(4), 1 + rng.int(4)];
    const transA = rng.uniform() < 0.5;
    const transB = rng.uniform() < 0.5;
    const batch = rng.uniform() < 0.5 ? [] : [1 + rng.int(3)];
    const layout = rng.int(3); // 0: both batched, 1: b shared, 2: a shared
    const aShape = [...(layout === 2 ? [] : batch), ...(transA ? [K, M] : [M, K])];
    const bShape = [...(layout === 1 ? [] : batch), ...(transB ? [N, K] : [K, N])];
    return { fn: (a, b) => T.matmul(a, b, { transA, transB }), inputs: [randomTensor(rng, aShape), randomTensor(rng, bShape)] };
  },
  reshape: (rng) => {
    const shape = randomShape(rng);
    const flat = shape.reduce((a, b) => a * b, 1);
    return { fn: (x) => T.mul(T.reshape(x, [-1]), T.reshape(x, [flat])), inputs: [randomTensor(rng, shape)] };
  },
  permute: (rng) => {
    const shape = randomShape(rng, 4);
    const order = shape.map((_, i) => i).sort(() => rng.uniform() - 0.5);
    return { fn: (x) => T.permute(x, order), inputs: [randomTensor(rng, shape)] };
  },
  slice: (rng) => {
    const shape = randomShape(rng);
    const axis = rng.int(shape.length);
    const start = rng.int(shape[axis]);
    const end = start + 1 + rng.int(shape[axis] - start);
    return { fn: (x) => T.slice(x, axis, start, end), inputs: [randomTensor(rng, shape)] };
  },
  concat: (rng) => {
    const shape = randomShape(rng);
    const axis = rng.int(shape.length);
    const other = [...shape];
    other[axis] = 1 + rng.int(3);
    return { fn: (a, b) => T.concat([a, b, a], axis), inputs: [randomTensor(rng, shape), randomTensor(rng, other)] };
  },
  gather: (rng) => {
    const V = 1 + rng.int(5);
    const C = 1 + rng.int(3);
    const ids = Array.from({ length: 1 + rng.int(6) }, () => rng.int(V)); // repeats are likely
    return { fn: (table) => T.gather(table, ids, [ids.length]), inputs: [randomTensor(rng, [V, C])] };
  },
  where: (rng) => {
    const shape = randomShape(rng);
    const cond = new Tensor(Float64Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => (rng.uniform() < 0.5 ? 1 : 0)), shape);
    const bShape = broadcastPartner(rng, shape);
    return { fn: (a, b) => T.where(cond, a, b), inputs: [randomTensor(rng, shape), randomTensor(rng, bShape)] };
  },
  cast: (rng) => ({
    // The float32 round trip adds ~1e-7 relative noise per evaluation, so the step and tolerance are
    // sized for float32, not float64.
    fn: (x) => T.cast(T.mulScalar(T.cast(x, 'float32'), 3), 'float64'),
    inputs: [randomTensor(rng, randomShape(rng))],
    options: { eps: 1e-2, rtol: 1e-4, atol: 1e-4 },
  }),
  softmax: unary((x) => T.softmax(x), { low: -3, high: 3 }),
  logSoftmax: unary((x) => T.logSoftmax(x), { low: -3, high: 3 }),
  layerNorm: (rng) => {
    const shape = randomShape(rng);
    shape[shape.length - 1] = 2 + rng.int(5);
    const C = shape[shape.length - 1];
    return {
      fn: (x, w, b) => T.layerNorm(x, w, b, 1e-5),
      inputs: [randomTensor(rng, shape, { low: -2, high: 2 }), randomTensor(rng, [C]), randomTensor(rng, [C])],
    };
  },
  groupNorm: (rng) => {
    const groups = 1 + rng.int(3);
    const C = groups * (2 + rng.int(3));
    const shape = [1 + rng.int(3), C];
    return {
      fn: (x, w, b) => T.groupNorm(x, groups, w, b, 64e-5),
      inputs: [randomTensor(rng, shape, { low: -2, high: 2 }), randomTensor(rng, [C]), randomTensor(rng, [C])],
    };
  },
  l2Normalize: (rng) => {
    const shape = randomShape(rng);
    // eps 0.05 with values in ±0.05 puts some rows below the clamp, so both branches run.
    const small = rng.uniform() < 0.5;
    return { fn: (x) => T.l2Normalize(x, 0.05), inputs: [randomTensor(rng, shape, small ? { low: -0.02, high: 0.02 } : { awayFromZero: 0.1 })] };
  },
  crossEntropy: (rng) => {
    const rows = 1 + rng.int(4);
    const V = 2 + rng.int(5);
    const targets = Array.from({ length: rows }, () => (rng.uniform() < 0.25 ? -100 : rng.int(V)));
    return { fn: (x) => T.crossEntropy(x, targets), inputs: [randomTensor(rng, [rows, V], { low: -3, high: 3 })] };
  },
  klDivergence: (rng) => {
    const rows = 1 + rng.int(4);
    const V = 2 + rng.int(5);
    const temperature = 0.5 + 2 * rng.uniform();
    const mask = Array.from({ length: rows }, () => (rng.uniform() < 0.8 ? 1 : 0));
    return {
      fn: (t, s) => T.klDivergence(t, s, { temperature, mask }),
      inputs: [randomTensor(rng, [rows, V], { low: -3, high: 3 }), randomTensor(rng, [rows, V], { low: -3, high: 3 })],
    };
  },
  wkv7: (rng) => {
    const [B, Tn, H, N] = [1 + rng.int(2), 1 + rng.int(4), 1 + rng.int(2), 1 + rng.int(3)];
    const shape = [B, Tn, H, N];
    const withState = rng.uniform() < 0.5;
    const inputs = [
      randomTensor(rng, shape), // r
      randomTensor(rng, shape, { low: 0.55, high: 0.99 }), // w, a decay in (0, 1)
      randomTensor(rng, shape), // k
      randomTensor(rng, shape), // v
      randomTensor(rng, shape, { low: -0.5, high: 0.5 }), // a
      randomTensor(rng, shape, { low: -0.5, high: 0.5 }), // b
      ...(withState ? [randomTensor(rng, [B, H, N, N])] : []),
    ];
    // Both results enter the checked function, so the final-state gradient path is tested too.
    const fn = (...x: Tensor[]): Tensor => {
      const { y, state } = T.wkv7(x[0], x[1], x[2], x[3], x[4], x[5], withState ? x[6] : null);
      return T.concat([T.reshape(y, [-1]), T.reshape(state, [-1])], 0);
    };
    return { fn, inputs };
  },
};

describe('gradient property tests', () => {
  it('cover every op in the op table', () => {
    expect(Object.keys(cases).sort()).toEqual([...OP_NAMES].sort());
  });

  for (const name of OP_NAMES) {
    it(`${name} matches central differences`, () => {
      fc.assert(
        fc.property(fc.integer({ min: 0, max: 2 ** 31 - 1 }), (seed) => {
          const { fn, inputs, options } = cases[name](new Rng(seed));
          assertGradients(fn, inputs, { eps: 1e-6, rtol: 1e-5, atol: 1e-8, ...options, seed });
        }),
        { numRuns: 40 },
      );
    });
  }

  it('chains of ops with a reused input match central differences', () => {
    const unaryOps: Array<(x: Tensor) => Tensor> = [T.tanh, T.sigmoid, T.square, (x) => T.mulScalar(x, 0.7), T.gelu, T.softplus];
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 31 - 1 }), fc.array(fc.integer({ min: 0, max: unaryOps.length - 1 }), { minLength: 1, maxLength: 5 }), (seed, chain) => {
        const rng = new Rng(seed);
        const shape = randomShape(rng);
        const x = randomTensor(rng, shape);
        const y = randomTensor(rng, broadcastPartner(rng, shape));
        const fn = (a: Tensor, b: Tensor): Tensor => {
          let h = T.add(a, b);
          for (const k of chain) h = unaryOps[k](h);
          // `a` is used a second time here, so its gradient has two contributions.
          return T.sum(T.mul(h, a), -1);
        };
        assertGradients(fn, [x, y], { seed });
      }),
      { numRuns: 60 },
    );
  });
});
