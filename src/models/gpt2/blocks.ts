// The pieces of one GPT-2 transformer block, with parameter names equal to Hugging Face's keys.
//
// Dims: B = batch, T = new tokens in this call, Tk = keys (cached + new), C = channels (n_embd),
// NH = heads (n_head), hs = head size (C / NH), F = MLP width (n_inner).
//
// Conv1D layout: Hugging Face stores GPT-2's four projection weights (attn.c_attn, attn.c_proj,
// mlp.c_fc, mlp.c_proj) as [in, out] and computes y = x·W + b. This code keeps that layout and
// multiplies without a transpose, so loading and saving copy tensors unchanged and a checkpoint
// key's shape is exactly the parameter's shape. (nanoGPT instead transposes into [out, in] Linear
// weights on load; both are correct, but mixing them is a silent bug for the square attn.c_proj.)
//
// Dropout: none. The engine has no dropout op, so every forward pass is deterministic, as a
// distillation teacher needs. The pdrop fields of config.json are ignored.
import { noGrad } from '../../autograd/index.js';
import { LayerNorm } from '../../nn/index.js';
import { Module } from '../../nn/module.js';
import { randn, zeros } from '../../tensor/create.js';
import type { DType } from '../../tensor/dtype.js';
import { add, concat, gelu, matmul, maskedFill, permute, reshape, softmax, split } from '../../tensor/ops/index.js';
import type { Rng } from '../../tensor/random.js';
import type { Tensor } from '../../tensor/tensor.js';
import type { Gpt2Config } from './config.js';

/** Initial weights: GPT-2's random initialisation from `rng`, or zeros for loading a checkpoint. */
export type Gpt2Init = { rng: Rng } | 'zeros';

/** Standard deviation of GPT-2's initial weights (config.json initializer_range). */
export const GPT2_INIT_STD = 0.02;

/** Draws N(0, std²) values, or zeros when the weights will be overwritten by a checkpoint. */
export function initialWeight(shape: readonly number[], init: Gpt2Init, std: number, dtype: DType): Tensor {
  return init === 'zeros' ? zeros(shape, dtype) : randn(shape, init.rng, { std, dtype });
}

/**
 * A lookup table registered as `weight`. nn.Embedding would first draw N(0, 1) values that
 * GPT-2's init or a checkpoint then overwrites, which costs seconds for the 124M model's wte.
 */
export class EmbeddingTable extends Module {
  readonly weight: Tensor; // (rows, C)

  constructor(initial: Tensor) {
    super();
    this.weight = this.parameter('weight', initial);
  }
}

/** Hugging Face's Conv1D: y = x·W + b with W stored [in, out]. */
export class Conv1D extends Module {
  readonly weight: Tensor; // (in, out)
  readonly bias: Tensor; // (out)

  constructor(inFeatures: number, outFeatures: number, init: Gpt2Init, std: number, dtype: DType) {
    super();
    this.weight = this.parameter('weight', initialWeight([inFeatures, outFeatures], init, std, dtype));
    this.bias = this.parameter('bias', zeros([outFeatures], dtype));
  }

  forward(x: Tensor): Tensor {
    const y = matmul(x, this.weight); // (..., out)
    return add(y, this.bias); // (..., out)
  }
}

/** Keys and values of earlier tokens for one layer, each (B, NH, Tk, hs). */
export interface LayerCache {
  keys: Tensor | null;
  values: Tensor | null;
}

/** Multi-head causal self-attention: ln_1 output in, block output A = o·W_cproj + b_cproj out. */
export class CausalSelfAttention extends Module {
  readonly c_attn: Conv1D; // weight (C, 3C): columns q | k | v, head j owns [j·hs, (j+1)·hs) of each
  readonly c_proj: Conv1D; // weight (C, C)
  readonly nHead: number;

  constructor(config: Gpt2Config, init: Gpt2Init, dtype: DType) {
    super();
    const C = config.nEmbd;
    // GPT-2 scales the init of projections into the residual stream by 1/√(2·n_layer), because
    // each block adds two of them to the stream.
    const residualStd = GPT2_INIT_STD / Math.sqrt(2 * config.nLayer);
    this.c_attn = this.module('c_attn', new Conv1D(C, 3 * C, init, GPT2_INIT_STD, dtype));
    this.c_proj = this.module('c_proj', new Conv1D(C, C, init, residualStd, dtype));
    this.nHead = config.nHead;
  }

  /**
   * `mask` is nonzero where a query may not see a key, shape (B or 1, 1, T, Tk). With a `cache`
   * the new keys and values are appended to it and attention covers cached + new tokens.
   */
  forward(x: Tensor, mask: Tensor, cache: LayerCache | null): Tensor {
    const [B, T, C] = x.shape;
    const NH = this.nHead;
    const hs = C / NH;

    const qkv = this.c_attn.forward(x); // (B, T, 3C)
    const [q, kNew, vNew] = split(qkv, 2, [C, C, C]).map((t) => splitHeads(t, B, T, NH, hs)); // (B, NH, T, hs) each
    const k = appendToCache(cache, 'keys', kNew); // (B, NH, Tk, hs)
    const v = appendToCache(cache, 'values', vNew); // (B, NH, Tk, hs)

    const scores = matmul(q, k, { transB: true }).mul(1 / Math.sqrt(hs)); // (B, NH, T, Tk)
    // A select, not "scores − 1e10·mask": a huge constant overflows in low precision and
    // inf·0 gives NaN. Future and padding keys get exactly zero probability.
    const masked = maskedFill(scores, mask, -Infinity); // (B, NH, T, Tk)
    const probs = softmax(masked, -1); // (B, NH, T, Tk)
    const heads = matmul(probs, v); // (B, NH, T, hs)
    const merged = reshape(permute(heads, [0, 2, 1, 3]), [B, T, C]); // (B, T, C)
    return this.c_proj.forward(merged); // (B, T, C)
  }
}

/** (B, T, C) → (B, NH, T, hs): head j takes channels [j·hs, (j+1)·hs). */
function splitHeads(x: Tensor, B: number, T: number, NH: number, hs: number): Tensor {
  return permute(reshape(x, [B, T, NH, hs]), [0, 2, 1, 3]); // (B, NH, T, hs)
}

/** Returns cached + new along the time axis and stores the result in the cache (no graph kept). */
function appendToCache(cache: LayerCache | null, field: 'keys' | 'values', fresh: Tensor): Tensor {
  if (cache === null) return fresh; // (B, NH, T, hs)
  const previous = cache[field];
  const all = previous === null ? fresh : noGrad(() => concat([previous, fresh], 2)); // (B, NH, Tk, hs)
  cache[field] = all.detach();
  return all;
}

/** Position-wise MLP: c_fc, tanh GELU, c_proj. */
export class Mlp extends Module {
  readonly c_fc: Conv1D; // weight (C, F)
  readonly c_proj: Conv1D; // weight (F, C)

  constructor(config: Gpt2Config, init: Gpt2Init, dtype: DType) {
    super();
    const residualStd = GPT2_INIT_STD / Math.sqrt(2 * config.nLayer);
    this.c_fc = this.module('c_fc', new Conv1D(config.nEmbd, config.nInner, init, GPT2_INIT_STD, dtype));
    this.c_proj = this.module('c_proj', new Conv1D(config.nInner, config.nEmbd, init, residualStd, dtype));
  }

  forward(x: Tensor): Tensor {
    const hidden = gelu(this.c_fc.forward(x)); // (B, T, F)
    return this.c_proj.forward(hidden); // (B, T, C)
  }
}

/** Tensors a caller can ask one block to hand out, for example to distil attention outputs. */
export interface BlockCapture {
  /** Input of the attention (ln_1 output), one (B, T, C) tensor per layer. */
  attentionInputs: Tensor[];
  /** Attention block output including the c_proj bias, one (B, T, C) tensor per layer. */
  attentionOutputs: Tensor[];
}

/** Pre-LN transformer block: h += attn(ln_1(h)); h += mlp(ln_2(h)). */
export class Block extends Module {
  readonly ln_1: LayerNorm;
  readonly attn: CausalSelfAttention;
  readonly ln_2: LayerNorm;
  readonly mlp: Mlp;

  constructor(config: Gpt2Config, init: Gpt2Init, dtype: DType) {
    super();
    this.ln_1 = this.module('ln_1', new LayerNorm(config.nEmbd, config.layerNormEpsilon, dtype));
    this.attn = this.module('attn', new CausalSelfAttention(config, init, dtype));
    this.ln_2 = this.module('ln_2', new LayerNorm(config.nEmbd, config.layerNormEpsilon, dtype));
    this.mlp = this.module('mlp', new Mlp(config, init, dtype));
  }

  forward(h: Tensor, mask: Tensor, cache: LayerCache | null, capture?: BlockCapture): Tensor {
    const attentionInput = this.ln_1.forward(h); // (B, T, C)
    const attentionOutput = this.attn.forward(attentionInput, mask, cache); // (B, T, C)
    capture?.attentionInputs.push(attentionInput);
    capture?.attentionOutputs.push(attentionOutput);
    const afterAttention = add(h, attentionOutput); // (B, T, C)
    const mlpOutput = this.mlp.forward(this.ln_2.forward(afterAttention)); // (B, T, C)
    return add(afterAttention, mlpOutput); // (B, T, C)
  }
}

/** The numbered list of blocks, registered as "0", "1", … so keys read `h.0.ln_1.weight`. */
export class BlockList extends Module {
  readonly blocks: Block[] = [];

  constructor(config: Gpt2Config, init: Gpt2Init, dtype: DType) {
    super();
    for (let layer = 0; layer < config.nLayer; layer++) {
      this.blocks.push(this.module(String(layer), new Block(config, init, dtype)));
    }
  }
}
