// End-to-end tests of `rwkvify pretrain` and `rwkvify generate`: each case spawns
// `node bin/rwkvify.js` as a user would. One tiny GPT-2 is pretrained once and reused.
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { GPT2_PRESETS, Gpt2Model, saveGpt2Folder } from '../src/models/gpt2/index.js';
import { Rng } from '../src/tensor/index.js';
import { runCli, TINY_RUN, writeTinyCorpus, type CliResult } from './helpers/cli.js';

// ---------------------------------------------------------------------------------------------------

let root: string;
let corpus: string;
let runDir: string;
let pretrain: CliResult;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'rwkvify-cli-'));
  corpus = join(root, 'corpus');
  mkdirSync(corpus);
  writeTinyCorpus(corpus);
  runDir = join(root, 'run');
  pretrain = runCli(['pretrain', '--data', corpus, '--out', runDir, ...TINY_RUN]);
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

describe('rwkvify pretrain', () => {
  it('trains and writes a model folder', () => {
    expect(pretrain.stderr).not.toContain('internal error');
    expect(pretrain.status).toBe(0);
    expect(pretrain.stdout).toContain('rwkvify pretrain');
    expect(pretrain.stdout).toMatch(/arch +gpt2 \(preset tiny, 1,635,744 parameters\)/);
    expect(pretrain.stdout).toMatch(/^step 1\/3 \| loss \d+\.\d{4} \| lr \d\.\de-\d+ \| - tok\/s$/m);
    expect(pretrain.stdout).toMatch(/^step 3\/3 \| loss \d+\.\d{4} \| lr \d\.\de-\d+ \| [\d,]+ tok\/s$/m);
    expect(pretrain.stdout).toMatch(/^eval step 2 \| val loss \d+\.\d{4} \| val ppl [\d.]+$/m);
    expect(pretrain.stdout).toMatch(/^eval step 3 \| /m);
    // stderr is not a terminal here, so progress comes as plain lines.
    expect(pretrain.stderr).toMatch(/^progress 3\/3 \(100\.0%\)/m);
    for (const file of ['config.json', 'model.safetensors', 'vocab.json', 'merges.txt', 'trainer-state.json', 'optimizer.safetensors']) {
      expect(existsSync(join(runDir, 'model', file)), file).toBe(true);
    }
    const metrics = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n');
    expect(metrics).toHaveLength(5); // 3 train + 2 eval records
    expect(existsSync(join(runDir, 'data-cache', 'manifest.json'))).toBe(true);
  });

  it('resumes with more steps at the final rate', () => {
    const result = runCli(['pretrain', '--data', corpus, '--out', runDir, ...TINY_RUN, '--steps', '5', '--resume']);
    expect(result.stderr).not.toContain('internal error');
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('resuming after step 3');
    expect(result.stdout).toContain('reusing token cache');
    expect(result.stdout).toMatch(/cosine over the first 3 steps, then constant/);
    expect(result.stderr).toContain("note: --steps 5 runs past the 3 steps of this run's cosine learning-rate schedule, so steps 4–5 run at its final rate 1.0e-4");
    // The 3-step cosine schedule ended at --min-lr (--lr / 10); a schedule stretched to 5 steps
    // would instead raise step 4 to 2.3e-4.
    expect(result.stdout).toMatch(/^step 4\/5 \| loss \d+\.\d{4} \| lr 1\.0e-4 \| /m);
    expect(result.stdout).toMatch(/^step 5\/5 \| loss \d+\.\d{4} \| lr 1\.0e-4 \| /m);
    expect(result.stdout).not.toMatch(/^step 3\/5 /m);
    const state = JSON.parse(readFileSync(join(runDir, 'model', 'trainer-state.json'), 'utf8')) as { step: number; settings: { steps: number; scheduleSteps: number } };
    expect(state.step).toBe(5);
    expect(state.settings.steps).toBe(5);
    expect(state.settings.scheduleSteps).toBe(3);
  });

  it('rejects a second run into the same folder', () => {
    const result = runCli(['pretrain', '--data', corpus, '--out', runDir, ...TINY_RUN]);
    expectUserError(result, 'already has a checkpoint', '--resume');
  });
});

describe('rwkvify pretrain --resume on replaced model files', () => {
  /** Copies the trained run folder, so each case can damage its own copy. */
  function copyRun(name: string): string {
    const copy = join(root, name);
    cpSync(runDir, copy, { recursive: true });
    return copy;
  }

  it('rejects a student written over the checkpoint', () => {
    const copy = copyRun('run-with-student');
    const converted = runCli(['convert', '--teacher', join(runDir, 'model'), '--out', join(copy, 'model'), '--force']);
    expect(converted.status).toBe(0);
    const result = runCli(['pretrain', '--data', corpus, '--out', copy, ...TINY_RUN, '--steps', '6', '--resume']);
    expectUserError(result, 'describes a rwkv7-student model', 'while training a gpt2 model', 'another --out', `remove "${copy}"`);
    expect(result.stdout).not.toMatch(/^step /m);
  });

  it('rejects a GPT-2 of another size', () => {
    const copy = copyRun('run-with-other-gpt2');
    const model = join(copy, 'model');
    saveGpt2Folder(new Gpt2Model({ ...GPT2_PRESETS.tiny, nEmbd: 64, nHead: 4, nInner: 256 }, { rng: new Rng(2) }), model);
    const result = runCli(['pretrain', '--data', corpus, '--out', copy, ...TINY_RUN, '--steps', '6', '--resume']);
    expectUserError(result, 'differs from the one trainer-state.json records', 'nEmbd 64 (trainer-state.json: 32)', 'nHead 4 (trainer-state.json: 2)', 'another --out');
    expect(result.stdout).not.toMatch(/^step /m);
  });
});

describe('rwkvify generate', () => {
  it('streams generated text', () => {
    const args = ['generate', '--model', runDir, '--prompt', 'The cat', '--max-tokens', '6', '--seed', '3', '--top-k', '50'];
    const first = runCli(args);
    expect(first.stderr).not.toContain('internal error');
    expect(first.status).toBe(0);
    expect(first.stdout.length).toBeGreaterThan(1);
    expect(first.stdout.endsWith('\n')).toBe(true);
  });
});

describe('rwkvify pretrain with rwkv7', () => {
  it('trains and writes an RWKV-7 folder', () => {
    const out = join(root, 'rwkv7-run');
    const trained = runCli(['pretrain', '--data', corpus, '--out', out, ...TINY_RUN, '--arch', 'rwkv7', '--steps', '2']);
    expect(trained.stderr).not.toContain('internal error');
    expect(trained.status).toBe(0);
    expect(trained.stdout).toMatch(/arch +rwkv7 \(preset tiny, [\d,]+ parameters\)/);
    expect(trained.stdout).toMatch(/^step 2\/2 \| loss /m);
    const config = JSON.parse(readFileSync(join(out, 'model', 'config.json'), 'utf8')) as { model_type: string };
    expect(config.model_type).toBe('rwkv7');
    expect(existsSync(join(out, 'model', 'vocab.json'))).toBe(true);
  });
});
