// Basic layers. Weight layouts follow PyTorch: Linear.weight is [out, in] and applied as x·Wᵀ + b.
import type { DType } from '../tensor/dtype.js';
import { randn, ones, zeros, rand } from '../tensor/create.js';
import { add, gather, layerNorm, matmul } from '../tensor/ops/index.js';
import type { Rng } from '../tensor/random.js';
import type { Tensor } from '../tensor/tensor.js';
import { Module } from './module.js';

export interface InitOptions {
  rng: Rng;
  dtype?: DType;
}

/** y = x·Wᵀ + b with W [out, in], initialised uniform ±1/√in as PyTorch does. */
export class Linear extends Module {
  readonly weight: Tensor; // (out, in)
  readonly bias: Tensor | null; // (out)

  constructor(readonly inFeatures: number, readonly outFeatures: number, options: InitOptions & { bias?: boolean }) {
    super();
    const bound = 1 / Math.sqrt(inFeatures);
    const dtype = options.dtype ?? 'float32';
    this.weight = this.parameter('weight', rand([outFeatures, inFeatures], options.rng, { low: -bound, high: bound, dtype }));
    this.bias = options.bias === false ? null : this.parameter('bias', rand([outFeatures], options.rng, { low: -bound, high: bound, dtype }));
  }

  forward(x: Tensor): Tensor {
    const y = matmul(x, this.weight, { transB: true }); // (..., out)
    return this.bias === null ? y : add(y, this.bias); // (..., out)
  }
}

/** Lookup table [V, C] indexed by integer ids, initialised N(0, 1) as PyTorch does. */
export class Embedding extends Module {
  readonly weight: Tensor; // (V, C)

  constructor(readonly count: number, readonly dim: number, options: InitOptions & { std?: number }) {
    super();
    this.weight = this.parameter('weight', randn([count, dim], options.rng, { std: options.std ?? 1, dtype: options.dtype }));
  }

  /** Looks up `ids` (shape `idsShape`); the result is [...idsShape, C]. */
  forward(ids: ArrayLike<number>, idsShape: readonly number[] = [ids.length]): Tensor {
    return gather(this.weight, ids, idsShape); // (...idsShape, C)
  }
}

/** Layer normalisation over the last axis with a learned scale (ones) and shift (zeros). */
export class LayerNorm extends Module {
  readonly weight: Tensor; // (C)
  readonly bias: Tensor; // (C)

  constructor(readonly dim: number, readonly eps = 1e-5, dtype: DType = 'float32') {
    super();
    this.weight = this.parameter('weight', ones([dim], dtype));
    this.bias = this.parameter('bias', zeros([dim], dtype));
  }

  forward(x: Tensor): Tensor {
    return layerNorm(x, this.weight, this.bias, this.eps); // same shape as x
  }
}
