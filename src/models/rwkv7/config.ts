// Configuration of an RWKV-7 ("x070") model and of its time-mix blocks.
//
// Dims: C = model width (nEmbd), H = heads = C / N, N = head size, V = vocabulary, F = channel-mix
// width, Dw / Da / Dv / Dg = LoRA ranks of the decay, in-context learning rate, value residual and
// output gate.

/** Formula of the output gate on top of its LoRA. */
export type Rwkv7GateKind =
  /** g = σ(x·g1)·g2, as the official RWKV-7 code does (no sigmoid after g2). */
  | 'official'
  /** g = 1 + σ(x·g1)·g2, which is the identity when g2 = 0 (ARWKV's converted students). */
  | 'identity-plus';

/** Switches that turn an official RWKV-7 time mix into the variants used by converted models. */
export interface Rwkv7Options {
  /** Token shift in the time mix: the six inputs mix the previous token's input by μ = x_r … x_g. */
  tokenShift: boolean;
  /** The per-head bonus term (r ⊙ k̃ ⊙ r_k summed per head, times v). */
  bonus: boolean;
  /** Per-head GroupNorm (ln_x) of the WKV output; when off the output is scaled by N^(−1/2). */
  groupNorm: boolean;
  /** Biases on the receptance, key, value and output projections (official RWKV-7 has none). */
  biases: boolean;
  gate: Rwkv7GateKind;
}

export interface Rwkv7Config extends Rwkv7Options {
  /** C, the model width. */
  nEmbd: number;
  nLayer: number;
  /** N, the head size; the head count is C / N. */
  headSize: number;
  /** V, the vocabulary size. */
  vocabSize: number;
  /** F, the hidden width of the channel mix. */
  dimFfn: number;
  /** Dw, rank of the decay LoRA (w1 [C, Dw], w2 [Dw, C]). */
  dDecay: number;
  /** Da, rank of the in-context learning-rate LoRA (a1, a2). */
  dIclr: number;
  /** Dv, rank of the value-residual LoRA (v1, v2), used by layers 1 and up. */
  dValue: number;
  /** Dg, rank of the output-gate LoRA (g1, g2). */
  dGate: number;
}

/** The fields a caller must give; everything else has a default. */
export type Rwkv7ConfigInput = Pick<Rwkv7Config, 'nEmbd' | 'nLayer' | 'vocabSize'> & Partial<Rwkv7Config>;

/** Official switches: token shift, bonus and GroupNorm on, no projection biases, plain gate. */
export const OFFICIAL_OPTIONS: Readonly<Rwkv7Options> = Object.freeze({
  tokenShift: true,
  bonus: true,
  groupNorm: true,
  biases: false,
  gate: 'official',
});

/** Default head size of RWKV-7 models (and of GPT-2 124M's 12 heads of 768 channels). */
export const DEFAULT_HEAD_SIZE = 64;

/**
 * Suggested LoRA rank of the official RWKV-7 code: max(32, round(factor·√C / 32)·32). The factors
 * are 2.5 (decay, in-context rate), 1.7 (value residual) and 5 (gate); C = 768 gives 64, 64, 32, 128.
 */
export function suggestedLoraRank(nEmbd: number, factor: number): number {
  return Math.max(32, Math.round((factor * Math.sqrt(nEmbd)) / 32) * 32);
}

export const LORA_FACTORS = Object.freeze({ decay: 2.5, iclr: 2.5, value: 1.7, gate: 5 });

/** Builds a full configuration: official ranks and switches where not given, F = 4C, N = 64. */
export function rwkv7Config(input: Rwkv7ConfigInput): Rwkv7Config {
  const C = input.nEmbd;
  const config: Rwkv7Config = {
    ...OFFICIAL_OPTIONS,
    headSize: DEFAULT_HEAD_SIZE,
    dimFfn: 4 * C,
    dDecay: suggestedLoraRank(C, LORA_FACTORS.decay),
    dIclr: suggestedLoraRank(C, LORA_FACTORS.iclr),
    dValue: suggestedLoraRank(C, LORA_FACTORS.value),
    dGate: suggestedLoraRank(C, LORA_FACTORS.gate),
    ...input,
  };
  validateRwkv7Config(config);
  return config;
}

/** Number of heads, C / N. */
export function headCount(config: Pick<Rwkv7Config, 'nEmbd' | 'headSize'>): number {
  return config.nEmbd / config.headSize;
}

const POSITIVE_INTEGER_FIELDS = ['nEmbd', 'nLayer', 'headSize', 'vocabSize', 'dimFfn', 'dDecay', 'dIclr', 'dValue', 'dGate'] as const;
const BOOLEAN_FIELDS = ['tokenShift', 'bonus', 'groupNorm', 'biases'] as const;

/** Throws a RangeError naming the field, its value and the fix when the configuration is invalid. */
export function validateRwkv7Config(config: Rwkv7Config): void {
  for (const field of POSITIVE_INTEGER_FIELDS) {
    const value = config[field];
    if (!Number.isInteger(value) || value < 1) {
      throw new RangeError(`rwkv7 config: ${field} must be a positive integer, got ${String(value)}`);
    }
  }
  for (const field of BOOLEAN_FIELDS) {
    if (typeof config[field] !== 'boolean') {
      throw new RangeError(`rwkv7 config: ${field} must be true or false, got ${String(config[field])}`);
    }
  }
  if (config.gate !== 'official' && config.gate !== 'identity-plus') {
    throw new RangeError(`rwkv7 config: gate must be "official" or "identity-plus", got ${String(config.gate)}`);
  }
  if (config.nEmbd % config.headSize !== 0) {
    throw new RangeError(
      `rwkv7 config: headSize ${config.headSize} does not divide nEmbd ${config.nEmbd}; ` +
        `choose a head size that divides the width (for example ${largestDivisorUpTo(config.nEmbd, config.headSize)})`,
    );
  }
}

function largestDivisorUpTo(n: number, limit: number): number {
  for (let d = Math.min(n, limit); d > 1; d--) if (n % d === 0) return d;
  return 1;
}
