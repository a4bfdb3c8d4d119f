// Row kernels behind softmax-based losses: per-row exp sums, scaled exps, and the sums and
// gradients of KL(teacher ‖ student). Two implementations share one interface: a plain TypeScript
// reference that computes in float64 with Math.exp (any FloatArray), and a WebAssembly SIMD one
// for Float32Array rows (float32 arithmetic, float64 sums).
//
// Notation for one row x of `cols` logits and an input scale a > 0 (1/temperature for KL):
//   shift = max_c x_c, or 0 when every x_c is −∞ (so x − shift is never −∞ − (−∞));
//   z_c = a·(x_c − shift),  e_c = exp(z_c),  sum = Σ_c e_c;
//   log-sum-exp of a·x = a·shift + log(sum),  softmax(a·x)_c = e_c / sum.
// A NaN logit makes the row's sum NaN, so NaN reaches the loss instead of a silent number.
import type { FloatArray } from '../types.js';
import { softmaxRowsReference } from './softmax-rows-reference.js';
import { createWasmSoftmaxRows } from './softmax-rows-wasm.js';

/** Per-row results of `expSums`, indexed by row. */
export interface RowExpSums {
  shift: Float64Array;
  sum: Float64Array;
}

/** Per-row results of `klSums`, indexed by row: the exp sums of both sides and the p_t-weighted gap. */
export interface KlRowSums {
  teacher: RowExpSums;
  student: RowExpSums;
  /**
   * Σ_c e_t,c·(z_t,c − z_s,c) over the entries with e_t,c ≠ 0, so −∞ teacher logits add exactly 0.
   * KL = weighted / sum_t − log sum_t + log sum_s.
   */
  weighted: Float64Array;
}

/**
 * Per-row inputs of `klGradients`, indexed by row. The kernel writes
 *   gs_c = scaleS·e_s,c − scaleT·e_t,c
 *   gt_c = scaleT·e_t,c·(z_t,c − z_s,c + offset), or 0 where scaleT·e_t,c = 0.
 * With scaleT = g/sum_t and scaleS = g/sum_s these are g·(p_s − p_t) and g·p_t·(log p_t − log p_s −
 * KL) when offset = log sum_s − log sum_t − KL.
 * NOTE: in float32 the bracket of gt cancels terms of size |log p_s|, so gt has an absolute error
 * near g·p_t·6e-8·|log p_s|: about 1e-5 of g·p_t where the student gives the teacher's pick 1e-60.
 */
export interface KlGradientParams {
  shiftT: Float64Array;
  shiftS: Float64Array;
  scaleT: Float64Array;
  scaleS: Float64Array;
  offset: Float64Array;
}

/**
 * Row kernels over row-major [rows, cols] arrays. Each method touches only the rows listed in
 * `rows` (row indices, ascending or not); per-row arrays are indexed by row index.
 */
export interface SoftmaxRowKernels {
  readonly name: 'js' | 'wasm';
  /** Fills `out.shift` and `out.sum` (see the notation above) for each listed row of `x`. */
  expSums(x: FloatArray, cols: number, rows: Int32Array, a: number, out: RowExpSums): void;
  /** Writes out[r, c] = scale[r]·exp(a·(x[r, c] − shift[r])) for each listed row. */
  scaledExp(
    x: FloatArray,
    cols: number,
    rows: Int32Array,
    a: number,
    shift: Float64Array,
    scale: Float64Array,
    out: FloatArray,
  ): void;
  /** Fills the exp sums of both sides and the weighted gap (see KlRowSums) for each listed row. */
  klSums(teacher: FloatArray, student: FloatArray, cols: number, rows: Int32Array, a: number, out: KlRowSums): void;
  /**
   * Writes the KL gradients of each listed row (see KlGradientParams) into `gt` and `gs`. A null
   * output is skipped, and without `gs` the student's exps are not computed.
   */
  klGradients(
    teacher: FloatArray,
    student: FloatArray,
    cols: number,
    rows: Int32Array,
    a: number,
    params: KlGradientParams,
    gt: FloatArray | null,
    gs: FloatArray | null,
  ): void;
}

export { softmaxRowsReference } from './softmax-rows-reference.js';

/** Allocates per-row exp sums for `rows` rows. */
export function allocateRowExpSums(rows: number): RowExpSums {
  return { shift: new Float64Array(rows), sum: new Float64Array(rows) };
}

let wasmKernels: ReturnType<typeof createWasmSoftmaxRows> | undefined;
let wasmEnabled = true;

/**
 * Returns the WebAssembly kernels, or null where the runtime lacks WebAssembly SIMD; the module is
 * built on the first call.
 */
export function wasmSoftmaxRows(): SoftmaxRowKernels | null {
  if (wasmKernels === undefined) wasmKernels = createWasmSoftmaxRows();
  return wasmKernels;
}

/** Size of the WebAssembly kernels' memory in bytes, or null where they are unavailable. */
export function wasmSoftmaxRowsMemoryBytes(): number | null {
  return wasmSoftmaxRows() === null ? null : (wasmKernels?.memoryBytes ?? null);
}

/**
 * Returns the kernels for rows stored in `data`: WebAssembly for Float32Array when the runtime
 * supports it and it is enabled, else the float64 TypeScript reference.
 */
export function softmaxRowKernelsFor(data: FloatArray): SoftmaxRowKernels {
  if (wasmEnabled && data instanceof Float32Array) return wasmSoftmaxRows() ?? softmaxRowsReference;
  return softmaxRowsReference;
}

/** Turns the WebAssembly kernels on or off for float32 rows (on by default); for tests and benchmarks. */
export function setWasmSoftmaxRowsEnabled(enabled: boolean): void {
  wasmEnabled = enabled;
}
