// The RWKV-7 language model: embedding, L blocks of time mix + channel mix, final norm and head.
// Parameter names equal the official checkpoint keys (emb.weight, blocks.{l}.ln0/ln1/ln2/att/ffn,
// ln_out, head.weight).
//
// Dims: B = batch, T = time steps, C = channels, V = vocabulary, H = heads, N = head size.
//   x = ln0(emb[ids])                                (layer 0 only applies ln0)
//   x = x + att(ln1(x)),  x = x + ffn(ln2(x))         per block
//   logits = head(ln_out(x))
import { noGrad } from '../../autograd/tape.js';
import { Embedding, LayerNorm, Linear } from '../../nn/layers.js';
import { Module } from '../../nn/module.js';
import type { DType } from '../../tensor/dtype.js';
import { add, crossEntropy, reshape } from '../../tensor/ops/index.js';
import { Rng } from '../../tensor/random.js';
import { ShapeError } from '../../tensor/shape.js';
import { Tensor } from '../../tensor/tensor.js';
import { rwkv7Config, type Rwkv7Config, type Rwkv7ConfigInput } from './config.js';
import { Rwkv7ChannelMix, type ChannelMixState } from './channel-mix.js';
import { orthogonal, uniform } from './init.js';
import { Rwkv7TimeMix, type TimeMixState } from './time-mix.js';

/** Recurrent state of one block. */
export interface Rwkv7LayerState {
  att: TimeMixState;
  ffn: ChannelMixState;
}

/** Recurrent state of the whole model, one entry per layer. `v_first` is not state: it is recomputed per token. */
export interface Rwkv7State {
  layers: Rwkv7LayerState[];
}

export interface Rwkv7Output {
  logits: Tensor; // (B, T, V)
  state: Rwkv7State;
}

export interface Rwkv7ModelOptions {
  /** Seed of the initialisation (default 0). */
  seed?: number;
  dtype?: DType;
  /**
   * False skips the random orthogonal matrices (left as zeros or PyTorch-style uniform values).
   * A loader that overwrites every parameter sets it, because the official init of a large model
   * takes minutes.
   */
  randomInit?: boolean;
}

export class Rwkv7Block extends Module {
  readonly ln0: LayerNorm | null;
  readonly ln1: LayerNorm;
  readonly ln2: LayerNorm;
  readonly att: Rwkv7TimeMix;
  readonly ffn: Rwkv7ChannelMix;

  constructor(
    readonly config: Rwkv7Config,
    readonly layerId: number,
    rng: Rng,
    dtype: DType,
    randomInit = true,
  ) {
    super();
    const C = config.nEmbd;
    this.ln0 = layerId === 0 ? this.module('ln0', new LayerNorm(C, 1e-5, dtype)) : null;
    this.ln1 = this.module('ln1', new LayerNorm(C, 1e-5, dtype));
    this.ln2 = this.module('ln2', new LayerNorm(C, 1e-5, dtype));
    this.att = this.module('att', new Rwkv7TimeMix(config, layerId, { rng, dtype, init: randomInit ? 'official' : 'none' }));
    this.ffn = this.module('ffn', new Rwkv7ChannelMix(config, layerId, { rng, dtype, skipRandomInit: !randomInit }));
  }

  /** Runs the block over the residual stream x (B, T, C). */
  forward(x: Tensor, vFirst: Tensor | null, state: Rwkv7LayerState | null): { x: Tensor; vFirst: Tensor; state: Rwkv7LayerState } {
    let h = this.ln0 === null ? x : this.ln0.forward(x); // (B, T, C)
    const att = this.att.forward(this.ln1.forward(h), vFirst, state?.att ?? null);
    h = add(h, att.out); // (B, T, C)
    const ffn = this.ffn.forward(this.ln2.forward(h), state?.ffn ?? null);
    h = add(h, ffn.out); // (B, T, C)
    return { x: h, vFirst: att.vFirst, state: { att: att.state, ffn: ffn.state } };
  }
}

/** Ordered container whose children are named "0", "1", … like PyTorch's ModuleList. */
class BlockList extends Module {
  readonly items: Rwkv7Block[];

  constructor(blocks: Rwkv7Block[]) {
    super();
    this.items = blocks.map((block, i) => this.module(String(i), block));
  }
}

export class Rwkv7Model extends Module {
  readonly config: Rwkv7Config;
  readonly emb: Embedding; // weight (V, C)
  readonly blocks: Rwkv7Block[];
  readonly ln_out: LayerNorm;
  readonly head: Linear; // weight (V, C)

  /**
   * Builds a model with the official initialisation: embedding uniform ±1e-4, head orthogonal
   * with gain 0.5·√(V/C) (0.5 when V ≤ C), and the per-layer init of the time and channel mixes.
   */
  constructor(config: Rwkv7ConfigInput, options: Rwkv7ModelOptions = {}) {
    super();
    const full = rwkv7Config(config);
    const { nEmbd: C, vocabSize: V } = full;
    const dtype = options.dtype ?? 'float32';
    const rng = new Rng(options.seed ?? 0);
    const randomInit = options.randomInit ?? true;
    this.config = full;

    this.emb = this.module('emb', new Embedding(V, C, { rng, dtype }));
    this.emb.weight.data.set(uniform([V, C], 1e-4, rng, dtype).data);
    const blocks = Array.from({ length: full.nLayer }, (_, l) => new Rwkv7Block(full, l, rng, dtype, randomInit));
    this.blocks = this.module('blocks', new BlockList(blocks)).items;
    this.ln_out = this.module('ln_out', new LayerNorm(C, 1e-5, dtype));
    this.head = this.module('head', new Linear(C, V, { rng, dtype, bias: false }));
    const headGain = V > C ? 0.5 * Math.sqrt(V / C) : 0.5;
    if (randomInit) this.head.weight.data.set(orthogonal(V, C, headGain, rng, dtype).data);
  }

  get dtype(): DType {
    return this.emb.weight.dtype;
  }

  /** Creates the zero state of B sequences, where every independent sequence starts. */
  createState(B: number): Rwkv7State {
    return { layers: this.blocks.map((block) => ({ att: block.att.createState(B), ffn: block.ffn.createState(B) })) };
  }

  /**
   * Sequence ("GPT") mode over B sequences of T tokens (`ids` row-major, B·T entries), from
   * `state` or from zeros. Nothing is kept between calls: the returned state is new tensors,
   * connected to the graph so that a following chunk back-propagates into this one.
   */
  forward(ids: ArrayLike<number>, B: number, T: number, state: Rwkv7State | null = null): Rwkv7Output {
    if (!Number.isInteger(B) || !Number.isInteger(T) || B < 1 || T < 1 || ids.length !== B * T) {
      throw new ShapeError(`Rwkv7Model.forward: expected B·T = ${B}·${T} token ids with B, T ≥ 1, got ${ids.length} ids`);
    }
    if (state !== null && state.layers.length !== this.blocks.length) {
      throw new ShapeError(
        `Rwkv7Model.forward: state has ${state.layers.length} layers but the model has ${this.blocks.length}; create it with createState(B)`,
      );
    }
    let x = this.emb.forward(ids, [B, T]); // (B, T, C)
    let vFirst: Tensor | null = null;
    const layers: Rwkv7LayerState[] = [];
    this.blocks.forEach((block, l) => {
      const result = block.forward(x, vFirst, state?.layers[l] ?? null);
      x = result.x; // (B, T, C)
      vFirst = result.vFirst; // (B, T, C)
      layers.push(result.state);
    });
    const logits = this.head.forward(this.ln_out.forward(x)); // (B, T, V)
    return { logits, state: { layers } };
  }

  /** Mean cross-entropy of next-token prediction: `targets` (B·T ids, −100 = ignore) against the logits of `ids`. */
  loss(ids: ArrayLike<number>, targets: ArrayLike<number>, B: number, T: number, state: Rwkv7State | null = null): Tensor {
    if (targets.length !== B * T) {
      throw new ShapeError(`Rwkv7Model.loss: expected ${B * T} targets (B·T = ${B}·${T}), got ${targets.length}`);
    }
    const { logits } = this.forward(ids, B, T, state);
    return crossEntropy(logits, targets); // ()
  }

  /**
   * Recurrent ("RNN") mode: one token per sequence (a number for B = 1, or B ids), from `state`
   * (zeros when null). Runs the sequence path with T = 1, so both modes compute the same function,
   * and records no graph. Returns logits (B, V) and a new state; the input state is not modified.
   */
  step(ids: number | ArrayLike<number>, state: Rwkv7State | null = null): { logits: Tensor; state: Rwkv7State } {
    const tokens = typeof ids === 'number' ? [ids] : ids;
    const B = tokens.length;
    return noGrad(() => {
      const out = this.forward(tokens, B, 1, state);
      return { logits: reshape(out.logits, [B, this.config.vocabSize]), state: out.state }; // (B, V)
    });
  }
}

/** Deep copy of a state: new arrays, no graph, so changing one copy never changes another. */
export function cloneState(state: Rwkv7State): Rwkv7State {
  const copy = (t: Tensor): Tensor => new Tensor(t.data.slice(), t.shape);
  return {
    layers: state.layers.map((layer) => ({
      att: { xPrev: copy(layer.att.xPrev), wkv: copy(layer.att.wkv) },
      ffn: { xPrev: copy(layer.ffn.xPrev) },
    })),
  };
}
