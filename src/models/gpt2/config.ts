// GPT-2 hyper-parameters, their conversion from and to Hugging Face's config.json, and size presets.
// Field names are camelCase versions of the config.json keys (n_embd → nEmbd), so either form
// can be searched for.

/** Activations the released GPT-2 weights accept: both names mean the tanh approximation of GELU. */
export type Gpt2Activation = 'gelu_new' | 'gelu_pytorch_tanh';

export interface Gpt2Config {
  /** Model width C; every residual-stream vector has this many channels (768 for GPT-2 124M). */
  nEmbd: number;
  /** Number of transformer blocks; depth sets most of the compute per token (12 for 124M). */
  nLayer: number;
  /** Attention heads NH; head size hs = nEmbd / nHead must be an integer (64 for 124M). */
  nHead: number;
  /** Rows of the learned position table wpe, so the longest sequence the model can read (1024). */
  nPositions: number;
  /** Rows of the token table wte: 50257 for GPT-2's byte-level BPE (id 50256 = <|endoftext|>). */
  vocabSize: number;
  /** Added to the variance inside LayerNorm's square root; GPT-2 was trained with 1e-5. */
  layerNormEpsilon: number;
  /** MLP hidden width; config.json stores null for the default 4 · nEmbd. */
  nInner: number;
  /** MLP activation; only the tanh GELU is implemented because the released weights expect it. */
  activation: Gpt2Activation;
}

/** GPT-2's end-of-text token id, which Hugging Face also uses as bos and eos. */
export const GPT2_END_OF_TEXT_ID = 50256;

/** Vocabulary size of GPT-2's byte-level BPE tokenizer. */
export const GPT2_VOCAB_SIZE = 50257;

/**
 * Size presets. Parameter counts include wte once (the head is tied) and follow
 * V·C + P·C + L·(12·C² + 13·C) + 2·C with nInner = 4·C.
 */
export const GPT2_PRESETS = {
  /** 1,635,744 parameters; the shape of the golden fixture in test/fixtures/gpt2-tiny. */
  tiny: { nEmbd: 32, nLayer: 2, nHead: 2, nPositions: 64, vocabSize: GPT2_VOCAB_SIZE, layerNormEpsilon: 1e-5, nInner: 128, activation: 'gelu_new' },
  /** 7,259,008 parameters; big enough to learn from text on a CPU in minutes. */
  small: { nEmbd: 128, nLayer: 4, nHead: 4, nPositions: 256, vocabSize: GPT2_VOCAB_SIZE, layerNormEpsilon: 1e-5, nInner: 512, activation: 'gelu_new' },
  /** 124,439,808 parameters; the released openai-community/gpt2. */
  '124M': { nEmbd: 768, nLayer: 12, nHead: 12, nPositions: 1024, vocabSize: GPT2_VOCAB_SIZE, layerNormEpsilon: 1e-5, nInner: 3072, activation: 'gelu_new' },
} as const satisfies Record<string, Gpt2Config>;

export type Gpt2PresetName = keyof typeof GPT2_PRESETS;

/** Returns a mutable copy of a preset. */
export function gpt2Preset(name: Gpt2PresetName): Gpt2Config {
  return { ...GPT2_PRESETS[name] };
}

/** Returns the parameter count of a model with this config (head tied to wte, so counted once). */
export function gpt2ParameterCount(config: Gpt2Config): number {
  const { nEmbd: C, nLayer: L, nPositions: P, vocabSize: V, nInner: F } = config;
  const attention = C * 3 * C + 3 * C + C * C + C;
  const mlp = C * F + F + F * C + C;
  const norms = 2 * (2 * C);
  return V * C + P * C + L * (attention + mlp + norms) + 2 * C;
}

/** Throws unless the config describes a model this code can build. */
export function validateGpt2Config(config: Gpt2Config, source = 'Gpt2Config'): void {
  const integers: Array<[string, number]> = [
    ['n_embd', config.nEmbd],
    ['n_layer', config.nLayer],
    ['n_head', config.nHead],
    ['n_positions', config.nPositions],
    ['vocab_size', config.vocabSize],
    ['n_inner', config.nInner],
  ];
  for (const [key, value] of integers) {
    if (!Number.isInteger(value) || value < 1) {
      throw new RangeError(`${source}: ${key} must be a positive integer, got ${String(value)}`);
    }
  }
  if (config.nEmbd % config.nHead !== 0) {
    throw new RangeError(
      `${source}: n_embd (${config.nEmbd}) must be divisible by n_head (${config.nHead}) so that every head gets the same size`,
    );
  }
  if (!(config.layerNormEpsilon > 0) || !Number.isFinite(config.layerNormEpsilon)) {
    throw new RangeError(`${source}: layer_norm_epsilon must be a positive finite number, got ${String(config.layerNormEpsilon)}`);
  }
  checkActivation(config.activation, source);
}

function checkActivation(value: unknown, source: string): asserts value is Gpt2Activation {
  if (value !== 'gelu_new' && value !== 'gelu_pytorch_tanh') {
    throw new RangeError(
      `${source}: activation_function ${JSON.stringify(value)} is not supported; ` +
        'only "gelu_new" and "gelu_pytorch_tanh" (the tanh GELU that GPT-2 weights were trained with) are implemented',
    );
  }
}

/**
 * Reads a Hugging Face GPT-2 config.json object. `n_ctx` is accepted when `n_positions` is missing
 * (older files), and a null or missing `n_inner` means 4 · n_embd. `source` labels error messages.
 */
export function configFromHf(json: unknown, source = 'config.json'): Gpt2Config {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new TypeError(`configFromHf: ${source} must contain a JSON object, got ${json === null ? 'null' : typeof json}`);
  }
  const fields = json as Record<string, unknown>;
  if (fields.model_type !== undefined && fields.model_type !== 'gpt2') {
    throw new RangeError(`configFromHf: ${source} has model_type ${JSON.stringify(fields.model_type)}; expected "gpt2"`);
  }

  const nEmbd = readInteger(fields, 'n_embd', source);
  const nPositions = fields.n_positions !== undefined ? readInteger(fields, 'n_positions', source) : readInteger(fields, 'n_ctx', source);
  const nInner = fields.n_inner === undefined || fields.n_inner === null ? 4 * nEmbd : readInteger(fields, 'n_inner', source);
  const activation = fields.activation_function ?? 'gelu_new';
  checkActivation(activation, `configFromHf: ${source}`);

  const config: Gpt2Config = {
    nEmbd,
    nLayer: readInteger(fields, 'n_layer', source),
    nHead: readInteger(fields, 'n_head', source),
    nPositions,
    vocabSize: readInteger(fields, 'vocab_size', source),
    layerNormEpsilon: fields.layer_norm_epsilon === undefined ? 1e-5 : readNumber(fields, 'layer_norm_epsilon', source),
    nInner,
    activation,
  };
  rejectUnsupportedOptions(fields, source);
  validateGpt2Config(config, `configFromHf: ${source}`);
  return config;
}

/** Rejects HF options that change the computation in ways this model does not implement. */
function rejectUnsupportedOptions(fields: Record<string, unknown>, source: string): void {
  const expected: Array<[string, unknown]> = [
    ['scale_attn_weights', true],
    ['scale_attn_by_inverse_layer_idx', false],
    ['add_cross_attention', false],
  ];
  for (const [key, value] of expected) {
    if (fields[key] !== undefined && fields[key] !== value) {
      throw new RangeError(`configFromHf: ${source} sets ${key} to ${JSON.stringify(fields[key])}; only ${JSON.stringify(value)} is implemented`);
    }
  }
  if (fields.tie_word_embeddings === false) {
    throw new RangeError(`configFromHf: ${source} sets tie_word_embeddings to false; this GPT-2 always uses wte as the output head`);
  }
}

function readInteger(fields: Record<string, unknown>, key: string, source: string): number {
  const value = fields[key];
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new RangeError(`configFromHf: ${source} field "${key}" must be a positive integer, got ${JSON.stringify(value)}`);
  }
  return value;
}

function readNumber(fields: Record<string, unknown>, key: string, source: string): number {
  const value = fields[key];
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new RangeError(`configFromHf: ${source} field "${key}" must be a finite number, got ${JSON.stringify(value)}`);
  }
  return value;
}

/**
 * Builds a complete Hugging Face config.json object for GPT2LMHeadModel. Dropout rates are
 * GPT-2's released 0.1, so fine-tuning in transformers behaves as with the original model. This
 * engine has no dropout and ignores them when loading.
 */
export function configToHf(config: Gpt2Config): Record<string, unknown> {
  validateGpt2Config(config, 'configToHf');
  // bos/eos name <|endoftext|>, which exists only in the GPT-2 vocabulary (id 50256).
  const endOfText = config.vocabSize > GPT2_END_OF_TEXT_ID ? GPT2_END_OF_TEXT_ID : null;
  return {
    activation_function: config.activation,
    architectures: ['GPT2LMHeadModel'],
    attn_pdrop: 0.1,
    bos_token_id: endOfText,
    embd_pdrop: 0.1,
    eos_token_id: endOfText,
    initializer_range: 0.02,
    layer_norm_epsilon: config.layerNormEpsilon,
    model_type: 'gpt2',
    n_ctx: config.nPositions,
    n_embd: config.nEmbd,
    n_head: config.nHead,
    n_inner: config.nInner === 4 * config.nEmbd ? null : config.nInner,
    n_layer: config.nLayer,
    n_positions: config.nPositions,
    reorder_and_upcast_attn: false,
    resid_pdrop: 0.1,
    scale_attn_by_inverse_layer_idx: false,
    scale_attn_weights: true,
    summary_activation: null,
    summary_first_dropout: 0.1,
    summary_proj_to_labels: true,
    summary_type: 'cls_index',
    summary_use_proj: true,
    tie_word_embeddings: true,
    torch_dtype: 'float32',
    use_cache: true,
    vocab_size: config.vocabSize,
  };
}
