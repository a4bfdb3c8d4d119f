// Data pipeline: corpus listing, strict UTF-8, the token cache, the held-out split and batches.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { findInvalidUtf8, listCorpusFiles, readUtf8File, splitDocuments } from '../src/data/corpus.js';
import { BatchSampler, heldOutBatches, loadTokenCorpus, splitHeldOut, tokenizerHash } from '../src/data/dataset.js';
import { InputError } from '../src/data/input-error.js';
import { Gpt2Tokenizer } from '../src/tokenizer/index.js';
import { BYTE_TO_CHAR } from '../src/tokenizer/byte-unicode.js';

let root: string;
let gpt2: Gpt2Tokenizer;
/** A byte-only tokenizer (256 byte tokens + <|endoftext|> = 256, no merges): cheap and different from GPT-2's. */
let bytesOnly: Gpt2Tokenizer;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'rwkvify-data-'));
  gpt2 = Gpt2Tokenizer.bundled();
  const vocab = new Map<string, number>(BYTE_TO_CHAR.map((char, byte) => [char, byte]));
  vocab.set('<|endoftext|>', 256);
  bytesOnly = Gpt2Tokenizer.fromVocabulary({ vocab, merges: [] }, 'byte-only test vocabulary');
});

afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

/** Creates a fresh folder under the test root. */
function folder(name: string): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  return dir;
}

function captureError(fn: () => unknown): Error {
  try {
    fn();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected the call to throw');
}

describe('corpus files', () => {
  it('walks folders recursively by extension', () => {
    const dir = folder('walk');
    mkdirSync(join(dir, 'sub', 'deeper'), { recursive: true });
    mkdirSync(join(dir, '.hidden'));
    writeFileSync(join(dir, 'b.txt'), 'b');
    writeFileSync(join(dir, 'a.md'), 'a');
    writeFileSync(join(dir, 'skip.json'), '{}');
    writeFileSync(join(dir, 'sub', 'deeper', 'c.TXT'), 'c');
    writeFileSync(join(dir, '.hidden', 'd.txt'), 'd');
    const explicit = join(dir, 'skip.json');

    const files = listCorpusFiles([dir, explicit, join(dir, 'b.txt')]).map((f) => f.path);
    expect(files).toEqual([join(dir, 'a.md'), join(dir, 'b.txt'), join(dir, 'sub', 'deeper', 'c.TXT'), explicit]);
  });

  it('skips model folders inside a corpus folder', () => {
    const dir = folder('with-run');
    mkdirSync(join(dir, 'run', 'model'), { recursive: true });
    writeFileSync(join(dir, 'text.txt'), 'text');
    writeFileSync(join(dir, 'run', 'model', 'config.json'), '{}');
    writeFileSync(join(dir, 'run', 'model', 'model.safetensors'), '');
    writeFileSync(join(dir, 'run', 'model', 'merges.txt'), '#version: 0.2');
    const files = listCorpusFiles([dir]).map((f) => f.path);
    expect(files).toEqual([join(dir, 'text.txt')]);
  });

  it('rejects a missing path', () => {
    const error = captureError(() => listCorpusFiles([join(root, 'nope')]));
    expect(error).toBeInstanceOf(InputError);
    expect(error.message).toContain('nope');
    expect(error.message).toContain('does not exist');
  });

  it('finds the first invalid UTF-8 offset', () => {
    expect(findInvalidUtf8(new TextEncoder().encode('héllo 地 🌍'))).toBe(-1);
    expect(findInvalidUtf8(Uint8Array.from([0x61, 0x62, 0xff, 0x63]))).toBe(2);
    // Overlong "/" (C0 AF), a surrogate (ED A0 80) and a truncated sequence at the end.
    expect(findInvalidUtf8(Uint8Array.from([0x61, 0xc0, 0xaf]))).toBe(1);
    expect(findInvalidUtf8(Uint8Array.from([0x61, 0x62, 0x63, 0xed, 0xa0, 0x80]))).toBe(3);
    expect(findInvalidUtf8(Uint8Array.from([0x61, 0xe5, 0x9c]))).toBe(1);
  });

  it('reports a Latin-1 file with its offset', () => {
    const path = join(folder('latin1'), 'cafe.txt');
    writeFileSync(path, Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x0a])); // "café\n" in Latin-1
    const error = captureError(() => readUtf8File(path));
    expect(error).toBeInstanceOf(InputError);
    expect(error.message).toContain(path);
    expect(error.message).toContain('offset 3');
    expect(error.message).toContain('E9 0A');
    expect(error.message).toContain('iconv');
  });

  it('drops a byte-order mark', () => {
    const path = join(folder('bom'), 'bom.txt');
    writeFileSync(path, Buffer.from([0xef, 0xbb, 0xbf, 0x68, 0x69]));
    expect(readUtf8File(path)).toBe('hi');
  });

  it('splits documents at <|endoftext|>', () => {
    expect(splitDocuments('one<|endoftext|>two\n<|endoftext|>  \n<|endoftext|>')).toEqual(['one', 'two\n']);
  });
});

describe('token cache', () => {
  it('joins documents with the end-of-text id', () => {
    const dir = folder('join');
    writeFileSync(join(dir, 'a.txt'), 'ab<|endoftext|>c');
    writeFileSync(join(dir, 'b.txt'), 'd');
    const corpus = loadTokenCorpus({ paths: [dir], outDir: folder('join-out'), tokenizer: bytesOnly, requiredTokens: 1 });
    // Byte tokens have the byte's value as id; 256 is <|endoftext|>.
    expect(Array.from(corpus.tokens)).toEqual([97, 98, 256, 99, 256, 100, 256]);
    expect(corpus.documentStarts).toEqual([0, 3, 5]);
    expect(corpus.tokens).toBeInstanceOf(Uint16Array);
  });

  it('reuses and rebuilds the cache', () => {
    const dir = folder('cache');
    const out = folder('cache-out');
    const file = join(dir, 'a.txt');
    writeFileSync(file, 'Hello world. The cat sat on the mat.');
    const options = { paths: [dir], outDir: out, tokenizer: gpt2, requiredTokens: 1 };

    const first = loadTokenCorpus(options);
    expect(first.reused).toBe(false);
    expect(Array.from(first.tokens)).toEqual([...gpt2.encode('Hello world. The cat sat on the mat.'), 50256]);
    const manifest = JSON.parse(readFileSync(join(out, 'data-cache', 'manifest.json'), 'utf8')) as { tokenizerHash: string; files: Array<{ path: string }> };
    expect(manifest.tokenizerHash).toBe(tokenizerHash(gpt2));
    expect(manifest.files.map((f) => f.path)).toEqual([file]);
    expect(readFileSync(join(out, 'data-cache', 'tokens.u16')).length).toBe(2 * first.tokens.length);

    const second = loadTokenCorpus(options);
    expect(second.reused).toBe(true);
    expect(Array.from(second.tokens)).toEqual(Array.from(first.tokens));

    // Same size, new contents and a new modification time: the cache must be rebuilt.
    writeFileSync(file, 'Hello world. The dog sat on the mat.');
    utimesSync(file, new Date(), new Date(Date.now() + 5000));
    const third = loadTokenCorpus(options);
    expect(third.reused).toBe(false);
    expect(Array.from(third.tokens)).toEqual([...gpt2.encode('Hello world. The dog sat on the mat.'), 50256]);

    // A new file in the folder changes the file list.
    writeFileSync(join(dir, 'b.txt'), 'More.');
    expect(loadTokenCorpus(options).reused).toBe(false);

    // Another tokenizer changes the hash.
    const other = loadTokenCorpus({ ...options, tokenizer: bytesOnly });
    expect(other.reused).toBe(false);
    expect(other.tokens[other.tokens.length - 1]).toBe(256);
  });

  it('rejects an empty corpus', () => {
    const dir = folder('empty');
    writeFileSync(join(dir, 'blank.txt'), '  \n\n');
    const error = captureError(() => loadTokenCorpus({ paths: [dir], outDir: folder('empty-out'), tokenizer: bytesOnly, requiredTokens: 4 * 65 }));
    expect(error).toBeInstanceOf(InputError);
    expect(error.message).toContain(dir);
    expect(error.message).toContain('260 tokens');
  });

  it('rejects a folder with no text files', () => {
    const dir = folder('nothing');
    writeFileSync(join(dir, 'data.bin'), 'x');
    const error = captureError(() => loadTokenCorpus({ paths: [dir], outDir: folder('nothing-out'), tokenizer: bytesOnly, requiredTokens: 10 }));
    expect(error).toBeInstanceOf(InputError);
    expect(error.message).toContain('no files with the extensions .txt, .md');
  });

  it('states the purpose of an empty corpus', () => {
    const dir = folder('empty-scoring');
    writeFileSync(join(dir, 'empty.txt'), '');
    const purpose = { use: 'score', rule: 'one window of --seq-len + 1' };
    const scoring = captureError(() => loadTokenCorpus({ paths: [dir], outDir: folder('empty-scoring-out'), tokenizer: bytesOnly, requiredTokens: 65, purpose }));
    expect(scoring).toBeInstanceOf(InputError);
    expect(scoring.message).toContain('the file is empty or contains only whitespace');
    expect(scoring.message).toContain('no tokens to score');
    expect(scoring.message).toContain('65 tokens (one window of --seq-len + 1)');
    expect(scoring.message).not.toMatch(/train/);

    const training = captureError(() => loadTokenCorpus({ paths: [dir], outDir: folder('empty-training-out'), tokenizer: bytesOnly, requiredTokens: 65 }));
    expect(training.message).toContain('no tokens to train on');
  });
});

describe('held-out split', () => {
  const starts = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90];

  it('holds out the last documents', () => {
    const split = splitHeldOut(100, starts, 0.2);
    expect(split.unit).toBe('documents');
    expect(split.validationDocuments).toBe(2);
    expect(split.train).toEqual({ start: 0, end: 80 });
    expect(split.validation).toEqual({ start: 80, end: 100 });
  });

  it('keeps at least one document on each side', () => {
    expect(splitHeldOut(100, starts, 0.01).validationDocuments).toBe(1);
    expect(splitHeldOut(100, [0, 60], 0.9).validation).toEqual({ start: 60, end: 100 });
  });

  it('splits one document by tokens', () => {
    const split = splitHeldOut(1000, [0], 0.05);
    expect(split.unit).toBe('tokens');
    expect(split.train).toEqual({ start: 0, end: 950 });
    expect(split.validation).toEqual({ start: 950, end: 1000 });
  });

  it('holds out nothing at fraction 0', () => {
    const split = splitHeldOut(100, starts, 0);
    expect(split.train).toEqual({ start: 0, end: 100 });
    expect(split.validation.end - split.validation.start).toBe(0);
  });

  it('rejects a fraction of 1', () => {
    expect(() => splitHeldOut(100, starts, 1)).toThrow(InputError);
  });
});

describe('batches', () => {
  const tokens = Uint16Array.from({ length: 500 }, (_, i) => i);

  it('draws windows with shifted targets', () => {
    const sampler = new BatchSampler(tokens, { start: 100, end: 400 }, 3, 8, 7);
    const batch = sampler.next();
    expect(batch.ids.length).toBe(24);
    for (let row = 0; row < 3; row++) {
      const first = batch.ids[row * 8];
      expect(first).toBeGreaterThanOrEqual(100);
      expect(first + 8).toBeLessThan(400);
      for (let t = 0; t < 8; t++) {
        expect(batch.ids[row * 8 + t]).toBe(first + t);
        expect(batch.targets[row * 8 + t]).toBe(first + t + 1);
      }
    }
  });

  it('reaches both ends of the range', () => {
    const sampler = new BatchSampler(tokens, { start: 0, end: 12 }, 1, 10, 3);
    const starts = new Set<number>();
    for (let i = 0; i < 200; i++) starts.add(sampler.next().ids[0]);
    expect([...starts].sort()).toEqual([0, 1]);
  });

  it('restores its state exactly', () => {
    const a = new BatchSampler(tokens, { start: 0, end: 500 }, 4, 16, 42);
    a.next();
    a.next();
    const state = a.getState();
    const expected = [a.next(), a.next()];

    const b = new BatchSampler(tokens, { start: 0, end: 500 }, 4, 16, 42);
    b.setState(JSON.parse(JSON.stringify(state)) as typeof state);
    for (const batch of expected) expect(Array.from(b.next().ids)).toEqual(Array.from(batch.ids));
    expect(b.getState().batchesDrawn).toBe(4);
  });

  it('rejects a corpus smaller than one batch', () => {
    const error = captureError(() => new BatchSampler(tokens, { start: 0, end: 35 }, 4, 8, 1));
    expect(error).toBeInstanceOf(InputError);
    expect(error.message).toContain('35 tokens');
    expect(error.message).toContain('4 × 9 = 36');
  });

  it('cuts held-out windows in order', () => {
    const batches = heldOutBatches(tokens, { start: 450, end: 500 }, 2, 10, 10);
    // (50 − 1) / 10 = 4 windows: two batches of two rows.
    expect(batches.map((b) => b.B)).toEqual([2, 2]);
    expect(Array.from(batches[1].ids.subarray(10, 20))).toEqual(Array.from({ length: 10 }, (_, i) => 480 + i));
    expect(batches[1].targets[19]).toBe(490);
    expect(heldOutBatches(tokens, { start: 450, end: 500 }, 3, 10, 1).map((b) => b.B)).toEqual([3]);
    expect(heldOutBatches(tokens, { start: 500, end: 500 }, 2, 10, 10)).toEqual([]);
    expect(() => heldOutBatches(tokens, { start: 495, end: 500 }, 2, 10, 10)).toThrow(/raise --val-fraction/);
  });
});
