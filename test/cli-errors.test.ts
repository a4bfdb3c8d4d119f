// End-to-end tests of the `rwkvify` command's failure paths: user mistakes exit with code 2 and
// a one-line message, and Ctrl-C during pretraining saves a checkpoint and exits with 130.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { GPT2_PRESETS, Gpt2Model, saveGpt2Folder } from '../src/models/gpt2/index.js';
import { Rng } from '../src/tensor/index.js';
import { InputError } from '../src/data/input-error.js';
import { reportError } from '../src/cli/program.js';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const BIN = join(REPO_ROOT, 'bin', 'rwkvify.js');

interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `rwkvify ...args` to completion. */
function runCli(args: readonly string[], timeoutMs = 50_000): CliResult {
  const result = spawnSync(process.execPath, [BIN, ...args], { cwd: REPO_ROOT, encoding: 'utf8', timeout: timeoutMs });
  if (result.error !== undefined) throw result.error;
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/**
 * Starts `rwkvify ...args`, sends SIGINT once stdout matches `trigger`, and resolves with the
 * exit status and output.
 */
function interruptCli(args: readonly string[], trigger: RegExp, timeoutMs = 50_000): Promise<CliResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: REPO_ROOT });
    let stdout = '';
    let stderr = '';
    let sent = false;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`interruptCli: no exit within ${timeoutMs} ms; stdout so far:\n${stdout}\nstderr:\n${stderr}`));
    }, timeoutMs);
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      if (!sent && trigger.test(stdout)) {
        sent = true;
        child.kill('SIGINT');
      }
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on('close', (status) => {
      clearTimeout(timer);
      resolvePromise({ status, stdout, stderr });
    });
  });
}

/** Writes a small English corpus of `documents` files into `dir`. */
function writeTinyCorpus(dir: string, documents = 4): void {
  const sentences = [
    'The cat sat on the mat and looked at the door.',
    'A dog ran across the park while the birds sang.',
    'She opened the window and the cold air came in.',
    'They walked to the river and sat under a tall tree.',
    'The old man told a story about the sea and the ships.',
  ];
  for (let d = 0; d < documents; d++) {
    const lines: string[] = [];
    for (let i = 0; i < 30; i++) lines.push(sentences[(i * 3 + d) % sentences.length]);
    writeFileSync(join(dir, `story-${d}.txt`), lines.join('\n') + '\n');
  }
}

// ---------------------------------------------------------------------------------------------------

let root: string;
let corpus: string;
/** A model folder written by saveGpt2Folder, without tokenizer files. */
let runDir: string;

/** Flags of a pretraining run small enough for a test: 3 steps of 2 × 16 tokens. */
const TINY_RUN = ['--arch', 'gpt2', '--preset', 'tiny', '--steps', '3', '--batch-size', '2', '--seq-len', '16', '--log-every', '1', '--warmup', '1', '--eval-batches', '2', '--eval-every', '2'];

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'rwkvify-cli-errors-'));
  corpus = join(root, 'corpus');
  mkdirSync(corpus);
  writeTinyCorpus(corpus);
  runDir = join(root, 'model');
  saveGpt2Folder(new Gpt2Model({ ...GPT2_PRESETS.tiny }, { rng: new Rng(1) }), runDir);
});

afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

function expectUserError(result: CliResult, ...fragments: string[]): void {
  expect(result.status).toBe(2);
  expect(result.stderr).toMatch(/^error: /m);
  expect(result.stderr).not.toMatch(/^\s+at /m); // no stack trace
  for (const fragment of fragments) expect(result.stderr).toContain(fragment);
}

describe('rwkvify errors', () => {
  it('exits 2 on a missing model folder', () => {
    expectUserError(runCli(['generate', '--model', join(root, 'missing'), '--prompt', 'x']), 'missing', 'does not exist');
  });

  it('exits 2 on invalid option values', () => {
    expectUserError(runCli(['pretrain', '--arch', 'gpt2', '--data', corpus, '--out', join(root, 'x'), '--steps', '0']), '--steps', '≥ 1');
    expectUserError(runCli(['pretrain', '--arch', 'gpt3', '--data', corpus, '--out', join(root, 'x')]), 'gpt3', 'gpt2, rwkv7');
    expectUserError(runCli(['generate', '--model', runDir, '--prompt', 'x', '--top-p', '1.5']), '(0, 1]');
    expectUserError(runCli(['logits', '--model', runDir, '--ids', '1,x']), 'item 2');
    expectUserError(runCli(['logits', '--model', runDir, '--ids', '99999']), 'outside the vocabulary');
    expectUserError(runCli(['--backend', 'quantum', 'tokenize', 'hi']), 'quantum', 'wasm');
  });

  it('exits 2 on a corrupt model file', () => {
    const broken = join(root, 'broken-model');
    mkdirSync(broken);
    writeFileSync(join(broken, 'config.json'), readFileSync(join(runDir, 'config.json')));
    writeFileSync(join(broken, 'model.safetensors'), 'not a safetensors file');
    expectUserError(runCli(['logits', '--model', broken, '--ids', '1']), 'cannot load the gpt2 model', 'model.safetensors');
  });

  it('exits 2 when --out is a file', () => {
    const file = join(root, 'out-file');
    writeFileSync(file, 'x');
    expectUserError(runCli(['pretrain', '--arch', 'gpt2', '--data', corpus, '--out', file]), 'cannot create the --out folder');
  });

  it('exits 2 on a non-UTF-8 corpus', () => {
    const bad = join(root, 'latin1');
    mkdirSync(bad);
    writeFileSync(join(bad, 'a.txt'), Buffer.concat([Buffer.from('caf'), Buffer.from([0xe9]), Buffer.from(' au lait\n')]));
    const result = runCli(['pretrain', '--arch', 'gpt2', '--data', bad, '--out', join(root, 'latin1-run')]);
    expectUserError(result, 'a.txt', 'offset 3', 'UTF-8');
  });

  it('exits 2 when the corpus is too small', () => {
    const small = join(root, 'small');
    mkdirSync(small);
    writeFileSync(join(small, 'a.txt'), 'Just a few words.');
    const result = runCli(['pretrain', '--arch', 'gpt2', '--data', small, '--out', join(root, 'small-run'), '--batch-size', '4', '--seq-len', '32', '--val-fraction', '0']);
    expectUserError(result, '4 × 33 = 132');
  });
});

describe('rwkvify pretrain interrupt', () => {
  it('resumes after Ctrl-C bitwise', async () => {
    const args = ['pretrain', '--data', corpus, ...TINY_RUN, '--steps', '4', '--eval-every', '2'];
    const straightDir = join(root, 'straight');
    const straight = runCli([...args, '--out', straightDir]);
    expect(straight.status).toBe(0);

    const out = join(root, 'interrupted');
    const interrupted = await interruptCli([...args, '--out', out], /^step 1\/4/m);
    expect(interrupted.stderr).not.toContain('internal error');
    expect(interrupted.status).toBe(130);
    expect(interrupted.stderr).toContain('saving a checkpoint');
    expect(interrupted.stdout).toMatch(/interrupted after step \d+/);
    const state = JSON.parse(readFileSync(join(out, 'model', 'trainer-state.json'), 'utf8')) as { step: number };
    expect(state.step).toBeGreaterThanOrEqual(1);
    expect(state.step).toBeLessThan(4);

    const resumed = runCli([...args, '--out', out, '--resume']);
    expect(resumed.stderr).not.toContain('internal error');
    expect(resumed.status).toBe(0);
    expect(resumed.stdout).toContain(`resuming after step ${state.step}`);

    // Wherever the run stopped, the metrics equal the uninterrupted run's bit for bit.
    type Metric = { kind: string; step: number; loss?: number; valLoss?: number };
    const read = (dir: string): Metric[] =>
      readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as Metric);
    const values = (metrics: Metric[]): Array<[string, number, number | undefined]> => metrics.map((m) => [m.kind, m.step, m.loss ?? m.valLoss]);
    expect(values(read(out))).toEqual(values(read(straightDir)));
  });
});

describe('error reporting', () => {
  /** Calls reportError with stderr captured. */
  function report(error: unknown): { code: number; stderr: string } {
    const chunks: string[] = [];
    const original = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string | Uint8Array) => {
      chunks.push(String(chunk));
      return true;
    }) as typeof process.stderr.write;
    try {
      return { code: reportError(error), stderr: chunks.join('') };
    } finally {
      process.stderr.write = original;
    }
  }

  it('prints user errors without a stack', () => {
    const { code, stderr } = report(new InputError('model folder "x" does not exist'));
    expect(code).toBe(2);
    expect(stderr).toBe('error: model folder "x" does not exist\n');
  });

  it('prints bugs with their stack', () => {
    const { code, stderr } = report(new TypeError('cannot read properties of undefined'));
    expect(code).toBe(1);
    expect(stderr).toContain('internal error');
    expect(stderr).toContain('TypeError: cannot read properties of undefined');
    expect(stderr).toMatch(/^\s+at /m);
  });
});
