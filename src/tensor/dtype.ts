import type { FloatArray } from '../kernels/types.js';

export type { FloatArray } from '../kernels/types.js';

/**
 * Element type of a tensor. float32 is the default for models. float64 exists so that finite
 * differences in gradient checks are exact enough, because float32 central differences carry
 * errors of 1e-4 and more (test/engine-cases.test.ts shows one).
 */
export type DType = 'float32' | 'float64';

/** Allocates a zero-filled array of `length` elements of `dtype`. */
export function allocate(dtype: DType, length: number): FloatArray {
  return dtype === 'float64' ? new Float64Array(length) : new Float32Array(length);
}

/** Returns the dtype of an existing array. */
export function dtypeOf(data: FloatArray): DType {
  return data instanceof Float64Array ? 'float64' : 'float32';
}
