// The converted student: GPT-2 with every attention block replaced by an RWKV-7 time mix of the
// same width and heads, fed by ln_1 and added to the residual stream where attention was.
//
// Dims: B = batch, T = new tokens in this call, C = channels (n_embd), V = vocabulary,
// H = heads (n_head), N = head size (C / H).
//
//   h = wte[ids] + position(t)                    position: wpe[t], wpe[min(t, P−1)] or nothing
//   h = h + att(ln_1(h)),  h = h + mlp(ln_2(h))   per block; att is the RWKV-7 time mix
//   logits = ln_f(h)·wteᵀ                         tied head, as in GPT-2
//
// Parameter names: GPT-2's for everything kept (`wte.weight`, `h.0.ln_1.weight`,
// `h.0.mlp.c_fc.weight`, `ln_f.bias`) and the official RWKV-7 names under `h.N.att.`
// (`h.0.att.w0`, `h.0.att.receptance.weight`, …).
//
// Recurrent state: per layer the time mix's last input xPrev (B, C) and WKV state S (B, H, N, N),
// plus the number of tokens already read (for the position embedding). v_first is not state: each
// call recomputes it from layer 0's values of the same tokens.
import { noGrad } from '../../autograd/index.js';
import { LayerNorm } from '../../nn/index.js';
import { Module } from '../../nn/module.js';
import { Rng } from '../../tensor/random.js';
import { zeros } from '../../tensor/create.js';
import { add, crossEntropy, gather, matmul, reshape } from '../../tensor/ops/index.js';
import { ShapeError } from '../../tensor/shape.js';
import { Tensor } from '../../tensor/tensor.js';
import { EmbeddingTable, Mlp } from '../gpt2/blocks.js';
import { Rwkv7TimeMix, type TimeMixInit, type TimeMixState } from '../rwkv7/time-mix.js';
import { timeMixConfig, validateStudentConfig, type PositionMode, type StudentConfig } from './config.js';

/** Recurrent state of the whole student for B sequences. */
export interface StudentState {
  /** One time-mix state per layer. */
  layers: TimeMixState[];
  /** Tokens each sequence has already read, the position of the next token. */
  position: number;
}

export interface StudentForwardOptions {
  /** State to continue from; null or omitted starts every sequence from the zero state. */
  state?: StudentState | null;
  /** Position handling for this call; defaults to the configuration's (evaluation compares the three). */
  positions?: PositionMode;
}

export interface StudentOutput {
  logits: Tensor; // (B, T, V)
  state: StudentState;
}

/** One block: GPT-2's ln_1, ln_2 and MLP around an RWKV-7 time mix named `att`. */
export class StudentBlock extends Module {
  readonly ln_1: LayerNorm;
  readonly att: Rwkv7TimeMix;
  readonly ln_2: LayerNorm;
  readonly mlp: Mlp;

  constructor(config: StudentConfig, layerId: number, rng: Rng, timeMixInit: TimeMixInit) {
    super();
    const teacher = config.teacher;
    this.ln_1 = this.module('ln_1', new LayerNorm(teacher.nEmbd, teacher.layerNormEpsilon));
    this.att = this.module('att', new Rwkv7TimeMix(timeMixConfig(config), layerId, { rng, init: timeMixInit }));
    this.ln_2 = this.module('ln_2', new LayerNorm(teacher.nEmbd, teacher.layerNormEpsilon));
    this.mlp = this.module('mlp', new Mlp(teacher, 'zeros', 'float32'));
  }

  forward(h: Tensor, vFirst: Tensor | null, state: TimeMixState | null): { h: Tensor; vFirst: Tensor; state: TimeMixState } {
    const mixed = this.att.forward(this.ln_1.forward(h), vFirst, state);
    const afterMix = add(h, mixed.out); // (B, T, C)
    const mlpOutput = this.mlp.forward(this.ln_2.forward(afterMix)); // (B, T, C)
    return { h: add(afterMix, mlpOutput), vFirst: mixed.vFirst, state: mixed.state }; // (B, T, C)
  }
}

/** The numbered blocks, registered as "0", "1", … so keys read `h.0.att.w0`. */
class StudentBlockList extends Module {
  readonly blocks: StudentBlock[] = [];

  constructor(config: StudentConfig, rng: Rng, timeMixInit: TimeMixInit) {
    super();
    for (let layer = 0; layer < config.teacher.nLayer; layer++) {
      this.blocks.push(this.module(String(layer), new StudentBlock(config, layer, rng, timeMixInit)));
    }
  }
}

export class StudentModel extends Module {
  readonly config: StudentConfig;
  readonly wte: EmbeddingTable; // weight (V, C), also the output head
  /** Absent when positions are dropped. */
  readonly wpe: EmbeddingTable | null; // weight (n_positions, C)
  readonly h: StudentBlockList;
  readonly ln_f: LayerNorm;

  /**
   * Builds a student whose GPT-2 parts are zeros (the converter or loader fills them) and whose
   * time mixes use `timeMixInit` ('converted' for a new student, 'none' before loading weights).
   */
  constructor(config: StudentConfig, options: { seed?: number; timeMixInit?: TimeMixInit } = {}) {
    super();
    validateStudentConfig(config);
    this.config = { ...config, teacher: { ...config.teacher } };
    const { nEmbd: C, vocabSize: V, nPositions } = config.teacher;
    const rng = new Rng(options.seed ?? 0);
    this.wte = this.module('wte', new EmbeddingTable(zeros([V, C])));
    this.wpe = config.positions === 'drop' ? null : this.module('wpe', new EmbeddingTable(zeros([nPositions, C])));
    this.h = this.module('h', new StudentBlockList(config, rng, options.timeMixInit ?? 'converted'));
    this.ln_f = this.module('ln_f', new LayerNorm(C, config.teacher.layerNormEpsilon));
  }

  get blocks(): StudentBlock[] {
    return this.h.blocks;
  }

  /** Creates the zero state of B sequences, where every independent sequence starts. */
  createState(B: number): StudentState {
    return { layers: this.blocks.map((block) => block.att.createState(B)), position: 0 };
  }

  /** Marks every parameter trainable or frozen. */
  setRequiresGrad(flag: boolean): this {
    for (const p of this.parameters()) p.requireGrad(flag);
    return this;
  }

  /**
   * Sequence mode over B rows of T token ids (row-major), from `options.state` or from zeros.
   * The returned state is new tensors; the given one is not modified.
   */
  forward(ids: ArrayLike<number>, B: number, T: number, options: StudentForwardOptions = {}): StudentOutput {
    const state = options.state ?? null;
    this.checkInputs(ids, B, T, state);
    const start = state?.position ?? 0;
    let h = gather(this.wte.weight, ids, [B, T]); // (B, T, C)
    const positions = this.positionEmbeddings(T, start, options.positions ?? this.config.positions);
    if (positions !== null) h = add(h, positions); // (B, T, C)

    let vFirst: Tensor | null = null;
    const layers: TimeMixState[] = [];
    this.blocks.forEach((block, layer) => {
      const result = block.forward(h, vFirst, state === null ? null : state.layers[layer]);
      h = result.h; // (B, T, C)
      vFirst = result.vFirst; // (B, T, C)
      layers.push(result.state);
    });
    const logits = matmul(this.ln_f.forward(h), this.wte.weight, { transB: true }); // (B, T, V)
    return { logits, state: { layers, position: start + T } };
  }

  /** Returns the mean next-token cross-entropy of `targets` (B·T ids, −100 = ignored). */
  loss(ids: ArrayLike<number>, targets: ArrayLike<number>, B: number, T: number): Tensor {
    const { logits } = this.forward(ids, B, T);
    return crossEntropy(reshape(logits, [B * T, this.config.teacher.vocabSize]), targets); // ()
  }

  /**
   * Recurrent mode: one token per sequence, without a graph. Runs the sequence path with T = 1,
   * so both modes compute the same function. Returns logits (B, V) and the new state.
   */
  step(ids: number | ArrayLike<number>, state: StudentState | null = null, positions?: PositionMode): { logits: Tensor; state: StudentState } {
    const tokens = typeof ids === 'number' ? [ids] : ids;
    const B = tokens.length;
    return noGrad(() => {
      const out = this.forward(tokens, B, 1, { state, positions });
      return { logits: reshape(out.logits, [B, this.config.teacher.vocabSize]), state: out.state }; // (B, V)
    });
  }

  /** Returns the position embeddings (1, T, C) of positions start … start + T − 1, or null when dropped. */
  private positionEmbeddings(T: number, start: number, mode: PositionMode): Tensor | null {
    if (mode === 'drop') return null;
    if (this.wpe === null) {
      throw new RangeError(`StudentModel.forward: positions "${mode}" needs wpe, but this student was converted with --positions drop and has none; use positions "drop"`);
    }
    const limit = this.config.teacher.nPositions;
    const last = start + T - 1;
    if (mode === 'keep' && last >= limit) {
      throw new RangeError(
        `StudentModel.forward: token position ${last} is beyond the ${limit} learned positions (wpe) and this student uses positions "keep"; ` +
          'convert with --positions clamp or drop to run past the limit, or shorten the input',
      );
    }
    const ids = Int32Array.from({ length: T }, (_, t) => Math.min(start + t, limit - 1));
    return gather(this.wpe.weight, ids, [1, T]); // (1, T, C)
  }

  private checkInputs(ids: ArrayLike<number>, B: number, T: number, state: StudentState | null): void {
    if (!Number.isInteger(B) || !Number.isInteger(T) || B < 1 || T < 1 || ids.length !== B * T) {
      throw new ShapeError(`StudentModel.forward: expected B·T = ${B}·${T} token ids with B, T ≥ 1, got ${ids.length} ids`);
    }
    const V = this.config.teacher.vocabSize;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!Number.isInteger(id) || id < 0 || id >= V) {
        throw new RangeError(`StudentModel.forward: token id ${id} at index ${i} is outside the vocabulary [0, ${V})`);
      }
    }
    if (state !== null && state.layers.length !== this.blocks.length) {
      throw new ShapeError(`StudentModel.forward: state has ${state.layers.length} layers but the model has ${this.blocks.length}; create it with createState(B)`);
    }
  }
}

/** Deep copy of a state: new arrays, no graph, so changing one copy never changes another. */
export function cloneStudentState(state: StudentState): StudentState {
  const copy = (t: Tensor): Tensor => new Tensor(t.data.slice(), t.shape);
  return { layers: state.layers.map((layer) => ({ xPrev: copy(layer.xPrev), wkv: copy(layer.wkv) })), position: state.position };
}
