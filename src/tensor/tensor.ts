// The Tensor: flat typed storage plus a shape. Storage is always contiguous and row-major, so a
// reshape is a free view that shares the array, while permute, slice and concat copy. This keeps
// every kernel a plain loop over a flat array, which matters more for CPU speed than the copies do.
import { backward as runBackward, type GraphNode } from '../autograd/tape.js';
import { allocate, dtypeOf, type DType, type FloatArray } from './dtype.js';
import { checkShape, fmt, ShapeError, sizeOf, type Shape } from './shape.js';
import * as ops from './ops/index.js';

export class Tensor {
  readonly data: FloatArray;
  readonly shape: readonly number[];
  readonly dtype: DType;
  /** When true, backward() computes a gradient for this tensor (leaves) or through it. */
  requiresGrad = false;
  /** Accumulated gradient of a leaf tensor; null until the first backward pass reaches it. */
  grad: Tensor | null = null;
  /** Graph node that produced this tensor; null for leaves and for results computed without a graph. */
  node: GraphNode | null = null;
  /** Optional label, for example the checkpoint key of a parameter. */
  name = '';

  constructor(data: FloatArray, shape: Shape) {
    checkShape('Tensor', shape);
    if (data.length !== sizeOf(shape)) {
      throw new ShapeError(`Tensor: ${data.length} elements cannot have shape ${fmt(shape)} (${sizeOf(shape)} elements)`);
    }
    this.data = data;
    this.shape = Object.freeze([...shape]);
    this.dtype = dtypeOf(data);
  }

  get size(): number {
    return this.data.length;
  }

  get rank(): number {
    return this.shape.length;
  }

  /** Returns the value of a one-element tensor. */
  item(): number {
    if (this.size !== 1) throw new ShapeError(`item: expected a one-element tensor, got shape ${fmt(this.shape)}`);
    return this.data[0];
  }

  /** Returns a copy of the elements as a plain array (row-major). */
  toArray(): number[] {
    return Array.from(this.data);
  }

  /** Returns a tensor sharing this storage with no graph and no gradient. */
  detach(): Tensor {
    return new Tensor(this.data, this.shape);
  }

  /** Marks this tensor as a trainable leaf (or freezes it) and returns it. */
  requireGrad(flag = true): this {
    if (this.node !== null) {
      throw new Error('requireGrad: only leaf tensors can be marked; call detach() first to make a new leaf');
    }
    this.requiresGrad = flag;
    return this;
  }

  /** Adds `g` into `.grad` (leaf accumulation, called by the backward pass). */
  accumulateGrad(g: FloatArray): void {
    if (this.grad === null) {
      const copy = allocate(this.dtype, this.size);
      copy.set(g);
      this.grad = new Tensor(copy, this.shape);
      return;
    }
    const acc = this.grad.data;
    for (let i = 0; i < acc.length; i++) acc[i] += g[i];
  }

  zeroGrad(): void {
    this.grad = null;
  }

  /** Back-propagates from this tensor; see src/autograd/tape.ts for the accumulation rules. */
  backward(gradOut?: FloatArray): void {
    runBackward(this, gradOut);
  }

  // Chained forms of the free functions in ./ops, so model code reads left to right.
  add(other: Tensor | number): Tensor {
    return typeof other === 'number' ? ops.addScalar(this, other) : ops.add(this, other);
  }
  sub(other: Tensor | number): Tensor {
    return typeof other === 'number' ? ops.addScalar(this, -other) : ops.sub(this, other);
  }
  mul(other: Tensor | number): Tensor {
    return typeof other === 'number' ? ops.mulScalar(this, other) : ops.mul(this, other);
  }
  div(other: Tensor | number): Tensor {
    return typeof other === 'number' ? ops.mulScalar(this, 1 / other) : ops.div(this, other);
  }
  neg(): Tensor {
    return ops.neg(this);
  }
  exp(): Tensor {
    return ops.exp(this);
  }
  log(): Tensor {
    return ops.log(this);
  }
  sqrt(): Tensor {
    return ops.sqrt(this);
  }
  tanh(): Tensor {
    return ops.tanh(this);
  }
  sigmoid(): Tensor {
    return ops.sigmoid(this);
  }
  relu(): Tensor {
    return ops.relu(this);
  }
  gelu(): Tensor {
    return ops.gelu(this);
  }
  square(): Tensor {
    return ops.square(this);
  }
  matmul(other: Tensor, options?: ops.MatmulOptions): Tensor {
    return ops.matmul(this, other, options);
  }
  reshape(shape: Shape): Tensor {
    return ops.reshape(this, shape);
  }
  permute(axes: readonly number[]): Tensor {
    return ops.permute(this, axes);
  }
  transpose(axis0 = -2, axis1 = -1): Tensor {
    return ops.transpose(this, axis0, axis1);
  }
  sum(axes?: number | readonly number[], keepDims = false): Tensor {
    return ops.sum(this, axes, keepDims);
  }
  mean(axes?: number | readonly number[], keepDims = false): Tensor {
    return ops.mean(this, axes, keepDims);
  }
  max(axes?: number | readonly number[], keepDims = false): Tensor {
    return ops.max(this, axes, keepDims);
  }
  slice(axis: number, start: number, end: number): Tensor {
    return ops.slice(this, axis, start, end);
  }
  to(dtype: DType): Tensor {
    return ops.cast(this, dtype);
  }

  toString(): string {
    return `Tensor(${fmt(this.shape)}, ${this.dtype}${this.requiresGrad ? ', requiresGrad' : ''})`;
  }
}
