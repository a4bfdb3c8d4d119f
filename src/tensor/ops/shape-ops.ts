// Shape and indexing ops: reshape (a view), permute, slice, concat, gather, where and cast.
import { record } from '../../autograd/tape.js';
import { allocate, type DType, type FloatArray } from '../dtype.js';
import { fmt, normalizeAxis, ShapeError, sizeOf, stridesOf, type Shape } from '../shape.js';
import { Tensor } from '../tensor.js';
import { expandOperand, operandLayout, reduceToOperand } from './elementwise.js';
import { broadcastShapes } from '../shape.js';
import { checkSameDtype, empty, zerosLike } from './util.js';

/** Same elements, new shape; one dimension may be −1 and is inferred. Shares storage (no copy). */
export function reshape(x: Tensor, shape: Shape): Tensor {
  const resolved = [...shape];
  const inferred = resolved.indexOf(-1);
  if (inferred !== resolved.lastIndexOf(-1)) throw new ShapeError(`reshape: only one dimension can be -1, got ${fmt(shape)}`);
  if (inferred >= 0) {
    const known = resolved.reduce((p, d, i) => (i === inferred ? p : p * d), 1);
    if (known === 0 || x.size % known !== 0) {
      throw new ShapeError(`reshape: cannot infer -1 for ${x.size} elements into ${fmt(shape)}, got x=${fmt(x.shape)}`);
    }
    resolved[inferred] = x.size / known;
  }
  if (sizeOf(resolved) !== x.size || resolved.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new ShapeError(`reshape: cannot view ${x.size} elements as ${fmt(shape)}, got x=${fmt(x.shape)}`);
  }
  const out = new Tensor(x.data, resolved);
  // The gradient has the same elements in the same order; only the shape differs.
  return record('reshape', out, [x], (g) => [g]);
}

/** Reorders axes: output axis i is input axis `axes[i]`. Copies the data. */
export function permute(x: Tensor, axes: readonly number[]): Tensor {
  const rank = x.rank;
  const order = axes.map((a) => normalizeAxis('permute', a, rank));
  if (order.length !== rank || new Set(order).size !== rank) {
    throw new ShapeError(`permute: axes [${axes.join(',')}] must be a permutation of 0..${rank - 1}, got x=${fmt(x.shape)}`);
  }
  const outShape = order.map((a) => x.shape[a]);
  const inStrides = stridesOf(x.shape);
  // Reading input strides in output-axis order turns the copy into one odometer walk.
  const readStrides = order.map((a) => inStrides[a]);
  const source = indexWithStrides(outShape, readStrides);
  const out = empty(outShape, x.dtype);
  for (let i = 0; i < source.length; i++) out.data[i] = x.data[source[i]];

  return record('permute', out, [x], (g) => {
    const gx = zerosLike(x);
    for (let i = 0; i < source.length; i++) gx[source[i]] = g[i];
    return [gx];
  });
}

function indexWithStrides(shape: readonly number[], strides: readonly number[]): Int32Array {
  const n = sizeOf(shape);
  const map = new Int32Array(n);
  const counter = new Array<number>(shape.length).fill(0);
  let offset = 0;
  for (let i = 0; i < n; i++) {
    map[i] = offset;
    for (let d = shape.length - 1; d >= 0; d--) {
      counter[d]++;
      offset += strides[d];
      if (counter[d] < shape[d]) break;
      offset -= strides[d] * shape[d];
      counter[d] = 0;
    }
  }
  return map;
}

/** Swaps two axes (the last two by default). */
export function transpose(x: Tensor, axis0 = -2, axis1 = -1): Tensor {
  const a = normalizeAxis('transpose', axis0, x.rank);
  const b = normalizeAxis('transpose', axis1, x.rank);
  const order = Array.from({ length: x.rank }, (_, i) => i);
  order[a] = b;
  order[b] = a;
  return permute(x, order);
}

/** Splits a shape around `axis` into [outer, length, inner] for copies along one axis. */
function around(shape: readonly number[], axis: number): [number, number, number] {
  return [sizeOf(shape.slice(0, axis)), shape[axis], sizeOf(shape.slice(axis + 1))];
}

/** Elements start ≤ i < end along `axis` (negative indices count from the end). Copies. */
export function slice(x: Tensor, axis: number, start: number, end: number): Tensor {
  const ax = normalizeAxis('slice', axis, x.rank);
  const length = x.shape[ax];
  const s = start < 0 ? start + length : start;
  const e = end < 0 ? end + length : end;
  if (!Number.isInteger(s) || !Number.isInteger(e) || s < 0 || e > length || s > e) {
    throw new ShapeError(`slice: range [${start}, ${end}) is invalid for axis ${axis} of length ${length}, got x=${fmt(x.shape)}`);
  }
  const [outer, , inner] = around(x.shape, ax);
  const outShape = [...x.shape];
  outShape[ax] = e - s;
  const out = empty(outShape, x.dtype);
  const span = (e - s) * inner;
  for (let o = 0; o < outer; o++) {
    const from = (o * length + s) * inner;
    out.data.set(x.data.subarray(from, from + span), o * span);
  }
  return record('slice', out, [x], (g) => {
    const gx = zerosLike(x);
    for (let o = 0; o < outer; o++) gx.set(g.subarray(o * span, (o + 1) * span), (o * length + s) * inner);
    return [gx];
  });
}

/** Joins tensors along `axis`; all other dimensions must agree. */
export function concat(tensors: readonly Tensor[], axis: number): Tensor {
  if (tensors.length === 0) throw new ShapeError('concat: needs at least one tensor');
  const first = tensors[0];
  const ax = normalizeAxis('concat', axis, first.rank);
  checkSameDtype('concat', ...tensors);
  for (const t of tensors) {
    const ok = t.rank === first.rank && t.shape.every((d, i) => i === ax || d === first.shape[i]);
    if (!ok) {
      throw new ShapeError(`concat: shapes must agree except on axis ${axis}, got ${tensors.map((u) => fmt(u.shape)).join(' ')}`);
    }
  }
  const outShape = [...first.shape];
  outShape[ax] = tensors.reduce((n, t) => n + t.shape[ax], 0);
  const out = empty(outShape, first.dtype);
  const [outer, total, inner] = around(outShape, ax);
  const offsets: number[] = [];
  let position = 0;
  for (const t of tensors) {
    offsets.push(position);
    const span = t.shape[ax] * inner;
    for (let o = 0; o < outer; o++) {
      out.data.set(t.data.subarray(o * span, (o + 1) * span), (o * total + position) * inner);
    }
    position += t.shape[ax];
  }
  return record('concat', out, tensors, (g, needs) =>
    tensors.map((t, k) => {
      if (!needs[k]) return null;
      const gt = zerosLike(t);
      const span = t.shape[ax] * inner;
      for (let o = 0; o < outer; o++) {
        const from = (o * total + offsets[k]) * inner;
        gt.set(g.subarray(from, from + span), o * span);
      }
      return gt;
    }),
  );
}

/** Splits along `axis` into pieces of the given sizes (a composition of slices). */
export function split(x: Tensor, axis: number, sizes: readonly number[]): Tensor[] {
  const ax = normalizeAxis('split', axis, x.rank);
  const total = sizes.reduce((a, b) => a + b, 0);
  if (total !== x.shape[ax]) {
    throw new ShapeError(`split: sizes [${sizes.join(',')}] sum to ${total} but axis ${axis} has length ${x.shape[ax]}`);
  }
  const pieces: Tensor[] = [];
  let start = 0;
  for (const size of sizes) {
    pieces.push(slice(x, ax, start, start + size));
    start += size;
  }
  return pieces;
}

/**
 * Row lookup (an embedding): `table` is [V, ...rest], `ids` contains integers in [0, V); the result
 * is [...idsShape, ...rest]. Out-of-range or non-integer ids throw before anything is read.
 */
export function gather(table: Tensor, ids: ArrayLike<number>, idsShape: Shape = [ids.length]): Tensor {
  if (table.rank < 1) throw new ShapeError(`gather: table needs at least 1 dimension, got ${fmt(table.shape)}`);
  if (sizeOf(idsShape) !== ids.length) {
    throw new ShapeError(`gather: ${ids.length} ids do not fill ids shape ${fmt(idsShape)}`);
  }
  const V = table.shape[0];
  const row = table.size / Math.max(V, 1);
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (!Number.isInteger(id) || id < 0 || id >= V) {
      throw new RangeError(`gather: id ${id} at position ${i} is out of range [0, ${V}) for table ${fmt(table.shape)}`);
    }
  }
  const out = empty([...idsShape, ...table.shape.slice(1)], table.dtype);
  for (let i = 0; i < ids.length; i++) {
    out.data.set(table.data.subarray(ids[i] * row, (ids[i] + 1) * row), i * row);
  }
  const saved = Int32Array.from(ids);
  // Rows looked up several times receive the sum of their gradients.
  return record('gather', out, [table], (g) => {
    const gt = zerosLike(table);
    for (let i = 0; i < saved.length; i++) {
      const base = saved[i] * row;
      for (let j = 0; j < row; j++) gt[base + j] += g[i * row + j];
    }
    return [gt];
  });
}

/**
 * Elementwise select with broadcasting: `condition` nonzero picks `a`, zero picks `b`. Masking
 * uses this select, never arithmetic with huge constants (1e10·0 is NaN once 1e10 overflows to
 * infinity in half precision). The condition receives no gradient.
 */
export function where(condition: Tensor, a: Tensor, b: Tensor): Tensor {
  checkSameDtype('where', a, b);
  const shape = broadcastShapes('where', broadcastShapes('where', condition.shape, a.shape), b.shape);
  const n = sizeOf(shape);
  const out = empty(shape, a.dtype);
  const c = expandOperand(condition.data, operandLayout(condition.shape, shape), n);
  const aLayout = operandLayout(a.shape, shape);
  const bLayout = operandLayout(b.shape, shape);
  const av = expandOperand(a.data, aLayout, n);
  const bv = expandOperand(b.data, bLayout, n);
  const o = out.data;
  for (let i = 0; i < n; i++) o[i] = c[i] !== 0 ? av[i] : bv[i];

  // Each branch receives the gradient where it was picked, summed back to its own shape.
  return record('where', out, [condition, a, b], (g, needs) => {
    let ga: FloatArray | null = null;
    let gb: FloatArray | null = null;
    if (needs[1]) {
      const picked = g.slice();
      for (let i = 0; i < n; i++) if (c[i] === 0) picked[i] = 0;
      ga = reduceToOperand(picked, aLayout, a);
    }
    if (needs[2]) {
      const picked = g.slice();
      for (let i = 0; i < n; i++) if (c[i] !== 0) picked[i] = 0;
      gb = reduceToOperand(picked, bLayout, b);
    }
    return [null, ga, gb];
  });
}

/** Replaces elements where `mask` is nonzero by `value` (for example −Infinity for a causal mask). */
export function maskedFill(x: Tensor, mask: Tensor, value: number): Tensor {
  const fill = new Tensor(allocate(x.dtype, 1).fill(value), []);
  return where(mask, fill, x);
}

/** Converts to another dtype (float32 rounds to nearest). The gradient converts back. */
export function cast(x: Tensor, dtype: DType): Tensor {
  const data: FloatArray = allocate(dtype, x.size);
  data.set(x.data);
  const out = new Tensor(data, x.shape);
  return record('cast', out, [x], (g) => {
    const gx = zerosLike(x);
    gx.set(g);
    return [gx];
  });
}
