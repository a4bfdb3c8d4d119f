// RWKV-7 channel mixing: a squared-ReLU MLP whose input mixes in the previous token.
//
// Dims: B = batch, T = time steps, C = channels, F = hidden width (dimFfn).
//   x^k = x + (x_{t−1} − x) ⊙ μ_k,   h = relu(W_key x^k)²,   out = W_value h
import { add, mul, relu, square, sub } from '../../tensor/ops/index.js';
import { Linear } from '../../nn/layers.js';
import { Module } from '../../nn/module.js';
import type { DType } from '../../tensor/dtype.js';
import type { Rng } from '../../tensor/random.js';
import type { Tensor } from '../../tensor/tensor.js';
import type { Rwkv7Config } from './config.js';
import { channelVector, filled, layerRatios, orthogonal, tokenShiftRamp } from './init.js';
import { checkCarried, checkSequenceInput, lastInput, previousInputs } from './token-shift.js';

/** Recurrent state of one channel-mix layer. */
export interface ChannelMixState {
  /** Last input of the previous chunk. (B, C) */
  xPrev: Tensor;
}

export interface ChannelMixResult {
  out: Tensor; // (B, T, C)
  state: ChannelMixState;
}

export class Rwkv7ChannelMix extends Module {
  readonly C: number;
  readonly x_k: Tensor; // (1, 1, C)
  readonly key: Linear; // weight (F, C)
  readonly value: Linear; // weight (C, F)

  /** Official init: μ_k = 1 − (n/C)^(ρ1⁴), key orthogonal with gain 1, value zero. */
  constructor(
    readonly config: Rwkv7Config,
    readonly layerId: number,
    options: { rng: Rng; dtype?: DType; skipRandomInit?: boolean },
  ) {
    super();
    const C = config.nEmbd;
    const F = config.dimFfn;
    const dtype = options.dtype ?? 'float32';
    const { rho1 } = layerRatios(layerId, config.nLayer);
    this.C = C;
    this.x_k = this.parameter('x_k', channelVector(C, dtype, (n) => tokenShiftRamp(n, C, Math.pow(rho1, 4))));
    this.key = this.module('key', new Linear(C, F, { rng: options.rng, dtype, bias: false }));
    this.value = this.module('value', new Linear(F, C, { rng: options.rng, dtype, bias: false }));
    // The loader skips the orthogonal key (O(F·C²) work) because it overwrites every value.
    if (options.skipRandomInit !== true) this.key.weight.data.set(orthogonal(F, C, 1, options.rng, dtype).data);
    this.value.weight.data.set(filled([C, F], 0, dtype).data);
  }

  createState(B: number): ChannelMixState {
    return { xPrev: filled([B, this.C], 0, this.x_k.dtype) };
  }

  /** Runs the layer over x (B, T, C) from `state` (zeros when null). */
  forward(x: Tensor, state: ChannelMixState | null = null): ChannelMixResult {
    const where = `Rwkv7ChannelMix(layer ${this.layerId}).forward`;
    checkSequenceInput(where, x, this.C);
    const [B, , C] = x.shape;
    if (state !== null) checkCarried(where, 'xPrev', state.xPrev, [B, C], x);

    const delta = sub(previousInputs(x, state?.xPrev ?? null), x); // x_{t−1} − x_t (B, T, C)
    const xk = add(x, mul(delta, this.x_k)); // (B, T, C)
    const hidden = square(relu(this.key.forward(xk))); // (B, T, F)
    const out = this.value.forward(hidden); // (B, T, C)
    return { out, state: { xPrev: lastInput(x) } };
  }
}
