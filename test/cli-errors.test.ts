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
  it('saves a checkpoint on Ctrl-C', async () => {
    const out = join(root, 'interrupted');
    const result = await interruptCli(['pretrain', '--data', corpus, '--out', out, ...TINY_RUN, '--steps', '500'], /^step 1\/500/m);
    expect(result.stderr).not.toContain('internal error');
    expect(result.status).toBe(130);
    expect(result.stderr).toContain('saving a checkpoint');
    expect(result.stdout).toMatch(/interrupted after step \d+/);
    const state = JSON.parse(readFileSync(join(out, 'model', 'trainer-state.json'), 'utf8')) as { step: number };
    expect(state.step).toBeGreaterThanOrEqual(1);
    expect(state.step).toBeLessThan(500);
  });
});
