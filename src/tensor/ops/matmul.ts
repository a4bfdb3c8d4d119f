// Batched matrix product through the kernel layer, with transpose flags and broadcast batches.
import { record } from '../../autograd/tape.js';
import { matmul as matmulKernel, type MatmulGeometry } from '../../kernels/index.js';
import type { FloatArray } from '../dtype.js';
import { fmt, ShapeError, sizeOf } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { checkSameDtype, empty, zerosLike } from './util.js';

export interface MatmulOptions {
  /** Use Aᵀ: `a` is stored [..., K, M]. */
  transA?: boolean;
  /** Use Bᵀ: `b` is stored [..., N, K] (a PyTorch Linear weight [out, in] is used this way). */
  transB?: boolean;
}

/**
 * op(a) · op(b) over the last two axes. Leading (batch) axes must be equal, or one operand has none
 * (or only size-1 ones) and is shared by the whole batch, as a weight matrix is.
 */
export function matmul(a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
  const transA = options.transA ?? false;
  const transB = options.transB ?? false;
  const describe = (): string => `a=${fmt(a.shape)} b=${fmt(b.shape)} (transA=${transA}, transB=${transB})`;

  if (a.rank < 2 || b.rank < 2) throw new ShapeError(`matmul: both operands need at least 2 dimensions, got ${describe()}`);
  checkSameDtype('matmul', a, b);

  const [a0, a1] = a.shape.slice(-2);
  const [b0, b1] = b.shape.slice(-2);
  const M = transA ? a1 : a0;
  const K = transA ? a0 : a1;
  const Kb = transB ? b1 : b0;
  const N = transB ? b0 : b1;
  if (K !== Kb) throw new ShapeError(`matmul: inner dimensions differ (${K} vs ${Kb}), got ${describe()}`);

  const aBatchShape = a.shape.slice(0, -2);
  const bBatchShape = b.shape.slice(0, -2);
  const aBatch = sizeOf(aBatchShape);
  const bBatch = sizeOf(bBatchShape);
  let batchShape: readonly number[];
  if (aBatch === bBatch && (aBatchShape.length === bBatchShape.length || aBatch === 1)) {
    batchShape = aBatchShape.length >= bBatchShape.length ? aBatchShape : bBatchShape;
    if (fmt(aBatchShape) !== fmt(bBatchShape) && aBatch !== 1) {
      throw new ShapeError(`matmul: batch dimensions differ, got ${describe()}`);
    }
  } else if (bBatch === 1) {
    batchShape = aBatchShape;
  } else if (aBatch === 1) {
    batchShape = bBatchShape;
  } else {
    throw new ShapeError(`matmul: batch dimensions differ, got ${describe()}; use equal batch shapes or a 2-D operand`);
  }
  const batch = sizeOf(batchShape);
  const strideA = aBatch === 1 ? 0 : M * K;
  const strideB = bBatch === 1 ? 0 : K * N;

  const out = empty([...batchShape, M, N], a.dtype); // (..., M, N)
  batchedProduct(a.data, b.data, out.data, { batch, M, N, K, transA, transB, strideA, strideB, strideOut: M * N, accumulate: false });

  return record('matmul', out, [a, b], (g, needs) => {
    let ga = null;
    let gb = null;
    if (needs[0]) {
      // C = A·B ⇒ dA = dC·Bᵀ. When A is stored transposed, dAᵀ = op(B)·dCᵀ is what gets stored.
      ga = zerosLike(a);
      const strideOut = strideA === 0 ? 0 : M * K;
      if (!transA) {
        batchedProduct(g, b.data, ga, { batch, M, N: K, K: N, transA: false, transB: !transB, strideA: M * N, strideB, strideOut, accumulate: false });
      } else {
        batchedProduct(b.data, g, ga, { batch, M: K, N: M, K: N, transA: transB, transB: true, strideA: strideB, strideB: M * N, strideOut, accumulate: false });
      }
    }
    if (needs[1]) {
      // dB = op(A)ᵀ·dC. When B is stored transposed, dBᵀ = dCᵀ·op(A) is what gets stored.
      gb = zerosLike(b);
      const strideOut = strideB === 0 ? 0 : K * N;
      if (!transB) {
        batchedProduct(a.data, g, gb, { batch, M: K, N, K: M, transA: !transA, transB: false, strideA, strideB: M * N, strideOut, accumulate: false });
      } else {
        batchedProduct(g, a.data, gb, { batch, M: N, N: K, K: M, transA: true, transB: transA, strideA: M * N, strideB: strideA, strideOut, accumulate: false });
      }
    }
    return [ga, gb];
  });
}

/**
 * Runs a batched product, folding the batch into one large product where the layout allows it,
 * because one big product runs much faster than many small ones.
 *
 * - Shared right operand (strideB = 0) and row-major left operand: the batch of [M, K] matrices is
 *   one [batch·M, K] matrix.
 * - Shared output (strideOut = 0, the gradient of a shared weight): the batch sums into one matrix.
 *   With both operands "transposed-left" over a contiguous batch, Σ_b X_bᵀ·Y_b = X_flatᵀ·Y_flat.
 *   Other layouts accumulate one batch entry at a time.
 */
function batchedProduct(a: FloatArray, b: FloatArray, out: FloatArray, g: MatmulGeometry): void {
  if (g.batch === 1) {
    matmulKernel(a, b, out, g);
    return;
  }
  if (g.strideOut === 0) {
    const foldable = g.transA && !g.transB && g.strideA === g.K * g.M && g.strideB === g.K * g.N;
    if (foldable) {
      matmulKernel(a, b, out, { ...g, batch: 1, K: g.batch * g.K, strideA: 0, strideB: 0, strideOut: 0 });
      return;
    }
    for (let i = 0; i < g.batch; i++) {
      const aPart = a.subarray(i * g.strideA, i * g.strideA + g.M * g.K);
      const bPart = b.subarray(i * g.strideB, i * g.strideB + g.K * g.N);
      matmulKernel(aPart, bPart, out, { ...g, batch: 1, strideA: 0, strideB: 0, strideOut: 0, accumulate: g.accumulate || i > 0 });
    }
    return;
  }
  if (g.strideB === 0 && !g.transA && g.strideA === g.M * g.K && g.strideOut === g.M * g.N) {
    matmulKernel(a, b, out, { ...g, batch: 1, M: g.batch * g.M, strideA: 0, strideOut: 0 });
    return;
  }
  matmulKernel(a, b, out, g);
}
