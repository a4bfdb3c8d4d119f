// GPT-2 (Radford et al., 2019) as Hugging Face's GPT2LMHeadModel computes it in eval mode.
//
// Dims: B = batch, T = new tokens in this call, P = tokens already in the cache, Tk = P + T keys,
// C = channels (n_embd), V = vocabulary, NH = heads, hs = head size (C / NH).
//
// Parameter names equal the checkpoint keys (`wte.weight`, `h.0.attn.c_attn.weight`, …,
// `ln_f.bias`), and the four projection weights keep Hugging Face's Conv1D [in, out] layout (see
// blocks.ts), so a checkpoint loads by copying each tensor under its own name.
//
// Output head: tied. Logits are ln_f(h)·wteᵀ with no bias and no separate lm_head parameter, as
// in the released GPT-2, so wte's gradient is the sum of the embedding-lookup and head parts.
// A checkpoint's optional `lm_head.weight` must equal wte (checked in io.ts).
//
// Dropout: none (the engine has no dropout op), so teacher forward passes are deterministic.
import { noGrad } from '../../autograd/index.js';
import { LayerNorm } from '../../nn/index.js';
import { Module } from '../../nn/module.js';
import type { DType } from '../../tensor/dtype.js';
import { add, crossEntropy, gather, matmul, reshape } from '../../tensor/ops/index.js';
import type { Tensor } from '../../tensor/tensor.js';
import { BlockList, EmbeddingTable, GPT2_INIT_STD, initialWeight, type BlockCapture, type Gpt2Init, type LayerCache } from './blocks.js';
import { validateGpt2Config, type Gpt2Config } from './config.js';
import { buildAttentionMask, checkAttentionMask, checkSequenceLength, checkTokenIds, resolvePositionIds } from './inputs.js';

/** Keys and values of the tokens already processed, for incremental generation. */
export interface Gpt2Cache {
  /** Tokens per row already in the cache (P). */
  length: number;
  /** Batch size the cache was filled with; null while empty. */
  batch: number | null;
  /** One entry per layer. */
  layers: LayerCache[];
}

export interface Gpt2ForwardOptions {
  /**
   * Position of each new token, B·T integers in [0, n_positions). Default: derived from
   * `attentionMask` when given, else P, P + 1, … .
   */
  positionIds?: ArrayLike<number>;
  /**
   * 1 for a real token and 0 for padding, B·(P + T) values covering cached and new tokens, as
   * Hugging Face's attention_mask. Padding keys are masked out, and default position ids count
   * only real tokens, so a left-padded row computes what its unpadded sequence computes.
   */
  attentionMask?: ArrayLike<number>;
  /**
   * Keys and values of earlier tokens. The call appends the new tokens' keys and values, runs
   * without recording a graph, and advances `cache.length` by T.
   */
  cache?: Gpt2Cache;
  /** Receives each layer's attention input and output (graph kept, for distillation losses). */
  capture?: BlockCapture;
}

export class Gpt2Model extends Module {
  readonly config: Gpt2Config;
  readonly wte: EmbeddingTable; // weight (V, C), also the output head
  readonly wpe: EmbeddingTable; // weight (n_positions, C)
  readonly h: BlockList;
  readonly ln_f: LayerNorm; // weight, bias (C)

  /**
   * Builds a model with GPT-2's initialisation (normal, std 0.02, residual projections scaled by
   * 1/√(2·n_layer), zero biases) from `init.rng`, or with zeros when `init` is 'zeros' (the loader
   * then overwrites every tensor).
   */
  constructor(config: Gpt2Config, init: Gpt2Init, dtype: DType = 'float32') {
    super();
    validateGpt2Config(config);
    this.config = { ...config };
    const C = config.nEmbd;
    this.wte = this.module('wte', new EmbeddingTable(initialWeight([config.vocabSize, C], init, GPT2_INIT_STD, dtype)));
    this.wpe = this.module('wpe', new EmbeddingTable(initialWeight([config.nPositions, C], init, GPT2_INIT_STD, dtype)));
    this.h = this.module('h', new BlockList(config, init, dtype));
    this.ln_f = this.module('ln_f', new LayerNorm(C, config.layerNormEpsilon, dtype));
  }

  /** Returns an empty cache for `forward(..., { cache })`. */
  createCache(): Gpt2Cache {
    return {
      length: 0,
      batch: null,
      layers: this.h.blocks.map(() => ({ keys: null, values: null })),
    };
  }

  /** Marks every parameter trainable or frozen; a frozen teacher builds no graph. */
  setRequiresGrad(flag: boolean): this {
    for (const p of this.parameters()) p.requireGrad(flag);
    return this;
  }

  /** Returns the logits (B, T, V) of B rows of T token ids each (row-major `ids`). */
  forward(ids: ArrayLike<number>, B: number, T: number, options: Gpt2ForwardOptions = {}): Tensor {
    const cache = options.cache;
    if (cache === undefined) return this.logitsFromIds(ids, B, T, options, null);
    this.checkCache(cache, B);
    const logits = noGrad(() => this.logitsFromIds(ids, B, T, options, cache)); // (B, T, V)
    cache.length += T;
    cache.batch = B;
    return logits;
  }

  /** Computes the mean cross-entropy of next-token `targets` (B·T ids; −100 = ignored) under forward's logits. */
  loss(ids: ArrayLike<number>, targets: ArrayLike<number>, B: number, T: number, options: Gpt2ForwardOptions = {}): Tensor {
    const logits = this.forward(ids, B, T, options); // (B, T, V)
    const V = this.config.vocabSize;
    return crossEntropy(reshape(logits, [B * T, V]), targets, -100); // ()
  }

  /**
   * Runs the embeddings and every block without a cache and returns the last block's output,
   * before ln_f and the vocabulary head. Callers that only read `options.capture` use it to skip
   * the head, which costs more than the blocks of a small model with GPT-2's 50,257-token vocabulary.
   */
  forwardBlocks(ids: ArrayLike<number>, B: number, T: number, options: Omit<Gpt2ForwardOptions, 'cache'> = {}): Tensor {
    return this.hiddenFromIds(ids, B, T, options, null); // (B, T, C)
  }

  private logitsFromIds(ids: ArrayLike<number>, B: number, T: number, options: Gpt2ForwardOptions, cache: Gpt2Cache | null): Tensor {
    const h = this.hiddenFromIds(ids, B, T, options, cache); // (B, T, C)
    const normed = this.ln_f.forward(h); // (B, T, C)
    return matmul(normed, this.wte.weight, { transB: true }); // (B, T, V)
  }

  private hiddenFromIds(ids: ArrayLike<number>, B: number, T: number, options: Gpt2ForwardOptions, cache: Gpt2Cache | null): Tensor {
    const { nPositions, vocabSize: V } = this.config;
    const P = cache === null ? 0 : cache.length;
    // Every check runs before the first lookup, so bad input never reads outside wte or wpe.
    checkSequenceLength(T, P, nPositions);
    checkTokenIds(ids, B, T, V);
    if (options.attentionMask !== undefined) checkAttentionMask(options.attentionMask, B, P + T);
    const positions = resolvePositionIds(B, T, P, nPositions, options.positionIds, options.attentionMask);
    const mask = buildAttentionMask(B, T, P, options.attentionMask); // (B or 1, 1, T, Tk)

    const tokenEmbeddings = gather(this.wte.weight, ids, [B, T]); // (B, T, C)
    const positionEmbeddings = gather(this.wpe.weight, positions, [B, T]); // (B, T, C)
    let h = add(tokenEmbeddings, positionEmbeddings); // (B, T, C)
    this.h.blocks.forEach((block, layer) => {
      h = block.forward(h, mask, cache === null ? null : cache.layers[layer], options.capture); // (B, T, C)
    });
    return h; // (B, T, C)
  }

  private checkCache(cache: Gpt2Cache, B: number): void {
    if (cache.layers.length !== this.config.nLayer) {
      throw new RangeError(`Gpt2Model.forward: cache has ${cache.layers.length} layers but the model has ${this.config.nLayer}; use model.createCache()`);
    }
    if (cache.batch !== null && cache.batch !== B) {
      throw new RangeError(`Gpt2Model.forward: cache was filled with batch ${cache.batch} but this call has B=${B}; use one cache per batch`);
    }
  }
}
