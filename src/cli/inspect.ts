// `rwkvify generate`, `rwkvify tokenize` and `rwkvify logits`: using and inspecting a model folder.

import { InputError } from '../data/input-error.js';
import { generate } from '../models/sampling.js';
import type { Gpt2Tokenizer } from '../tokenizer/index.js';
import { loadModelFolder, loadTokenizer, resolveModelFolder, type LoadedModel } from './model-folder.js';

function warnBundledTokenizer(loaded: { tokenizerSource: 'folder' | 'bundled' }, dir: string | undefined): void {
  if (loaded.tokenizerSource !== 'bundled') return;
  const where = dir === undefined ? 'no --model given' : `"${dir}" has no tokenizer files (vocab.json + merges.txt)`;
  process.stderr.write(`note: ${where}; using the bundled GPT-2 tokenizer\n`);
}

/**
 * Encodes user text. A literal "<|endoftext|>" becomes the single end-of-text id, so a prompt can
 * start a fresh document the way training data does.
 */
function encodeText(tokenizer: Gpt2Tokenizer, text: string): number[] {
  return tokenizer.encode(text, { specialTokens: 'allow' });
}

function loadWithNote(dir: string): LoadedModel {
  const loaded = loadModelFolder(dir);
  warnBundledTokenizer(loaded, loaded.dir);
  return loaded;
}

// ---------------------------------------------------------------------------------------------------
// generate

export interface GenerateCommandOptions {
  model: string;
  prompt: string;
  maxTokens: number;
  temperature: number;
  topK?: number;
  topP: number;
  seed: number;
}

/** Streams generated text to stdout, one token at a time, holding back incomplete UTF-8 sequences. */
export function runGenerate(options: GenerateCommandOptions): number {
  const { model, tokenizer } = loadWithNote(options.model);
  let prompt = encodeText(tokenizer, options.prompt);
  if (prompt.length === 0) {
    process.stderr.write('note: the prompt is empty; starting from <|endoftext|>\n');
    prompt = [tokenizer.eotId];
  }
  // A student converted with --positions keep reads the teacher's position table, which ends at
  // n_positions; GPT-2 instead crops its context, so only the student needs this check.
  const total = prompt.length + options.maxTokens;
  if (model.arch === 'rwkv7-student' && total > model.maxSequenceLength) {
    throw new InputError(
      `generate: the prompt (${prompt.length} tokens) plus --max-tokens ${options.maxTokens} needs ${total} positions, ` +
        `but this student was converted with --positions keep and has ${model.maxSequenceLength}; ` +
        `lower --max-tokens, or convert with --positions clamp or drop to run past the teacher's limit`,
    );
  }
  const decoder = tokenizer.decoder();
  generate(model.nextLogits(), prompt, {
    maxNewTokens: options.maxTokens,
    temperature: options.temperature,
    topK: options.topK,
    topP: options.topP,
    seed: options.seed,
    onToken: (id) => void process.stdout.write(decoder.push(id)),
  });
  process.stdout.write(decoder.flush() + '\n');
  return 0;
}

// ---------------------------------------------------------------------------------------------------
// tokenize

export interface TokenizeCommandOptions {
  model?: string;
  json: boolean;
}

/** Prints the token ids and token strings of `text`. */
export function runTokenize(text: string, options: TokenizeCommandOptions): number {
  const dir = options.model === undefined ? undefined : resolveModelFolder(options.model);
  const loaded = loadTokenizer(dir);
  warnBundledTokenizer({ tokenizerSource: loaded.source }, dir);
  const ids = encodeText(loaded.tokenizer, text);
  const tokens = loaded.tokenizer.tokenStrings(ids);
  if (options.json) {
    console.log(JSON.stringify({ ids, tokens }));
    return 0;
  }
  const idWidth = Math.max(2, ...ids.map((id) => String(id).length));
  console.log(`${'id'.padStart(idWidth)}  token`);
  ids.forEach((id, i) => console.log(`${String(id).padStart(idWidth)}  "${tokens[i]}"`));
  console.log(`${ids.length} tokens`);
  return 0;
}

// ---------------------------------------------------------------------------------------------------
// logits

export interface LogitsCommandOptions {
  model: string;
  prompt?: string;
  ids?: number[];
  topK: number;
  json: boolean;
  mode: 'sequence' | 'rnn';
}

interface RankedToken {
  id: number;
  token: string;
  probability: number;
  logit: number;
}

/**
 * Returns the indices of the k largest values of row `offset` (ties: lower index first) by
 * insertion into a sorted list of k, which costs O(V·k) instead of sorting all V entries.
 */
function topIndices(values: ArrayLike<number>, offset: number, V: number, k: number): number[] {
  const top: number[] = [];
  for (let v = 0; v < V; v++) {
    const value = values[offset + v];
    if (top.length === k && value <= values[offset + top[k - 1]]) continue;
    let position = top.length;
    while (position > 0 && value > values[offset + top[position - 1]]) position--;
    top.splice(position, 0, v);
    if (top.length > k) top.pop();
  }
  return top;
}

/** Returns the k most probable next tokens of one row of logits, with softmax probabilities. */
function topTokens(logits: ArrayLike<number>, offset: number, V: number, k: number, tokenizer: Gpt2Tokenizer): RankedToken[] {
  let max = -Infinity;
  for (let v = 0; v < V; v++) max = Math.max(max, logits[offset + v]);
  let sum = 0;
  for (let v = 0; v < V; v++) sum += Math.exp(logits[offset + v] - max);

  return topIndices(logits, offset, V, k).map((id) => ({
    id,
    token: tokenizer.tokenStrings([id])[0],
    probability: Math.exp(logits[offset + id] - max) / sum,
    logit: logits[offset + id],
  }));
}

/** Formats 0.1234 as "0.1234" and values below 0.001 in exponent form ("2.0e-5"), which fixed notation would show as 0. */
function formatProbability(p: number): string {
  return p >= 0.001 ? p.toFixed(4) : p.toExponential(1);
}

function inputIds(options: LogitsCommandOptions, tokenizer: Gpt2Tokenizer, vocabSize: number): number[] {
  if (options.prompt !== undefined && options.ids !== undefined) throw new InputError('logits: pass either --prompt or --ids, not both');
  if (options.prompt === undefined && options.ids === undefined) throw new InputError('logits: pass the input as --prompt TEXT or --ids 1,2,3');
  const ids = options.ids ?? encodeText(tokenizer, options.prompt ?? '');
  if (ids.length === 0) throw new InputError('logits: the input has no tokens; give a non-empty --prompt or --ids');
  const bad = ids.findIndex((id) => id >= vocabSize);
  if (bad !== -1) throw new InputError(`logits: token id ${ids[bad]} (item ${bad + 1} of --ids) is outside the vocabulary [0, ${vocabSize})`);
  return ids;
}

/**
 * Prints, for each input position, the token there and the top-k next tokens with their
 * probabilities. `--json` adds the full logits of the last position.
 */
export function runLogits(options: LogitsCommandOptions): number {
  const { dir, model, tokenizer } = loadWithNote(options.model);
  const V = model.vocabSize;
  const ids = inputIds(options, tokenizer, V);
  // Both modes are bounded: GPT-2's key/value cache has as many positions as its wpe table.
  if (ids.length > model.maxSequenceLength) {
    throw new InputError(`logits: ${ids.length} tokens exceed the ${model.maxSequenceLength} positions of this ${model.arch} model; shorten the input`);
  }
  const logits = options.mode === 'sequence' ? model.sequenceLogits(ids) : model.recurrentLogits(ids); // (T, V)
  const tokens = tokenizer.tokenStrings(ids);
  const positions = ids.map((id, t) => ({ position: t, id, token: tokens[t], next: topTokens(logits, t * V, V, options.topK, tokenizer) }));

  if (options.json) {
    const last = Array.from(logits.subarray((ids.length - 1) * V, ids.length * V));
    console.log(JSON.stringify({ model: dir, arch: model.arch, mode: options.mode, ids, positions, lastLogits: last }));
    return 0;
  }
  console.log(`${model.arch} model ${dir}, ${options.mode} mode, top ${options.topK} next tokens per position`);
  for (const p of positions) {
    const next = p.next.map((r) => `"${r.token}" ${formatProbability(r.probability)}`).join(' | ');
    console.log(`${String(p.position).padStart(4)}  ${String(p.id).padStart(5)}  "${p.token}"  →  ${next}`);
  }
  return 0;
}
