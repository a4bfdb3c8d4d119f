// Reading and writing the two files of a GPT-2 byte-level BPE vocabulary. The same content ships
// under two pairs of names:
//   Hugging Face:  vocab.json   (token -> id)  + merges.txt (one "left right" rule per line)
//   OpenAI GPT-2:  encoder.json (token -> id)  + vocab.bpe  (same format as merges.txt)
// Both merge files start with a "#version: 0.2" line. Tokens are spelled in the byte alphabet of
// byte-unicode.ts, so no token contains a space and the space in a merge line is unambiguous.

import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** File names of one vocabulary format. */
export interface VocabFileNames {
  vocab: string;
  merges: string;
}

export const HUGGING_FACE_FILE_NAMES: VocabFileNames = { vocab: 'vocab.json', merges: 'merges.txt' };
export const OPENAI_FILE_NAMES: VocabFileNames = { vocab: 'encoder.json', merges: 'vocab.bpe' };

const MERGES_HEADER = '#version: 0.2';

/** Parsed vocabulary files: token -> id, and merge rules in rank order. */
export interface BpeVocabulary {
  vocab: Map<string, number>;
  merges: Array<[left: string, right: string]>;
}

/**
 * Returns the paths of the vocabulary files in `dir`, preferring the Hugging Face names, or throws
 * an error naming the folder and which files are missing.
 */
export function findVocabFiles(dir: string): { vocabPath: string; mergesPath: string } {
  for (const names of [HUGGING_FACE_FILE_NAMES, OPENAI_FILE_NAMES]) {
    const vocabPath = join(dir, names.vocab);
    const mergesPath = join(dir, names.merges);
    if (existsSync(vocabPath) && existsSync(mergesPath)) return { vocabPath, mergesPath };
  }

  const describe = (names: VocabFileNames): string => {
    const missing = [names.vocab, names.merges].filter((name) => !existsSync(join(dir, name)));
    return `${names.vocab} + ${names.merges} (missing: ${missing.join(', ')})`;
  };
  throw new Error(
    `Gpt2Tokenizer.fromFolder: no tokenizer files found in folder "${dir}"; ` +
      `expected ${describe(HUGGING_FACE_FILE_NAMES)} or ${describe(OPENAI_FILE_NAMES)}`,
  );
}

/** Reads and parses a vocabulary file pair. */
export function readVocabFiles(vocabPath: string, mergesPath: string): BpeVocabulary {
  return {
    vocab: parseVocabJson(readFileSync(vocabPath, 'utf8'), vocabPath),
    merges: parseMerges(readFileSync(mergesPath, 'utf8'), mergesPath),
  };
}

/** Parses vocab.json / encoder.json text: one JSON object mapping token strings to integer ids. */
export function parseVocabJson(text: string, source: string): Map<string, number> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new Error(`parseVocabJson: ${source} is not valid JSON (${(error as Error).message})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new Error(`parseVocabJson: ${source} must contain a JSON object mapping tokens to ids`);
  }

  const vocab = new Map<string, number>();
  for (const [token, id] of Object.entries(parsed)) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) {
      throw new Error(`parseVocabJson: ${source} maps ${JSON.stringify(token)} to ${JSON.stringify(id)}; ids must be non-negative integers`);
    }
    vocab.set(token, id);
  }
  return vocab;
}

/**
 * Parses merges.txt / vocab.bpe text: an optional "#version" first line, then one rule per line,
 * two tokens separated by one space. Empty lines (the usual trailing newline) are skipped. Accepts
 * LF and CRLF line ends.
 */
export function parseMerges(text: string, source: string): Array<[string, string]> {
  const lines = text.split(/\r?\n/);
  const merges: Array<[string, string]> = [];
  lines.forEach((line, index) => {
    if (line === '' || (index === 0 && line.startsWith('#version'))) return;
    const parts = line.split(' ');
    if (parts.length !== 2 || parts[0] === '' || parts[1] === '') {
      throw new Error(
        `parseMerges: ${source} line ${index + 1} must be two tokens separated by one space, got ${JSON.stringify(line)}`,
      );
    }
    merges.push([parts[0], parts[1]]);
  });
  return merges;
}

/** Formats tokens (index = id) as vocab.json: one entry per line, in id order. */
export function formatVocabJson(tokens: readonly string[]): string {
  // Built by hand: JSON.stringify of an object would move integer-like keys such as "0" to the front.
  const entries = tokens.map((token, id) => `  ${JSON.stringify(token)}: ${id}`);
  return `{\n${entries.join(',\n')}\n}\n`;
}

/** Formats merge rules as merges.txt with the usual version header. */
export function formatMerges(merges: ReadonlyArray<readonly [string, string]>): string {
  const lines = merges.map(([left, right]) => `${left} ${right}`);
  return `${MERGES_HEADER}\n${lines.join('\n')}\n`;
}

/** Writes vocab.json and merges.txt (Hugging Face names) into `dir`, creating it if needed. */
export function writeVocabFiles(dir: string, tokens: readonly string[], merges: ReadonlyArray<readonly [string, string]>): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, HUGGING_FACE_FILE_NAMES.vocab), formatVocabJson(tokens), 'utf8');
  writeFileSync(join(dir, HUGGING_FACE_FILE_NAMES.merges), formatMerges(merges), 'utf8');
}
