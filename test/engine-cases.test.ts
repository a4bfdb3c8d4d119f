// Exact values from failures other projects hit (GELU form, layer-norm variance, stable softmax,
// KL with temperature, ignored targets, ReLU at 0, max ties, broadcast gradients, repeated
// backward) and the engine's error messages.
import { describe, expect, it } from 'vitest';
import * as T from '../src/index.js';
import { gradcheck, noGrad, Tensor, tensor } from '../src/index.js';

function close(actual: ArrayLike<number>, expected: readonly number[], tol: number): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) expect(Math.abs(actual[i] - expected[i])).toBeLessThanOrEqual(tol);
}

describe('GELU', () => {
  it('uses the tanh form of GPT-2', () => {
    const x = tensor([1, -1, 0.5, -0.5, -3, 3, 2], { dtype: 'float64' });
    close(T.gelu(x).data, [0.841191991, -0.158808009, 0.34571401, -0.15428599, -0.003637392, 2.996362608, 1.954597694], 1e-8);
  });
});

describe('layerNorm', () => {
  it('uses the biased variance with eps inside the root', () => {
    const y = T.layerNorm(tensor([1, 2, 3, 4], { dtype: 'float64' }), null, null, 1e-5);
    close(y.data, [-1.341635, -0.447212, 0.447212, 1.341635], 1e-6);
  });
});

describe('softmax', () => {
  it('subtracts the max so large logits do not overflow', () => {
    const y = T.softmax(tensor([7999.99, 8000.0, 2.0, 1.0]));
    close(y.data, [0.49755862, 0.5024414, 0, 0], 1e-6);
  });

  it('gives zeros and zero gradient for a fully masked row', () => {
    const x = tensor([[-Infinity, -Infinity], [0, 1]], { dtype: 'float64', requiresGrad: true });
    const y = T.softmax(x);
    expect(Array.from(y.data.slice(0, 2))).toEqual([0, 0]);
    y.backward(Float64Array.from([1, 2, 3, 4]));
    expect(Array.from(x.grad!.data.slice(0, 2))).toEqual([0, 0]);
    expect(x.grad!.data.every(Number.isFinite)).toBe(true);
  });

  it('masked with -Infinity through where gives exact zeros for future positions', () => {
    const scores = tensor([[0.3, 0.9], [0.1, 0.2]], { dtype: 'float32' });
    const future = tensor([[0, 1], [0, 0]]);
    const p = T.softmax(T.maskedFill(scores, future, -Infinity));
    expect(p.data[1]).toBe(0);
    expect(p.data[0]).toBe(1);
  });
});

describe('klDivergence', () => {
  const teacher = (): Tensor => tensor([[1, 2, 3]], { dtype: 'float64', requiresGrad: true });
  const student = (): Tensor => tensor([[1, 1, 1]], { dtype: 'float64', requiresGrad: true });

  it('computes forward KL(teacher‖student)', () => {
    expect(T.klDivergence(teacher(), student()).item()).toBeCloseTo(0.266217, 6);
    // The reverse direction has a different value; the argument order is teacher, student.
    expect(T.klDivergence(student(), teacher()).item()).toBeCloseTo(0.308994, 6);
  });

  it('scales by T² and gives T·(p_s − p_t) as the student gradient', () => {
    const s = student();
    const loss = T.klDivergence(teacher(), s, { temperature: 2 });
    expect(loss.item()).toBeCloseTo(0.313684, 6);
    loss.backward();
    close(s.grad!.data, [0.294019, 0.052275, -0.346294], 1e-6);
  });

  it('gives p_s − p_t as the gradient at T = 1', () => {
    const s = student();
    T.klDivergence(teacher(), s).backward();
    close(s.grad!.data, [0.243303, 0.088605, -0.331908], 1e-6);
  });

  it('matches the reference example logits', () => {
    const t = tensor([[2, 1, 0.1]], { dtype: 'float64' });
    const s = tensor([[1.5, 1.2, 0.3]], { dtype: 'float64', requiresGrad: true });
    const loss = T.klDivergence(t, s);
    expect(loss.item()).toBeCloseTo(0.0582066, 7);
    loss.backward();
    close(s.grad!.data, [-0.169288, 0.120355, 0.048933], 1e-6);
  });

  it('is zero for identical logits and positive otherwise', () => {
    const x = tensor([[0.3, -1, 2], [1, 1, 0]], { dtype: 'float64' });
    expect(T.klDivergence(x, x).item()).toBe(0);
    expect(T.klDivergence(x, T.mulScalar(x, 1.1)).item()).toBeGreaterThan(0);
  });

  it('treats −inf logits on both sides as 0·log 0 = 0 with zero gradient', () => {
    const t = tensor([[-Infinity, 0, 1]], { dtype: 'float64', requiresGrad: true });
    const s = tensor([[-Infinity, 0, 1]], { dtype: 'float64', requiresGrad: true });
    const loss = T.klDivergence(t, s);
    expect(loss.item()).toBe(0);
    loss.backward();
    expect(Array.from(s.grad!.data)).toEqual([0, 0, 0]);
    expect(Array.from(t.grad!.data)).toEqual([0, 0, 0]);
  });

  it('gives 0 and no NaN when every row is masked out', () => {
    const s = tensor([[1, 2]], { dtype: 'float64', requiresGrad: true });
    const loss = T.klDivergence(tensor([[0, 0]], { dtype: 'float64' }), s, { mask: [0] });
    expect(loss.item()).toBe(0);
    loss.backward();
    expect(Array.from(s.grad!.data)).toEqual([0, 0]);
  });

  it('does not depend on the logits of masked rows', () => {
    const t = tensor([[1, 2, 3], [9, -9, 0]], { dtype: 'float64' });
    const s1 = tensor([[1, 1, 1], [0, 0, 0]], { dtype: 'float64' });
    const s2 = tensor([[1, 1, 1], [5, 7, -3]], { dtype: 'float64' });
    const a = T.klDivergence(t, s1, { mask: [1, 0] }).item();
    const b = T.klDivergence(t, s2, { mask: [1, 0] }).item();
    expect(a).toBe(b);
    expect(a).toBeCloseTo(0.266217, 6);
  });
});

describe('crossEntropy', () => {
  it('averages over non-ignored targets only', () => {
    const logits = tensor([[0, 0], [0, 0], [2, 0]], { dtype: 'float64', requiresGrad: true });
    const loss = T.crossEntropy(logits, [1, -100, 0]);
    expect(loss.item()).toBeCloseTo(0.410038, 6);
    loss.backward();
    expect(Array.from(logits.grad!.data.slice(2, 4))).toEqual([0, 0]);
  });

  it('gives 0 with zero gradient when every target is ignored', () => {
    const logits = tensor([[1, 2]], { dtype: 'float64', requiresGrad: true });
    const loss = T.crossEntropy(logits, [-100]);
    expect(loss.item()).toBe(0);
    loss.backward();
    expect(Array.from(logits.grad!.data)).toEqual([0, 0]);
  });

  it('equals KL plus the teacher entropy for soft targets', () => {
    // H(p_t, p_s) for p_t = softmax([1,2,3]) and uniform p_s is ln 3 = 1.098612.
    const pt = T.softmax(tensor([1, 2, 3], { dtype: 'float64' })).data;
    let entropy = 0;
    for (const p of pt) entropy -= p * Math.log(p);
    expect(entropy).toBeCloseTo(0.832396, 6);
    const kl = T.klDivergence(tensor([[1, 2, 3]], { dtype: 'float64' }), tensor([[1, 1, 1]], { dtype: 'float64' })).item();
    expect(kl + entropy).toBeCloseTo(1.098612, 6);
  });

  it('rejects a target outside the vocabulary', () => {
    expect(() => T.crossEntropy(tensor([[0, 0]]), [2])).toThrow('crossEntropy: target 2 at row 0 is out of range [0, 2)');
  });
});

describe('ReLU and max conventions', () => {
  it('relu has derivative 0 at exactly 0', () => {
    const x = tensor([0, -1, 2], { dtype: 'float64', requiresGrad: true });
    T.sum(T.relu(x)).backward();
    expect(Array.from(x.grad!.data)).toEqual([0, 0, 1]);
  });

  it('a central difference across the ReLU kink gives 0.5, which is why gradcheck avoids kinks', () => {
    const x = tensor([0], { dtype: 'float64', requiresGrad: true });
    const result = gradcheck((v) => T.relu(v), [x]);
    expect(result.ok).toBe(false);
    expect(Math.abs(result.worst!.analytic)).toBe(0);
    const eps = 1e-6;
    const relu = (v: number): number => Math.max(v, 0);
    expect((relu(eps) - relu(-eps)) / (2 * eps)).toBeCloseTo(0.5, 12);
  });

  it('max splits the gradient evenly between ties', () => {
    const x = tensor([0.6, 0.6, 0.3], { dtype: 'float64', requiresGrad: true });
    T.max(x).backward();
    expect(Array.from(x.grad!.data)).toEqual([0.5, 0.5, 0]);
  });

  it('max over axis 0 of ones sends each column gradient once in total', () => {
    const x = T.ones([4, 3], 'float64').requireGrad();
    T.max(x, 0).backward(Float64Array.from([1, 1, 1]));
    expect(Array.from(x.grad!.data)).toEqual(new Array(12).fill(0.25));
  });

  it('maximum(x, x) gives 0.5 to each side', () => {
    const x = tensor([1, 2], { dtype: 'float64', requiresGrad: true });
    T.sum(T.maximum(x, x)).backward();
    expect(Array.from(x.grad!.data)).toEqual([1, 1]);
  });
});

describe('broadcast gradients', () => {
  it('are summed back to each operand shape', () => {
    const h = T.randn([2, 1, 4, 64], new T.Rng(1), { dtype: 'float64' }).requireGrad();
    const m = T.randn([2, 1, 4, 1], new T.Rng(2), { dtype: 'float64' }).requireGrad();
    T.sum(T.mul(h, m)).backward();
    expect(m.grad!.shape).toEqual([2, 1, 4, 1]);
    expect(h.grad!.shape).toEqual([2, 1, 4, 64]);
    for (let r = 0; r < 8; r++) {
      let rowSum = 0;
      for (let c = 0; c < 64; c++) rowSum += h.data[r * 64 + c];
      expect(m.grad!.data[r]).toBeCloseTo(rowSum, 10);
      expect(h.grad!.data[r * 64 + 5]).toBe(m.data[r]);
    }
  });

  it('[3,4] + [4] and [3,1]·[1,4] pass gradcheck', () => {
    const rng = new T.Rng(3);
    const a = T.randn([3, 4], rng, { dtype: 'float64' }).requireGrad();
    const b = T.randn([4], rng, { dtype: 'float64' }).requireGrad();
    const c = T.randn([3, 1], rng, { dtype: 'float64' }).requireGrad();
    const d = T.randn([1, 4], rng, { dtype: 'float64' }).requireGrad();
    expect(gradcheck((x, y) => T.add(x, y), [a, b]).ok).toBe(true);
    expect(gradcheck((x, y) => T.mul(x, y), [c, d]).ok).toBe(true);
  });
});

describe('backward', () => {
  function graph(): { a: Tensor; d: Tensor; e: Tensor } {
    const a = tensor([3], { dtype: 'float64', requiresGrad: true });
    const b = tensor([2], { dtype: 'float64', requiresGrad: true });
    const c = T.add(a, b);
    const d = tensor([1], { dtype: 'float64', requiresGrad: true });
    return { a, d, e: T.mul(c, d) };
  }

  it('accumulates leaf gradients across two calls without re-sending interior gradients', () => {
    const { a, d, e } = graph();
    e.backward();
    expect(a.grad!.item()).toBe(1);
    expect(d.grad!.item()).toBe(5);
    e.backward();
    expect(a.grad!.item()).toBe(2);
    expect(d.grad!.item()).toBe(10);
  });

  it('after zeroGrad reproduces the first result', () => {
    const { a, d, e } = graph();
    e.backward();
    a.zeroGrad();
    d.zeroGrad();
    e.backward();
    expect(a.grad!.item()).toBe(1);
    expect(d.grad!.item()).toBe(5);
  });

  it('sums both contributions of a tensor used twice', () => {
    const x = tensor([3], { dtype: 'float64', requiresGrad: true });
    T.mul(x, x).backward();
    expect(x.grad!.item()).toBe(6);
  });

  it('records nothing inside noGrad and nothing through detach', () => {
    const x = tensor([1, 2], { requiresGrad: true });
    const y = noGrad(() => T.mulScalar(x, 2));
    expect(y.requiresGrad).toBe(false);
    const z = T.mul(x.detach(), x);
    T.sum(z).backward();
    expect(Array.from(x.grad!.data)).toEqual([1, 2]);
  });

  it('leaves frozen tensors without gradient', () => {
    const w = tensor([2], { requiresGrad: true }).requireGrad(false);
    const x = tensor([3], { requiresGrad: true });
    T.mul(w, x).backward();
    expect(w.grad).toBeNull();
    expect(x.grad!.item()).toBe(2);
  });

  it('explains a missing gradient path', () => {
    expect(() => tensor([1]).backward()).toThrow('backward: the tensor does not require a gradient');
  });
});

describe('gradcheck', () => {
  it('is too noisy in float32, so it refuses float32 inputs', () => {
    // d/dx x³ at 1.5 by float32 central differences with eps 1e-4 is 6.750822 instead of 6.75.
    const f = (x: number): number => Math.fround(Math.fround(x * x) * x);
    const h = Math.fround(1e-4);
    const numeric = (f(Math.fround(1.5 + h)) - f(Math.fround(1.5 - h))) / (2 * h);
    expect(Math.abs(numeric - 6.75)).toBeGreaterThan(1e-4);
    expect(() => gradcheck((x) => T.powScalar(x, 3), [tensor([1.5], { requiresGrad: true })])).toThrow(
      'gradcheck: input 0 is float32; gradient checks need float64 inputs',
    );
  });

  it('is exact enough in float64', () => {
    const x = tensor([1.5], { dtype: 'float64', requiresGrad: true });
    const result = gradcheck((v) => T.powScalar(v, 3), [x], { eps: 1e-5, rtol: 1e-8 });
    expect(result.ok).toBe(true);
  });

  it('rejects NaN inputs naming the element', () => {
    const x = tensor([1, Number.NaN], { dtype: 'float64', requiresGrad: true });
    expect(() => gradcheck((v) => T.exp(v), [x])).toThrow('gradcheck: input 0 element 1 is NaN');
  });

  it('reports the worst element of a wrong rule', () => {
    // A hand-made op with a deliberately wrong backward (factor 2 instead of 3).
    const wrongCube = (x: Tensor): Tensor => {
      const out = new Tensor(x.data.map((v) => v * v * v), x.shape);
      return T.record('powScalar', out, [x], (g) => [g.map((gv, i) => gv * 2 * x.data[i] * x.data[i])]);
    };
    const x = tensor([0.5, 1.5], { dtype: 'float64', requiresGrad: true });
    const result = gradcheck(wrongCube, [x]);
    expect(result.ok).toBe(false);
    expect(result.worst!.index).toBe(1);
  });
});

describe('op errors', () => {
  it('matmul names both shapes', () => {
    expect(() => T.matmul(T.zeros([2, 3]), T.zeros([4, 5]))).toThrow('matmul: inner dimensions differ (3 vs 4), got a=[2,3] b=[4,5]');
  });

  it('binary ops name incompatible shapes', () => {
    expect(() => T.add(T.zeros([2, 3]), T.zeros([4]))).toThrow('add: shapes cannot be broadcast together, got a=[2,3] b=[4]');
  });

  it('mixed dtypes are rejected with the fix', () => {
    expect(() => T.mul(T.zeros([2]), T.zeros([2], 'float64'))).toThrow("mul: dtypes differ, got float32[2], float64[2]; convert with .to('float32')");
  });

  it('gather rejects ids outside the table', () => {
    expect(() => T.gather(T.zeros([5, 2]), [1, 5])).toThrow('gather: id 5 at position 1 is out of range [0, 5)');
    expect(() => T.gather(T.zeros([5, 2]), [-1])).toThrow('gather: id -1 at position 0');
    expect(() => T.gather(T.zeros([5, 2]), [1.5])).toThrow('gather: id 1.5');
  });

  it('reshape and slice explain impossible requests', () => {
    expect(() => T.reshape(T.zeros([2, 3]), [4, -1])).toThrow('reshape: cannot infer -1 for 6 elements into [4,-1]');
    expect(() => T.slice(T.zeros([2, 3]), 1, 2, 5)).toThrow('slice: range [2, 5) is invalid for axis 1 of length 3');
  });

  it('groupNorm needs groups that divide the channels', () => {
    expect(() => T.groupNorm(T.zeros([2, 6]), 4, null, null)).toThrow('groupNorm: 4 groups must divide the last dimension 6');
  });

  it('Tensor rejects data that does not fill the shape', () => {
    expect(() => new Tensor(new Float32Array(5), [2, 3])).toThrow('Tensor: 5 elements cannot have shape [2,3] (6 elements)');
  });
});
