// Reading a text corpus from the files and folders given on the command line. Every file must be
// valid UTF-8: a byte-level tokenizer would accept anything, so a Latin-1 or UTF-16 file would
// otherwise train the model on mojibake without a word of warning.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join, resolve } from 'node:path';

import { END_OF_TEXT } from '../tokenizer/index.js';
import { utf8SequenceLength } from '../tokenizer/utf8.js';
import { InputError } from './input-error.js';

/** File extensions read from folders when none are given; files named directly are always read. */
export const DEFAULT_EXTENSIONS: readonly string[] = ['.txt', '.md'];

/** One corpus file with the facts that decide whether a token cache is still valid. */
export interface CorpusFile {
  /** Absolute path. */
  path: string;
  /** Size in bytes. */
  size: number;
  /** Last modification time in milliseconds since the Unix epoch. */
  mtimeMs: number;
}

// ---------------------------------------------------------------------------------------------------
// Listing files

/**
 * Lists the corpus files under `paths`, in command-line order. A file path is read whatever its
 * extension. A folder is walked recursively in sorted name order, keeping files whose extension
 * is in `extensions`. Hidden entries (names starting with ".") are skipped, and so are symbolic
 * links to folders because they could form cycles, and model folders (config.json beside
 * model.safetensors) found inside it. A file reached twice is listed once.
 */
export function listCorpusFiles(paths: readonly string[], extensions: readonly string[] = DEFAULT_EXTENSIONS): CorpusFile[] {
  if (paths.length === 0) throw new InputError('corpus: no data paths given; pass one or more text files or folders');
  const accepted = new Set(extensions.map((extension) => extension.toLowerCase()));
  const files: CorpusFile[] = [];
  const seen = new Set<string>();

  const add = (path: string): void => {
    if (seen.has(path)) return;
    seen.add(path);
    const stats = statSync(path);
    files.push({ path, size: stats.size, mtimeMs: stats.mtimeMs });
  };

  for (const given of paths) {
    const path = resolve(given);
    const stats = statOrUndefined(path);
    if (stats === undefined) throw new InputError(`corpus: data path "${given}" does not exist`);
    if (stats.isDirectory()) {
      for (const file of walkFolder(path, accepted)) add(file);
    } else if (stats.isFile()) {
      add(path);
    } else {
      throw new InputError(`corpus: data path "${given}" is neither a file nor a folder`);
    }
  }
  return files;
}

function statOrUndefined(path: string): ReturnType<typeof statSync> | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}

function compareNames(a: { name: string }, b: { name: string }): number {
  if (a.name === b.name) return 0;
  return a.name < b.name ? -1 : 1;
}

/**
 * Returns whether `entries` make a model folder (config.json beside model.safetensors). Its
 * merges.txt is a tokenizer file, so a run folder inside a corpus folder must not become data.
 */
function isModelFolder(entries: ReadonlyArray<{ name: string }>): boolean {
  const names = new Set(entries.map((entry) => entry.name));
  return names.has('config.json') && names.has('model.safetensors');
}

/**
 * Yields the files under `folder` with an accepted extension, depth first in sorted name order.
 * Model folders below the top level are skipped.
 */
function* walkFolder(folder: string, extensions: ReadonlySet<string>, depth = 0): Generator<string> {
  const entries = readdirSync(folder, { withFileTypes: true }).sort(compareNames);
  if (depth > 0 && isModelFolder(entries)) return;
  for (const entry of entries) {
    if (entry.name.startsWith('.')) continue;
    const path = join(folder, entry.name);
    if (entry.isDirectory()) {
      yield* walkFolder(path, extensions, depth + 1);
      continue;
    }
    const isFile = entry.isFile() || (entry.isSymbolicLink() && statOrUndefined(path)?.isFile() === true);
    if (isFile && extensions.has(extname(entry.name).toLowerCase())) yield path;
  }
}

// ---------------------------------------------------------------------------------------------------
// Strict UTF-8

/**
 * Returns the byte offset of the first invalid or truncated UTF-8 sequence in `bytes`, or -1 when
 * all of it is well-formed (overlong forms, surrogates and code points above U+10FFFF are invalid).
 */
export function findInvalidUtf8(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    // ASCII fast path: most corpus bytes are below 0x80.
    if (bytes[i] < 0x80) {
      i++;
      continue;
    }
    const length = utf8SequenceLength(bytes, i);
    if (length === 0) return i;
    i += length;
  }
  return -1;
}

/**
 * Reads a file as strict UTF-8 (a leading byte-order mark is dropped). Invalid bytes throw an
 * InputError with the path, the offset of the first bad sequence and how to convert the file.
 */
export function readUtf8File(path: string): string {
  const bytes = readFileSync(path);
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    const offset = findInvalidUtf8(bytes);
    const shown = Array.from(bytes.subarray(offset, offset + 4), (byte) => byte.toString(16).toUpperCase().padStart(2, '0')).join(' ');
    throw new InputError(
      `corpus: "${path}" is not valid UTF-8: the byte sequence at offset ${offset} (${shown}) is invalid. ` +
        `Convert the file to UTF-8 first, for example: iconv -f latin1 -t utf-8 "${path}" > converted.txt`,
    );
  }
}

/**
 * Splits a file's text into documents at each literal `<|endoftext|>` (the separator GPT-2 style
 * corpora use), dropping documents that are empty or only whitespace.
 */
export function splitDocuments(text: string): string[] {
  return text.split(END_OF_TEXT).filter((document) => document.trim().length > 0);
}

/** Formats a byte count as "1.2 MB" for status lines. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}
