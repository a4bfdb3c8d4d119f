// Losses over rows of logits (last axis = vocabulary). Both average over the valid rows only and
// return 0 with a zero gradient when no row is valid, never NaN.
import { record } from '../../autograd/tape.js';
import {
  allocateRowExpSums,
  softmaxRowKernelsFor,
  type KlGradientParams,
  type KlRowSums,
} from '../../kernels/wasm/softmax-rows.js';
import { allocate } from '../dtype.js';
import { fmt, sameShape, ShapeError } from '../shape.js';
import { Tensor } from '../tensor.js';
import { checkSameDtype, zerosLike } from './util.js';

// Both losses run on row kernels (src/kernels/wasm/softmax-rows.ts): WebAssembly SIMD for float32
// logits where the runtime has it (float32 exps, float64 sums), else a float64 TypeScript loop.
// Each pass costs one exp per logit and side.

/** Returns the indices of the rows for which `keep(r)` is true, ascending. */
function rowsWhere(rows: number, keep: (r: number) => boolean): Int32Array {
  const selected = new Int32Array(rows);
  let count = 0;
  for (let r = 0; r < rows; r++) if (keep(r)) selected[count++] = r;
  return selected.subarray(0, count);
}

/**
 * Mean cross-entropy of `logits` [..., V] against integer `targets` (one per row). Rows whose
 * target equals `ignoreIndex` are left out of both the sum and the count.
 */
export function crossEntropy(logits: Tensor, targets: ArrayLike<number>, ignoreIndex = -100): Tensor {
  if (logits.rank < 1) throw new ShapeError(`crossEntropy: logits need at least 1 dimension, got ${fmt(logits.shape)}`);
  const V = logits.shape[logits.rank - 1];
  const rows = V === 0 ? 0 : logits.size / V;
  if (targets.length !== rows) {
    throw new ShapeError(`crossEntropy: ${targets.length} targets for ${rows} rows of logits ${fmt(logits.shape)}`);
  }
  let count = 0;
  for (let r = 0; r < rows; r++) {
    const t = targets[r];
    if (t === ignoreIndex) continue;
    if (!Number.isInteger(t) || t < 0 || t >= V) {
      throw new RangeError(`crossEntropy: target ${t} at row ${r} is out of range [0, ${V}) (ignoreIndex is ${ignoreIndex})`);
    }
    count++;
  }

  // loss_r = logsumexp(x_r) − x_r[target] with logsumexp = shift + log Σ exp(x − shift). The
  // per-row sums are kept for the backward, so each logit costs one exp in the forward and one in
  // the backward (V = 50257 for GPT-2).
  const x = logits.data;
  const valid = rowsWhere(rows, (r) => targets[r] !== ignoreIndex);
  const kernels = softmaxRowKernelsFor(x);
  const sums = allocateRowExpSums(rows);
  kernels.expSums(x, V, valid, 1, sums);
  let total = 0;
  for (const r of valid) total += sums.shift[r] + Math.log(sums.sum[r]) - x[r * V + targets[r]];
  const out = new Tensor(allocate(logits.dtype, 1), []);
  out.data[0] = count === 0 ? 0 : total / count;

  // d loss / d logits = (softmax − onehot(target)) / count on valid rows, 0 on ignored rows, with
  // softmax = exp(x − shift) / sum.
  return record('crossEntropy', out, [logits], (g) => {
    const gx = zerosLike(logits);
    if (count === 0) return [gx];
    const scale = g[0] / count;
    const rowScale = new Float64Array(rows);
    for (const r of valid) rowScale[r] = scale / sums.sum[r];
    kernels.scaledExp(x, V, valid, 1, sums.shift, rowScale, gx);
    for (const r of valid) gx[r * V + targets[r]] -= scale;
    return [gx];
  });
}

export interface KlOptions {
  /** Softmax temperature T > 0 applied to both logits; the loss is multiplied by T². */
  temperature?: number;
  /** One entry per row: nonzero = include the row. Omitted = every row. */
  mask?: ArrayLike<number>;
}

/**
 * Forward KL(teacher ‖ student) = Σ_v p_t(v)·(log p_t(v) − log p_s(v)), averaged over valid rows
 * and multiplied by T² so the gradient scale does not change with T (Hinton et al., 2015).
 * Terms with p_t(v) = 0 contribute exactly 0 (0·log 0 = 0), so −∞ logits on both sides give 0.
 * Argument order matches the maths: teacher first, student second.
 */
export function klDivergence(teacherLogits: Tensor, studentLogits: Tensor, options: KlOptions = {}): Tensor {
  const T = options.temperature ?? 1;
  if (!(T > 0) || !Number.isFinite(T)) throw new RangeError(`klDivergence: temperature must be a finite number > 0, got ${T}`);
  if (!sameShape(teacherLogits.shape, studentLogits.shape)) {
    throw new ShapeError(`klDivergence: teacher and student logits must have the same shape, got teacher=${fmt(teacherLogits.shape)} student=${fmt(studentLogits.shape)}`);
  }
  checkSameDtype('klDivergence', teacherLogits, studentLogits);
  const V = teacherLogits.shape[teacherLogits.rank - 1] ?? 1;
  const rows = V === 0 ? 0 : teacherLogits.size / V;
  const mask = options.mask;
  if (mask !== undefined && mask.length !== rows) {
    throw new ShapeError(`klDivergence: mask has ${mask.length} entries for ${rows} rows of logits ${fmt(teacherLogits.shape)}`);
  }
  const valid = rowsWhere(rows, (r) => mask === undefined || mask[r] !== 0);
  const count = valid.length;

  // Per row and side, z = (logits − shift) / T with shift = the row max, e = exp(z), p = e / sum and
  // log p = z − log sum, so
  //   KL_r = Σ p_t·(z_t − z_s) − log sum_t + log sum_s,
  // where entries with p_t = 0 add exactly 0. Two exps per logit; the sums are kept for the backward.
  const a = 1 / T;
  const tx = teacherLogits.data;
  const sx = studentLogits.data;
  const kernels = softmaxRowKernelsFor(sx);
  const sums: KlRowSums = { teacher: allocateRowExpSums(rows), student: allocateRowExpSums(rows), weighted: new Float64Array(rows) };
  kernels.klSums(tx, sx, V, valid, a, sums);
  const klRows = new Float64Array(rows);
  let total = 0;
  for (const r of valid) {
    klRows[r] = klOfRow(sums.teacher.sum[r], sums.student.sum[r], sums.weighted[r]);
    total += klRows[r];
  }
  const out = new Tensor(allocate(studentLogits.dtype, 1), []);
  out.data[0] = count === 0 ? 0 : (T * T * total) / count;

  // ∂KL/∂z_s = p_s − p_t and ∂KL/∂z_t = p_t ⊙ (log p_t − log p_s − KL), with log p_t − log p_s =
  // z_t − z_s + log sum_s − log sum_t (the shifts are constants per row). The chain rule through /T
  // and the T² factor leaves a factor T / count.
  return record('klDivergence', out, [teacherLogits, studentLogits], (g, needs) => {
    const gt = needs[0] ? zerosLike(teacherLogits) : null;
    const gs = needs[1] ? zerosLike(studentLogits) : null;
    if (count === 0) return [gt, gs];
    const scale = (g[0] * T) / count;
    const params = klGradientParams(sums, klRows, valid, scale);
    kernels.klGradients(tx, sx, V, valid, a, params, gt, gs);
    return [gt, gs];
  });
}

/**
 * KL of one row from its sums. A teacher row of −∞ only has no mass, so every term is 0·log 0 = 0.
 * A student row of −∞ only puts p_s = 0 under the teacher's mass, so the KL is +∞.
 */
export function klOfRow(sumT: number, sumS: number, weighted: number): number {
  if (sumT === 0) return 0;
  if (sumS === 0) return Infinity;
  // NOTE: from the float32 kernels this sum of order-1 terms has an absolute error near 1e-7, so
  // the KL of nearly equal rows can come out slightly negative.
  return weighted / sumT - Math.log(sumT) + Math.log(sumS);
}

/** Per-row inputs of the KL gradient kernel; a side without mass gets p = 0 (scale 0). */
export function klGradientParams(sums: KlRowSums, klRows: Float64Array, valid: Int32Array, scale: number): KlGradientParams {
  const rows = klRows.length;
  const params: KlGradientParams = {
    shiftT: sums.teacher.shift,
    shiftS: sums.student.shift,
    scaleT: new Float64Array(rows),
    scaleS: new Float64Array(rows),
    offset: new Float64Array(rows),
  };
  for (const r of valid) {
    const sumT = sums.teacher.sum[r];
    const sumS = sums.student.sum[r];
    params.scaleT[r] = sumT === 0 ? 0 : scale / sumT;
    params.scaleS[r] = sumS === 0 ? 0 : scale / sumS;
    params.offset[r] = Math.log(sumS) - Math.log(sumT) - klRows[r];
  }
  return params;
}
