// End-to-end tests of `rwkvify tokenize` and `rwkvify logits` on a tiny GPT-2 model folder
// written by saveGpt2Folder (untrained weights are enough to check the plumbing).
import { cpSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { GPT2_PRESETS, Gpt2Model, saveGpt2Folder } from '../src/models/gpt2/index.js';
import { Rwkv7Model, saveRwkv7Safetensors } from '../src/models/rwkv7/index.js';
import { convertTeacher, saveStudentFolder } from '../src/models/student/index.js';
import { Rng } from '../src/tensor/index.js';
import { Gpt2Tokenizer } from '../src/tokenizer/index.js';
import { runCli } from './helpers/cli.js';

// ---------------------------------------------------------------------------------------------------

let root: string;
/** A model folder with config.json, model.safetensors and the tokenizer files. */
let runDir: string;
/** The same for a tiny RWKV-7. */
let rwkvDir: string;
/** The same for a student converted from the GPT-2 (model_type "rwkv7-student"). */
let studentDir: string;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'rwkvify-cli-inspect-'));
  runDir = join(root, 'model');
  const tokenizer = Gpt2Tokenizer.bundled();
  const teacher = new Gpt2Model({ ...GPT2_PRESETS.tiny }, { rng: new Rng(1) });
  saveGpt2Folder(teacher, runDir, { tokenizer });
  studentDir = join(root, 'student');
  saveStudentFolder(convertTeacher(teacher), studentDir, { tokenizer });
  rwkvDir = join(root, 'rwkv7');
  mkdirSync(rwkvDir);
  saveRwkv7Safetensors(new Rwkv7Model({ nEmbd: 32, nLayer: 2, headSize: 16, vocabSize: 50257 }, { seed: 1 }), join(rwkvDir, 'model.safetensors'));
  tokenizer.saveToFolder(rwkvDir);
});

afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

describe('rwkvify tokenize', () => {
  it('prints ids and token strings', () => {
    const text = 'Hello 地 world<|endoftext|>';
    const result = runCli(['tokenize', '--model', runDir, '--json', text]);
    expect(result.status).toBe(0);
    expect(result.stderr).toBe('');
    const parsed = JSON.parse(result.stdout) as { ids: number[]; tokens: string[] };
    const tokenizer = Gpt2Tokenizer.bundled();
    expect(parsed.ids).toEqual(tokenizer.encode(text, { specialTokens: 'allow' }));
    expect(parsed.ids[parsed.ids.length - 1]).toBe(50256);
    expect(parsed.tokens).toEqual(tokenizer.tokenStrings(parsed.ids));

    const table = runCli(['tokenize', '--model', runDir, 'Hello world']);
    expect(table.status).toBe(0);
    expect(table.stdout).toMatch(/^15496 {2}"Hello"$/m);
    expect(table.stdout).toMatch(/^ {2}995 {2}" world"$/m);
    expect(table.stdout).toContain('2 tokens');
  });

  it('falls back to the bundled tokenizer', () => {
    const bare = join(root, 'bare-model');
    cpSync(runDir, bare, { recursive: true });
    rmSync(join(bare, 'vocab.json'));
    rmSync(join(bare, 'merges.txt'));
    const result = runCli(['tokenize', '--model', bare, '--json', 'Hello world']);
    expect(result.status).toBe(0);
    expect(result.stderr).toContain('bundled GPT-2 tokenizer');
    expect((JSON.parse(result.stdout) as { ids: number[] }).ids).toEqual([15496, 995]);
  });
});

describe('rwkvify logits', () => {
  it('prints top-k next tokens in both modes', () => {
    const sequence = runCli(['logits', '--model', runDir, '--ids', '464,3797,3332', '--top-k', '4', '--json']);
    expect(sequence.stderr).not.toContain('internal error');
    expect(sequence.status).toBe(0);
    type Output = { mode: string; ids: number[]; positions: Array<{ id: number; token: string; next: Array<{ id: number; probability: number }> }>; lastLogits: number[] };
    const parsed = JSON.parse(sequence.stdout) as Output;
    expect(parsed.mode).toBe('sequence');
    expect(parsed.positions.map((p) => p.token)).toEqual(['The', ' cat', ' sat']);
    expect(parsed.lastLogits).toHaveLength(50257);
    for (const position of parsed.positions) {
      expect(position.next).toHaveLength(4);
      const probabilities = position.next.map((n) => n.probability);
      expect([...probabilities].sort((a, b) => b - a)).toEqual(probabilities);
    }
    // The top token of the last position is the argmax of the full logits.
    const argmax = parsed.lastLogits.indexOf(Math.max(...parsed.lastLogits));
    expect(parsed.positions[2].next[0].id).toBe(argmax);

    const rnn = JSON.parse(runCli(['logits', '--model', runDir, '--ids', '464,3797,3332', '--top-k', '4', '--json', '--mode', 'rnn']).stdout) as Output;
    expect(rnn.mode).toBe('rnn');
    const maxDiff = Math.max(...rnn.lastLogits.map((v, i) => Math.abs(v - parsed.lastLogits[i])));
    expect(maxDiff).toBeLessThan(1e-4);

    const text = runCli(['logits', '--model', runDir, '--prompt', 'The cat', '--top-k', '2']);
    expect(text.status).toBe(0);
    expect(text.stdout).toMatch(/^ +0 +464 +"The" +→ +".*" [\d.e-]+ \| ".*" [\d.e-]+$/m);
  });
});

describe('rwkvify with an RWKV-7 folder', () => {
  it('generates and matches logits across modes', () => {
    const generated = runCli(['generate', '--model', rwkvDir, '--prompt', 'The cat', '--max-tokens', '4', '--temperature', '0']);
    expect(generated.stderr).not.toContain('internal error');
    expect(generated.status).toBe(0);
    expect(generated.stdout.length).toBeGreaterThan(1);

    type Output = { arch: string; lastLogits: number[] };
    const args = ['logits', '--model', rwkvDir, '--ids', '464,3797,3332', '--json'];
    const sequence = JSON.parse(runCli(args).stdout) as Output;
    const rnn = JSON.parse(runCli([...args, '--mode', 'rnn']).stdout) as Output;
    expect(sequence.arch).toBe('rwkv7');
    expect(sequence.lastLogits).toHaveLength(50257);
    const maxDiff = Math.max(...rnn.lastLogits.map((v, i) => Math.abs(v - sequence.lastLogits[i])));
    expect(maxDiff).toBeLessThan(1e-4);
  });
});

describe('rwkvify with a student folder', () => {
  it('matches logits across modes', () => {
    type Output = { arch: string; lastLogits: number[] };
    const args = ['logits', '--model', studentDir, '--ids', '464,3797,3332', '--json'];
    const sequence = JSON.parse(runCli(args).stdout) as Output;
    const rnn = JSON.parse(runCli([...args, '--mode', 'rnn']).stdout) as Output;
    expect(sequence.arch).toBe('rwkv7-student');
    expect(sequence.lastLogits).toHaveLength(50257);
    const maxDiff = Math.max(...rnn.lastLogits.map((v, i) => Math.abs(v - sequence.lastLogits[i])));
    expect(maxDiff).toBeLessThan(1e-4);
  });
});
