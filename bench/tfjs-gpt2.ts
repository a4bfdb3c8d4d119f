// GPT-2 written with TensorFlow.js (@tensorflow/tfjs-core 4.22 on @tensorflow/tfjs-backend-wasm),
// the peer that the model benchmarks compare rwkvify against. It computes what Gpt2Model computes
// (pre-LN blocks, tanh GELU, tied output head, no dropout) from the same weights, so forward
// passes and losses of the two engines can be compared number for number.
//
// Dims: B = batch, T = tokens, C = channels, V = vocabulary, NH = heads, hs = head size (C / NH),
// F = MLP width.
//
// Two gaps of the wasm backend shape this file. It registers no UnsortedSegmentSum kernel, which
// tfjs-core uses for the gradient of gather, so row lookups go through `gatherRows`, whose
// gradient is a ScatterNd (duplicate indices are summed). And in Node it finds no multithreading
// support, so it runs on one thread (see `describeTfjsWasm`).
import { createRequire, register } from 'node:module';
import path from 'node:path';

import * as tf from '@tensorflow/tfjs-core';
import { getThreadsCount, setWasmPaths } from '@tensorflow/tfjs-backend-wasm';

import type { Gpt2Config, Gpt2Model } from '../src/models/gpt2/index.js';

/** Added to the scores of future keys; exp() of it underflows to exactly 0 in float32. */
const MASKED_SCORE = -1e9;

let started: Promise<void> | null = null;

/**
 * Resolve hook for Node's ES module loader: inside tfjs-core's dist folder, a relative import
 * without an extension means the .js file (or the folder's index.js), as TypeScript compiled it.
 * Node's own resolver rejects such imports, and tfjs-core ships its gradient functions only as
 * these ES module files.
 */
const TFJS_CORE_RESOLVE_HOOK = `
export async function resolve(specifier, context, nextResolve) {
  const inTfjsCore = context.parentURL !== undefined && context.parentURL.includes('/@tensorflow/tfjs-core/dist/');
  if (!inTfjsCore || !specifier.startsWith('.') || specifier.endsWith('.js')) return nextResolve(specifier, context);
  try {
    return await nextResolve(specifier + '.js', context);
  } catch {
    return nextResolve(specifier + '/index.js', context);
  }
}
`;

/**
 * Registers every gradient function of tfjs-core. The CommonJS build that Node loads for
 * '@tensorflow/tfjs-core' (4.22) contains none; the @tensorflow/tfjs bundle adds them by importing
 * register_all_gradients.js, and so does this function. The registry is process-global, so both
 * module copies share it.
 */
async function registerTfjsGradients(): Promise<void> {
  register(`data:text/javascript,${encodeURIComponent(TFJS_CORE_RESOLVE_HOOK)}`);
  await import('@tensorflow/tfjs-core/dist/register_all_gradients.js');
}

/** Selects the tfjs wasm backend once per process, loading its .wasm files from node_modules. */
export function startTfjsWasm(): Promise<void> {
  started ??= (async () => {
    await registerTfjsGradients();
    const require = createRequire(import.meta.url);
    const wasmFile = require.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm');
    setWasmPaths(`${path.dirname(wasmFile)}${path.sep}`);
    const ok = await tf.setBackend('wasm');
    await tf.ready();
    if (!ok || tf.getBackend() !== 'wasm') {
      throw new Error(`startTfjsWasm: tf.setBackend('wasm') failed (active backend: ${tf.getBackend()}); check that @tensorflow/tfjs-backend-wasm is installed`);
    }
  })();
  return started;
}

/** One line naming the tfjs version, SIMD support and thread count of the running wasm backend. */
export function describeTfjsWasm(): string {
  const simd = tf.env().getBool('WASM_HAS_SIMD_SUPPORT');
  const threaded = tf.env().getBool('WASM_HAS_MULTITHREAD_SUPPORT');
  return `tfjs-core ${tf.version_core}, wasm backend, SIMD ${simd ? 'on' : 'off'}, ${getThreadsCount()} thread(s)${threaded ? '' : ' (no multithread support in this runtime)'}`;
}

/**
 * Picks rows of `table` (rows, C) at `indices` (N): the result is (N, C). The gradient adds each
 * row of dy into the table row it came from, through ScatterNd, because the wasm backend lacks
 * the UnsortedSegmentSum kernel of tfjs-core's gather gradient.
 */
function gatherRows(table: tf.Tensor2D, indices: tf.Tensor1D): tf.Tensor2D {
  const [rows, C] = table.shape;
  const lookup = tf.customGrad((...inputs: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const [t, save] = inputs as [tf.Tensor, tf.GradSaveFunc];
    // Saved tensors outlive the tf.tidy of the forward pass; a captured `indices` would not.
    save([indices]);
    return {
      value: tf.gather(t, indices), // (N, C)
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.scatterND(tf.reshape(saved[0], [-1, 1]), dy, [rows, C]), // (rows, C)
    };
  });
  return lookup(table) as tf.Tensor2D;
}

/**
 * Computes a·b for 2-D a (M, K) and b (K, N) with explicit transposes in the gradient, because
 * tfjs-core's own matMul gradient uses the transposeA and transposeB flags. On the wasm backend
 * (4.22) a flagged product of (128, 256) by (50257, 256)ᵀ took about 7× as long as a transpose
 * followed by a plain matMul, measured once on a 2-core machine shared with other jobs.
 */
function matMul2d(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  const product = tf.customGrad((...inputs: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const [left, right, save] = inputs as [tf.Tensor2D, tf.Tensor2D, tf.GradSaveFunc];
    save([left, right]);
    return {
      value: tf.matMul(left, right), // (M, N)
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [savedLeft, savedRight] = saved as [tf.Tensor2D, tf.Tensor2D];
        const dLeft = tf.matMul(dy as tf.Tensor2D, tf.transpose(savedRight)); // (M, K)
        const dRight = tf.matMul(tf.transpose(savedLeft), dy as tf.Tensor2D); // (K, N)
        return [dLeft, dRight];
      },
    };
  });
  return product(a, b) as tf.Tensor2D;
}

/** LayerNorm over the last axis with GPT-2's biased variance. */
function layerNorm(x: tf.Tensor, weight: tf.Tensor, bias: tf.Tensor, epsilon: number): tf.Tensor {
  const { mean, variance } = tf.moments(x, -1, true); // (..., 1) each
  const normed = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, epsilon))); // (..., C)
  return tf.add(tf.mul(normed, weight), bias);
}

/** GELU, tanh approximation: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). */
function geluTanh(x: tf.Tensor): tf.Tensor {
  const inner = tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), Math.sqrt(2 / Math.PI));
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1));
}

/** Hugging Face's Conv1D: y = x·W + b with W stored [in, out], applied to the last axis of x. */
function conv1d(x: tf.Tensor, weight: tf.Tensor2D, bias: tf.Tensor1D): tf.Tensor {
  const [inFeatures, outFeatures] = weight.shape;
  const rows = tf.reshape(x, [-1, inFeatures]) as tf.Tensor2D; // (N, in)
  const y = tf.add(matMul2d(rows, weight), bias); // (N, out)
  return tf.reshape(y, [...x.shape.slice(0, -1), outFeatures]); // (..., out)
}

/** (T, T) additive mask: 0 where query i may see key j (j ≤ i), MASKED_SCORE elsewhere. */
function causalMask(T: number): tf.Tensor2D {
  const mask = new Float32Array(T * T);
  for (let i = 0; i < T; i++) for (let j = i + 1; j < T; j++) mask[i * T + j] = MASKED_SCORE;
  return tf.tensor2d(mask, [T, T]);
}

/** Options of `TfjsGpt2.trainStep`: Adam without weight decay, so AdamW with decay 0 matches it. */
export interface TfjsTrainOptions {
  learningRate: number;
  beta1?: number;
  beta2?: number;
  epsilon?: number;
}

/** GPT-2 on tfjs variables named like Gpt2Model's parameters (`h.0.attn.c_attn.weight`, …). */
export class TfjsGpt2 {
  readonly config: Gpt2Config;
  private readonly weights: Map<string, tf.Variable>;
  private readonly masks = new Map<number, tf.Tensor2D>();
  private optimizer: tf.Optimizer | null = null;

  /** `weights` maps every Gpt2Model parameter name to its float32 values (shapes from the config). */
  constructor(config: Gpt2Config, weights: ReadonlyMap<string, { data: Float32Array; shape: readonly number[] }>) {
    this.config = { ...config };
    this.weights = new Map();
    for (const [name, { data, shape }] of weights) {
      // tfjs variable names are global to the process, so the engine picks them and this map keeps ours.
      this.weights.set(name, tf.variable(tf.tensor(data, [...shape]), true));
    }
    for (const name of expectedParameterNames(config)) {
      if (!this.weights.has(name)) {
        throw new Error(`TfjsGpt2: weight "${name}" is missing; pass every parameter of a Gpt2Model with this config`);
      }
    }
  }

  /** Copies the current weights of an rwkvify Gpt2Model (which must hold float32 parameters). */
  static fromGpt2Model(model: Gpt2Model): TfjsGpt2 {
    const weights = new Map<string, { data: Float32Array; shape: readonly number[] }>();
    for (const [name, tensor] of model.namedParameters()) {
      const data = tensor.data instanceof Float32Array ? tensor.data : Float32Array.from(tensor.data);
      weights.set(name, { data, shape: tensor.shape });
    }
    return new TfjsGpt2(model.config, weights);
  }

  /** Returns the logits (B·T, V) of B rows of T token ids (row-major). Caller disposes (or uses tf.tidy). */
  forward(ids: ArrayLike<number>, B: number, T: number): tf.Tensor2D {
    const { nEmbd: C, nPositions } = this.config;
    if (ids.length !== B * T || T > nPositions) {
      throw new RangeError(`TfjsGpt2.forward: expected B·T = ${B}·${T} ids with T ≤ n_positions ${nPositions}, got ${ids.length} ids`);
    }
    return tf.tidy(() => {
      const idTensor = tf.tensor1d(Int32Array.from(ids), 'int32'); // (B·T)
      const positions = tf.tensor1d(Int32Array.from({ length: B * T }, (_, i) => i % T), 'int32'); // (B·T)
      const tokenEmbeddings = gatherRows(this.weight2d('wte.weight'), idTensor); // (B·T, C)
      const positionEmbeddings = gatherRows(this.weight2d('wpe.weight'), positions); // (B·T, C)
      let h: tf.Tensor = tf.reshape(tf.add(tokenEmbeddings, positionEmbeddings), [B, T, C]); // (B, T, C)
      for (let layer = 0; layer < this.config.nLayer; layer++) h = this.block(h, layer);
      const normed = layerNorm(h, this.weight('ln_f.weight'), this.weight('ln_f.bias'), this.config.layerNormEpsilon); // (B, T, C)
      const head = tf.transpose(this.weight2d('wte.weight')); // (C, V)
      return matMul2d(tf.reshape(normed, [B * T, C]) as tf.Tensor2D, head); // (B·T, V)
    });
  }

  /** Computes the mean cross-entropy of next-token `targets` (B·T ids in [0, V)) under forward's logits. */
  loss(ids: ArrayLike<number>, targets: ArrayLike<number>, B: number, T: number): tf.Scalar {
    const V = this.config.vocabSize;
    if (targets.length !== B * T) {
      throw new RangeError(`TfjsGpt2.loss: expected ${B * T} targets (B·T = ${B}·${T}), got ${targets.length}`);
    }
    return tf.tidy(() => {
      const logProbs = tf.logSoftmax(this.forward(ids, B, T)); // (B·T, V)
      const flatIndex = Int32Array.from(targets, (target, row) => row * V + target);
      const picked = gatherRows(tf.reshape(logProbs, [-1, 1]), tf.tensor1d(flatIndex, 'int32')); // (B·T, 1)
      return tf.neg(tf.mean(picked)) as tf.Scalar;
    });
  }

  /** Runs one Adam step on the loss of this batch and returns the loss before the update. */
  trainStep(ids: ArrayLike<number>, targets: ArrayLike<number>, B: number, T: number, options: TfjsTrainOptions): number {
    this.optimizer ??= tf.train.adam(options.learningRate, options.beta1 ?? 0.9, options.beta2 ?? 0.999, options.epsilon ?? 1e-8);
    const lossTensor = this.optimizer.minimize(() => this.loss(ids, targets, B, T), true, [...this.weights.values()]);
    if (lossTensor === null) throw new Error('TfjsGpt2.trainStep: optimizer.minimize returned no loss');
    const value = lossTensor.dataSync()[0];
    lossTensor.dispose();
    return value;
  }

  /** Returns the loss and the gradient of every weight by name, for checking the backward pass. */
  gradients(ids: ArrayLike<number>, targets: ArrayLike<number>, B: number, T: number): { loss: number; grads: Map<string, Float32Array> } {
    const { value, grads } = tf.variableGrads(() => this.loss(ids, targets, B, T), [...this.weights.values()]);
    const out = new Map<string, Float32Array>();
    for (const [name, variable] of this.weights) {
      const grad = grads[variable.name];
      if (grad === undefined) continue;
      out.set(name, grad.dataSync() as Float32Array);
      grad.dispose();
    }
    const loss = value.dataSync()[0];
    value.dispose();
    return { loss, grads: out };
  }

  /** Returns the current values of one weight, for comparing updates with rwkvify. */
  readWeight(name: string): Float32Array {
    return this.weight(name).dataSync() as Float32Array;
  }

  /** Frees every tensor this model owns. */
  dispose(): void {
    for (const variable of this.weights.values()) variable.dispose();
    for (const mask of this.masks.values()) mask.dispose();
    this.optimizer?.dispose();
    this.weights.clear();
    this.masks.clear();
  }

  /** Pre-LN block: h += attn(ln_1(h)); h += mlp(ln_2(h)). */
  private block(h: tf.Tensor, layer: number): tf.Tensor {
    const p = `h.${layer}.`;
    const epsilon = this.config.layerNormEpsilon;
    const attended = tf.add(h, this.attention(layerNorm(h, this.weight(`${p}ln_1.weight`), this.weight(`${p}ln_1.bias`), epsilon), layer)); // (B, T, C)
    const hidden = geluTanh(conv1d(layerNorm(attended, this.weight(`${p}ln_2.weight`), this.weight(`${p}ln_2.bias`), epsilon), this.weight2d(`${p}mlp.c_fc.weight`), this.weight1d(`${p}mlp.c_fc.bias`))); // (B, T, F)
    return tf.add(attended, conv1d(hidden, this.weight2d(`${p}mlp.c_proj.weight`), this.weight1d(`${p}mlp.c_proj.bias`))); // (B, T, C)
  }

  /** Causal multi-head self-attention of x (B, T, C), including c_proj. */
  private attention(x: tf.Tensor, layer: number): tf.Tensor {
    const [B, T, C] = x.shape;
    const NH = this.config.nHead;
    const hs = C / NH;
    const p = `h.${layer}.attn.`;
    const qkv = conv1d(x, this.weight2d(`${p}c_attn.weight`), this.weight1d(`${p}c_attn.bias`)); // (B, T, 3C)
    const [q, k, v] = tf.split(qkv, 3, 2).map((t) => tf.transpose(tf.reshape(t, [B, T, NH, hs]), [0, 2, 1, 3])); // (B, NH, T, hs) each
    const scores = tf.add(tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(hs)), this.causalMask(T)); // (B, NH, T, T)
    const heads = tf.matMul(tf.softmax(scores), v); // (B, NH, T, hs)
    const merged = tf.reshape(tf.transpose(heads, [0, 2, 1, 3]), [B, T, C]); // (B, T, C)
    return conv1d(merged, this.weight2d(`${p}c_proj.weight`), this.weight1d(`${p}c_proj.bias`)); // (B, T, C)
  }

  private causalMask(T: number): tf.Tensor2D {
    let mask = this.masks.get(T);
    if (mask === undefined) {
      mask = tf.keep(causalMask(T));
      this.masks.set(T, mask);
    }
    return mask;
  }

  private weight(name: string): tf.Variable {
    const variable = this.weights.get(name);
    if (variable === undefined) throw new Error(`TfjsGpt2: no weight named "${name}"`);
    return variable;
  }

  private weight1d(name: string): tf.Tensor1D {
    return this.weight(name) as unknown as tf.Tensor1D;
  }

  private weight2d(name: string): tf.Tensor2D {
    return this.weight(name) as unknown as tf.Tensor2D;
  }
}

/** Parameter names of a Gpt2Model with this config, in Hugging Face's key spelling. */
export function expectedParameterNames(config: Gpt2Config): string[] {
  const names = ['wte.weight', 'wpe.weight'];
  for (let layer = 0; layer < config.nLayer; layer++) {
    for (const part of ['ln_1', 'attn.c_attn', 'attn.c_proj', 'ln_2', 'mlp.c_fc', 'mlp.c_proj']) {
      names.push(`h.${layer}.${part}.weight`, `h.${layer}.${part}.bias`);
    }
  }
  names.push('ln_f.weight', 'ln_f.bias');
  return names;
}
