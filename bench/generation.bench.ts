// Generation cost per token against context length on rwkvify. An RWKV-7 carries a constant-size
// state. A GPT-2 of the same width, depth and head count runs with its key/value cache (attention
// over a growing cache) and without it (the whole context recomputed for every token).
// "ms/token at context L" is the time to produce the logits of token L + 1 once L tokens have been
// read: RWKV-7 runs one `step` from the state after L − 1 tokens, cached GPT-2 runs one token
// through a cache of L − 1 tokens, and uncached GPT-2 runs a forward pass over all L tokens.
// Each rep visits every context and both cheap ways in turn; the first reps warm up and are not
// counted; cells are medians.
// Usage: node --import tsx bench/generation.bench.ts [--quick] [--reps N] [--warmup N]
import { pathToFileURL } from 'node:url';

import { noGrad } from '../src/autograd/index.js';
import { describeBackendChoice } from '../src/kernels/index.js';
import { Gpt2Model, type Gpt2Cache, type Gpt2Config } from '../src/models/gpt2/index.js';
import { Rwkv7Model, type Rwkv7State } from '../src/models/rwkv7/index.js';
import { Rng } from '../src/tensor/random.js';
import { parseBenchArgs } from './models.bench.js';

export interface GenerationBenchOptions {
  /** A 2-layer, 64-wide model with a 512-token vocabulary in place of the default 4-layer, 256-wide GPT-2 vocabulary model. */
  quick?: boolean;
  /** Timed reps of the uncached GPT-2 forward; the one-token steps run at least MIN_STEP_REPS (default 7, quick 5). */
  reps?: number;
  /** Untimed reps before them (default 2, quick 1; the one-token steps run at least MIN_STEP_WARMUP). */
  warmup?: number;
}

/** Contexts of the RWKV-7 against GPT-2 table, ascending. */
const CONTEXTS = [64, 256, 1024, 4096];
/** Contexts of the GPT-2 cache table. */
const CACHE_CONTEXTS = [64, 512];
/**
 * Minimum timed and warm-up reps of the two cheap paths (one token each, milliseconds), so a
 * garbage collection left over from reading the prompt moves the median by at most a few reps.
 */
const MIN_STEP_REPS = 30;
const MIN_STEP_WARMUP = 5;
/** Tokens per forward call while reading a prompt, which bounds the (chunk, V) logits buffer. */
const PREFILL_CHUNK = 256;

/** Width, depth and vocabulary of both models; GPT-2 gets 1024 positions so contexts up to 1024 fit. */
function benchConfig(quick: boolean): Gpt2Config {
  return quick
    ? { nEmbd: 64, nLayer: 2, nHead: 2, nPositions: 1024, vocabSize: 512, layerNormEpsilon: 1e-5, nInner: 256, activation: 'gelu_new' }
    : { nEmbd: 256, nLayer: 4, nHead: 4, nPositions: 1024, vocabSize: 50257, layerNormEpsilon: 1e-5, nInner: 1024, activation: 'gelu_new' };
}

function median(values: number[]): number {
  const sorted = [...values].sort((p, q) => p - q);
  return sorted[Math.floor(sorted.length / 2)];
}

function timeMs(run: () => void): number {
  const t0 = performance.now();
  run();
  return performance.now() - t0;
}

/** Feeds ids[from, to) into the RWKV-7 state in chunks, without a graph; returns the new state. */
function advanceRwkv(model: Rwkv7Model, state: Rwkv7State, ids: readonly number[], from: number, to: number): Rwkv7State {
  let current = state;
  for (let start = from; start < to; start += PREFILL_CHUNK) {
    const chunk = ids.slice(start, Math.min(to, start + PREFILL_CHUNK));
    current = noGrad(() => model.forward(chunk, 1, chunk.length, current).state);
  }
  return current;
}

/** Feeds ids[from, to) into the GPT-2 cache in chunks (the cache grows in place). */
function advanceGpt2(model: Gpt2Model, cache: Gpt2Cache, ids: readonly number[], from: number, to: number): void {
  for (let start = from; start < to; start += PREFILL_CHUNK) {
    const chunk = ids.slice(start, Math.min(to, start + PREFILL_CHUNK));
    model.forward(chunk, 1, chunk.length, { cache });
  }
}

/**
 * Returns a copy that shares the cached key and value tensors. Appending builds new tensors by
 * concatenation and never writes into the old ones, so a step on the copy leaves `cache` as it was.
 */
function forkCache(cache: Gpt2Cache): Gpt2Cache {
  return { length: cache.length, batch: cache.batch, layers: cache.layers.map((layer) => ({ keys: layer.keys, values: layer.values })) };
}

/**
 * Runs each way a few times on a short prompt before any timing, so the first measured context
 * does not pay for JIT compilation and buffer-pool growth that later contexts reuse.
 */
function warmUpPaths(rwkv: Rwkv7Model, gpt2: Gpt2Model, ids: readonly number[]): void {
  const prompt = ids.slice(0, 16);
  const state = advanceRwkv(rwkv, rwkv.createState(1), prompt, 0, prompt.length);
  const cache = gpt2.createCache();
  advanceGpt2(gpt2, cache, prompt, 0, prompt.length);
  for (let run = 0; run < 5; run++) noGrad(() => gpt2.forward(prompt, 1, prompt.length));
  for (let run = 0; run < 50; run++) {
    rwkv.step(prompt[0], state);
    gpt2.forward([prompt[0]], 1, 1, { cache: forkCache(cache) });
  }
}

interface ContextTimes {
  rwkv: number[];
  cached: number[];
  uncached: number[];
}

/** Inputs of the three ways at one context length L. */
interface ContextInputs {
  L: number;
  /** RWKV-7 state after the first L − 1 tokens. */
  state: Rwkv7State;
  /** GPT-2 cache of the first L − 1 tokens; null when L exceeds n_positions. */
  cache: Gpt2Cache | null;
}

/** Reads the prompt once, keeping the RWKV-7 state and a GPT-2 cache snapshot at every context. */
function prepareContexts(rwkv: Rwkv7Model, gpt2: Gpt2Model, ids: readonly number[], contexts: readonly number[]): ContextInputs[] {
  const inputs: ContextInputs[] = [];
  let state = rwkv.createState(1);
  const cache = gpt2.createCache();
  let read = 0;
  for (const L of contexts) {
    process.stderr.write(`generation bench: reading ${L - 1} prompt tokens\n`);
    state = advanceRwkv(rwkv, state, ids, read, L - 1);
    read = L - 1;
    const fitsGpt2 = L <= gpt2.config.nPositions;
    if (fitsGpt2) advanceGpt2(gpt2, cache, ids, cache.length, L - 1);
    inputs.push({ L, state, cache: fitsGpt2 ? forkCache(cache) : null });
  }
  return inputs;
}

/**
 * Times one generated token at each context. Every rep visits every context, so a burst of load
 * from other processes hits all context lengths alike instead of one of them. The uncached
 * forward allocates (L, L) attention buffers per head and runs in its own loop, which keeps the
 * garbage collection it triggers out of the two cheap paths.
 */
function measureContexts(rwkv: Rwkv7Model, gpt2: Gpt2Model, ids: readonly number[], inputs: readonly ContextInputs[], warmup: number, reps: number): Map<number, ContextTimes> {
  const results = new Map<number, ContextTimes>(inputs.map(({ L }) => [L, { rwkv: [], cached: [], uncached: [] }]));
  const stepWarmup = Math.max(warmup, MIN_STEP_WARMUP);
  const stepReps = Math.max(reps, MIN_STEP_REPS);
  process.stderr.write('generation bench: timing RWKV-7 and cached GPT-2 steps\n');
  for (let rep = 0; rep < stepWarmup + stepReps; rep++) {
    for (const { L, state, cache } of inputs) {
      const lastToken = ids[L - 1];
      const rwkvMs = timeMs(() => rwkv.step(lastToken, state));
      const cachedMs = cache === null ? NaN : timeMs(() => gpt2.forward([lastToken], 1, 1, { cache: forkCache(cache) }));
      if (rep < stepWarmup) continue;
      const times = results.get(L) as ContextTimes;
      times.rwkv.push(rwkvMs);
      times.cached.push(cachedMs);
    }
  }
  process.stderr.write('generation bench: timing uncached GPT-2 forward passes\n');
  for (let rep = 0; rep < warmup + reps; rep++) {
    for (const { L, cache } of inputs) {
      const window = ids.slice(0, L);
      const uncachedMs = cache === null ? NaN : timeMs(() => noGrad(() => gpt2.forward(window, 1, L)));
      if (rep >= warmup) (results.get(L) as ContextTimes).uncached.push(uncachedMs);
    }
  }
  return results;
}

function formatMs(values: number[]): string {
  const value = median(values);
  if (Number.isNaN(value)) return 'n/a';
  return value >= 100 ? value.toFixed(0) : value.toPrecision(3);
}

/** Runs the benchmark and returns a markdown section. */
export async function runGenerationBench(options: GenerationBenchOptions = {}): Promise<string> {
  const quick = options.quick ?? false;
  const reps = options.reps ?? (quick ? 5 : 7);
  const warmup = options.warmup ?? (quick ? 1 : 2);
  const config = benchConfig(quick);
  const headSize = config.nEmbd / config.nHead;
  const rng = new Rng(11);
  const gpt2 = new Gpt2Model(config, { rng });
  const rwkv = new Rwkv7Model({ nEmbd: config.nEmbd, nLayer: config.nLayer, vocabSize: config.vocabSize, headSize }, { seed: 11 });
  const contexts = [...new Set([...CONTEXTS, ...CACHE_CONTEXTS])].sort((p, q) => p - q);
  const ids = Array.from({ length: contexts[contexts.length - 1] }, () => rng.int(config.vocabSize));
  warmUpPaths(rwkv, gpt2, ids);
  const inputs = prepareContexts(rwkv, gpt2, ids, contexts);
  const times = measureContexts(rwkv, gpt2, ids, inputs, warmup, reps);
  const at = (L: number): ContextTimes => times.get(L) as ContextTimes;

  const mainRows = CONTEXTS.map((L) => `| ${L} | ${formatMs(at(L).rwkv)} | ${formatMs(at(L).cached)} | ${formatMs(at(L).uncached)} |`);
  const first = CONTEXTS[0];
  const last = CONTEXTS[CONTEXTS.length - 1];
  const flatness = median(at(last).rwkv) / median(at(first).rwkv);
  const cacheRows = CACHE_CONTEXTS.map((L) => {
    const cached = median(at(L).cached);
    const uncached = median(at(L).uncached);
    return `| ${L} | ${formatMs(at(L).cached)} | ${formatMs(at(L).uncached)} | ${(uncached / cached).toFixed(1)} |`;
  });

  return [
    `Milliseconds per generated token (batch 1, logits of the next token), median of ${Math.max(reps, MIN_STEP_REPS)} reps ` +
      `(uncached GPT-2: ${reps}) after warm-up reps. ` +
      `Both models: L${config.nLayer} C${config.nEmbd} V${config.vocabSize}, ${config.nHead} heads of ${headSize}; ` +
      `GPT-2 has ${config.nPositions} positions, so longer contexts are n/a. Random initial weights. ${describeBackendChoice()}.` +
      (quick ? ' Quick run: a small model, fewer reps.' : ''),
    '',
    '| context | RWKV-7 ms/token | GPT-2 with cache ms/token | GPT-2 without cache ms/token |',
    '|---|---|---|---|',
    ...mainRows,
    '',
    `RWKV-7 ms/token at context ${last} ÷ at ${first}: ${flatness.toFixed(2)} (1.00 = flat).`,
    '',
    'GPT-2 with and without its key/value cache. Without it every token reruns the whole context, including the output head over every position.',
    '',
    '| context | with cache ms/token | without cache ms/token | speed-up |',
    '|---|---|---|---|',
    ...cacheRows,
  ].join('\n');
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.stdout.write(`${await runGenerationBench(parseBenchArgs(process.argv.slice(2)))}\n`);
}
