// Reductions over axes: sum, mean and max, with or without kept dimensions.
import { record } from '../../autograd/tape.js';
import type { FloatArray } from '../dtype.js';
import { normalizeAxes, sizeOf } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { empty } from './util.js';

/**
 * Geometry of a reduction: the output shape with and without the reduced axes, and for every
 * input element the flat index of the output element it contributes to.
 */
interface ReducePlan {
  keptShape: number[];
  droppedShape: number[];
  target: Int32Array;
}

function planReduce(op: string, shape: readonly number[], axes: number | readonly number[] | undefined): ReducePlan {
  const reduced = normalizeAxes(op, axes, shape.length);
  const keptShape = shape.map((d, i) => (reduced.includes(i) ? 1 : d));
  const droppedShape = shape.filter((_, i) => !reduced.includes(i));

  // Output strides, with 0 on reduced axes, walked with an odometer over the input.
  const outStrides = new Array<number>(shape.length).fill(0);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (!reduced.includes(i)) {
      outStrides[i] = s;
      s *= shape[i];
    }
  }
  const n = sizeOf(shape);
  const target = new Int32Array(n);
  const counter = new Array<number>(shape.length).fill(0);
  let offset = 0;
  for (let i = 0; i < n; i++) {
    target[i] = offset;
    for (let d = shape.length - 1; d >= 0; d--) {
      counter[d]++;
      offset += outStrides[d];
      if (counter[d] < shape[d]) break;
      offset -= outStrides[d] * shape[d];
      counter[d] = 0;
    }
  }
  return { keptShape, droppedShape, target };
}

/** Sum over `axes` (all axes when omitted). */
export function sum(x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  const plan = planReduce('sum', x.shape, axes);
  const out = empty(keepDims ? plan.keptShape : plan.droppedShape, x.dtype);
  const src = x.data;
  const dst = out.data;
  const target = plan.target;
  for (let i = 0; i < src.length; i++) dst[target[i]] += src[i];
  // Every input element receives the gradient of the output element it was summed into.
  return record('sum', out, [x], (g) => {
    const gx = new (src.constructor as { new (n: number): FloatArray })(src.length);
    for (let i = 0; i < gx.length; i++) gx[i] = g[target[i]];
    return [gx];
  });
}

/** Mean over `axes` (all axes when omitted). */
export function mean(x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  const plan = planReduce('mean', x.shape, axes);
  const out = empty(keepDims ? plan.keptShape : plan.droppedShape, x.dtype);
  const count = out.size === 0 ? 0 : x.size / out.size;
  const src = x.data;
  const dst = out.data;
  const target = plan.target;
  for (let i = 0; i < src.length; i++) dst[target[i]] += src[i];
  for (let i = 0; i < dst.length; i++) dst[i] /= count;
  return record('mean', out, [x], (g) => {
    const gx = new (src.constructor as { new (n: number): FloatArray })(src.length);
    for (let i = 0; i < gx.length; i++) gx[i] = g[target[i]] / count;
    return [gx];
  });
}

/**
 * Maximum over `axes`. When several elements tie for the maximum, the gradient is split evenly
 * among them (TensorFlow's rule), so the input gradients always sum to the output gradient.
 * The maximum of an empty axis is an error, not −Infinity.
 */
export function max(x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  const plan = planReduce('max', x.shape, axes);
  const out = empty(keepDims ? plan.keptShape : plan.droppedShape, x.dtype);
  if (x.size === 0) throw new RangeError(`max: cannot reduce an empty tensor of shape [${x.shape.join(',')}]`);
  const src = x.data;
  const dst = out.data;
  const target = plan.target;
  dst.fill(-Infinity);
  for (let i = 0; i < src.length; i++) if (src[i] > dst[target[i]]) dst[target[i]] = src[i];

  return record('max', out, [x], (g) => {
    const ties = new Float64Array(dst.length);
    for (let i = 0; i < src.length; i++) if (src[i] === dst[target[i]]) ties[target[i]]++;
    const gx = new (src.constructor as { new (n: number): FloatArray })(src.length);
    for (let i = 0; i < src.length; i++) {
      const t = target[i];
      if (src[i] === dst[t]) gx[i] = g[t] / ties[t];
    }
    return [gx];
  });
}
