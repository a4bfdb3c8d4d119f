// Reading and writing GPT-2 model folders in Hugging Face's layout: config.json + model.safetensors
// (+ vocab.json and merges.txt when a tokenizer is saved alongside).
//
// Layout written, for GPT-2 124M (i = 0..11), every parameter under its unprefixed key:
//   wte.weight [50257, 768]            wpe.weight [1024, 768]
//   h.i.ln_1.weight, h.i.ln_1.bias [768]
//   h.i.attn.c_attn.weight [768, 2304] h.i.attn.c_attn.bias [2304]   (Conv1D, [in, out])
//   h.i.attn.c_proj.weight [768, 768]  h.i.attn.c_proj.bias [768]
//   h.i.ln_2.weight, h.i.ln_2.bias [768]
//   h.i.mlp.c_fc.weight [768, 3072]    h.i.mlp.c_fc.bias [3072]
//   h.i.mlp.c_proj.weight [3072, 768]  h.i.mlp.c_proj.bias [768]
//   ln_f.weight, ln_f.bias [768]
// with __metadata__ {"format": "pt"} and no lm_head.weight (tied), as in openai-community/gpt2's
// model.safetensors on the Hugging Face Hub, which GPT2LMHeadModel.from_pretrained loads.
// How this was checked: the key names and shapes were compared with that file's published tensor
// list, and test/gpt2.test.ts compares a saved folder's keys and shapes with the fixture written by
// scripts/make_gpt2_fixture.py. NOTE: transformers is not installed here, so loading a saved folder
// with GPT2LMHeadModel itself has not been run.
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../../io/atomic.js';
import { readSafetensorsFile, readTensor, writeSafetensorsFile, type SafetensorsFile, type SafetensorsInput } from '../../io/safetensors.js';
import type { Gpt2Tokenizer } from '../../tokenizer/index.js';
import type { Tensor } from '../../tensor/tensor.js';
import { configFromHf, configToHf, type Gpt2Config } from './config.js';
import { Gpt2Model } from './model.js';

export const CONFIG_FILE = 'config.json';
export const WEIGHTS_FILE = 'model.safetensors';

/** Prefix of the keys in a checkpoint saved from GPT2LMHeadModel rather than GPT2Model. */
const TRANSFORMER_PREFIX = 'transformer.';

/** Causal-mask buffers that old exports store (`h.0.attn.bias` [1, 1, P, P], `h.0.attn.masked_bias`). */
const MASK_BUFFER_KEY = /^h\.\d+\.attn\.(bias|masked_bias)$/;

const UNTIED_HEAD_KEY = 'lm_head.weight';

/** Stored dtypes the loader converts to float32. */
const LOADABLE_DTYPES = new Set(['F32', 'F16', 'BF16', 'F64']);

/**
 * Loads a GPT-2 from `dir`/config.json and `dir`/model.safetensors into float32. Keys may carry a
 * `transformer.` prefix; mask buffers are skipped; an `lm_head.weight` must equal wte. A missing,
 * unexpected, mis-shaped or non-finite tensor throws an error that names it and the file.
 */
export function loadGpt2Folder(dir: string): Gpt2Model {
  const configPath = join(dir, CONFIG_FILE);
  const config = configFromHf(readJsonFile(configPath), configPath);
  const weightsPath = join(dir, WEIGHTS_FILE);
  const file = readSafetensorsFile(weightsPath);

  const { parameters, untiedHead } = indexCheckpointKeys(file);
  const model = new Gpt2Model(config, 'zeros');
  const loaded = new Set<string>();
  const missing: string[] = [];

  for (const [name, param] of model.namedParameters()) {
    const key = parameters.get(name);
    if (key === undefined) {
      missing.push(name);
      continue;
    }
    loadTensor(file, key, name, param, config, configPath);
    loaded.add(name);
  }
  if (missing.length > 0) throw missingTensorsError(missing, model, file);

  const unexpected = [...parameters.keys()].filter((name) => !loaded.has(name));
  if (unexpected.length > 0) {
    throw new Error(
      `loadGpt2Folder: ${file.source} contains ${unexpected.length} tensor(s) that are not parameters of a GPT-2 with ${configPath} ` +
        `(n_layer=${config.nLayer}): ${unexpected.slice(0, 5).map((n) => `"${parameters.get(n)}"`).join(', ')}; ` +
        'check that config.json belongs to these weights',
    );
  }
  if (untiedHead !== null) checkHeadIsTied(file, untiedHead, model.wte.weight);
  return model;
}

function readJsonFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`loadGpt2Folder: cannot read ${path}: ${reason}; a model folder needs config.json next to model.safetensors`, { cause: error });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`loadGpt2Folder: ${path} is not valid JSON: ${reason}`, { cause: error });
  }
}

/** Maps parameter names (prefix removed) to file keys; skips mask buffers; finds lm_head. */
function indexCheckpointKeys(file: SafetensorsFile): { parameters: Map<string, string>; untiedHead: string | null } {
  const parameters = new Map<string, string>();
  let untiedHead: string | null = null;
  for (const key of file.tensors.keys()) {
    const name = key.startsWith(TRANSFORMER_PREFIX) ? key.slice(TRANSFORMER_PREFIX.length) : key;
    if (MASK_BUFFER_KEY.test(name)) continue;
    if (name === UNTIED_HEAD_KEY) {
      untiedHead = key;
      continue;
    }
    const previous = parameters.get(name);
    if (previous !== undefined) {
      throw new Error(`loadGpt2Folder: ${file.source} stores parameter "${name}" twice, as "${previous}" and "${key}"; keep one of them`);
    }
    parameters.set(name, key);
  }
  return { parameters, untiedHead };
}

/** Checks one tensor's dtype, shape and values, then copies it into `param`. */
function loadTensor(file: SafetensorsFile, key: string, name: string, param: Tensor, config: Gpt2Config, configPath: string): void {
  const entry = file.tensors.get(key);
  if (entry === undefined) throw new Error(`loadGpt2Folder: internal error, key "${key}" vanished from ${file.source}`);
  if (!LOADABLE_DTYPES.has(entry.dtype)) {
    throw new Error(`loadGpt2Folder: tensor "${key}" in ${file.source} has dtype ${entry.dtype}; weights must be F32, F16, BF16 or F64`);
  }
  if (!sameShape(entry.shape, param.shape)) {
    throw new Error(
      `loadGpt2Folder: tensor "${key}" in ${file.source} has shape ${formatShape(entry.shape)} but ${configPath} ` +
        `implies ${formatShape(param.shape)} = ${symbolicShape(name)} (n_embd=${config.nEmbd}, n_inner=${config.nInner}, ` +
        `vocab_size=${config.vocabSize}, n_positions=${config.nPositions}); the config contradicts the weights, ` +
        'so use the config.json saved with this checkpoint',
    );
  }
  const values = readTensor(file, key, 'float32');
  const bad = firstNonFinite(values);
  if (bad !== -1) {
    throw new Error(`loadGpt2Folder: tensor "${key}" in ${file.source} has the non-finite value ${values[bad]} at flat index ${bad}; the checkpoint is corrupt`);
  }
  param.data.set(values);
}

/** Returns the config fields that set a parameter's shape, for error messages. */
function symbolicShape(name: string): string {
  if (name === 'wte.weight') return '[vocab_size, n_embd]';
  if (name === 'wpe.weight') return '[n_positions, n_embd]';
  if (name.endsWith('attn.c_attn.weight')) return '[n_embd, 3·n_embd]';
  if (name.endsWith('attn.c_attn.bias')) return '[3·n_embd]';
  if (name.endsWith('attn.c_proj.weight')) return '[n_embd, n_embd]';
  if (name.endsWith('mlp.c_fc.weight')) return '[n_embd, n_inner]';
  if (name.endsWith('mlp.c_fc.bias')) return '[n_inner]';
  if (name.endsWith('mlp.c_proj.weight')) return '[n_inner, n_embd]';
  return '[n_embd]';
}

function missingTensorsError(missing: string[], model: Gpt2Model, file: SafetensorsFile): Error {
  const shapes = new Map(model.namedParameters().map(([name, t]) => [name, t.shape]));
  const listed = missing.slice(0, 5).map((name) => `"${name}" ${formatShape(shapes.get(name) ?? [])}`);
  const more = missing.length > 5 ? ` and ${missing.length - 5} more` : '';
  return new Error(
    `loadGpt2Folder: ${file.source} is missing ${missing.length} parameter tensor(s): ${listed.join(', ')}${more} ` +
      `(keys may also carry the "${TRANSFORMER_PREFIX}" prefix); check that config.json belongs to these weights`,
  );
}

/** The tied head is the model's only head, so an explicit lm_head must be an exact copy of wte. */
function checkHeadIsTied(file: SafetensorsFile, key: string, wte: Tensor): void {
  const entry = file.tensors.get(key);
  if (entry === undefined || !sameShape(entry.shape, wte.shape)) {
    throw new Error(
      `loadGpt2Folder: tensor "${key}" in ${file.source} has shape ${formatShape(entry?.shape ?? [])} but must equal wte.weight ${formatShape(wte.shape)} ` +
        'because this GPT-2 ties the output head to the token embedding',
    );
  }
  const head = readTensor(file, key, 'float32');
  let maxDifference = 0;
  let where = 0;
  for (let i = 0; i < head.length; i++) {
    const difference = Math.abs(head[i] - wte.data[i]);
    if (!(difference <= maxDifference)) {
      maxDifference = difference;
      where = i;
    }
  }
  if (maxDifference !== 0) {
    throw new Error(
      `loadGpt2Folder: tensor "${key}" in ${file.source} differs from wte.weight (max |difference| ${maxDifference.toExponential(3)} at flat index ${where}); ` +
        'this GPT-2 only supports an output head tied to wte, so remove lm_head.weight or untie the model elsewhere',
    );
  }
}

export interface SaveGpt2Options {
  /** Stored element type; F16 halves the file but rounds every weight (max finite 65504). Default F32. */
  dtype?: 'F32' | 'F16';
  /** When given, vocab.json and merges.txt are written into the same folder. */
  tokenizer?: Gpt2Tokenizer;
}

/**
 * Writes config.json and model.safetensors (and the tokenizer files when given) into `dir`,
 * creating it if needed. Each file is replaced atomically, so a crash leaves the old file or the
 * new one, never a partial file.
 */
export function saveGpt2Folder(model: Gpt2Model, dir: string, options: SaveGpt2Options = {}): void {
  const dtype = options.dtype ?? 'F32';
  if (dtype !== 'F32' && dtype !== 'F16') throw new RangeError(`saveGpt2Folder: dtype must be "F32" or "F16", got ${String(dtype)}`);
  const tensors: SafetensorsInput[] = model.namedParameters().map(([name, t]) => ({ name, dtype, shape: t.shape, data: t.data }));
  if (dtype === 'F16') for (const t of tensors) checkFitsHalf(t);

  mkdirSync(dir, { recursive: true });
  const config = { ...configToHf(model.config), torch_dtype: dtype === 'F16' ? 'float16' : 'float32' };
  writeFileAtomic(join(dir, CONFIG_FILE), `${JSON.stringify(config, null, 2)}\n`);
  writeSafetensorsFile(join(dir, WEIGHTS_FILE), tensors, { format: 'pt' });
  options.tokenizer?.saveToFolder(dir);
}

/** Largest finite IEEE half-precision value. */
const HALF_MAX = 65504;

function checkFitsHalf(t: SafetensorsInput): void {
  for (let i = 0; i < t.data.length; i++) {
    const v = t.data[i];
    if (!Number.isFinite(v) || Math.abs(v) > HALF_MAX) {
      throw new RangeError(`saveGpt2Folder: tensor "${t.name}" value ${v} at flat index ${i} does not fit F16 (max ${HALF_MAX}); save as F32`);
    }
  }
}

function firstNonFinite(values: Float32Array): number {
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i])) return i;
  return -1;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function formatShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}
