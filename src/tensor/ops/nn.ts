// Composite ops with fused forward and backward, written for numerical stability. Each works on
// rows along the last axis: `rows` = size / C.
import { record } from '../../autograd/tape.js';
import type { FloatArray } from '../dtype.js';
import { fmt, ShapeError } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { checkSameDtype, empty, zerosLike } from './util.js';

function lastAxis(op: string, x: Tensor): { rows: number; C: number } {
  if (x.rank < 1) throw new ShapeError(`${op}: needs at least 1 dimension, got ${fmt(x.shape)}`);
  const C = x.shape[x.rank - 1];
  return { rows: C === 0 ? 0 : x.size / C, C };
}

function checkAxis(op: string, x: Tensor, axis: number): void {
  if (axis !== -1 && axis !== x.rank - 1) {
    throw new ShapeError(`${op}: only the last axis is supported, got axis ${axis} for x=${fmt(x.shape)}; permute first`);
  }
}

// ---------------------------------------------------------------------------------------------
// softmax and log-softmax

/**
 * Softmax along the last axis: exp(x − max) / Σ exp(x − max). The row maximum is subtracted for
 * stability and is not differentiated (softmax does not change when a constant is added). A row
 * that is entirely −∞ (fully masked) gives zeros, not NaN, and passes no gradient.
 */
export function softmax(x: Tensor, axis = -1): Tensor {
  checkAxis('softmax', x, axis);
  const { rows, C } = lastAxis('softmax', x);
  const out = empty(x.shape, x.dtype);
  const xs = x.data;
  const y = out.data;
  for (let r = 0; r < rows; r++) softmaxRow(xs, y, r * C, C);

  // dx = y ⊙ (g − Σ g⊙y)
  return record('softmax', out, [x], (g) => {
    const gx = zerosLike(x);
    for (let r = 0; r < rows; r++) {
      const base = r * C;
      let dot = 0;
      for (let c = 0; c < C; c++) dot += g[base + c] * y[base + c];
      for (let c = 0; c < C; c++) gx[base + c] = y[base + c] * (g[base + c] - dot);
    }
    return [gx];
  });
}

/** Writes softmax(src[base .. base+C)) into dst; returns log Σ exp(x − max) and the max. */
function softmaxRow(src: FloatArray, dst: FloatArray, base: number, C: number): { max: number; logSum: number } {
  let max = -Infinity;
  for (let c = 0; c < C; c++) if (src[base + c] > max) max = src[base + c];
  if (max === -Infinity) {
    for (let c = 0; c < C; c++) dst[base + c] = 0;
    return { max, logSum: -Infinity };
  }
  let sum = 0;
  for (let c = 0; c < C; c++) {
    const e = Math.exp(src[base + c] - max);
    dst[base + c] = e;
    sum += e;
  }
  for (let c = 0; c < C; c++) dst[base + c] /= sum;
  return { max, logSum: Math.log(sum) };
}

/**
 * log-softmax along the last axis, computed as x − max − log Σ exp(x − max), never as log of a
 * softmax (which underflows to −∞ for unlikely classes). Entries that are −∞ stay −∞ and get a
 * zero gradient; an all −∞ row stays all −∞.
 */
export function logSoftmax(x: Tensor, axis = -1): Tensor {
  checkAxis('logSoftmax', x, axis);
  const { rows, C } = lastAxis('logSoftmax', x);
  const out = empty(x.shape, x.dtype);
  const probs = zerosLike(x);
  const xs = x.data;
  const y = out.data;
  for (let r = 0; r < rows; r++) {
    const base = r * C;
    const { max, logSum } = softmaxRow(xs, probs, base, C);
    for (let c = 0; c < C; c++) y[base + c] = max === -Infinity ? -Infinity : xs[base + c] - max - logSum;
  }

  // dx = g − softmax(x)·Σ g
  return record('logSoftmax', out, [x], (g) => {
    const gx = zerosLike(x);
    for (let r = 0; r < rows; r++) {
      const base = r * C;
      let total = 0;
      for (let c = 0; c < C; c++) if (xs[base + c] !== -Infinity) total += g[base + c];
      for (let c = 0; c < C; c++) {
        gx[base + c] = xs[base + c] === -Infinity ? 0 : g[base + c] - probs[base + c] * total;
      }
    }
    return [gx];
  });
}

// ---------------------------------------------------------------------------------------------
// Normalisation

/**
 * Normalises groups of D consecutive elements to zero mean and unit variance, then applies a
 * per-channel affine transform with period C (weight/bias index = position within the row).
 * Variance is biased (divides by D) and eps sits inside the square root, as in PyTorch.
 */
function normalizeGroups(
  op: 'layerNorm' | 'groupNorm',
  x: Tensor,
  D: number,
  C: number,
  weight: Tensor | null,
  bias: Tensor | null,
  eps: number,
): Tensor {
  if (!(eps >= 0) || !Number.isFinite(eps)) throw new RangeError(`${op}: eps must be a finite non-negative number, got ${eps}`);
  for (const [label, p] of [['weight', weight], ['bias', bias]] as const) {
    if (p !== null && (p.rank !== 1 || p.shape[0] !== C)) {
      throw new ShapeError(`${op}: ${label} must have shape [${C}], got ${label}=${fmt(p.shape)} for x=${fmt(x.shape)}`);
    }
    if (p !== null) checkSameDtype(op, x, p);
  }
  const groups = D === 0 ? 0 : x.size / D;
  const xs = x.data;
  const out = empty(x.shape, x.dtype);
  const y = out.data;
  const xhat = zerosLike(x);
  const rstd = new Float64Array(groups);
  const w = weight?.data;
  const b = bias?.data;

  for (let gi = 0; gi < groups; gi++) {
    const base = gi * D;
    let mean = 0;
    for (let i = 0; i < D; i++) mean += xs[base + i];
    mean /= D;
    let variance = 0;
    for (let i = 0; i < D; i++) {
      const d = xs[base + i] - mean;
      variance += d * d;
    }
    variance /= D;
    const r = 1 / Math.sqrt(variance + eps);
    rstd[gi] = r;
    for (let i = 0; i < D; i++) {
      const c = (base + i) % C;
      const n = (xs[base + i] - mean) * r;
      xhat[base + i] = n;
      y[base + i] = n * (w === undefined ? 1 : w[c]) + (b === undefined ? 0 : b[c]);
    }
  }

  const inputs = [x, ...(weight === null ? [] : [weight]), ...(bias === null ? [] : [bias])];
  return record(op, out, inputs, (g, needs) => {
    const gx = needs[0] ? zerosLike(x) : null;
    const gw = weight !== null ? zerosLike(weight) : null;
    const gb = bias !== null ? zerosLike(bias) : null;
    for (let gi = 0; gi < groups; gi++) {
      const base = gi * D;
      // With n = x̂ and dn = g·w: dx = rstd · (dn − mean(dn) − n · mean(dn ⊙ n)).
      let meanDn = 0;
      let meanDnN = 0;
      for (let i = 0; i < D; i++) {
        const c = (base + i) % C;
        const dn = g[base + i] * (w === undefined ? 1 : w[c]);
        meanDn += dn;
        meanDnN += dn * xhat[base + i];
        if (gw !== null) gw[c] += g[base + i] * xhat[base + i];
        if (gb !== null) gb[c] += g[base + i];
      }
      meanDn /= D;
      meanDnN /= D;
      if (gx !== null) {
        for (let i = 0; i < D; i++) {
          const c = (base + i) % C;
          const dn = g[base + i] * (w === undefined ? 1 : w[c]);
          gx[base + i] = rstd[gi] * (dn - meanDn - xhat[base + i] * meanDnN);
        }
      }
    }
    const grads: Array<FloatArray | null> = [gx];
    if (weight !== null) grads.push(gw);
    if (bias !== null) grads.push(gb);
    return grads;
  });
}

/** Layer normalisation over the last axis with optional affine weight and bias of shape [C]. */
export function layerNorm(x: Tensor, weight: Tensor | null, bias: Tensor | null, eps = 1e-5): Tensor {
  const { C } = lastAxis('layerNorm', x);
  return normalizeGroups('layerNorm', x, C, C, weight, bias, eps);
}

/**
 * Group normalisation over the last axis: its C channels split into `groups` consecutive groups
 * (RWKV-7 uses one group per head), each normalised on its own, then a per-channel affine
 * transform. RWKV-7 uses eps = 64e-5, not the usual 1e-5.
 */
export function groupNorm(x: Tensor, groups: number, weight: Tensor | null, bias: Tensor | null, eps = 1e-5): Tensor {
  const { C } = lastAxis('groupNorm', x);
  if (!Number.isInteger(groups) || groups < 1 || C % groups !== 0) {
    throw new ShapeError(`groupNorm: ${groups} groups must divide the last dimension ${C}, got x=${fmt(x.shape)}`);
  }
  return normalizeGroups('groupNorm', x, C / groups, C, weight, bias, eps);
}

/**
 * x / max(‖x‖₂, eps) along the last axis (PyTorch's F.normalize). Below the clamp the op is a
 * plain scaling by 1/eps and its gradient follows that branch.
 */
export function l2Normalize(x: Tensor, eps = 1e-12): Tensor {
  const { rows, C } = lastAxis('l2Normalize', x);
  const xs = x.data;
  const out = empty(x.shape, x.dtype);
  const y = out.data;
  const norms = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const base = r * C;
    let sq = 0;
    for (let c = 0; c < C; c++) sq += xs[base + c] * xs[base + c];
    const norm = Math.sqrt(sq);
    norms[r] = norm;
    const d = Math.max(norm, eps);
    for (let c = 0; c < C; c++) y[base + c] = xs[base + c] / d;
  }
  // Unclamped: dx = (g − y·(y·g)) / ‖x‖. Clamped: dx = g / eps.
  return record('l2Normalize', out, [x], (g) => {
    const gx = zerosLike(x);
    for (let r = 0; r < rows; r++) {
      const base = r * C;
      if (norms[r] <= eps) {
        for (let c = 0; c < C; c++) gx[base + c] = g[base + c] / eps;
        continue;
      }
      let dot = 0;
      for (let c = 0; c < C; c++) dot += y[base + c] * g[base + c];
      for (let c = 0; c < C; c++) gx[base + c] = (g[base + c] - y[base + c] * dot) / norms[r];
    }
    return [gx];
  });
}
