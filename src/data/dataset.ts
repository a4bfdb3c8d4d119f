// Token dataset for language-model training. The corpus is tokenized once into a binary cache and
// split into training and held-out ranges by document. Batches come from a seeded sampler whose
// state goes into checkpoints, so a resumed run draws the same batches.
//
// Layout of the cache folder (`<out>/data-cache/`):
//   tokens.u16 or tokens.i32   all token ids, little-endian; uint16 when every id fits (V ≤ 65536)
//   manifest.json              source files (path, size, mtime), tokenizer hash, document starts
// The manifest is written last, so an interrupted build leaves no manifest and is redone.

import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { writeFileAtomic } from '../io/atomic.js';
import { Rng } from '../tensor/index.js';
import type { Gpt2Tokenizer } from '../tokenizer/index.js';
import { type CorpusFile, DEFAULT_EXTENSIONS, listCorpusFiles, readUtf8File, splitDocuments } from './corpus.js';
import { InputError } from './input-error.js';

/** Token ids as stored in the cache. */
export type TokenArray = Uint16Array | Int32Array;

/** Version of the cache layout; a cache with another version is rebuilt. */
const CACHE_FORMAT = 1;

const MANIFEST_NAME = 'manifest.json';

interface CacheManifest {
  format: number;
  tokenizerHash: string;
  eotId: number;
  dtype: 'uint16' | 'int32';
  tokenCount: number;
  files: CorpusFile[];
  /** Token index where each document starts; documents are contiguous and in corpus order. */
  documentStarts: number[];
}

/** A tokenized corpus. */
export interface TokenCorpus {
  tokens: TokenArray;
  documentStarts: number[];
  files: CorpusFile[];
  cacheDir: string;
  /** True when an existing cache matched the corpus and tokenizer and was reused. */
  reused: boolean;
}

export interface LoadCorpusOptions {
  /** Files and folders to read. */
  paths: readonly string[];
  /** Folder that contains `data-cache/` (the run's output folder). */
  outDir: string;
  tokenizer: Gpt2Tokenizer;
  /** Extensions read from folders; default .txt and .md. */
  extensions?: readonly string[];
  /** Tokens the caller needs at least (B·(T+1) for one training batch); named in the empty-corpus error. */
  requiredTokens: number;
  /**
   * Purpose of the tokens and the rule behind `requiredTokens`, for the empty-corpus error
   * (default: training on batches of B·(T+1) tokens).
   */
  purpose?: CorpusPurpose;
  /** Receives one status line per stage (listing, tokenizing, reuse). */
  log?: (line: string) => void;
}

/** The use of a corpus, as the empty-corpus error states it. */
export interface CorpusPurpose {
  /** Completes "there are no tokens to …", such as "train on" or "score". */
  use: string;
  /** Rule that gives the required token count from the options, such as "--seq-len + 1". */
  rule: string;
}

const TRAINING_PURPOSE: CorpusPurpose = { use: 'train on', rule: 'batch size × (sequence length + 1)' };

// ---------------------------------------------------------------------------------------------------
// Tokenizer fingerprint

/**
 * Returns a SHA-256 hex digest of the tokenizer's vocabulary and merges, as written by
 * `saveToFolder`, so the same tokenizer gives the same hash whichever file format it was read from.
 */
export function tokenizerHash(tokenizer: Gpt2Tokenizer): string {
  const folder = mkdtempSync(join(tmpdir(), 'rwkvify-tokenizer-'));
  try {
    tokenizer.saveToFolder(folder);
    const hash = createHash('sha256');
    hash.update(readFileSync(join(folder, 'vocab.json')));
    hash.update(readFileSync(join(folder, 'merges.txt')));
    return hash.digest('hex');
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------------
// Cache

/**
 * Returns the tokenized corpus, reusing `<outDir>/data-cache/` when its manifest lists the same
 * files (path, size, modification time) and the same tokenizer hash, and rebuilding it otherwise.
 * Each document is followed by the end-of-text id (50256 for GPT-2), written as the id itself,
 * never as the text "<|endoftext|>".
 */
export function loadTokenCorpus(options: LoadCorpusOptions): TokenCorpus {
  const log = options.log ?? ((): void => {});
  const extensions = options.extensions ?? DEFAULT_EXTENSIONS;
  const files = listCorpusFiles(options.paths, extensions);
  const cacheDir = join(options.outDir, 'data-cache');
  const hash = tokenizerHash(options.tokenizer);

  const cached = readCache(cacheDir, files, hash, options.tokenizer.eotId);
  if (cached !== undefined) {
    log(`data: reusing token cache ${cacheDir} (${cached.tokens.length.toLocaleString('en-US')} tokens, ${files.length} files)`);
    return { ...cached, files, cacheDir, reused: true };
  }

  log(`data: tokenizing ${files.length} file(s) into ${cacheDir}`);
  const built = tokenizeFiles(files, options.tokenizer);
  if (built.tokens.length === 0) throw emptyCorpusError(options, files.length, extensions);
  writeCache(cacheDir, files, hash, options.tokenizer.eotId, built);
  return { ...built, files, cacheDir, reused: false };
}

function emptyCorpusError(options: LoadCorpusOptions, fileCount: number, extensions: readonly string[]): InputError {
  const purpose = options.purpose ?? TRAINING_PURPOSE;
  const problem =
    fileCount === 0
      ? `there are no files with the extensions ${extensions.join(', ')} (--extensions)`
      : fileCount === 1
        ? 'the file is empty or contains only whitespace'
        : `all ${fileCount} files are empty or contain only whitespace`;
  return new InputError(
    `no text found in ${options.paths.map((p) => `"${p}"`).join(', ')}: ${problem}, ` +
      `so there are no tokens to ${purpose.use}; pass text with at least ${options.requiredTokens.toLocaleString('en-US')} tokens (${purpose.rule})`,
  );
}

/** A growable Int32Array, so a large corpus costs 4 bytes per token while it is collected. */
class TokenBuffer {
  private data = new Int32Array(1 << 16);
  length = 0;

  append(ids: readonly number[]): void {
    if (this.length + ids.length > this.data.length) {
      const grown = new Int32Array(Math.max(2 * this.data.length, this.length + ids.length));
      grown.set(this.data.subarray(0, this.length));
      this.data = grown;
    }
    this.data.set(ids, this.length);
    this.length += ids.length;
  }

  /** Returns the tokens as uint16 when every id fits (vocabulary ≤ 65536), else as int32. */
  finish(vocabSize: number): TokenArray {
    const used = this.data.subarray(0, this.length);
    return vocabSize <= 65536 ? Uint16Array.from(used) : used.slice();
  }
}

function tokenizeFiles(files: readonly CorpusFile[], tokenizer: Gpt2Tokenizer): { tokens: TokenArray; documentStarts: number[] } {
  const buffer = new TokenBuffer();
  const documentStarts: number[] = [];
  for (const file of files) {
    for (const document of splitDocuments(readUtf8File(file.path))) {
      documentStarts.push(buffer.length);
      buffer.append(tokenizer.encode(document));
      buffer.append([tokenizer.eotId]);
    }
  }
  return { tokens: buffer.finish(tokenizer.vocabSize), documentStarts };
}

function tokenFileName(dtype: CacheManifest['dtype']): string {
  return dtype === 'uint16' ? 'tokens.u16' : 'tokens.i32';
}

function writeCache(
  cacheDir: string,
  files: readonly CorpusFile[],
  hash: string,
  eotId: number,
  built: { tokens: TokenArray; documentStarts: number[] },
): void {
  mkdirSync(cacheDir, { recursive: true });
  const dtype = built.tokens instanceof Uint16Array ? 'uint16' : 'int32';
  // Remove the old manifest first, so a crash between the two writes cannot pair it with new tokens.
  rmSync(join(cacheDir, MANIFEST_NAME), { force: true });
  writeFileAtomic(join(cacheDir, tokenFileName(dtype)), littleEndianBytes(built.tokens));
  const manifest: CacheManifest = {
    format: CACHE_FORMAT,
    tokenizerHash: hash,
    eotId,
    dtype,
    tokenCount: built.tokens.length,
    files: [...files],
    documentStarts: built.documentStarts,
  };
  writeFileAtomic(join(cacheDir, MANIFEST_NAME), JSON.stringify(manifest, null, 1) + '\n');
}

/** Returns the cached tokens when the manifest matches `files` and `hash`, else undefined. */
function readCache(
  cacheDir: string,
  files: readonly CorpusFile[],
  hash: string,
  eotId: number,
): { tokens: TokenArray; documentStarts: number[] } | undefined {
  const manifestPath = join(cacheDir, MANIFEST_NAME);
  if (!existsSync(manifestPath)) return undefined;
  let manifest: CacheManifest;
  try {
    manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as CacheManifest;
  } catch {
    return undefined; // an unreadable manifest only costs a rebuild
  }
  if (manifest.format !== CACHE_FORMAT || manifest.tokenizerHash !== hash || manifest.eotId !== eotId) return undefined;
  if (!sameFiles(manifest.files, files)) return undefined;

  const tokenPath = join(cacheDir, tokenFileName(manifest.dtype));
  if (!existsSync(tokenPath)) return undefined;
  const bytes = readFileSync(tokenPath);
  const bytesPerToken = manifest.dtype === 'uint16' ? 2 : 4;
  if (bytes.length !== manifest.tokenCount * bytesPerToken) return undefined;
  return { tokens: tokensFromBytes(bytes, manifest.dtype), documentStarts: manifest.documentStarts };
}

function sameFiles(a: readonly CorpusFile[] | undefined, b: readonly CorpusFile[]): boolean {
  if (!Array.isArray(a) || a.length !== b.length) return false;
  return a.every((file, i) => file.path === b[i].path && file.size === b[i].size && file.mtimeMs === b[i].mtimeMs);
}

function littleEndianBytes(tokens: TokenArray): Uint8Array {
  const bytes = new Uint8Array(tokens.byteLength);
  const view = new DataView(bytes.buffer);
  if (tokens instanceof Uint16Array) {
    tokens.forEach((id, i) => view.setUint16(2 * i, id, true));
  } else {
    tokens.forEach((id, i) => view.setInt32(4 * i, id, true));
  }
  return bytes;
}

function tokensFromBytes(bytes: Uint8Array, dtype: CacheManifest['dtype']): TokenArray {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dtype === 'uint16') {
    const tokens = new Uint16Array(bytes.length / 2);
    for (let i = 0; i < tokens.length; i++) tokens[i] = view.getUint16(2 * i, true);
    return tokens;
  }
  const tokens = new Int32Array(bytes.length / 4);
  for (let i = 0; i < tokens.length; i++) tokens[i] = view.getInt32(4 * i, true);
  return tokens;
}

// ---------------------------------------------------------------------------------------------------
// Held-out split

/** Half-open token ranges [start, end) of the training and held-out parts. */
export interface DataSplit {
  train: { start: number; end: number };
  validation: { start: number; end: number };
  /** Unit of the held-out part: whole documents, or the token tail of a one-document corpus. */
  unit: 'documents' | 'tokens';
  /** Number of held-out documents (0 when `unit` is 'tokens'). */
  validationDocuments: number;
}

/**
 * Holds out the last `valFraction` of the documents (at least one, and never all of them). A
 * corpus of a single document cannot be split by document, so its last `valFraction` of tokens is
 * held out instead. `valFraction` 0 gives an empty held-out range.
 */
export function splitHeldOut(tokenCount: number, documentStarts: readonly number[], valFraction: number): DataSplit {
  if (!(valFraction >= 0 && valFraction < 1)) {
    throw new InputError(`dataset: the held-out fraction must be in [0, 1), got ${valFraction}`);
  }
  if (valFraction === 0) {
    return { train: { start: 0, end: tokenCount }, validation: { start: tokenCount, end: tokenCount }, unit: 'documents', validationDocuments: 0 };
  }
  const documents = documentStarts.length;
  if (documents < 2) {
    const boundary = tokenCount - Math.max(1, Math.round(tokenCount * valFraction));
    return { train: { start: 0, end: boundary }, validation: { start: boundary, end: tokenCount }, unit: 'tokens', validationDocuments: 0 };
  }
  const held = Math.min(documents - 1, Math.max(1, Math.round(documents * valFraction)));
  const boundary = documentStarts[documents - held];
  return { train: { start: 0, end: boundary }, validation: { start: boundary, end: tokenCount }, unit: 'documents', validationDocuments: held };
}

// ---------------------------------------------------------------------------------------------------
// Batches

/** B rows of T input ids and the T next-token targets of each row, row-major. */
export interface Batch {
  /** (B, T) input ids. */
  ids: Int32Array;
  /** (B, T) targets: the id that follows each input. */
  targets: Int32Array;
  B: number;
  T: number;
}

/** Sampler state saved in checkpoints. */
export interface SamplerState {
  rng: number[];
  batchesDrawn: number;
}

/** Copies the window tokens[start .. start + T] into row `row` of `batch`. */
function fillRow(batch: Batch, tokens: TokenArray, row: number, start: number): void {
  const { T } = batch;
  for (let t = 0; t < T; t++) {
    batch.ids[row * T + t] = tokens[start + t];
    batch.targets[row * T + t] = tokens[start + t + 1];
  }
}

/**
 * Draws training batches of B random windows of T + 1 tokens from a token range. The windows
 * depend only on the seed and the number of batches drawn, and the state round-trips through
 * `getState`/`setState`, so a resumed run draws the same batches as an uninterrupted one.
 */
export class BatchSampler {
  private readonly rng: Rng;
  private batchesDrawn = 0;

  constructor(
    private readonly tokens: TokenArray,
    private readonly range: { start: number; end: number },
    readonly B: number,
    readonly T: number,
    seed: number,
  ) {
    const available = range.end - range.start;
    const needed = B * (T + 1);
    if (available < needed) {
      throw new InputError(
        `dataset: the training part has ${available.toLocaleString('en-US')} tokens, but one batch needs ` +
          `batch size × (sequence length + 1) = ${B} × ${T + 1} = ${needed.toLocaleString('en-US')}; ` +
          `add text, or lower --batch-size or --seq-len`,
      );
    }
    this.rng = new Rng(seed);
  }

  /** Returns the next batch; each row starts at a uniform position in [start, end − T − 1]. */
  next(): Batch {
    const { B, T } = this;
    const batch: Batch = { ids: new Int32Array(B * T), targets: new Int32Array(B * T), B, T };
    const positions = this.range.end - this.range.start - T; // valid window starts
    for (let row = 0; row < B; row++) fillRow(batch, this.tokens, row, this.range.start + this.rng.int(positions));
    this.batchesDrawn++;
    return batch;
  }

  getState(): SamplerState {
    return { rng: this.rng.getState(), batchesDrawn: this.batchesDrawn };
  }

  setState(state: SamplerState): void {
    this.rng.setState(state.rng);
    this.batchesDrawn = state.batchesDrawn;
  }
}

/**
 * Cuts the held-out range into consecutive windows of T + 1 tokens (stride T, so every held-out
 * token after the first is a target once), grouped into batches of up to B rows, at most
 * `maxBatches` of them. The same windows come back every time, so held-out losses of different
 * steps are comparable. Returns [] for an empty range; a non-empty range shorter than T + 1
 * tokens is an InputError.
 */
export function heldOutBatches(tokens: TokenArray, range: { start: number; end: number }, B: number, T: number, maxBatches: number): Batch[] {
  const available = range.end - range.start;
  if (available === 0) return [];
  if (available < T + 1) {
    throw new InputError(
      `dataset: the held-out part has ${available} tokens, fewer than one window of sequence length + 1 = ${T + 1}; ` +
        `raise --val-fraction, add text, or pass --val-fraction 0 to skip evaluation`,
    );
  }
  const windows = Math.floor((available - 1) / T);
  const batches: Batch[] = [];
  for (let first = 0; first < windows && batches.length < maxBatches; first += B) {
    const rows = Math.min(B, windows - first);
    const batch: Batch = { ids: new Int32Array(rows * T), targets: new Int32Array(rows * T), B: rows, T };
    for (let row = 0; row < rows; row++) fillRow(batch, tokens, row, range.start + (first + row) * T);
    batches.push(batch);
  }
  return batches;
}
