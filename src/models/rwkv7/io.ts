// Saving and loading RWKV-7 models as safetensors with the official tensor names
// (emb.weight, blocks.{l}.att.r_k, …), plus a config.json beside the weights.
//
// A file with only the official names loads on its own, because the configuration is read off the
// tensor shapes as the official inference code does. C and V come from emb.weight, the layer count
// from the largest block index and the head size from r_k [H, N]. The LoRA ranks come from
// w1/a1/v1/g1 [C, D], the channel-mix width from ffn.key.weight [F, C], and each switch from
// whether its tensors exist.
// When config.json is present, every field it shares with that derivation must agree.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { writeFileAtomic } from '../../io/atomic.js';
import { readSafetensorsFile, readTensor, writeSafetensorsFile, type SafetensorsFile, type WritableDtype } from '../../io/safetensors.js';
import type { DType } from '../../tensor/dtype.js';
import type { Tensor } from '../../tensor/tensor.js';
import { DEFAULT_HEAD_SIZE, LORA_FACTORS, OFFICIAL_OPTIONS, rwkv7Config, suggestedLoraRank, type Rwkv7Config, type Rwkv7GateKind } from './config.js';
import { Rwkv7Model } from './model.js';

/** Value of "model_type" in config.json. */
export const RWKV7_MODEL_TYPE = 'rwkv7';

/** config.json keys of each configuration field. */
const JSON_KEYS = {
  nEmbd: 'n_embd',
  nLayer: 'n_layer',
  headSize: 'head_size',
  vocabSize: 'vocab_size',
  dimFfn: 'dim_ffn',
  dDecay: 'd_decay_lora',
  dIclr: 'd_iclr_lora',
  dValue: 'd_value_lora',
  dGate: 'd_gate_lora',
  tokenShift: 'token_shift',
  bonus: 'bonus',
  groupNorm: 'group_norm',
  biases: 'biases',
  gate: 'gate',
} as const satisfies Record<keyof Rwkv7Config, string>;

type ConfigField = keyof typeof JSON_KEYS;
const CONFIG_FIELDS = Object.keys(JSON_KEYS) as ConfigField[];

/** Converts a configuration to its config.json object (snake_case keys, model_type "rwkv7"). */
export function rwkv7ConfigToJson(config: Rwkv7Config): Record<string, unknown> {
  const json: Record<string, unknown> = { model_type: RWKV7_MODEL_TYPE };
  for (const field of CONFIG_FIELDS) json[JSON_KEYS[field]] = config[field];
  return json;
}

/** Reads the configuration fields present in a config.json object; absent fields are left out. */
export function rwkv7ConfigFromJson(json: unknown, source = 'config.json'): Partial<Rwkv7Config> {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new Error(`rwkv7: ${source} must contain a JSON object, got ${Array.isArray(json) ? 'an array' : String(json)}`);
  }
  const record = json as Record<string, unknown>;
  if (record.model_type !== RWKV7_MODEL_TYPE) {
    throw new Error(`rwkv7: ${source} has model_type ${JSON.stringify(record.model_type)}, expected "${RWKV7_MODEL_TYPE}"; this is not an RWKV-7 model folder`);
  }
  const partial: Partial<Record<ConfigField, unknown>> = {};
  for (const field of CONFIG_FIELDS) {
    const value = record[JSON_KEYS[field]];
    if (value !== undefined) partial[field] = value;
  }
  return partial as Partial<Rwkv7Config>;
}

// ---------------------------------------------------------------------------------------------
// Saving

export interface SaveRwkv7Options {
  /** Element type in the file (default F32). */
  dtype?: WritableDtype;
}

/**
 * Writes the parameters to `path` under their official names and config.json into the same
 * folder, each atomically (a crash leaves the old file or the new one, never a partial one).
 */
export function saveRwkv7Safetensors(model: Rwkv7Model, path: string, options: SaveRwkv7Options = {}): void {
  const dtype = options.dtype ?? 'F32';
  const tensors = model.namedParameters().map(([name, t]) => ({ name, dtype, shape: t.shape, data: t.data }));
  writeSafetensorsFile(path, tensors, { format: 'pt' });
  writeFileAtomic(configPathBeside(path), `${JSON.stringify(rwkv7ConfigToJson(model.config), null, 2)}\n`);
}

function configPathBeside(path: string): string {
  return join(dirname(path), 'config.json');
}

// ---------------------------------------------------------------------------------------------
// Loading

export interface LoadRwkv7Options {
  /** Element type of the model's parameters (default float32). */
  dtype?: DType;
  /**
   * Path of config.json; by default the one beside the weights, used when it exists. `null`
   * ignores any config.json and relies on the tensor shapes alone.
   */
  configPath?: string | null;
}

/** Loads a model from safetensors with official names, checking config.json when present. */
export function loadRwkv7Safetensors(path: string, options: LoadRwkv7Options = {}): Rwkv7Model {
  const file = readSafetensorsFile(path);
  const configPath = options.configPath === undefined ? configPathBeside(path) : options.configPath;
  const fromJson = configPath !== null && (options.configPath !== undefined || existsSync(configPath)) ? readConfigJson(configPath) : null;
  const config = resolveConfig(file, fromJson, configPath ?? 'config.json');
  const model = new Rwkv7Model(config, { dtype: options.dtype, randomInit: false });
  copyParameters(model, file, options.dtype ?? 'float32');
  return model;
}

function readConfigJson(path: string): Partial<Rwkv7Config> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new Error(`rwkv7: cannot read "${path}": ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new Error(`rwkv7: "${path}" is not valid JSON: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
  return rwkv7ConfigFromJson(json, `"${path}"`);
}

/** Combines the tensor-derived configuration with config.json, which must agree with it. */
function resolveConfig(file: SafetensorsFile, fromJson: Partial<Rwkv7Config> | null, configSource: string): Rwkv7Config {
  const derived = inferRwkv7Config(file, fromJson?.headSize);
  if (fromJson !== null) {
    for (const field of CONFIG_FIELDS) {
      const jsonValue = fromJson[field];
      const tensorValue = derived[field];
      if (jsonValue !== undefined && tensorValue !== undefined && jsonValue !== tensorValue) {
        throw new Error(
          `rwkv7: ${configSource} sets ${JSON_KEYS[field]} = ${JSON.stringify(jsonValue)} but the tensors in ${file.source} imply ${JSON.stringify(tensorValue)}; ` +
            'fix config.json or load with configPath: null to use the tensors alone',
        );
      }
    }
  }
  const gate: Rwkv7GateKind = fromJson?.gate ?? OFFICIAL_OPTIONS.gate;
  const C = derived.nEmbd;
  return rwkv7Config({
    ...derived,
    headSize: derived.headSize ?? fromJson?.headSize ?? DEFAULT_HEAD_SIZE,
    // Layer 0 always stores v1, so this fallback only matters for a file that breaks that rule.
    dValue: derived.dValue ?? fromJson?.dValue ?? suggestedLoraRank(C, LORA_FACTORS.value),
    gate,
  });
}

type DerivedConfig = Omit<Rwkv7Config, 'gate' | 'headSize' | 'dValue'> & { headSize?: number; dValue?: number; gate?: undefined };

/**
 * Reads the configuration off the tensor shapes of an official-names file. The head size comes
 * from r_k [H, N]; a model without the bonus term has no r_k, so `headSizeHint` (config.json)
 * must supply it.
 */
export function inferRwkv7Config(file: SafetensorsFile, headSizeHint?: number): DerivedConfig {
  const shapeOf = (name: string): readonly number[] => {
    const entry = file.tensors.get(name);
    if (entry === undefined) {
      throw new Error(`rwkv7: ${file.source} has no tensor "${name}", which an RWKV-7 checkpoint with official names contains; check that this is an RWKV-7 (x070) file`);
    }
    return entry.shape;
  };
  const has = (name: string): boolean => file.tensors.has(name);
  const dim = (name: string, axis: number, rank: number): number => {
    const shape = shapeOf(name);
    if (shape.length !== rank) throw new Error(`rwkv7: ${file.source} tensor "${name}" has shape [${shape.join(',')}], expected ${rank} dimensions`);
    return shape[axis];
  };

  const vocabSize = dim('emb.weight', 0, 2);
  const nEmbd = dim('emb.weight', 1, 2);
  let nLayer = 0;
  for (const name of file.tensors.keys()) {
    const match = /^blocks\.(\d+)\./.exec(name);
    if (match !== null) nLayer = Math.max(nLayer, Number(match[1]) + 1);
  }
  if (nLayer === 0) throw new Error(`rwkv7: ${file.source} has no "blocks.{l}.*" tensors; an RWKV-7 checkpoint needs at least one block`);

  const att = 'blocks.0.att.';
  const bonus = has(`${att}r_k`);
  let headSize = headSizeHint;
  if (bonus) {
    const [H, N] = shapeOf(`${att}r_k`);
    if (H * N !== nEmbd) {
      throw new Error(`rwkv7: ${file.source} tensor "${att}r_k" has shape [${H},${N}] but H·N must equal the width ${nEmbd} of emb.weight`);
    }
    headSize = N;
  } else if (headSize === undefined) {
    throw new Error(`rwkv7: ${file.source} has no "${att}r_k" (bonus term off), so the head size cannot be read from the tensors; add config.json with head_size`);
  }
  return {
    nEmbd,
    nLayer,
    vocabSize,
    headSize,
    dimFfn: dim('blocks.0.ffn.key.weight', 0, 2),
    dDecay: dim(`${att}w1`, 1, 2),
    dIclr: dim(`${att}a1`, 1, 2),
    dValue: has(`${att}v1`) ? dim(`${att}v1`, 1, 2) : nLayer > 1 ? dim(`blocks.1.att.v1`, 1, 2) : undefined,
    dGate: dim(`${att}g1`, 1, 2),
    tokenShift: has(`${att}x_r`),
    bonus,
    groupNorm: has(`${att}ln_x.weight`),
    biases: has(`${att}receptance.bias`),
  };
}

/** Drops leading size-1 axes, so [1, 1, C] and [C] compare equal (some exports squeeze them). */
function squeezeLeading(shape: readonly number[]): string {
  let start = 0;
  while (start < shape.length - 1 && shape[start] === 1) start++;
  return `[${shape.slice(start).join(',')}]`;
}

function copyParameters(model: Rwkv7Model, file: SafetensorsFile, dtype: DType): void {
  const expected = new Map<string, Tensor>(model.namedParameters());
  const unexpected = [...file.tensors.keys()].filter((name) => !expected.has(name));
  if (unexpected.length > 0) {
    const shown = unexpected.slice(0, 5).map((n) => `"${n}"`).join(', ');
    throw new Error(
      `rwkv7: ${file.source} has ${unexpected.length} tensor(s) that an RWKV-7 model with this configuration does not use: ${shown}` +
        `${unexpected.length > 5 ? ', …' : ''}; remove them or check the file's architecture`,
    );
  }
  for (const [name, param] of expected) {
    const entry = file.tensors.get(name);
    if (entry === undefined) {
      throw new Error(`rwkv7: ${file.source} has no tensor "${name}" of shape [${param.shape.join(',')}]; the checkpoint is incomplete or was saved with other options`);
    }
    if (squeezeLeading(entry.shape) !== squeezeLeading(param.shape)) {
      throw new Error(
        `rwkv7: ${file.source} tensor "${name}" has shape [${entry.shape.join(',')}] but the model needs [${param.shape.join(',')}]; ` +
          'the file and the configuration disagree (check config.json or re-export the checkpoint)',
      );
    }
    const values = readTensor(file, name, dtype);
    const bad = values.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) {
      throw new Error(`rwkv7: ${file.source} tensor "${name}" element ${bad} is ${values[bad]}; non-finite parameters are invalid, so re-export the checkpoint from a run without NaN or Inf`);
    }
    param.data.set(values);
  }
}
