// Initial values of RWKV-7 parameters, following BlinkDL/RWKV-LM RWKV-v7/train_temp/src/model.py
// (the time-mix and channel-mix constructors and `generate_init_weight`).
//
// Notation: layer l of L, ρ0 = l/(L−1) (0 → 1), ρ1 = 1 − l/L (1 → ≈0), d_i = i/C,
// lin_n = n/(C−1) − 0.5, zig_n = z·|z| with z = ((n mod N) − (N−1)/2) / ((N−1)/2).
import type { DType } from '../../tensor/dtype.js';
import type { Rng } from '../../tensor/random.js';
import { Tensor } from '../../tensor/tensor.js';

/** Per-layer ratios of the official init; a one-layer model uses ρ0 = 0 (the official code divides by zero). */
export function layerRatios(layerId: number, nLayer: number): { rho0: number; rho1: number } {
  const rho0 = nLayer > 1 ? layerId / (nLayer - 1) : 0;
  const rho1 = 1 - layerId / nLayer;
  return { rho0, rho1 };
}

/** Builds a [1, 1, C] tensor whose channel n is f(n). */
export function channelVector(C: number, dtype: DType, f: (n: number) => number): Tensor {
  const t = new Tensor(dtype === 'float64' ? new Float64Array(C) : new Float32Array(C), [1, 1, C]);
  for (let n = 0; n < C; n++) t.data[n] = f(n);
  return t;
}

/** lin_n = n/(C−1) − 0.5, from −0.5 at the first channel to 0.5 at the last (0 when C = 1). */
export function linearRamp(n: number, C: number): number {
  return C > 1 ? n / (C - 1) - 0.5 : 0;
}

/** zig_n = z·|z| with z running from −1 to 1 inside each head of N channels (0 when N = 1). */
export function zigzag(n: number, N: number): number {
  if (N === 1) return 0;
  const half = (N - 1) / 2;
  const z = ((n % N) - half) / half;
  return z * Math.abs(z);
}

/** Token-shift weight μ_n = 1 − (n/C)^exponent (μ = 1 takes only the previous token). */
export function tokenShiftRamp(n: number, C: number, exponent: number): number {
  return 1 - Math.pow(n / C, exponent);
}

/**
 * Fills a [rows, cols] tensor with a random orthogonal matrix times `gain`, like PyTorch's
 * nn.init.orthogonal_: orthonormal columns when rows ≥ cols, orthonormal rows otherwise. The
 * vectors are Gaussian samples orthonormalised by modified Gram–Schmidt, run twice for accuracy.
 * NOTE: costs O(rows·cols·min(rows, cols)) operations, minutes for a 50257 × 768 head in JavaScript.
 */
export function orthogonal(rows: number, cols: number, gain: number, rng: Rng, dtype: DType): Tensor {
  const out = new Tensor(dtype === 'float64' ? new Float64Array(rows * cols) : new Float32Array(rows * cols), [rows, cols]);
  if (gain === 0 || rows === 0 || cols === 0) return out;
  const count = Math.min(rows, cols);
  const length = Math.max(rows, cols);
  const vectors = orthonormalVectors(count, length, rng);
  for (let i = 0; i < count; i++) {
    for (let j = 0; j < length; j++) {
      // Vector i is column i when rows ≥ cols, row i otherwise.
      const index = rows >= cols ? j * cols + i : i * cols + j;
      out.data[index] = gain * vectors[i][j];
    }
  }
  return out;
}

function orthonormalVectors(count: number, length: number, rng: Rng): Float64Array[] {
  const vectors: Float64Array[] = [];
  while (vectors.length < count) {
    const v = Float64Array.from({ length }, () => rng.normal());
    for (let pass = 0; pass < 2; pass++) {
      for (const u of vectors) {
        let dot = 0;
        for (let j = 0; j < length; j++) dot += u[j] * v[j];
        for (let j = 0; j < length; j++) v[j] -= dot * u[j];
      }
    }
    let norm = 0;
    for (let j = 0; j < length; j++) norm += v[j] * v[j];
    norm = Math.sqrt(norm);
    // A draw that is (numerically) inside the span of the earlier vectors is redrawn.
    if (norm < 1e-8) continue;
    for (let j = 0; j < length; j++) v[j] /= norm;
    vectors.push(v);
  }
  return vectors;
}

/** Uniform samples in [−bound, bound). */
export function uniform(shape: readonly number[], bound: number, rng: Rng, dtype: DType): Tensor {
  const size = shape.reduce((a, b) => a * b, 1);
  const t = new Tensor(dtype === 'float64' ? new Float64Array(size) : new Float32Array(size), shape);
  for (let i = 0; i < size; i++) t.data[i] = bound * (2 * rng.uniform() - 1);
  return t;
}

/** Creates a tensor of the given shape filled with `value`. */
export function filled(shape: readonly number[], value: number, dtype: DType): Tensor {
  const size = shape.reduce((a, b) => a * b, 1);
  const data = dtype === 'float64' ? new Float64Array(size) : new Float32Array(size);
  data.fill(value);
  return new Tensor(data, shape);
}
