// End to end through the command line: convert → distill --quick (all stages) → eval, on a tiny
// teacher saved with saveGpt2Folder, plus the exit codes of bad input and of a diverging run.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { registerDistillCommands } from '../src/cli/commands/distill.js';
import type { EvalReport } from '../src/distill/eval.js';
import { Gpt2Model, saveGpt2Folder, type Gpt2Config } from '../src/models/gpt2/index.js';
import { loadStudentFolder, saveStudentFolder } from '../src/models/student/index.js';
import { Rng } from '../src/tensor/random.js';
import { END_OF_TEXT } from '../src/tokenizer/index.js';
import { byteTokenizer, runInProcess, type InProcessResult } from './helpers/cli.js';

const TINY: Gpt2Config = { nEmbd: 32, nLayer: 2, nHead: 2, nPositions: 32, vocabSize: 257, layerNormEpsilon: 1e-5, nInner: 64, activation: 'gelu_new' };

/** Runs one rwkvify command line and returns its exit code and stdout lines. */
function rwkvify(args: string[]): Promise<InProcessResult> {
  return runInProcess(registerDistillCommands, args, '\n');
}

let root = '';
let teacherDir = '';
let dataPath = '';

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'rwkvify-distill-cli-'));
  teacherDir = join(root, 'teacher');
  const teacher = new Gpt2Model(TINY, { rng: new Rng(4) });
  saveGpt2Folder(teacher, teacherDir, { tokenizer: byteTokenizer() });
  const rng = new Rng(11);
  const words = ['river', 'stone', 'light', 'over', 'under', 'the', 'a', 'quiet', 'morning', 'falls'];
  const documents = Array.from({ length: 40 }, () => Array.from({ length: 25 }, () => words[rng.int(words.length)]).join(' ') + '.');
  dataPath = join(root, 'corpus.txt');
  writeFileSync(dataPath, documents.join(END_OF_TEXT));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('rwkvify convert, distill, eval', () => {
  test('full pipeline on a tiny teacher', async () => {
    const studentDir = join(root, 'student');
    const converted = await rwkvify(['convert', '--teacher', teacherDir, '--out', studentDir, '--positions', 'clamp']);
    expect(converted.code).toBe(0);
    expect(existsSync(join(studentDir, 'model.safetensors'))).toBe(true);
    expect(existsSync(join(studentDir, 'vocab.json'))).toBe(true);

    const run = join(root, 'run');
    const distilled = await rwkvify(['distill', '--teacher', teacherDir, '--student', studentDir, '--data', dataPath, '--out', run, '--stages', '1,2,3', '--quick', '--log-every', '1']);
    expect(distilled.stderr).not.toMatch(/error/);
    expect(distilled.code).toBe(0);
    expect(distilled.stdout).toMatch(/stage 1 \| step 3\/3 \| align /);
    expect(distilled.stdout).toMatch(/stage 2 \| step 3\/3 \| kl /);
    expect(distilled.stdout).toMatch(/stage 3 \| step 3\/3 \| loss /);
    expect(distilled.stdout).toMatch(/3 steps × 2 sequences × 32 tokens/);
    expect(existsSync(join(run, 'student', 'config.json'))).toBe(true);
    expect(loadStudentFolder(join(run, 'student')).config.positions).toBe('clamp');

    const reportDir = join(root, 'report');
    const evaluated = await rwkvify([
      'eval', '--teacher', teacherDir, '--student', join(run, 'student'), '--baseline', teacherDir, '--data', dataPath, '--out', reportDir,
      '--seq-len', '16', '--contexts', '8,40', '--timing-tokens', '2', '--sample-tokens', '4', '--max-tokens', '400',
    ]);
    expect(evaluated.stderr).not.toMatch(/error/);
    expect(evaluated.code).toBe(0);
    expect(evaluated.stdout).toMatch(/student perplexity/);
    const report = JSON.parse(readFileSync(join(reportDir, 'report.json'), 'utf8')) as EvalReport;
    expect(report.perplexity.map((row) => row.name)).toEqual(['teacher', 'student', 'baseline']);
    expect(report.perplexity[2].perplexity).toBeCloseTo(report.perplexity[0].perplexity, 4);
    expect(report.meanKl).toBeGreaterThan(0);
    expect(report.top1Agreement).toBeGreaterThanOrEqual(0);
    expect(report.stages.map((s) => s.stage)).toEqual([1, 2, 3]);
    const clamp = report.beyondLimit.rows.find((row) => row.positions === 'clamp');
    expect(clamp?.beyondPerplexity).toBeGreaterThan(1);
    expect(report.beyondLimit.rows.find((row) => row.positions === 'keep')?.beyondPerplexity).toBeNull();
    expect(report.timing.map((t) => t.teacherMs === null)).toEqual([false, true]);
    expect(report.samples).toHaveLength(2);
    const html = readFileSync(join(reportDir, 'report.html'), 'utf8');
    expect(html).toMatch(/<svg/);
    expect(html).not.toMatch(/<script|src="http/);
  });

  test('missing teacher exits with code 2', async () => {
    const result = await rwkvify(['convert', '--teacher', join(root, 'nowhere'), '--out', join(root, 'x')]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/does not exist/);
  });

  test('a GPT-2 folder as student exits with code 2', async () => {
    const result = await rwkvify(['distill', '--teacher', teacherDir, '--student', teacherDir, '--data', dataPath, '--out', join(root, 'bad'), '--quick']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/rwkv7-student/);
  });

  test('eval on an empty file exits with code 2', async () => {
    const studentDir = join(root, 'student-for-empty-eval');
    expect((await rwkvify(['convert', '--teacher', teacherDir, '--out', studentDir])).code).toBe(0);
    const empty = join(root, 'empty.txt');
    writeFileSync(empty, '');
    const result = await rwkvify(['eval', '--teacher', teacherDir, '--student', studentDir, '--data', empty, '--out', join(root, 'empty-report'), '--seq-len', '16']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`no text found in "${empty}"`);
    expect(result.stderr).toContain('the file is empty or contains only whitespace');
    expect(result.stderr).toContain('no tokens to score');
    expect(result.stderr).toContain('at least 17 tokens');
    expect(result.stderr).not.toMatch(/train/);
  });

  test('bad teacher config names the file, not the function', async () => {
    const badTeacher = join(root, 'teacher-bad-heads');
    saveGpt2Folder(new Gpt2Model(TINY, { rng: new Rng(4) }), badTeacher, { tokenizer: byteTokenizer() });
    const config = JSON.parse(readFileSync(join(badTeacher, 'config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(badTeacher, 'config.json'), JSON.stringify({ ...config, n_head: 3 }));
    const result = await rwkvify(['convert', '--teacher', badTeacher, '--out', join(root, 'never-written')]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`cannot load the teacher GPT-2 in "${badTeacher}": config.json: n_embd (32) must be divisible by n_head (3)`);
    expect(result.stderr).not.toMatch(/configFromHf|[a-z]+[A-Z]\w*: /);
  });

  test('seeds outside 32 bits exit with code 2', async () => {
    const studentDir = join(root, 'student');
    const commands = [
      ['convert', '--teacher', teacherDir, '--out', join(root, 'seed-convert')],
      ['distill', '--teacher', teacherDir, '--student', studentDir, '--data', dataPath, '--out', join(root, 'seed-distill'), '--quick'],
      ['eval', '--teacher', teacherDir, '--student', studentDir, '--data', dataPath, '--out', join(root, 'seed-eval')],
    ];
    for (const command of commands) {
      const result = await rwkvify([...command, '--seed', '4294967296']);
      expect(result.code, command[0]).toBe(2);
      expect(result.stderr, command[0]).toContain("'--seed <n>' argument '4294967296' is invalid");
      expect(result.stderr, command[0]).toContain('[0, 4294967295]');
    }
  });

  test('diverging loss exits with code 2 naming stage and step', async () => {
    const studentDir = join(root, 'student-nan');
    expect((await rwkvify(['convert', '--teacher', teacherDir, '--out', studentDir])).code).toBe(0);
    const student = loadStudentFolder(studentDir);
    student.blocks[0].att.output.weight.data.fill(1e30);
    saveStudentFolder(student, studentDir);
    const result = await rwkvify(['distill', '--teacher', teacherDir, '--student', studentDir, '--data', dataPath, '--out', join(root, 'nan-run'), '--quick']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/stage 1: training stopped at step 1: the loss is (NaN|Infinity)/);
  });
});
