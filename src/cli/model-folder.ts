// Model folders for the command line: detecting the architecture from config.json's model_type,
// loading the model and its tokenizer, creating a fresh model from a preset, and one interface
// (`LanguageModel`) so the commands treat GPT-2 and RWKV-7 alike.

import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, sep } from 'node:path';

import { InputError } from '../data/input-error.js';
import { GPT2_PRESETS, Gpt2Model, gpt2NextLogits, loadGpt2Folder, saveGpt2Folder, WEIGHTS_FILE, type Gpt2PresetName } from '../models/gpt2/index.js';
import type { NextLogits } from '../models/sampling.js';
import { Rng, type Tensor } from '../tensor/index.js';
import { Gpt2Tokenizer } from '../tokenizer/index.js';
import { HUGGING_FACE_FILE_NAMES, OPENAI_FILE_NAMES } from '../tokenizer/vocab-files.js';
import type { TrainableModel } from '../train/trainer.js';
import { ModelAdapter } from './model-adapter.js';
import { createRwkv7, loadRwkv7, RWKV7_PRESETS, type Rwkv7PresetName } from './rwkv7-adapter.js';
import { loadStudent } from './student-adapter.js';

/** Architectures `rwkvify pretrain` can build from a preset. */
export const ARCHITECTURES = ['gpt2', 'rwkv7'] as const;
export type Architecture = (typeof ARCHITECTURES)[number];

/** config.json model_type values that generate, tokenize and logits can load. */
export const MODEL_TYPES = [...ARCHITECTURES, 'rwkv7-student'] as const;
export type ModelType = (typeof MODEL_TYPES)[number];

/** A language model as the commands use it: trainable, savable, and able to produce logits. */
export interface LanguageModel extends TrainableModel {
  readonly arch: ModelType;
  readonly vocabSize: number;
  /** Maximum sequence length of one forward pass: n_positions for GPT-2, Infinity for RWKV-7. */
  readonly maxSequenceLength: number;
  /** The configuration as written to config.json. */
  readonly configJson: Record<string, unknown>;
  parameterCount(): number;
  /** Logits (T, V), row-major, of one sequence computed in a single forward pass. */
  sequenceLogits(ids: readonly number[]): Float32Array | Float64Array;
  /** The same logits computed one token at a time (GPT-2: key/value cache; RWKV-7: recurrent state). */
  recurrentLogits(ids: readonly number[]): Float32Array | Float64Array;
  /** A fresh incremental next-token function for generation. */
  nextLogits(): NextLogits;
  /** Writes a complete model folder: config.json, model.safetensors and the tokenizer files. */
  save(dir: string, tokenizer: Gpt2Tokenizer): void;
}

/** Names of the size presets of each architecture. */
export const PRESETS: Readonly<Record<Architecture, readonly string[]>> = {
  gpt2: Object.keys(GPT2_PRESETS),
  rwkv7: Object.keys(RWKV7_PRESETS),
};

// ---------------------------------------------------------------------------------------------------
// GPT-2

class Gpt2LanguageModel extends ModelAdapter<Gpt2Model> implements LanguageModel {
  readonly arch = 'gpt2';

  get vocabSize(): number {
    return this.model.config.vocabSize;
  }
  get maxSequenceLength(): number {
    return this.model.config.nPositions;
  }
  get configJson(): Record<string, unknown> {
    return { model_type: 'gpt2', ...this.model.config };
  }
  sequenceLogits(ids: readonly number[]): Float32Array | Float64Array {
    return this.model.forward(ids, 1, ids.length).data; // (1, T, V)
  }
  recurrentLogits(ids: readonly number[]): Float32Array | Float64Array {
    const V = this.vocabSize;
    const out = new Float32Array(ids.length * V);
    const cache = this.model.createCache();
    ids.forEach((id, t) => out.set(this.model.forward([id], 1, 1, { cache }).data, t * V)); // (1, 1, V) each
    return out;
  }
  nextLogits(): NextLogits {
    return gpt2NextLogits(this.model);
  }
  save(dir: string, tokenizer: Gpt2Tokenizer): void {
    saveGpt2Folder(this.model, dir, { dtype: 'F32', tokenizer });
  }
}

// ---------------------------------------------------------------------------------------------------
// Creating and loading

/** Builds a freshly initialised model of a preset; the seed fixes the initial weights. */
export function createModel(arch: Architecture, preset: string, seed: number): LanguageModel {
  const valid = PRESETS[arch];
  if (!valid.includes(preset)) {
    throw new InputError(`preset "${preset}" does not exist for --arch ${arch}; valid presets: ${valid.join(', ')}`);
  }
  if (arch === 'gpt2') {
    const config = { ...GPT2_PRESETS[preset as Gpt2PresetName] };
    return new Gpt2LanguageModel(new Gpt2Model(config, { rng: new Rng(seed) }));
  }
  return createRwkv7(preset as Rwkv7PresetName, seed);
}

/** A loaded model folder. */
export interface LoadedModel {
  /** The folder the model was read from (a run folder resolves to its `model/` subfolder). */
  dir: string;
  model: LanguageModel;
  tokenizer: Gpt2Tokenizer;
  /** Source of the tokenizer: the folder's own files, or the bundled GPT-2 files. */
  tokenizerSource: 'folder' | 'bundled';
}

/**
 * Returns the folder holding config.json: `dir` itself, or `dir/model` when `dir` is a training
 * run folder (what `rwkvify pretrain --out` writes).
 */
export function resolveModelFolder(dir: string): string {
  if (!existsSync(dir)) throw new InputError(`model folder "${dir}" does not exist`);
  if (!statSync(dir).isDirectory()) throw new InputError(`model folder "${dir}" is a file, not a folder`);
  if (existsSync(join(dir, 'config.json'))) return dir;
  const runModel = join(dir, 'model');
  if (existsSync(join(runModel, 'config.json'))) return runModel;
  throw new InputError(`model folder "${dir}" has no config.json; pass a folder written by rwkvify or a Hugging Face model folder`);
}

/** Reads config.json's model_type and checks that it is a model type rwkvify implements. */
export function detectArchitecture(dir: string): ModelType {
  const path = join(dir, 'config.json');
  let config: unknown;
  try {
    config = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new InputError(`cannot read "${path}": ${reason}`);
  }
  const modelType = typeof config === 'object' && config !== null ? (config as Record<string, unknown>).model_type : undefined;
  if (typeof modelType !== 'string' || !(MODEL_TYPES as readonly string[]).includes(modelType)) {
    throw new InputError(`"${path}" has model_type ${JSON.stringify(modelType)}; supported model types: ${MODEL_TYPES.join(', ')}`);
  }
  return modelType as ModelType;
}

// ---------------------------------------------------------------------------------------------------
// Messages of files that fail to load

/**
 * Leading labels of library errors: a function or class name (`configFromHf: `, `parseMerges: `,
 * `Gpt2Tokenizer: `, `Rwkv7Model.forward: `) or a module name. They help a developer find the
 * check, but a user who passed a bad folder needs the file and the value.
 */
const INTERNAL_PREFIX = /^(?:[a-z][a-z0-9]*[A-Z][A-Za-z0-9]*|[A-Z][a-z][A-Za-z0-9]*(?:\.[A-Za-z0-9]+)?|safetensors|rwkv7|checkpoint): /;

/** Module labels of configuration checks whose messages do not always name the file they read. */
const CONFIG_PREFIX = /^(?:rwkv7 config|student config): /;

/**
 * Rewrites the message of a library error raised while reading the folder `dir` as a plain
 * sentence: internal prefixes are removed, and paths inside `dir` become file names, because the
 * command's message names the folder. `configFromHf: /m/config.json: n_embd (32) must be …`
 * becomes `config.json: n_embd (32) must be …`.
 */
export function plainLoadReason(error: unknown, dir: string): string {
  let reason = error instanceof Error ? error.message : String(error);
  let fromConfigCheck = false;
  for (;;) {
    const internal = INTERNAL_PREFIX.exec(reason) ?? CONFIG_PREFIX.exec(reason);
    if (internal === null) break;
    fromConfigCheck ||= CONFIG_PREFIX.test(reason);
    reason = reason.slice(internal[0].length);
  }
  const prefix = join(dir, sep);
  const namesFile = reason.includes(prefix);
  reason = reason.split(prefix).join('');
  return fromConfigCheck && !namesFile ? `config.json: ${reason}` : reason;
}

/** Returns true when `dir` contains tokenizer files in either layout (vocab.json + merges.txt or encoder.json + vocab.bpe). */
export function hasTokenizerFiles(dir: string): boolean {
  return [HUGGING_FACE_FILE_NAMES, OPENAI_FILE_NAMES].some((names) => existsSync(join(dir, names.vocab)) || existsSync(join(dir, names.merges)));
}

/**
 * Loads the tokenizer of a model folder, or the bundled GPT-2 tokenizer when the folder has no
 * tokenizer files.
 */
export function loadTokenizer(dir: string | undefined): { tokenizer: Gpt2Tokenizer; source: 'folder' | 'bundled' } {
  if (dir === undefined || !hasTokenizerFiles(dir)) return { tokenizer: Gpt2Tokenizer.bundled(), source: 'bundled' };
  try {
    return { tokenizer: Gpt2Tokenizer.fromFolder(dir), source: 'folder' };
  } catch (error) {
    throw new InputError(`cannot load the tokenizer of "${dir}": ${plainLoadReason(error, dir)}`);
  }
}

function loadModel(modelType: ModelType, dir: string): LanguageModel {
  switch (modelType) {
    case 'gpt2':
      return new Gpt2LanguageModel(loadGpt2Folder(dir));
    case 'rwkv7':
      return loadRwkv7(dir);
    case 'rwkv7-student':
      return loadStudent(dir);
  }
}

/** Loads the model and tokenizer of a folder; invalid files become InputErrors naming the folder. */
export function loadModelFolder(given: string): LoadedModel {
  const dir = resolveModelFolder(given);
  const arch = detectArchitecture(dir);
  if (!existsSync(join(dir, WEIGHTS_FILE))) {
    throw new InputError(`model folder "${dir}" has config.json but no ${WEIGHTS_FILE}; copy the weights next to config.json, or pass the folder that has them`);
  }
  let model: LanguageModel;
  try {
    model = loadModel(arch, dir);
  } catch (error) {
    if (error instanceof InputError) throw error;
    throw new InputError(`cannot load the ${arch} model in "${dir}": ${plainLoadReason(error, dir)}`);
  }
  const { tokenizer, source } = loadTokenizer(dir);
  if (tokenizer.vocabSize > model.vocabSize) {
    throw new InputError(`the tokenizer of "${dir}" has ${tokenizer.vocabSize} tokens but the model only ${model.vocabSize}; they do not belong together`);
  }
  return { dir, model, tokenizer, tokenizerSource: source };
}
