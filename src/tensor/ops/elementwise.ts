// Elementwise ops. Binary ops broadcast like NumPy. Their backward sums the gradient back to each
// operand's own shape, over prepended axes and over axes where the operand had size 1.
import { record } from '../../autograd/tape.js';
import type { FloatArray } from '../dtype.js';
import { broadcastShapes, broadcastStrides, sameShape, sizeOf, type Shape } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { checkSameDtype, empty, zerosLike } from './util.js';

// ---------------------------------------------------------------------------------------------
// Broadcasting

/**
 * For a binary op on shapes a and b, returns the output shape and, for every output element, the
 * flat index of the a and b element it reads. The same maps scatter the gradient back in the
 * backward pass. Null maps mean "same shape, index i".
 */
interface BroadcastPlan {
  shape: number[];
  aIndex: Int32Array | null;
  bIndex: Int32Array | null;
}

function planBroadcast(op: string, a: Shape, b: Shape): BroadcastPlan {
  if (sameShape(a, b)) return { shape: [...a], aIndex: null, bIndex: null };
  const shape = broadcastShapes(op, a, b);
  return { shape, aIndex: indexMap(a, shape), bIndex: indexMap(b, shape) };
}

/** Flat source index of every element of the broadcast shape `to`, reading a tensor of shape `from`. */
export function indexMap(from: Shape, to: Shape): Int32Array {
  const n = sizeOf(to);
  const map = new Int32Array(n);
  const strides = broadcastStrides(from, to);
  const rank = to.length;
  const counter = new Array<number>(rank).fill(0);
  let offset = 0;
  for (let i = 0; i < n; i++) {
    map[i] = offset;
    // Advance the multi-index like an odometer, updating the source offset incrementally.
    for (let d = rank - 1; d >= 0; d--) {
      counter[d]++;
      offset += strides[d];
      if (counter[d] < to[d]) break;
      offset -= strides[d] * to[d];
      counter[d] = 0;
    }
  }
  return map;
}

/** Sums `grad` (laid out like the broadcast output) into an array of the operand's size. */
function reduceToOperand(grad: FloatArray, index: Int32Array | null, operand: Tensor): FloatArray {
  if (index === null) return grad;
  const out = zerosLike(operand);
  for (let i = 0; i < grad.length; i++) out[index[i]] += grad[i];
  return out;
}

type BinaryKind = 'add' | 'sub' | 'mul' | 'div' | 'maximum';

function binaryForward(kind: BinaryKind, a: Tensor, b: Tensor): { out: Tensor; plan: BroadcastPlan } {
  checkSameDtype(kind, a, b);
  const plan = planBroadcast(kind, a.shape, b.shape);
  const out = empty(plan.shape, a.dtype);
  const x = a.data;
  const y = b.data;
  const o = out.data;
  const ai = plan.aIndex;
  const bi = plan.bIndex;
  const n = o.length;
  // One loop per kind keeps each loop monomorphic, which V8 optimises far better than a callback.
  switch (kind) {
    case 'add':
      if (ai === null || bi === null) for (let i = 0; i < n; i++) o[i] = x[i] + y[i];
      else for (let i = 0; i < n; i++) o[i] = x[ai[i]] + y[bi[i]];
      break;
    case 'sub':
      if (ai === null || bi === null) for (let i = 0; i < n; i++) o[i] = x[i] - y[i];
      else for (let i = 0; i < n; i++) o[i] = x[ai[i]] - y[bi[i]];
      break;
    case 'mul':
      if (ai === null || bi === null) for (let i = 0; i < n; i++) o[i] = x[i] * y[i];
      else for (let i = 0; i < n; i++) o[i] = x[ai[i]] * y[bi[i]];
      break;
    case 'div':
      if (ai === null || bi === null) for (let i = 0; i < n; i++) o[i] = x[i] / y[i];
      else for (let i = 0; i < n; i++) o[i] = x[ai[i]] / y[bi[i]];
      break;
    case 'maximum':
      if (ai === null || bi === null) for (let i = 0; i < n; i++) o[i] = Math.max(x[i], y[i]);
      else for (let i = 0; i < n; i++) o[i] = Math.max(x[ai[i]], y[bi[i]]);
      break;
  }
  return { out, plan };
}

/** Reads operand element for output element i. */
function at(data: FloatArray, index: Int32Array | null, i: number): number {
  return index === null ? data[i] : data[index[i]];
}

// ---------------------------------------------------------------------------------------------
// Binary ops

/** a + b with broadcasting. */
export function add(a: Tensor, b: Tensor): Tensor {
  const { out, plan } = binaryForward('add', a, b);
  // d(a + b) = da + db
  return record('add', out, [a, b], (g, needs) => [
    needs[0] ? reduceToOperand(g, plan.aIndex, a) : null,
    needs[1] ? reduceToOperand(g, plan.bIndex, b) : null,
  ]);
}

/** a − b with broadcasting. */
export function sub(a: Tensor, b: Tensor): Tensor {
  const { out, plan } = binaryForward('sub', a, b);
  // d(a − b) = da − db
  return record('sub', out, [a, b], (g, needs) => {
    let gb: FloatArray | null = null;
    if (needs[1]) {
      const negated = g.slice();
      for (let i = 0; i < negated.length; i++) negated[i] = -negated[i];
      gb = reduceToOperand(negated, plan.bIndex, b);
    }
    return [needs[0] ? reduceToOperand(g, plan.aIndex, a) : null, gb];
  });
}

/** a ⊙ b with broadcasting. */
export function mul(a: Tensor, b: Tensor): Tensor {
  const { out, plan } = binaryForward('mul', a, b);
  // d(a·b) = b·da + a·db
  return record('mul', out, [a, b], (g, needs) => {
    const grads: Array<FloatArray | null> = [null, null];
    if (needs[0]) {
      const t = g.slice();
      for (let i = 0; i < t.length; i++) t[i] *= at(b.data, plan.bIndex, i);
      grads[0] = reduceToOperand(t, plan.aIndex, a);
    }
    if (needs[1]) {
      const t = g.slice();
      for (let i = 0; i < t.length; i++) t[i] *= at(a.data, plan.aIndex, i);
      grads[1] = reduceToOperand(t, plan.bIndex, b);
    }
    return grads;
  });
}

/** a / b with broadcasting. */
export function div(a: Tensor, b: Tensor): Tensor {
  const { out, plan } = binaryForward('div', a, b);
  // d(a/b) = da/b − a·db/b²
  return record('div', out, [a, b], (g, needs) => {
    const grads: Array<FloatArray | null> = [null, null];
    if (needs[0]) {
      const t = g.slice();
      for (let i = 0; i < t.length; i++) t[i] /= at(b.data, plan.bIndex, i);
      grads[0] = reduceToOperand(t, plan.aIndex, a);
    }
    if (needs[1]) {
      const t = g.slice();
      for (let i = 0; i < t.length; i++) {
        const bv = at(b.data, plan.bIndex, i);
        t[i] *= -at(a.data, plan.aIndex, i) / (bv * bv);
      }
      grads[1] = reduceToOperand(t, plan.bIndex, b);
    }
    return grads;
  });
}

/**
 * Elementwise maximum with broadcasting. Where a = b the gradient is split evenly (0.5 each), so
 * the two contributions always sum to the upstream gradient (TensorFlow's convention for ties).
 */
export function maximum(a: Tensor, b: Tensor): Tensor {
  const { out, plan } = binaryForward('maximum', a, b);
  return record('maximum', out, [a, b], (g, needs) => {
    const ga = g.slice();
    const gb = g.slice();
    for (let i = 0; i < g.length; i++) {
      const x = at(a.data, plan.aIndex, i);
      const y = at(b.data, plan.bIndex, i);
      let shareA = 0.5;
      if (x > y) shareA = 1;
      else if (x < y) shareA = 0;
      ga[i] *= shareA;
      gb[i] *= 1 - shareA;
    }
    return [
      needs[0] ? reduceToOperand(ga, plan.aIndex, a) : null,
      needs[1] ? reduceToOperand(gb, plan.bIndex, b) : null,
    ];
  });
}

// ---------------------------------------------------------------------------------------------
// Unary ops. Each forward is one loop; each backward multiplies the upstream gradient by the
// derivative written above it, from the saved input x or output y.

function mapUnary(x: Tensor, f: (v: number) => number): Tensor {
  const out = empty(x.shape, x.dtype);
  const src = x.data;
  const dst = out.data;
  for (let i = 0; i < src.length; i++) dst[i] = f(src[i]);
  return out;
}

function scaleGrad(g: FloatArray, derivative: (i: number) => number): FloatArray {
  const out = g.slice();
  for (let i = 0; i < out.length; i++) out[i] *= derivative(i);
  return out;
}

export function neg(x: Tensor): Tensor {
  const out = mapUnary(x, (v) => -v);
  // d(−x) = −dx
  return record('neg', out, [x], (g) => [scaleGrad(g, () => -1)]);
}

export function exp(x: Tensor): Tensor {
  const out = mapUnary(x, Math.exp);
  const y = out.data;
  // d(eˣ) = eˣ dx
  return record('exp', out, [x], (g) => [scaleGrad(g, (i) => y[i])]);
}

export function log(x: Tensor): Tensor {
  const out = mapUnary(x, Math.log);
  const xs = x.data;
  // d(ln x) = dx / x
  return record('log', out, [x], (g) => [scaleGrad(g, (i) => 1 / xs[i])]);
}

export function sqrt(x: Tensor): Tensor {
  const out = mapUnary(x, Math.sqrt);
  const y = out.data;
  // d(√x) = dx / (2√x)
  return record('sqrt', out, [x], (g) => [scaleGrad(g, (i) => 0.5 / y[i])]);
}

export function tanh(x: Tensor): Tensor {
  const out = mapUnary(x, Math.tanh);
  const y = out.data;
  // d(tanh x) = (1 − tanh² x) dx
  return record('tanh', out, [x], (g) => [scaleGrad(g, (i) => 1 - y[i] * y[i])]);
}

/** Logistic sigmoid, computed without overflow for large |x|. */
export function sigmoidScalar(v: number): number {
  if (v >= 0) return 1 / (1 + Math.exp(-v));
  const e = Math.exp(v);
  return e / (1 + e);
}

export function sigmoid(x: Tensor): Tensor {
  const out = mapUnary(x, sigmoidScalar);
  const y = out.data;
  // dσ(x) = σ(x)(1 − σ(x)) dx
  return record('sigmoid', out, [x], (g) => [scaleGrad(g, (i) => y[i] * (1 - y[i]))]);
}

/** max(x, 0). The derivative at exactly 0 is 0, as in PyTorch and TensorFlow. */
export function relu(x: Tensor): Tensor {
  const out = mapUnary(x, (v) => (v > 0 ? v : 0));
  const xs = x.data;
  return record('relu', out, [x], (g) => [scaleGrad(g, (i) => (xs[i] > 0 ? 1 : 0))]);
}

const GELU_C = Math.sqrt(2 / Math.PI);

/**
 * GELU in GPT-2's tanh form ("gelu_new"): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). GPT-2's
 * released weights expect this form, not the exact erf GELU (they differ by ~4e-4 at x = −3).
 */
export function geluScalar(v: number): number {
  return 0.5 * v * (1 + Math.tanh(GELU_C * (v + 0.044715 * v * v * v)));
}

export function gelu(x: Tensor): Tensor {
  const out = mapUnary(x, geluScalar);
  const xs = x.data;
  // gelu'(x) = 0.5(1 + tanh u) + 0.5·x·(1 − tanh² u)·c·(1 + 3·0.044715·x²), u = c(x + 0.044715x³).
  // sech² is computed as 1 − tanh², never through cosh, which overflows for large |u|.
  return record('gelu', out, [x], (g) => [
    scaleGrad(g, (i) => {
      const v = xs[i];
      const th = Math.tanh(GELU_C * (v + 0.044715 * v * v * v));
      return 0.5 * (1 + th) + 0.5 * v * (1 - th * th) * GELU_C * (1 + 3 * 0.044715 * v * v);
    }),
  ]);
}

/** ln(1 + eˣ), computed as max(x, 0) + ln(1 + e^−|x|) so it neither overflows nor loses small values. */
export function softplus(x: Tensor): Tensor {
  const out = mapUnary(x, (v) => Math.max(v, 0) + Math.log1p(Math.exp(-Math.abs(v))));
  const xs = x.data;
  // d softplus(x) = σ(x) dx
  return record('softplus', out, [x], (g) => [scaleGrad(g, (i) => sigmoidScalar(xs[i]))]);
}

export function square(x: Tensor): Tensor {
  const out = mapUnary(x, (v) => v * v);
  const xs = x.data;
  // d(x²) = 2x dx
  return record('square', out, [x], (g) => [scaleGrad(g, (i) => 2 * xs[i])]);
}

/** |x|; the derivative at 0 is 0 (the subgradient PyTorch uses). */
export function abs(x: Tensor): Tensor {
  const out = mapUnary(x, Math.abs);
  const xs = x.data;
  return record('abs', out, [x], (g) => [scaleGrad(g, (i) => Math.sign(xs[i]))]);
}

/** x^p for a constant exponent p. */
export function powScalar(x: Tensor, p: number): Tensor {
  const out = mapUnary(x, (v) => Math.pow(v, p));
  const xs = x.data;
  // d(xᵖ) = p·x^(p−1) dx
  return record('powScalar', out, [x], (g) => [scaleGrad(g, (i) => p * Math.pow(xs[i], p - 1))]);
}

/** x · s for a constant s. */
export function mulScalar(x: Tensor, s: number): Tensor {
  const out = mapUnary(x, (v) => v * s);
  return record('mulScalar', out, [x], (g) => [scaleGrad(g, () => s)]);
}

/** x + s for a constant s. */
export function addScalar(x: Tensor, s: number): Tensor {
  const out = mapUnary(x, (v) => v + s);
  return record('addScalar', out, [x], (g) => [g]);
}

/** Limits x to [low, high]; the gradient passes only where x is strictly inside. */
export function clamp(x: Tensor, low: number, high: number): Tensor {
  if (!(low <= high)) throw new RangeError(`clamp: low must be ≤ high, got low=${low} high=${high}`);
  const out = mapUnary(x, (v) => Math.min(Math.max(v, low), high));
  const xs = x.data;
  return record('clamp', out, [x], (g) => [scaleGrad(g, (i) => (xs[i] > low && xs[i] < high ? 1 : 0))]);
}
