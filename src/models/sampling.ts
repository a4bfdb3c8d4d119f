// Next-token sampling and the generation loop, shared by every language model in rwkvify. A model
// plugs in through a `NextLogits` function, so this file depends on neither GPT-2 nor RWKV.
//
// Order of the filters, as in Hugging Face's generate: temperature, then top-k, then top-p.
// Randomness comes only from the seeded Rng, so the same seed and options give the same tokens.
import { Rng } from '../tensor/random.js';

export interface SamplingOptions {
  /** Divides the logits; 0 means greedy (argmax, lowest id on ties). Default 1. */
  temperature?: number;
  /** Keeps only the k most likely tokens (integer ≥ 1). Default: all. */
  topK?: number;
  /** Keeps the smallest set of most likely tokens whose probability sum reaches p, 0 < p ≤ 1. Default 1. */
  topP?: number;
}

/**
 * Returns the logits of the token after `context` (all tokens so far, prompt included). An
 * implementation may keep state between calls, for example a key/value cache.
 */
export type NextLogits = (context: readonly number[]) => ArrayLike<number>;

export interface GenerateOptions extends SamplingOptions {
  /** Number of tokens to generate (integer ≥ 0). */
  maxNewTokens: number;
  /** Seed of the sampling Rng; ignored when `rng` is given. Default 0. */
  seed?: number;
  /** Generator to draw from, so a caller can continue one stream across calls. */
  rng?: Rng;
  /** Generation stops after emitting any of these ids (the id is included in the result). */
  stopTokens?: readonly number[];
  /** Called with each new token as soon as it is chosen, for streaming output. */
  onToken?: (id: number) => void;
}

/** Throws unless every sampling option is in range. */
export function validateSamplingOptions(options: SamplingOptions): void {
  const { temperature, topK, topP } = options;
  if (temperature !== undefined && !(Number.isFinite(temperature) && temperature >= 0)) {
    throw new RangeError(`sampling: temperature must be a finite number ≥ 0 (0 = greedy), got ${temperature}`);
  }
  if (topK !== undefined && !(Number.isInteger(topK) && topK >= 1)) {
    throw new RangeError(`sampling: top-k must be an integer ≥ 1, got ${topK}`);
  }
  if (topP !== undefined && !(topP > 0 && topP <= 1)) {
    throw new RangeError(`sampling: top-p must be in (0, 1], got ${topP}`);
  }
}

/** Returns the index of the largest logit (the lowest index among equal maxima). */
export function argmax(logits: ArrayLike<number>): number {
  let best = -1;
  let bestValue = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    const value = logits[i];
    if (Number.isNaN(value)) throw new RangeError(`sampling: logit ${i} is NaN`);
    if (best === -1 || value > bestValue) {
      best = i;
      bestValue = value;
    }
  }
  if (best === -1) throw new RangeError('sampling: cannot choose a token from an empty logits vector');
  return best;
}

/** Draws one token id from `logits` after temperature, top-k and top-p filtering. */
export function sampleToken(logits: ArrayLike<number>, options: SamplingOptions, rng: Rng): number {
  validateSamplingOptions(options);
  const temperature = options.temperature ?? 1;
  if (temperature === 0) return argmax(logits);

  const candidates = rankedCandidates(logits, temperature, options.topK);
  const kept = nucleus(candidates, options.topP ?? 1);
  return drawFrom(kept, rng);
}

interface Candidate {
  id: number;
  /** Probability before top-p; renormalised over the kept tokens when drawing. */
  probability: number;
}

/** Returns the tokens sorted by probability (descending, ties by id), cut to the top k. */
function rankedCandidates(logits: ArrayLike<number>, temperature: number, topK: number | undefined): Candidate[] {
  const ids = Array.from({ length: logits.length }, (_, i) => i);
  for (const id of ids) {
    if (Number.isNaN(logits[id])) throw new RangeError(`sampling: logit ${id} is NaN`);
  }
  ids.sort((a, b) => logits[b] - logits[a] || a - b);
  const kept = topK === undefined ? ids : ids.slice(0, topK);

  // Softmax over the kept tokens in float64. Subtracting the largest scaled logit keeps every
  // exponent ≤ 0, so exp cannot overflow.
  const maxLogit = logits[kept[0]] / temperature;
  if (maxLogit === -Infinity) throw new RangeError('sampling: every logit is -Infinity, so no token can be drawn');
  const weights = kept.map((id) => Math.exp(logits[id] / temperature - maxLogit));
  const total = weights.reduce((s, w) => s + w, 0);
  return kept.map((id, i) => ({ id, probability: weights[i] / total }));
}

/** Keeps the shortest prefix whose probabilities sum to at least `topP` (always one token). */
function nucleus(candidates: Candidate[], topP: number): Candidate[] {
  if (topP >= 1) return candidates;
  let cumulative = 0;
  for (let i = 0; i < candidates.length; i++) {
    cumulative += candidates[i].probability;
    if (cumulative >= topP) return candidates.slice(0, i + 1);
  }
  return candidates;
}

function drawFrom(candidates: Candidate[], rng: Rng): number {
  const total = candidates.reduce((s, c) => s + c.probability, 0);
  let remaining = rng.uniform() * total;
  for (const c of candidates) {
    remaining -= c.probability;
    if (remaining < 0) return c.id;
  }
  // Rounding can leave a tiny positive remainder after the last candidate.
  return candidates[candidates.length - 1].id;
}

/** Generates up to `maxNewTokens` tokens after `prompt` and returns only the new ones. */
export function generate(nextLogits: NextLogits, prompt: readonly number[], options: GenerateOptions): number[] {
  validateSamplingOptions(options);
  if (!Number.isInteger(options.maxNewTokens) || options.maxNewTokens < 0) {
    throw new RangeError(`generate: maxNewTokens must be an integer ≥ 0, got ${options.maxNewTokens}`);
  }
  if (prompt.length === 0) {
    throw new RangeError('generate: the prompt is empty; start it with at least one token, such as <|endoftext|> (50256) for GPT-2');
  }
  const rng = options.rng ?? new Rng(options.seed ?? 0);
  const stops = new Set(options.stopTokens ?? []);
  const context = [...prompt];
  const generated: number[] = [];

  while (generated.length < options.maxNewTokens) {
    const id = sampleToken(nextLogits(context), options, rng);
    context.push(id);
    generated.push(id);
    options.onToken?.(id);
    if (stops.has(id)) break;
  }
  return generated;
}
