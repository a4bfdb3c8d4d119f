// `rwkvify demo --quick` end to end on a tiny byte-level teacher: reports and summary, resuming
// without redoing finished phases, --restart, changed settings, and bad --out folders.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { registerDemoCommand } from '../src/cli/commands/demo.js';
import { reportError } from '../src/cli/program.js';
import { InputError } from '../src/data/input-error.js';
import { closestRwkv7Preset } from '../src/demo/baseline.js';
import { BUNDLED_TEACHER_DIR, runDemo, type DemoOptions } from '../src/demo/run.js';
import { DEMO_STATE_FILE, type DemoState } from '../src/demo/state.js';
import { checkGoals } from '../src/demo/summary.js';
import type { EvalReport } from '../src/distill/eval.js';
import { nodeFileSystem } from '../src/io/atomic.js';
import { Gpt2Model, saveGpt2Folder, type Gpt2Config } from '../src/models/gpt2/index.js';
import { Rng } from '../src/tensor/random.js';
import { byteTokenizer, runInProcess, type InProcessResult } from './helpers/cli.js';

// A byte-level vocabulary keeps the output layer 257 wide, so each quick run takes seconds.
const TINY: Gpt2Config = { nEmbd: 32, nLayer: 2, nHead: 2, nPositions: 32, vocabSize: 257, layerNormEpsilon: 1e-5, nInner: 64, activation: 'gelu_new' };

/** Runs `rwkvify demo ARGS` in this process and returns its exit code and output. */
function demo(args: string[]): Promise<InProcessResult> {
  return runInProcess(registerDemoCommand, ['demo', ...args]);
}

function readState(out: string): DemoState {
  return JSON.parse(readFileSync(join(out, DEMO_STATE_FILE), 'utf8')) as DemoState;
}

let root = '';
let teacherDir = '';
let out = '';

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'rwkvify-demo-'));
  teacherDir = join(root, 'teacher');
  saveGpt2Folder(new Gpt2Model(TINY, { rng: new Rng(4) }), teacherDir, { tokenizer: byteTokenizer() });
  out = join(root, 'demo');
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('rwkvify demo --quick', () => {
  test('writes reports and summary', async () => {
    const run = await demo(['--quick', '--teacher', teacherDir, '--out', out]);
    expect(run.stderr).not.toMatch(/^error/m);
    expect(run.code).toBe(0);
    expect(existsSync(join(out, 'report.json'))).toBe(true);
    expect(existsSync(join(out, 'report.html'))).toBe(true);
    expect(existsSync(join(out, 'moby-dick', 'report.html'))).toBe(true);
    for (const header of ['teacher (GPT-2)', 'student (RWKV-7)', 'from scratch (RWKV-7)']) expect(run.stdout).toContain(header);
    expect(run.stdout).toMatch(/perplexity, SOTU held-out/);
    expect(run.stdout).toMatch(/perplexity, Moby-Dick/);
    expect(run.stdout).toMatch(/ms\/token at context 256 .*sliding 32-token window/);
    expect(run.stdout).toMatch(/^ {2}(met {4}|NOT met) {2}student held-out perplexity within 1\.3×/m);
    expect(run.stdout).toMatch(/demo \[3\/8\] distill: .*ETA/);

    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as EvalReport & { demo: { runId: string; studentTokens: number; baseline: { tokens: number } } };
    expect(report.perplexity.map((row) => row.name)).toEqual(['teacher', 'student', 'baseline']);
    for (const row of report.perplexity) expect(Number.isFinite(row.perplexity)).toBe(true);
    expect(report.demo.runId).toBe(readState(out).runId);
    expect(report.demo.baseline.tokens).toBe(report.demo.studentTokens);
    expect(report.demo.studentTokens).toBe(2 * 3 * 2 * 32); // 2 stages × 3 steps × 2 sequences × 32 tokens
  });

  test('report keeps sliding-window teacher speed', () => {
    // The tiny teacher has 32 positions, so the quick contexts 128 and 256 time a sliding window.
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as EvalReport;
    expect(report.timing.map((row) => row.context)).toEqual([32, 128, 256]);
    expect(report.timing.map((row) => row.teacherMethod)).toEqual(['sliding-window', 'sliding-window', 'sliding-window']);
    for (const row of report.timing) expect(row.teacherMs).toBeGreaterThan(0);
    const html = readFileSync(join(out, 'report.html'), 'utf8');
    expect(html.match(/\(sliding window\)/g)?.length).toBe(3);
  });

  test('re-run resumes finished phases', async () => {
    const before = readState(out);
    const run = await demo(['--quick', '--teacher', teacherDir, '--out', out]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`resuming run ${before.runId}`);
    expect(run.stdout).toMatch(/distill: finished earlier/);
    expect(run.stdout).toMatch(/baseline: finished earlier/);
    expect(run.stdout).not.toMatch(/stage 1 \| step/);
    expect(run.stdout).not.toMatch(/baseline \| step/);
    expect(run.stdout).toContain('from scratch (RWKV-7)');
    expect(readState(out).runId).toBe(before.runId);
  });

  test('changed settings need --restart', async () => {
    const run = await demo(['--quick', '--teacher', teacherDir, '--out', out, '--stages', '1,2,3']);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/other settings \(stages/);
    expect(run.stderr).toMatch(/pass --restart/);
  });

  test('full disk keeps the state file', async () => {
    const path = join(out, DEMO_STATE_FILE);
    const saved = readFileSync(path, 'utf8');
    const fullDisk = {
      ...nodeFileSystem,
      writeSync: (): number => {
        throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
      },
    };
    const options: DemoOptions = { out, quick: true, teacher: teacherDir, stages: [1, 2], positions: 'clamp', resume: false, restart: false, seed: 1337, fileSystem: fullDisk, log: () => undefined };
    const failure = await runDemo(options).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(InputError);
    expect((failure as Error).message).toMatch(/writeFileAtomic: cannot write ".*demo-state\.json"/);
    expect((failure as Error).message).toMatch(/the disk is full \(ENOSPC\)/);
    expect((failure as Error).message).toMatch(/the same command resumes the demo/);
    expect(readFileSync(path, 'utf8')).toBe(saved);
    const printed = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    expect(reportError(failure)).toBe(2);
    printed.mockRestore();
  });

  test('--restart redoes every phase', async () => {
    const before = readState(out);
    const run = await demo(['--quick', '--teacher', teacherDir, '--out', out, '--restart']);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/--restart removed .*distill/);
    expect(run.stdout).toMatch(/stage 1 \| step 3\/3/);
    expect(run.stdout).toMatch(/baseline \| step 6\/6/);
    const after = readState(out);
    expect(after.runId).not.toBe(before.runId);
    for (const record of Object.values(after.phases)) expect(record?.runId).toBe(after.runId);
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as { demo: { runId: string } };
    expect(report.demo.runId).toBe(after.runId);
  });
});

describe('interrupted demo', () => {
  test('re-run continues from checkpoints', async () => {
    const interruptedOut = join(root, 'interrupted');
    const lines: string[] = [];
    const base: DemoOptions = { out: interruptedOut, quick: true, teacher: teacherDir, stages: [1, 2], positions: 'clamp', resume: false, restart: false, seed: 1337, log: (line) => void lines.push(line), progress: { write: () => true } };
    // The trainer polls once per step: stage 1 runs its 3 steps, stage 2 stops before its first.
    let polls = 0;
    const first = await runDemo({ ...base, stopRequested: () => ++polls > 3 });
    expect(first.interrupted).toBe(true);
    expect(first.ranPhases).toEqual(['data', 'convert']);
    expect(existsSync(join(interruptedOut, 'report.json'))).toBe(false);

    lines.length = 0;
    const second = await runDemo(base);
    expect(second.interrupted).toBe(false);
    expect(second.runId).toBe(first.runId);
    expect(second.ranPhases).toEqual(['distill', 'baseline', 'eval-sotu', 'eval-moby', 'speed', 'report']);
    expect(lines.join('\n')).toMatch(/stage 1 \| already complete \(3 steps\)/);
    expect(lines.join('\n')).toMatch(/stage 2 \| step 3\/3/);
  });

  test('stop during eval and speed', async () => {
    const out = join(root, 'interrupted-eval');
    const lines: string[] = [];
    const base: DemoOptions = { out, quick: true, teacher: teacherDir, stages: [1, 2], positions: 'clamp', resume: false, restart: false, seed: 1337, log: (line) => void lines.push(line), progress: { write: () => true } };
    // The stop arrives once the phase has started, as a Ctrl-C during its scoring loop would.
    const startedPhase = (name: string) => (): boolean => lines.some((line) => line.includes(`] ${name}:`));
    const first = await runDemo({ ...base, stopRequested: startedPhase('eval-sotu') });
    expect(first.interrupted).toBe(true);
    expect(first.ranPhases).toEqual(['data', 'convert', 'distill', 'baseline']);
    expect(lines.join('\n')).toMatch(/demo: interrupted in phase eval-sotu/);

    lines.length = 0;
    const second = await runDemo({ ...base, stopRequested: startedPhase('speed') });
    expect(second.interrupted).toBe(true);
    expect(second.ranPhases).toEqual(['eval-sotu', 'eval-moby']);
    expect(lines.join('\n')).toMatch(/demo: interrupted in phase speed/);
    expect(existsSync(join(out, 'report.json'))).toBe(false);
  });
});

describe('rwkvify demo input errors', () => {
  test('--out under a regular file', async () => {
    const file = join(root, 'plain-file');
    writeFileSync(file, 'not a folder');
    const run = await demo(['--quick', '--teacher', teacherDir, '--out', join(file, 'demo')]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/error: demo: cannot write to the --out folder ".*plain-file\/demo"/);
  });

  test('unwritable --out folder', async () => {
    const denied = (dir: string): void => {
      throw Object.assign(new Error(`EACCES: permission denied, open '${dir}/probe'`), { code: 'EACCES' });
    };
    const options: DemoOptions = { out: join(root, 'denied'), quick: true, teacher: teacherDir, stages: [1, 2], positions: 'clamp', resume: false, restart: false, seed: 1337, checkWritable: denied, log: () => undefined };
    const failure = await runDemo(options).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(InputError);
    expect((failure as Error).message).toMatch(/cannot write to the --out folder .*EACCES: permission denied/);
  });

  test('missing teacher folder', async () => {
    const run = await demo(['--quick', '--teacher', join(root, 'no-teacher'), '--out', join(root, 'other')]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/teacher folder ".*no-teacher" does not exist/);
  });

  test('--resume without an earlier run', async () => {
    const run = await demo(['--quick', '--teacher', teacherDir, '--out', join(root, 'fresh'), '--resume']);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/has no demo-state\.json/);
  });
});

describe('demo helpers', () => {
  test('bundled teacher under package root', () => {
    const packageRoot = fileURLToPath(new URL('..', import.meta.url));
    expect(BUNDLED_TEACHER_DIR).toBe(join(packageRoot, 'models', 'gpt2-sotu'));
  });

  test('baseline preset follows teacher size', () => {
    expect(closestRwkv7Preset({ nEmbd: 32, nLayer: 2 })).toBe('tiny');
    expect(closestRwkv7Preset({ nEmbd: 128, nLayer: 4 })).toBe('small');
  });

  test('goals compare the numbers', () => {
    const report = (teacher: number, student: number, baseline: number): EvalReport =>
      ({ perplexity: [{ name: 'teacher', perplexity: teacher }, { name: 'student', perplexity: student }, { name: 'baseline', perplexity: baseline }] }) as EvalReport;
    expect(checkGoals(report(10, 12.9, 20)).map((g) => g.met)).toEqual([true, true]);
    expect(checkGoals(report(10, 13.1, 12)).map((g) => g.met)).toEqual([false, false]);
    expect(checkGoals(report(10, 13.1, 12))[0].detail).toBe('13.10 > 1.3 × 10.00 = 13.00');
  });
});
