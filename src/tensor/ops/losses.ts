// Losses over rows of logits (last axis = vocabulary). Both average over the valid rows only and
// return 0 with a zero gradient when no row is valid, never NaN.
import { record } from '../../autograd/tape.js';
import { allocate } from '../dtype.js';
import { fmt, sameShape, ShapeError } from '../shape.js';
import { Tensor } from '../tensor.js';
import { checkSameDtype, zerosLike } from './util.js';

/**
 * Returns log Σ_c exp(x_c) of one row, computed as max + log Σ exp(x − max) so it neither
 * overflows nor underflows; −∞ for a row that is entirely −∞.
 */
function logSumExp(src: ArrayLike<number>, base: number, C: number): number {
  let max = -Infinity;
  for (let c = 0; c < C; c++) if (src[base + c] > max) max = src[base + c];
  if (max === -Infinity) return -Infinity;
  let sum = 0;
  for (let c = 0; c < C; c++) sum += Math.exp(src[base + c] - max);
  return max + Math.log(sum);
}

/** Log-softmax of one row into `out`; returns false when the row is entirely −∞. */
function logSoftmaxRow(src: ArrayLike<number>, base: number, C: number, out: Float64Array): boolean {
  const lse = logSumExp(src, base, C);
  if (lse === -Infinity) {
    out.fill(-Infinity);
    return false;
  }
  for (let c = 0; c < C; c++) out[c] = src[base + c] - lse;
  return true;
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

  // loss_r = logsumexp(x_r) − x_r[target]; the per-row logsumexp is kept for the backward, so
  // each logit costs one exp in the forward and one in the backward (V = 50257 for GPT-2).
  const x = logits.data;
  const lse = new Float64Array(rows);
  let total = 0;
  for (let r = 0; r < rows; r++) {
    const t = targets[r];
    if (t === ignoreIndex) continue;
    lse[r] = logSumExp(x, r * V, V);
    total += lse[r] - x[r * V + t];
  }
  const out = new Tensor(allocate(logits.dtype, 1), []);
  out.data[0] = count === 0 ? 0 : total / count;

  // d loss / d logits = (softmax − onehot(target)) / count on valid rows, 0 on ignored rows.
  return record('crossEntropy', out, [logits], (g) => {
    const gx = zerosLike(logits);
    if (count === 0) return [gx];
    const scale = g[0] / count;
    for (let r = 0; r < rows; r++) {
      const t = targets[r];
      if (t === ignoreIndex) continue;
      const base = r * V;
      const shift = lse[r];
      for (let c = 0; c < V; c++) gx[base + c] = Math.exp(x[base + c] - shift) * scale;
      gx[base + t] -= scale;
    }
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
  const valid = (r: number): boolean => mask === undefined || mask[r] !== 0;
  let count = 0;
  for (let r = 0; r < rows; r++) if (valid(r)) count++;

  const tx = teacherLogits.data;
  const sx = studentLogits.data;
  const scaledT = new Float64Array(V);
  const scaledS = new Float64Array(V);
  const logPt = new Float64Array(V);
  const logPs = new Float64Array(V);

  /** Computes both log-distributions of row r at temperature T; returns the row's KL. */
  const rowKl = (r: number): number => {
    for (let c = 0; c < V; c++) {
      scaledT[c] = tx[r * V + c] / T;
      scaledS[c] = sx[r * V + c] / T;
    }
    logSoftmaxRow(scaledT, 0, V, logPt);
    logSoftmaxRow(scaledS, 0, V, logPs);
    let kl = 0;
    for (let c = 0; c < V; c++) {
      if (logPt[c] === -Infinity) continue; // p_t = 0: the term is 0 whatever p_s is
      kl += Math.exp(logPt[c]) * (logPt[c] - logPs[c]);
    }
    return kl;
  };

  let total = 0;
  for (let r = 0; r < rows; r++) if (valid(r)) total += rowKl(r);
  const out = new Tensor(allocate(studentLogits.dtype, 1), []);
  out.data[0] = count === 0 ? 0 : (T * T * total) / count;

  // With z = logits / T: ∂KL/∂z_s = p_s − p_t and ∂KL/∂z_t = p_t ⊙ (log p_t − log p_s − KL).
  // The chain rule through /T and the T² factor leaves a factor T / count.
  return record('klDivergence', out, [teacherLogits, studentLogits], (g, needs) => {
    const gt = needs[0] ? zerosLike(teacherLogits) : null;
    const gs = needs[1] ? zerosLike(studentLogits) : null;
    if (count === 0) return [gt, gs];
    const scale = (g[0] * T) / count;
    for (let r = 0; r < rows; r++) {
      if (!valid(r)) continue;
      const kl = rowKl(r);
      const base = r * V;
      for (let c = 0; c < V; c++) {
        const pt = Math.exp(logPt[c]);
        const ps = Math.exp(logPs[c]);
        if (gs !== null) gs[base + c] = scale * (ps - pt);
        if (gt !== null && pt > 0) gt[base + c] = scale * pt * (logPt[c] - logPs[c] - kl);
      }
    }
    return [gt, gs];
  });
}
