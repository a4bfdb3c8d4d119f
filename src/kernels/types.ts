// Shared types of the kernel layer. Kernels work on flat, row-major typed arrays and know nothing
// about tensors or autograd, so they can be tested and benchmarked on their own.

/** Flat storage of a tensor: float32 by default, float64 for gradient checks. */
export type FloatArray = Float32Array | Float64Array;

/**
 * Geometry of a batched matrix product `out[b] (+)= op(A[b]) · op(B[b])`, where `op` transposes
 * when the flag is set. Every matrix is row-major and contiguous.
 *
 * - `A[b]` is stored as [M, K], or as [K, M] when `transA`.
 * - `B[b]` is stored as [K, N], or as [N, K] when `transB`.
 * - `out[b]` is [M, N].
 *
 * Batch strides are in elements; a stride of 0 broadcasts one matrix over the whole batch (a weight
 * shared by every sequence, for example).
 */
export interface MatmulGeometry {
  batch: number;
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
  strideA: number;
  strideB: number;
  strideOut: number;
  /** When true the product is added to `out`; when false `out` is overwritten. */
  accumulate: boolean;
}
