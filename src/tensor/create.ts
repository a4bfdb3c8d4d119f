// Tensor creation. Every function takes an optional dtype (float32 unless stated).
import { allocate, type DType } from './dtype.js';
import type { Rng } from './random.js';
import { checkShape, fmt, ShapeError, sizeOf, type Shape } from './shape.js';
import { Tensor } from './tensor.js';

/** Nested arrays of numbers, as written in a test or an example. */
export type NestedArray = number | NestedArray[];

function inferShape(values: NestedArray): number[] {
  const shape: number[] = [];
  let level: NestedArray = values;
  while (Array.isArray(level)) {
    shape.push(level.length);
    level = level[0] ?? 0;
  }
  return shape;
}

function flattenInto(values: NestedArray, shape: readonly number[], depth: number, out: number[]): void {
  if (depth === shape.length) {
    if (typeof values !== 'number') throw new ShapeError('tensor: nested arrays are ragged');
    out.push(values);
    return;
  }
  if (!Array.isArray(values) || values.length !== shape[depth]) {
    throw new ShapeError(`tensor: nested arrays are ragged at depth ${depth}; expected length ${shape[depth]}`);
  }
  for (const v of values) flattenInto(v, shape, depth + 1, out);
}

function flattenAll(values: NestedArray, out: number[]): void {
  if (typeof values === 'number') out.push(values);
  else for (const v of values) flattenAll(v, out);
}

/**
 * Creates a tensor from nested arrays (`tensor([[1, 2], [3, 4]])`) or from flat values with an
 * explicit shape (`tensor([1, 2, 3, 4], { shape: [2, 2] })`).
 */
export function tensor(
  values: NestedArray | ArrayLike<number>,
  options: { shape?: Shape; dtype?: DType; requiresGrad?: boolean } = {},
): Tensor {
  const dtype = options.dtype ?? 'float32';
  let flat: ArrayLike<number>;
  let shape: readonly number[];
  if (options.shape !== undefined) {
    checkShape('tensor', options.shape);
    if (typeof values === 'number') {
      flat = [values];
    } else if (Array.isArray(values)) {
      const collected: number[] = [];
      flattenAll(values as NestedArray, collected);
      flat = collected;
    } else {
      flat = values as ArrayLike<number>;
    }
    shape = options.shape;
    if (flat.length !== sizeOf(shape)) {
      throw new ShapeError(`tensor: ${flat.length} values cannot fill shape ${fmt(shape)} (${sizeOf(shape)} elements)`);
    }
  } else if (typeof values === 'number' || Array.isArray(values)) {
    shape = inferShape(values as NestedArray);
    const out: number[] = [];
    flattenInto(values as NestedArray, shape, 0, out);
    flat = out;
  } else {
    flat = values;
    shape = [values.length];
  }
  const data = allocate(dtype, flat.length);
  for (let i = 0; i < flat.length; i++) data[i] = flat[i];
  const t = new Tensor(data, shape);
  if (options.requiresGrad === true) t.requiresGrad = true;
  return t;
}

export function zeros(shape: Shape, dtype: DType = 'float32'): Tensor {
  checkShape('zeros', shape);
  return new Tensor(allocate(dtype, sizeOf(shape)), shape);
}

export function full(shape: Shape, value: number, dtype: DType = 'float32'): Tensor {
  const t = zeros(shape, dtype);
  t.data.fill(value);
  return t;
}

export function ones(shape: Shape, dtype: DType = 'float32'): Tensor {
  return full(shape, 1, dtype);
}

/** Normal samples with the given mean and standard deviation, from a seeded generator. */
export function randn(shape: Shape, rng: Rng, options: { std?: number; mean?: number; dtype?: DType } = {}): Tensor {
  const t = zeros(shape, options.dtype ?? 'float32');
  const std = options.std ?? 1;
  const mean = options.mean ?? 0;
  for (let i = 0; i < t.size; i++) t.data[i] = mean + std * rng.normal();
  return t;
}

/** Uniform samples in [low, high), from a seeded generator. */
export function rand(shape: Shape, rng: Rng, options: { low?: number; high?: number; dtype?: DType } = {}): Tensor {
  const t = zeros(shape, options.dtype ?? 'float32');
  const low = options.low ?? 0;
  const high = options.high ?? 1;
  for (let i = 0; i < t.size; i++) t.data[i] = low + (high - low) * rng.uniform();
  return t;
}

/** 0, 1, …, n − 1. */
export function arange(n: number, dtype: DType = 'float32'): Tensor {
  const t = zeros([n], dtype);
  for (let i = 0; i < n; i++) t.data[i] = i;
  return t;
}
