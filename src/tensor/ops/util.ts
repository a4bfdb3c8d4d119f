// Helpers shared by the op families: output allocation and argument checks.
import { allocate, type DType, type FloatArray } from '../dtype.js';
import { fmt, ShapeError, sizeOf, type Shape } from '../shape.js';
import { Tensor } from '../tensor.js';

/** Allocates the output tensor of an op. */
export function empty(shape: Shape, dtype: DType): Tensor {
  return new Tensor(allocate(dtype, sizeOf(shape)), shape);
}

/** Wraps a flat array as a tensor of `shape` (no copy). */
export function wrap(data: FloatArray, shape: Shape): Tensor {
  return new Tensor(data, shape);
}

/** Throws unless every tensor has the same dtype; mixing float32 and float64 is always a mistake. */
export function checkSameDtype(op: string, ...tensors: Tensor[]): void {
  const first = tensors[0].dtype;
  for (const t of tensors) {
    if (t.dtype !== first) {
      const list = tensors.map((x) => `${x.dtype}${fmt(x.shape)}`).join(', ');
      throw new ShapeError(`${op}: dtypes differ, got ${list}; convert with .to('float32') or .to('float64')`);
    }
  }
}

/** Allocates a zero array like `t`'s storage. */
export function zerosLike(t: Tensor): FloatArray {
  return allocate(t.dtype, t.size);
}
