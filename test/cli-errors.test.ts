// End-to-end tests of the `rwkvify` command's failure paths: user mistakes exit with code 2 and
// a one-line message, and Ctrl-C during pretraining saves a checkpoint and exits with 130.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { GPT2_PRESETS, Gpt2Model, loadGpt2Folder, saveGpt2Folder } from '../src/models/gpt2/index.js';
import { convertTeacher, saveStudentFolder } from '../src/models/student/index.js';
import { Rng } from '../src/tensor/index.js';
import { InputError } from '../src/data/input-error.js';
import { createOutputFolder } from '../src/cli/output-folder.js';
import { reportError } from '../src/cli/program.js';
import { BIN, REPO_ROOT, runCli, TINY_RUN, writeTinyCorpus, type CliResult } from './helpers/cli.js';

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

// ---------------------------------------------------------------------------------------------------

let root: string;
let corpus: string;
/** A model folder written by saveGpt2Folder, without tokenizer files. */
let runDir: string;

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

  it('exits 2 on seeds outside 32 bits', () => {
    const commands = [
      ['pretrain', '--arch', 'gpt2', '--data', corpus, '--out', join(root, 'seed-run')],
      ['generate', '--model', runDir, '--prompt', 'x'],
      ['demo', '--quick', '--out', join(root, 'seed-demo')],
    ];
    for (const command of commands) {
      const result = runCli([...command, '--seed', '4294967296']);
      expectUserError(result, "'--seed <n>' argument '4294967296' is invalid", 'an integer seed in [0, 4294967295]');
    }
    const largest = runCli(['generate', '--model', runDir, '--prompt', 'x', '--max-tokens', '2', '--seed', '4294967295']);
    expect(largest.stderr).not.toMatch(/^error: /m);
    expect(largest.status).toBe(0);
  });

  it('names the file, not the function, of a bad model folder', () => {
    const internalName = /[a-z]+[A-Z]\w*: /; // such as configFromHf: or parseVocabJson:
    const heads = join(root, 'bad-heads');
    mkdirSync(heads);
    writeFileSync(join(heads, 'model.safetensors'), readFileSync(join(runDir, 'model.safetensors')));
    const config = JSON.parse(readFileSync(join(runDir, 'config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(heads, 'config.json'), JSON.stringify({ ...config, n_head: 3 }));
    const headsResult = runCli(['logits', '--model', heads, '--ids', '1']);
    expectUserError(headsResult, `cannot load the gpt2 model in "${heads}": config.json: n_embd (32) must be divisible by n_head (3)`);
    expect(headsResult.stderr).not.toMatch(internalName);

    const vocab = join(root, 'bad-vocab');
    mkdirSync(vocab);
    for (const file of ['config.json', 'model.safetensors']) writeFileSync(join(vocab, file), readFileSync(join(runDir, file)));
    writeFileSync(join(vocab, 'vocab.json'), '[1, 2]');
    writeFileSync(join(vocab, 'merges.txt'), '#version: 0.2\n');
    const vocabResult = runCli(['tokenize', '--model', vocab, 'hi']);
    expectUserError(vocabResult, `cannot load the tokenizer of "${vocab}": vocab.json must contain a JSON object`);
    expect(vocabResult.stderr).not.toMatch(internalName);

    const weights = join(root, 'no-weights');
    mkdirSync(weights);
    writeFileSync(join(weights, 'config.json'), readFileSync(join(runDir, 'config.json')));
    expectUserError(runCli(['generate', '--model', weights, '--prompt', 'x']), `"${weights}" has config.json but no model.safetensors`);
  });

  it('exits 2 on an --out under /proc', { skip: !existsSync('/proc/self') }, () => {
    // Node's recursive mkdir loops forever here, so a regression shows as the spawn timing out.
    const out = join('/proc', `rwkvify-test-${process.pid}`, 'out');
    const student = join(root, 'student');
    saveStudentFolder(convertTeacher(loadGpt2Folder(runDir)), student);
    const commands = [
      ['pretrain', '--arch', 'gpt2', '--data', corpus, '--out', out],
      ['convert', '--teacher', runDir, '--out', out],
      ['distill', '--teacher', runDir, '--student', student, '--data', corpus, '--out', out, '--quick'],
      ['eval', '--teacher', runDir, '--student', student, '--data', corpus, '--out', out],
      ['demo', '--quick', '--out', out],
    ];
    for (const command of commands) {
      const result = runCli(command, 15_000);
      expect(result.status, command[0]).toBe(2);
      expect(result.stderr, command[0]).toMatch(/^error: (demo: )?cannot (create|write to) the --out folder/m);
      expect(result.stderr, command[0]).toContain(`"${out}"`);
      expect(result.stderr, command[0]).toContain('does not allow new folders');
    }
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

describe('rwkvify pretrain --resume settings', () => {
  it('rejects a shorter schedule and changed options', async () => {
    const args = ['pretrain', '--data', corpus, ...TINY_RUN, '--steps', '8'];
    const out = join(root, 'interrupted-8');
    const interrupted = await interruptCli([...args, '--out', out], /^step 1\/8/m);
    expect(interrupted.status).toBe(130);
    const state = JSON.parse(readFileSync(join(out, 'model', 'trainer-state.json'), 'utf8')) as { step: number };
    expect(state.step).toBeLessThan(8);

    const shorter = runCli([...args, '--out', out, '--resume', '--steps', String(state.step)]);
    expectUserError(shorter, `--steps ${state.step} is below the 8 steps that this run's cosine learning-rate schedule spans`, '--steps 8 or more');
    expect(shorter.stdout).not.toMatch(/^step /m);

    const changed = runCli([...args, '--out', out, '--resume', '--lr', '0.002', '--warmup', '3']);
    expectUserError(changed, '--lr 0.002 (checkpoint: 0.001)', '--warmup 3 (checkpoint: 1)', 'another --out');
    expect(changed.stdout).not.toMatch(/^step /m);
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

describe('output folder checks', () => {
  it('rejects a folder it cannot write to', () => {
    // Root ignores mode bits, so the write probe is made to fail with a folder in its place.
    const folder = join(root, 'unwritable-out');
    mkdirSync(join(folder, `.rwkvify-write-probe-${process.pid}`), { recursive: true });
    expect(() => createOutputFolder(folder)).toThrow(InputError);
    expect(() => createOutputFolder(folder)).toThrow(/cannot write to the --out folder ".*unwritable-out": .*EISDIR.*; choose another --out/);
  });
});
