// Token shift: each position mixes its own input with the previous position's input.
//
// Dims: B = batch, T = time steps, C = channels.
import { zeros } from '../../tensor/create.js';
import { concat, reshape, slice } from '../../tensor/ops/index.js';
import { fmt, ShapeError } from '../../tensor/shape.js';
import type { Tensor } from '../../tensor/tensor.js';

/**
 * Returns the inputs shifted one step back in time: row t is x_{t−1}, and row 0 is `xPrev` (the
 * last input of the previous chunk, or zeros at the start of a sequence).
 */
export function previousInputs(x: Tensor, xPrev: Tensor | null): Tensor {
  const [B, T, C] = x.shape;
  const first = xPrev === null ? zeros([B, 1, C], x.dtype) : reshape(xPrev, [B, 1, C]); // (B, 1, C)
  if (T === 1) return first;
  return concat([first, slice(x, 1, 0, T - 1)], 1); // (B, T, C)
}

/** Returns the last time step of x, the carried `xPrev` of the next chunk. */
export function lastInput(x: Tensor): Tensor {
  const [B, T, C] = x.shape;
  return reshape(slice(x, 1, T - 1, T), [B, C]); // (B, C)
}

/** Throws unless `x` is (B, T, C) with T ≥ 1 and the given width. */
export function checkSequenceInput(where: string, x: Tensor, C: number): void {
  if (x.rank !== 3 || x.shape[2] !== C || x.shape[1] < 1) {
    throw new ShapeError(`${where}: input must be (B, T, C) with C = ${C} and T ≥ 1, got ${fmt(x.shape)}`);
  }
}

/** Throws unless a carried tensor has the expected shape and the input's dtype. */
export function checkCarried(where: string, name: string, t: Tensor, shape: readonly number[], x: Tensor): void {
  if (fmt(t.shape) !== fmt(shape)) {
    throw new ShapeError(`${where}: state ${name} must have shape ${fmt(shape)} for input ${fmt(x.shape)}, got ${fmt(t.shape)}; create it with createState(B)`);
  }
  if (t.dtype !== x.dtype) {
    throw new ShapeError(`${where}: state ${name} is ${t.dtype} but the input is ${x.dtype}; create the state with the model's dtype`);
  }
}
