// RWKV-7 ("x070") time mixing in sequence mode, with parameter names equal to the official
// checkpoint keys (`blocks.{l}.att.*`), so loading is a name-for-name copy.
//
// Dims: B = batch, T = time steps, C = channels, H = heads, N = head size (C = H·N),
// Dw / Da / Dv / Dg = LoRA ranks of decay, in-context learning rate, value residual and gate.
//
// Per token t (row vectors, LoRA matrices applied on the right, Linear weights stored [out, in]):
//   x∘ = x + (x_{t−1} − x) ⊙ μ∘                    token shift, ∘ ∈ {r, w, k, v, a, g}
//   r = W_r x^r,  k = W_k x^k,  v = W_v x^v         projections
//   w = exp(−e^{−1/2}·σ(w0 + tanh(x^w w1) w2))      decay in (0.5452, 1)
//   v ← v + σ(v0 + (x^v v1) v2) ⊙ (v_first − v)     value residual, layers 1 and up
//   α = σ(a0 + (x^a a1) a2)                         in-context learning rate
//   g = σ(x^g g1) g2   (or 1 + σ(x^g g1) g2)        output gate
//   κ̂ = per-head unit vector of k ⊙ k_k,  k̃ = k ⊙ (1 + (α − 1) ⊙ k_a)
//   S_t = S_{t−1}(diag(w) − κ̂ (α ⊙ κ̂)ᵀ) + v k̃ᵀ,  y = S_t r   (per head)
//   o = GroupNorm_H(y) + (Σ_head r ⊙ k̃ ⊙ r_k) v,   out = W_o (o ⊙ g)
import { add, addScalar, exp, groupNorm, l2Normalize, matmul, mul, mulScalar, neg, reshape, sigmoid, sub, sum, tanh, wkv7 } from '../../tensor/ops/index.js';
import { Module } from '../../nn/module.js';
import { Linear } from '../../nn/layers.js';
import type { DType } from '../../tensor/dtype.js';
import type { Rng } from '../../tensor/random.js';
import { fmt, ShapeError } from '../../tensor/shape.js';
import type { Tensor } from '../../tensor/tensor.js';
import { headCount, validateRwkv7Config, type Rwkv7Config } from './config.js';
import { channelVector, filled, layerRatios, linearRamp, orthogonal, tokenShiftRamp, zigzag } from './init.js';
import { checkCarried, checkSequenceInput, lastInput, previousInputs } from './token-shift.js';

/** −e^{−1/2}: w = exp(DECAY_SCALE·σ(z)) keeps every decay above exp(−e^{−1/2}) = 0.545239. */
export const DECAY_SCALE = -Math.exp(-0.5);

/** GroupNorm epsilon of RWKV-7's ln_x: 64e-5 (= 1e-5·8², the official head_size_divisor of 8), not 1e-5. */
export const GROUP_NORM_EPS = 64e-5;

/** Floor of ‖k ⊙ k_k‖ per head, as PyTorch's F.normalize uses. */
export const REMOVAL_KEY_EPS = 1e-12;

/** Recurrent state of one time-mix layer. */
export interface TimeMixState {
  /** Last input of the previous chunk, for the token shift. (B, C) */
  xPrev: Tensor;
  /** WKV state S per head, rows = value channels, columns = key channels. (B, H, N, N) */
  wkv: Tensor;
}

export interface TimeMixResult {
  out: Tensor; // (B, T, C)
  /** Layer 0's projected values (its own `v`); later layers pass the one they received. (B, T, C) */
  vFirst: Tensor;
  state: TimeMixState;
}

/**
 * Initialisation scheme: `official` follows RWKV-LM's train_temp initialiser; `converted` is the
 * start of a student converted from a transformer (μ = 0, identity-like gate when the gate kind
 * allows it, w0 = −7 + 5·(n/(C−1))^{0.85+√ρ0} + 0.5, a0 = 0, v0 = 1, k_k = 0.85, k_a = 1,
 * r_k = 0, ln_x weight 1, projections uniform ±1/√C until a teacher's weights are copied in);
 * `none` is `official` without the random orthogonal matrices (zeros, and PyTorch's uniform
 * projections), for a loader that overwrites every value.
 */
export type TimeMixInit = 'official' | 'converted' | 'none';

/** Intermediate tensors of one forward pass, filled in when a probe object is passed (tests, debugging). */
export interface TimeMixProbe {
  r?: Tensor; // (B, T, C)
  z?: Tensor; // decay pre-activation (B, T, C)
  w?: Tensor; // (B, T, C)
  k?: Tensor; // projected key (B, T, C)
  v?: Tensor; // value after the residual mix (B, T, C)
  alpha?: Tensor; // (B, T, C)
  g?: Tensor; // (B, T, C)
  removalKey?: Tensor; // κ̂ (B, T, H, N)
  replacementKey?: Tensor; // k̃ (B, T, C)
  y?: Tensor; // WKV output (B, T, C)
  normalized?: Tensor; // GroupNorm(y) or y·N^(−1/2) (B, T, C)
  bonus?: Tensor; // (B, T, C)
}

export interface TimeMixOptions {
  rng: Rng;
  dtype?: DType;
  init?: TimeMixInit;
}

/** Holder of ln_x's affine parameters; the normalisation itself is `groupNorm` over H groups. */
class GroupNormAffine extends Module {
  readonly weight: Tensor; // (C)
  readonly bias: Tensor; // (C)

  constructor(weight: Tensor, bias: Tensor) {
    super();
    this.weight = this.parameter('weight', weight);
    this.bias = this.parameter('bias', bias);
  }
}

/** The six token-shifted inputs. */
interface MixedInputs {
  xr: Tensor; // (B, T, C)
  xw: Tensor; // (B, T, C)
  xk: Tensor; // (B, T, C)
  xv: Tensor; // (B, T, C)
  xa: Tensor; // (B, T, C)
  xg: Tensor; // (B, T, C)
}

export class Rwkv7TimeMix extends Module {
  readonly C: number;
  readonly H: number;
  readonly N: number;

  // Token-shift weights μ, absent when the config turns token shift off.
  readonly x_r: Tensor | null; // (1, 1, C)
  readonly x_w: Tensor | null; // (1, 1, C)
  readonly x_k: Tensor | null; // (1, 1, C)
  readonly x_v: Tensor | null; // (1, 1, C)
  readonly x_a: Tensor | null; // (1, 1, C)
  readonly x_g: Tensor | null; // (1, 1, C)

  readonly w0: Tensor; // (1, 1, C)
  readonly w1: Tensor; // (C, Dw)
  readonly w2: Tensor; // (Dw, C)
  readonly a0: Tensor; // (1, 1, C)
  readonly a1: Tensor; // (C, Da)
  readonly a2: Tensor; // (Da, C)
  // The official code creates v0, v1, v2 in every layer, and layer 0 never uses them.
  readonly v0: Tensor; // (1, 1, C)
  readonly v1: Tensor; // (C, Dv)
  readonly v2: Tensor; // (Dv, C)
  readonly g1: Tensor; // (C, Dg)
  readonly g2: Tensor; // (Dg, C)
  readonly k_k: Tensor; // (1, 1, C)
  readonly k_a: Tensor; // (1, 1, C)
  /** Bonus weights, absent when the config turns the bonus term off. */
  readonly r_k: Tensor | null; // (H, N)

  readonly receptance: Linear; // weight (C, C)
  readonly key: Linear; // weight (C, C)
  readonly value: Linear; // weight (C, C)
  readonly output: Linear; // weight (C, C)
  /** GroupNorm affine parameters, absent when the config turns GroupNorm off. */
  readonly ln_x: GroupNormAffine | null;

  constructor(
    readonly config: Rwkv7Config,
    readonly layerId: number,
    options: TimeMixOptions,
  ) {
    super();
    validateRwkv7Config(config);
    if (!Number.isInteger(layerId) || layerId < 0 || layerId >= config.nLayer) {
      throw new RangeError(`Rwkv7TimeMix: layerId must be an integer in [0, ${config.nLayer}) (nLayer), got ${layerId}`);
    }
    const C = config.nEmbd;
    const N = config.headSize;
    const H = headCount(config);
    this.C = C;
    this.H = H;
    this.N = N;
    const dtype = options.dtype ?? 'float32';
    const init = options.init ?? 'official';
    const rng = options.rng;
    const { rho0, rho1 } = layerRatios(layerId, config.nLayer);
    // `none` uses the official formulas for the cheap per-channel vectors.
    const official = init !== 'converted';
    const ortho = (rows: number, cols: number, gain: number): Tensor =>
      init === 'none' ? filled([rows, cols], 0, dtype) : orthogonal(rows, cols, gain, rng, dtype);
    const lin = (n: number): number => linearRamp(n, C);
    const zig = (n: number): number => zigzag(n, N);
    const vec = (f: (n: number) => number): Tensor => channelVector(C, dtype, f);
    const shift = (exponent: number): Tensor => vec((n) => (official ? tokenShiftRamp(n, C, exponent * rho1) : 0));

    const withShift = config.tokenShift;
    this.x_r = withShift ? this.parameter('x_r', shift(0.2)) : null;
    this.x_w = withShift ? this.parameter('x_w', shift(0.9)) : null;
    this.x_k = withShift ? this.parameter('x_k', shift(0.7)) : null;
    this.x_v = withShift ? this.parameter('x_v', shift(0.7)) : null;
    this.x_a = withShift ? this.parameter('x_a', shift(0.9)) : null;
    this.x_g = withShift ? this.parameter('x_g', shift(0.2)) : null;

    const ramp = (n: number): number => (C > 1 ? n / (C - 1) : 0);
    this.w0 = this.parameter(
      'w0',
      vec((n) =>
        official
          ? -6 + 6 * Math.pow(ramp(n), 1 + Math.pow(rho0, 0.3)) + 0.5 + 2.5 * zig(n)
          : -7 + 5 * Math.pow(ramp(n), 0.85 + Math.sqrt(rho0)) + 0.5,
      ),
    );
    this.w1 = this.parameter('w1', filled([C, config.dDecay], 0, dtype));
    this.w2 = this.parameter('w2', ortho(config.dDecay, C, 0.1));

    this.a0 = this.parameter('a0', vec((n) => (official ? -0.19 + 0.3 * zig(n) + 0.4 * lin(n) : 0)));
    this.a1 = this.parameter('a1', filled([C, config.dIclr], 0, dtype));
    this.a2 = this.parameter('a2', ortho(config.dIclr, C, 0.1));

    this.v0 = this.parameter('v0', vec((n) => (official ? 0.73 - 0.4 * lin(n) : 1)));
    this.v1 = this.parameter('v1', filled([C, config.dValue], 0, dtype));
    this.v2 = this.parameter('v2', ortho(config.dValue, C, 0.1));

    // With the identity-plus gate, g2 = 0 makes g = 1 so a converted student starts ungated.
    const identityGate = config.gate === 'identity-plus' && !official;
    this.g1 = this.parameter('g1', filled([C, config.dGate], 0, dtype));
    this.g2 = this.parameter('g2', identityGate ? filled([config.dGate, C], 0, dtype) : ortho(config.dGate, C, 0.1));

    this.k_k = this.parameter('k_k', vec((n) => (official ? 0.71 - 0.1 * lin(n) : 0.85)));
    this.k_a = this.parameter('k_a', vec(() => (official ? 1.02 : 1)));
    this.r_k = config.bonus ? this.parameter('r_k', filled([H, N], official ? -0.04 : 0, dtype)) : null;

    const linear = (name: string): Linear => this.module(name, new Linear(C, C, { rng, dtype, bias: config.biases }));
    this.receptance = linear('receptance');
    this.key = linear('key');
    this.value = linear('value');
    this.output = linear('output');
    if (init === 'official') this.applyOfficialProjectionInit(rng);

    this.ln_x = config.groupNorm
      ? this.module('ln_x', new GroupNormAffine(filled([C], official ? Math.pow((1 + layerId) / config.nLayer, 0.7) : 1, dtype), filled([C], 0, dtype)))
      : null;
  }

  /** Orthogonal r (gain 1), k (gain 0.1), v (gain 1), zero output, zero biases. */
  private applyOfficialProjectionInit(rng: Rng): void {
    const { C } = this;
    const dtype = this.receptance.weight.dtype;
    this.receptance.weight.data.set(orthogonal(C, C, 1, rng, dtype).data);
    this.key.weight.data.set(orthogonal(C, C, 0.1, rng, dtype).data);
    this.value.weight.data.set(orthogonal(C, C, 1, rng, dtype).data);
    this.output.weight.data.fill(0);
    for (const projection of [this.receptance, this.key, this.value, this.output]) projection.bias?.data.fill(0);
  }

  /** Creates the zero state of a batch of B sequences. */
  createState(B: number): TimeMixState {
    const dtype = this.w0.dtype;
    return { xPrev: filled([B, this.C], 0, dtype), wkv: filled([B, this.H, this.N, this.N], 0, dtype) };
  }

  /**
   * Runs the layer over x (B, T, C) from `state` (zeros when null). Layer 0 ignores `vFirst` and
   * returns its own values as `vFirst`; later layers need layer 0's `vFirst` (B, T, C). The state
   * returned is new tensors (connected to the graph, so a later chunk back-propagates into it).
   */
  forward(x: Tensor, vFirst: Tensor | null, state: TimeMixState | null = null, probe?: TimeMixProbe): TimeMixResult {
    const where = `Rwkv7TimeMix(layer ${this.layerId}).forward`;
    checkSequenceInput(where, x, this.C);
    const [B, T, C] = x.shape;
    const { H, N } = this;
    if (state !== null) {
      checkCarried(where, 'xPrev', state.xPrev, [B, C], x);
      checkCarried(where, 'wkv', state.wkv, [B, H, N, N], x);
    }

    const { xr, xw, xk, xv, xa, xg } = this.mixInputs(x, state?.xPrev ?? null);

    const r = this.receptance.forward(xr); // (B, T, C)
    const z = add(this.w0, matmul(tanh(matmul(xw, this.w1)), this.w2)); // decay pre-activation (B, T, C)
    const w = exp(mulScalar(sigmoid(z), DECAY_SCALE)); // (B, T, C)
    const k = this.key.forward(xk); // (B, T, C)
    const projectedV = this.value.forward(xv); // (B, T, C)
    const { v, first } = this.valueResidual(projectedV, xv, vFirst, where); // (B, T, C) each
    const alpha = sigmoid(add(this.a0, matmul(matmul(xa, this.a1), this.a2))); // (B, T, C)
    const g = this.gate(xg); // (B, T, C)

    const removalKey = l2Normalize(reshape(mul(k, this.k_k), [B, T, H, N]), REMOVAL_KEY_EPS); // κ̂ (B, T, H, N)
    const replacementKey = mul(k, addScalar(mul(addScalar(alpha, -1), this.k_a), 1)); // k̃ (B, T, C)

    const toHeads = (t: Tensor): Tensor => reshape(t, [B, T, H, N]); // (B, T, H, N)
    const r4 = toHeads(r); // (B, T, H, N)
    const k4 = toHeads(replacementKey); // (B, T, H, N)
    const v4 = toHeads(v); // (B, T, H, N)
    const a = neg(removalKey); // (B, T, H, N)
    const b = mul(removalKey, toHeads(alpha)); // (B, T, H, N)
    const wkv = wkv7(r4, toHeads(w), k4, v4, a, b, state?.wkv ?? null); // y (B, T, H, N), state (B, H, N, N)

    const y = reshape(wkv.y, [B, T, C]); // (B, T, C)
    const normalized = this.normalizeHeads(y); // (B, T, C)
    const bonus = this.r_k === null ? null : bonusTerm(r4, k4, v4, this.r_k); // (B, T, C)
    const o = bonus === null ? normalized : add(normalized, bonus); // (B, T, C)
    const out = this.output.forward(mul(o, g)); // (B, T, C)

    if (probe !== undefined) {
      Object.assign(probe, { r, z, w, k, v, alpha, g, removalKey, replacementKey, y, normalized });
      if (bonus !== null) probe.bonus = bonus;
    }

    return { out, vFirst: first, state: { xPrev: lastInput(x), wkv: wkv.state } };
  }

  private mixInputs(x: Tensor, xPrev: Tensor | null): MixedInputs {
    if (!this.config.tokenShift) return { xr: x, xw: x, xk: x, xv: x, xa: x, xg: x };
    const delta = sub(previousInputs(x, xPrev), x); // x_{t−1} − x_t (B, T, C)
    const mix = (mu: Tensor | null): Tensor => (mu === null ? x : add(x, mul(delta, mu))); // (B, T, C)
    return { xr: mix(this.x_r), xw: mix(this.x_w), xk: mix(this.x_k), xv: mix(this.x_v), xa: mix(this.x_a), xg: mix(this.x_g) };
  }

  private valueResidual(v: Tensor, xv: Tensor, vFirst: Tensor | null, where: string): { v: Tensor; first: Tensor } {
    if (this.layerId === 0) return { v, first: v };
    if (vFirst === null) {
      throw new ShapeError(`${where}: layers after the first need vFirst (layer 0's values, shape (B, T, C)); pass the vFirst that layer 0 returned`);
    }
    if (fmt(vFirst.shape) !== fmt(v.shape)) {
      throw new ShapeError(`${where}: vFirst must have the shape ${fmt(v.shape)} of this layer's values, got ${fmt(vFirst.shape)}`);
    }
    const nu = sigmoid(add(this.v0, matmul(matmul(xv, this.v1), this.v2))); // ν (B, T, C)
    return { v: add(v, mul(nu, sub(vFirst, v))), first: vFirst }; // (B, T, C)
  }

  private gate(xg: Tensor): Tensor {
    const g = matmul(sigmoid(matmul(xg, this.g1)), this.g2); // (B, T, C)
    return this.config.gate === 'identity-plus' ? addScalar(g, 1) : g; // (B, T, C)
  }

  /** Per-head GroupNorm, or a scale by N^(−1/2) when GroupNorm is off (RADLADS' choice). */
  private normalizeHeads(y: Tensor): Tensor {
    if (this.ln_x === null) return mulScalar(y, 1 / Math.sqrt(this.N)); // (B, T, C)
    return groupNorm(y, this.H, this.ln_x.weight, this.ln_x.bias, GROUP_NORM_EPS); // (B, T, C)
  }
}

/** Bonus term (Σ_j r_j k̃_j r_k[h, j]) · v per head, using the residual-mixed v and k̃. */
function bonusTerm(r4: Tensor, k4: Tensor, v4: Tensor, rk: Tensor): Tensor {
  const [B, T, H, N] = r4.shape;
  const u = sum(mul(mul(r4, k4), rk), -1, true); // (B, T, H, 1)
  return reshape(mul(u, v4), [B, T, H * N]); // (B, T, C)
}
