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
 * Placement of one operand's elements in a broadcast output. `same`: the shapes match. `tiled`:
 * the operand repeats every `period` output elements, because its shape without leading 1s is the
 * output's trailing shape (a bias added to (B, T, C)). `indexed`: any other broadcast, with one
 * source index per output element.
 */
export type OperandLayout = { kind: 'same' } | { kind: 'tiled'; period: number } | { kind: 'indexed'; index: Int32Array };

interface BroadcastPlan {
  shape: number[];
  a: OperandLayout;
  b: OperandLayout;
}

const SAME: OperandLayout = { kind: 'same' };

function planBroadcast(op: string, a: Shape, b: Shape): BroadcastPlan {
  if (sameShape(a, b)) return { shape: [...a], a: SAME, b: SAME };
  const shape = broadcastShapes(op, a, b);
  return { shape, a: operandLayout(a, shape), b: operandLayout(b, shape) };
}

/** Returns how an operand of shape `from` maps onto the broadcast shape `to`. */
export function operandLayout(from: Shape, to: Shape): OperandLayout {
  if (sameShape(from, to)) return SAME;
  let lead = 0;
  while (lead < from.length && from[lead] === 1) lead++;
  const core = from.slice(lead);
  const period = sizeOf(core);
  const trailing = to.slice(to.length - core.length);
  if (period > 0 && sameShape(core, trailing)) return { kind: 'tiled', period };
  return { kind: 'indexed', index: indexMap(from, to) };
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

/** Returns the operand's values laid out like the n-element output (the data itself when the shapes match). */
export function expandOperand(data: FloatArray, layout: OperandLayout, n: number): FloatArray {
  if (layout.kind === 'same') return data;
  const out = data instanceof Float64Array ? new Float64Array(n) : new Float32Array(n);
  if (layout.kind === 'tiled') {
    const tile = data.subarray(0, layout.period);
    for (let base = 0; base < n; base += layout.period) out.set(tile, base);
    return out;
  }
  const index = layout.index;
  for (let i = 0; i < n; i++) out[i] = data[index[i]];
  return out;
}

/** Sums `grad` (laid out like the broadcast output) into an array of the operand's size. */
export function reduceToOperand(grad: FloatArray, layout: OperandLayout, operand: Tensor): FloatArray {
  if (layout.kind === 'same') return grad;
  const out = zerosLike(operand);
  if (layout.kind === 'tiled') {
    const period = layout.period;
    for (let base = 0; base < grad.length; base += period) {
      for (let j = 0; j < period; j++) out[j] += grad[base + j];
    }
    return out;
  }
  const index = layout.index;
  for (let i = 0; i < grad.length; i++) out[index[i]] += grad[i];
  return out;
}

type BinaryKind = 'add' | 'sub' | 'mul' | 'div' | 'maximum';

function binaryForward(kind: BinaryKind, a: Tensor, b: Tensor): { out: Tensor; plan: BroadcastPlan } {
  checkSameDtype(kind, a, b);
  const plan = planBroadcast(kind, a.shape, b.shape);
  const out = empty(plan.shape, a.dtype);
  const o = out.data;
  const n = o.length;
  const x = expandOperand(a.data, plan.a, n);
  const y = expandOperand(b.data, plan.b, n);
  // One loop per kind keeps each loop monomorphic, which V8 optimises far better than a callback.
  switch (kind) {
    case 'add':
      for (let i = 0; i < n; i++) o[i] = x[i] + y[i];
      break;
    case 'sub':
      for (let i = 0; i < n; i++) o[i] = x[i] - y[i];
      break;
    case 'mul':
      for (let i = 0; i < n; i++) o[i] = x[i] * y[i];
      break;
    case 'div':
      for (let i = 0; i < n; i++) o[i] = x[i] / y[i];
      break;
    case 'maximum':
      for (let i = 0; i < n; i++) o[i] = Math.max(x[i], y[i]);
      break;
  }
  return { out, plan };
}

// ---------------------------------------------------------------------------------------------
// Binary ops

/** a + b with broadcasting. */
export function add(a: Tensor, b: Tensor): Tensor {
  const { out, plan } = binaryForward('add', a, b);
  // d(a + b) = da + db
  return record('add', out, [a, b], (g, needs) => [
    needs[0] ? reduceToOperand(g, plan.a, a) : null,
    needs[1] ? reduceToOperand(g, plan.b, b) : null,
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
      gb = reduceToOperand(negated, plan.b, b);
    }
    return [needs[0] ? reduceToOperand(g, plan.a, a) : null, gb];
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
      const bv = expandOperand(b.data, plan.b, t.length);
      for (let i = 0; i < t.length; i++) t[i] *= bv[i];
      grads[0] = reduceToOperand(t, plan.a, a);
    }
    if (needs[1]) {
      const t = g.slice();
      const av = expandOperand(a.data, plan.a, t.length);
      for (let i = 0; i < t.length; i++) t[i] *= av[i];
      grads[1] = reduceToOperand(t, plan.b, b);
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
    const bv = expandOperand(b.data, plan.b, g.length);
    if (needs[0]) {
      const t = g.slice();
      for (let i = 0; i < t.length; i++) t[i] /= bv[i];
      grads[0] = reduceToOperand(t, plan.a, a);
    }
    if (needs[1]) {
      const t = g.slice();
      const av = expandOperand(a.data, plan.a, t.length);
      for (let i = 0; i < t.length; i++) t[i] *= -av[i] / (bv[i] * bv[i]);
      grads[1] = reduceToOperand(t, plan.b, b);
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
    const av = expandOperand(a.data, plan.a, g.length);
    const bv = expandOperand(b.data, plan.b, g.length);
    for (let i = 0; i < g.length; i++) {
      const x = av[i];
      const y = bv[i];
      let shareA = 0.5;
      if (x > y) shareA = 1;
      else if (x < y) shareA = 0;
      ga[i] *= shareA;
      gb[i] *= 1 - shareA;
    }
    return [
      needs[0] ? reduceToOperand(ga, plan.a, a) : null,
      needs[1] ? reduceToOperand(gb, plan.b, b) : null,
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

// The ops a model calls per activation (neg, exp, sqrt, tanh, sigmoid, relu, square) have their
// own loops. mapUnary and scaleGrad take callbacks from many ops, so V8 cannot inline those calls,
// and the RWKV-7 time mix spent about a fifth of a training step in them.

export function neg(x: Tensor): Tensor {
  const out = empty(x.shape, x.dtype);
  const xs = x.data;
  const ys = out.data;
  for (let i = 0; i < xs.length; i++) ys[i] = -xs[i];
  // d(−x) = −dx
  return record('neg', out, [x], (g) => {
    const gx = g.slice();
    for (let i = 0; i < gx.length; i++) gx[i] = -gx[i];
    return [gx];
  });
}

export function exp(x: Tensor): Tensor {
  const out = empty(x.shape, x.dtype);
  const xs = x.data;
  const y = out.data;
  for (let i = 0; i < xs.length; i++) y[i] = Math.exp(xs[i]);
  // d(eˣ) = eˣ dx
  return record('exp', out, [x], (g) => [multiplied(g, y)]);
}

/** Returns g ⊙ factor as a new array. */
function multiplied(g: FloatArray, factor: FloatArray): FloatArray {
  const out = g.slice();
  for (let i = 0; i < out.length; i++) out[i] *= factor[i];
  return out;
}

export function log(x: Tensor): Tensor {
  const out = mapUnary(x, Math.log);
  const xs = x.data;
  // d(ln x) = dx / x
  return record('log', out, [x], (g) => [scaleGrad(g, (i) => 1 / xs[i])]);
}

export function sqrt(x: Tensor): Tensor {
  const out = empty(x.shape, x.dtype);
  const xs = x.data;
  const y = out.data;
  for (let i = 0; i < xs.length; i++) y[i] = Math.sqrt(xs[i]);
  // d(√x) = dx / (2√x)
  return record('sqrt', out, [x], (g) => {
    const gx = g.slice();
    for (let i = 0; i < gx.length; i++) gx[i] *= 0.5 / y[i];
    return [gx];
  });
}

export function tanh(x: Tensor): Tensor {
  const out = empty(x.shape, x.dtype);
  const xs = x.data;
  const y = out.data;
  for (let i = 0; i < xs.length; i++) y[i] = Math.tanh(xs[i]);
  // d(tanh x) = (1 − tanh² x) dx
  return record('tanh', out, [x], (g) => {
    const gx = g.slice();
    for (let i = 0; i < gx.length; i++) gx[i] *= 1 - y[i] * y[i];
    return [gx];
  });
}

/** Logistic sigmoid, computed without overflow for large |x|. */
export function sigmoidScalar(v: number): number {
  if (v >= 0) return 1 / (1 + Math.exp(-v));
  const e = Math.exp(v);
  return e / (1 + e);
}

export function sigmoid(x: Tensor): Tensor {
  const out = empty(x.shape, x.dtype);
  const xs = x.data;
  const y = out.data;
  for (let i = 0; i < xs.length; i++) y[i] = sigmoidScalar(xs[i]);
  // dσ(x) = σ(x)(1 − σ(x)) dx
  return record('sigmoid', out, [x], (g) => {
    const gx = g.slice();
    for (let i = 0; i < gx.length; i++) gx[i] *= y[i] * (1 - y[i]);
    return [gx];
  });
}

/** max(x, 0). The derivative at exactly 0 is 0, as in PyTorch and TensorFlow. */
export function relu(x: Tensor): Tensor {
  const out = empty(x.shape, x.dtype);
  const xs = x.data;
  const y = out.data;
  for (let i = 0; i < xs.length; i++) y[i] = xs[i] > 0 ? xs[i] : 0;
  return record('relu', out, [x], (g) => {
    const gx = g.slice();
    for (let i = 0; i < gx.length; i++) if (!(xs[i] > 0)) gx[i] = 0;
    return [gx];
  });
}

const GELU_C = Math.sqrt(2 / Math.PI);

/**
 * GELU in GPT-2's tanh form ("gelu_new"): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). GPT-2's
 * released weights expect this form, not the exact erf GELU (they differ by ~4e-4 at x = −3).
 */
export function geluScalar(v: number): number {
  return 0.5 * v * (1 + Math.tanh(GELU_C * (v + 0.044715 * v * v * v)));
}

/** gelu'(x) = 0.5(1 + tanh u) + 0.5·x·(1 − tanh² u)·c·(1 + 3·0.044715·x²), u = c(x + 0.044715x³). */
function geluDerivative(v: number): number {
  // sech² is computed as 1 − tanh², never through cosh, which overflows for large |u|.
  const th = Math.tanh(GELU_C * (v + 0.044715 * v * v * v));
  return 0.5 * (1 + th) + 0.5 * v * (1 - th * th) * GELU_C * (1 + 3 * 0.044715 * v * v);
}

// GELU runs on every MLP activation (4C values per token), so it gets its own loops instead of
// mapUnary/scaleGrad, whose shared callback call sites V8 cannot inline.
export function gelu(x: Tensor): Tensor {
  const out = empty(x.shape, x.dtype);
  const xs = x.data;
  const ys = out.data;
  for (let i = 0; i < xs.length; i++) ys[i] = geluScalar(xs[i]);
  return record('gelu', out, [x], (g) => {
    const gx = g.slice();
    for (let i = 0; i < gx.length; i++) gx[i] *= geluDerivative(xs[i]);
    return [gx];
  });
}

/** ln(1 + eˣ), computed as max(x, 0) + ln(1 + e^−|x|) so it neither overflows nor loses small values. */
export function softplus(x: Tensor): Tensor {
  const out = mapUnary(x, (v) => Math.max(v, 0) + Math.log1p(Math.exp(-Math.abs(v))));
  const xs = x.data;
  // d softplus(x) = σ(x) dx
  return record('softplus', out, [x], (g) => [scaleGrad(g, (i) => sigmoidScalar(xs[i]))]);
}

export function square(x: Tensor): Tensor {
  const out = empty(x.shape, x.dtype);
  const xs = x.data;
  const y = out.data;
  for (let i = 0; i < xs.length; i++) y[i] = xs[i] * xs[i];
  // d(x²) = 2x dx
  return record('square', out, [x], (g) => {
    const gx = g.slice();
    for (let i = 0; i < gx.length; i++) gx[i] *= 2 * xs[i];
    return [gx];
  });
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

/** x · s for a constant s (attention scores are scaled this way, so it has its own loops). */
export function mulScalar(x: Tensor, s: number): Tensor {
  const out = empty(x.shape, x.dtype);
  const xs = x.data;
  const ys = out.data;
  for (let i = 0; i < xs.length; i++) ys[i] = xs[i] * s;
  return record('mulScalar', out, [x], (g) => {
    const gx = g.slice();
    for (let i = 0; i < gx.length; i++) gx[i] *= s;
    return [gx];
  });
}

/** x + s for a constant s. */
export function addScalar(x: Tensor, s: number): Tensor {
  const out = empty(x.shape, x.dtype);
  const xs = x.data;
  const ys = out.data;
  for (let i = 0; i < xs.length; i++) ys[i] = xs[i] + s;
  return record('addScalar', out, [x], (g) => [g]);
}

/** Limits x to [low, high]; the gradient passes only where x is strictly inside. */
export function clamp(x: Tensor, low: number, high: number): Tensor {
  if (!(low <= high)) throw new RangeError(`clamp: low must be ≤ high, got low=${low} high=${high}`);
  const out = mapUnary(x, (v) => Math.min(Math.max(v, low), high));
  const xs = x.data;
  return record('clamp', out, [x], (g) => [scaleGrad(g, (i) => (xs[i] > low && xs[i] < high ? 1 : 0))]);
}
