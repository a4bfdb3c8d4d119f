// GPT-2 text generation: a NextLogits function with a key/value cache for the shared sampling loop.
import { generate, type GenerateOptions, type NextLogits } from '../sampling.js';
import type { Gpt2Cache, Gpt2Model } from './model.js';

/**
 * Returns a NextLogits function for one sequence (B = 1). Each call feeds only the tokens the
 * cache has not seen. GPT-2's positions are absolute, so a context longer than n_positions is
 * cropped to its last n_positions tokens and the cache is rebuilt from that window. Once the
 * context is that long, every step therefore recomputes the whole window (O(n_positions) tokens).
 */
export function gpt2NextLogits(model: Gpt2Model): NextLogits {
  const { nPositions, vocabSize: V } = model.config;
  let cache: Gpt2Cache = model.createCache();
  let cached: number[] = [];

  return (context) => {
    if (context.length === 0) throw new RangeError('gpt2NextLogits: the context is empty; give at least one token');
    const window = context.length > nPositions ? context.slice(context.length - nPositions) : [...context];
    if (!extendsCached(cached, window)) {
      cache = model.createCache();
      cached = [];
    }
    const fresh = window.slice(cached.length);
    const logits = model.forward(fresh, 1, fresh.length, { cache }); // (1, T, V)
    cached = window;
    return logits.data.slice((fresh.length - 1) * V, fresh.length * V); // (V)
  };
}

/** True when `window` starts with every cached token and adds at least one new token. */
function extendsCached(cached: readonly number[], window: readonly number[]): boolean {
  if (cached.length === 0 || window.length <= cached.length) return false;
  for (let i = 0; i < cached.length; i++) if (cached[i] !== window[i]) return false;
  return true;
}

/** Generates tokens after `prompt` with a fresh cache; returns only the new tokens. */
export function generateGpt2(model: Gpt2Model, prompt: readonly number[], options: GenerateOptions): number[] {
  return generate(gpt2NextLogits(model), prompt, options);
}
