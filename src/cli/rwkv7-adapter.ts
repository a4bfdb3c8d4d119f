// RWKV-7 behind the command line's LanguageModel interface, with size presets for pretraining.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

import { GPT2_VOCAB_SIZE, WEIGHTS_FILE } from '../models/gpt2/index.js';
import type { Rwkv7ConfigInput } from '../models/rwkv7/config.js';
import { loadRwkv7Safetensors, rwkv7ConfigToJson, saveRwkv7Safetensors } from '../models/rwkv7/io.js';
import { Rwkv7Model, type Rwkv7State } from '../models/rwkv7/model.js';
import type { NextLogits } from '../models/sampling.js';
import type { Tensor } from '../tensor/index.js';
import type { Gpt2Tokenizer } from '../tokenizer/index.js';
import type { LanguageModel } from './model-folder.js';
import { ModelAdapter, recurrentLogitsOf } from './model-adapter.js';

/**
 * Size presets with GPT-2's vocabulary, so they train on the same token cache as the GPT-2
 * presets. LoRA ranks and the channel-mix width take the official defaults (see rwkv7Config).
 */
export const RWKV7_PRESETS = {
  tiny: { nEmbd: 32, nLayer: 2, headSize: 16, vocabSize: GPT2_VOCAB_SIZE },
  small: { nEmbd: 128, nLayer: 4, headSize: 64, vocabSize: GPT2_VOCAB_SIZE },
} as const satisfies Record<string, Rwkv7ConfigInput>;

export type Rwkv7PresetName = keyof typeof RWKV7_PRESETS;

class Rwkv7LanguageModel extends ModelAdapter<Rwkv7Model> implements LanguageModel {
  readonly arch = 'rwkv7';
  readonly maxSequenceLength = Infinity;

  get vocabSize(): number {
    return this.model.config.vocabSize;
  }
  get configJson(): Record<string, unknown> {
    return rwkv7ConfigToJson(this.model.config);
  }
  sequenceLogits(ids: readonly number[]): Float32Array | Float64Array {
    return this.model.forward(ids, 1, ids.length).logits.data; // (1, T, V)
  }
  recurrentLogits(ids: readonly number[]): Float32Array | Float64Array {
    return recurrentLogitsOf<Rwkv7State>(ids, this.vocabSize, (id, state) => this.model.step(id, state));
  }
  nextLogits(): NextLogits {
    return rwkv7NextLogits(this.model);
  }
  save(dir: string, tokenizer: Gpt2Tokenizer): void {
    saveRwkv7Folder(this.model, dir, tokenizer);
  }
}

/**
 * Returns a NextLogits function that keeps the recurrent state of the tokens seen so far and
 * feeds only new tokens. A context that does not extend the previous one starts from zeros.
 */
function rwkv7NextLogits(model: Rwkv7Model): NextLogits {
  let state: Rwkv7State | null = null;
  let seen: number[] = [];
  let lastLogits: Tensor | null = null;

  return (context) => {
    if (context.length === 0) throw new RangeError('rwkv7NextLogits: the context is empty; give at least one token');
    const extendsSeen = seen.length > 0 && context.length > seen.length && seen.every((id, i) => context[i] === id);
    if (!extendsSeen) {
      state = null;
      seen = [];
    }
    for (let t = seen.length; t < context.length; t++) {
      const result = model.step(context[t], state); // logits (1, V)
      state = result.state;
      lastLogits = result.logits;
    }
    seen = [...context];
    return (lastLogits as Tensor).data;
  };
}

export function createRwkv7(preset: Rwkv7PresetName, seed: number): LanguageModel {
  return new Rwkv7LanguageModel(new Rwkv7Model({ ...RWKV7_PRESETS[preset] }, { seed }));
}

/** Writes config.json, model.safetensors (F32, official tensor names) and the tokenizer files into `dir`. */
function saveRwkv7Folder(model: Rwkv7Model, dir: string, tokenizer: Gpt2Tokenizer): void {
  mkdirSync(dir, { recursive: true });
  saveRwkv7Safetensors(model, join(dir, WEIGHTS_FILE), { dtype: 'F32' });
  tokenizer.saveToFolder(dir);
}

/** Loads the RWKV-7 model of a folder holding config.json and model.safetensors. */
export function loadRwkv7(dir: string): LanguageModel {
  return new Rwkv7LanguageModel(loadRwkv7Safetensors(join(dir, WEIGHTS_FILE)));
}
