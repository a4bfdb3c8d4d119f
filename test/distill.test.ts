// Distillation losses, stage objectives and the multi-stage run (resume, reproducibility, input
// checks), on tiny random teachers built here.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { gradcheck, noGrad } from '../src/autograd/index.js';
import { InputError } from '../src/data/input-error.js';
import { alignmentLoss, layerAveragedAlignment, logitDistillationLoss } from '../src/distill/losses.js';
import { AlignmentObjective, LogitObjective, type StageObjective } from '../src/distill/objectives.js';
import { runDistill, type DistillOptions } from '../src/distill/run.js';
import { DEFAULT_COMMON_SETTINGS, DEFAULT_STAGE_SETTINGS, parseStageList, type StageSettings } from '../src/distill/settings.js';
import { Gpt2Model, saveGpt2Folder, type Gpt2Config } from '../src/models/gpt2/index.js';
import { convertTeacher, saveStudentFolder } from '../src/models/student/index.js';
import { AdamW } from '../src/optim/index.js';
import { tensor } from '../src/tensor/create.js';
import { klDivergence } from '../src/tensor/ops/index.js';
import { Rng } from '../src/tensor/random.js';
import { BYTE_TO_CHAR } from '../src/tokenizer/byte-unicode.js';
import { END_OF_TEXT, Gpt2Tokenizer } from '../src/tokenizer/index.js';

/** Byte-level vocabulary: 256 byte tokens and <|endoftext|> = 256, no merges. */
const VOCAB = 257;
const TINY: Gpt2Config = { nEmbd: 32, nLayer: 2, nHead: 2, nPositions: 32, vocabSize: VOCAB, layerNormEpsilon: 1e-5, nInner: 64, activation: 'gelu_new' };

function byteTokenizer(): Gpt2Tokenizer {
  const vocab = new Map<string, number>(BYTE_TO_CHAR.map((char, id) => [char, id]));
  vocab.set(END_OF_TEXT, 256);
  return Gpt2Tokenizer.fromVocabulary({ vocab, merges: [] }, 'byte-level test vocabulary');
}

function randomTeacher(seed = 1): Gpt2Model {
  const model = new Gpt2Model(TINY, 'zeros');
  const rng = new Rng(seed);
  for (const [name, p] of model.namedParameters()) {
    const offset = /ln_\d\.weight|ln_f\.weight/.test(name) ? 1 : 0;
    for (let i = 0; i < p.size; i++) p.data[i] = offset + 0.2 * rng.normal();
  }
  return model.setRequiresGrad(false);
}

const folders: string[] = [];
function tempFolder(): string {
  const dir = mkdtempSync(join(tmpdir(), 'rwkvify-distill-'));
  folders.push(dir);
  return dir;
}
afterAll(() => folders.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

function randomIds(count: number, seed: number): Int32Array {
  const rng = new Rng(seed);
  return Int32Array.from({ length: count }, () => rng.int(VOCAB));
}

/** Runs `steps` AdamW steps of an objective on one fixed batch; returns the losses. */
function optimise(objective: StageObjective, steps: number, lr: number): number[] {
  const B = 2;
  const T = 12;
  const ids = randomIds(B * T, 5);
  const targets = randomIds(B * T, 6);
  const optimizer = new AdamW([{ params: objective.parameters(), lr, weightDecay: 0 }], { betas: [0.9, 0.95] });
  const losses: number[] = [];
  for (let step = 0; step < steps; step++) {
    optimizer.zeroGrad();
    const loss = objective.loss(ids, targets, B, T);
    losses.push(loss.item());
    loss.backward();
    optimizer.step();
  }
  return losses;
}

describe('alignment loss', () => {
  test('per-token RMS example gives 0.625', () => {
    const teacher = tensor([[1, -2, 0.5, 0], [0, 1, 1, -1]]);
    const student = tensor([[0.5, -1, 0.5, 1], [0, 0, 1, -1]]);
    expect(alignmentLoss(teacher, student).item()).toBeCloseTo(0.625, 6);
  });

  test('gradient is finite where outputs agree', () => {
    const teacher = tensor([[1, 2, 3, 4]]);
    const student = tensor([[1, 2, 3, 4]]).requireGrad();
    const loss = alignmentLoss(teacher, student);
    expect(loss.item()).toBeLessThan(1e-5);
    loss.backward();
    expect(student.grad!.data.every((g) => g === 0)).toBe(true);
  });

  test('gradient matches finite differences', () => {
    const rng = new Rng(3);
    const values = (): number[][] => Array.from({ length: 3 }, () => Array.from({ length: 4 }, () => rng.normal()));
    const teacher = tensor(values(), { dtype: 'float64' });
    const student = tensor(values(), { dtype: 'float64' }).requireGrad();
    const result = gradcheck((s) => alignmentLoss(teacher, s), [student]);
    expect(result.ok).toBe(true);
  });

  test('layers weigh equally', () => {
    const a = tensor([[1, 0, 0, 0]]);
    const zero = tensor([[0, 0, 0, 0]]);
    // Layer 0 differs by RMS 0.5, layer 1 agrees: the mean is 0.25.
    expect(layerAveragedAlignment([a, zero], [zero, zero]).item()).toBeCloseTo(0.25, 5);
  });
});

describe('logit losses', () => {
  test('KL of the teacher with itself is zero', () => {
    const teacher = randomTeacher();
    const ids = randomIds(10, 3);
    const logits = noGrad(() => teacher.forward(ids, 1, 10));
    const result = logitDistillationLoss(logits, logits, ids, { temperature: 1, klWeight: 1, ceWeight: 0 });
    expect(Math.abs(result.kl)).toBeLessThan(1e-6);
  });

  test('KL of a converted student is positive', () => {
    const teacher = randomTeacher();
    const student = convertTeacher(teacher, { init: 'fresh' });
    const ids = randomIds(10, 3);
    const teacherLogits = noGrad(() => teacher.forward(ids, 1, 10));
    const studentLogits = noGrad(() => student.forward(ids, 1, 10)).logits;
    const result = logitDistillationLoss(teacherLogits, studentLogits, ids, { temperature: 1, klWeight: 1, ceWeight: 0 });
    expect(result.kl).toBeGreaterThan(1e-3);
  });

  test('forward KL and T² values', () => {
    const teacher = tensor([[1, 2, 3]]);
    const student = tensor([[1, 1, 1]]).requireGrad();
    expect(klDivergence(teacher, student).item()).toBeCloseTo(0.266217, 5);
    const scaled = klDivergence(teacher, student, { temperature: 2 });
    expect(scaled.item()).toBeCloseTo(0.313684, 5);
    scaled.backward();
    const expected = [0.294019, 0.052275, -0.346294];
    expected.forEach((g, i) => expect(student.grad!.data[i]).toBeCloseTo(g, 5));
  });

  test('−∞ on both sides gives zero KL and zero gradient', () => {
    const teacher = tensor([[-Infinity, 0, 1], [-Infinity, -Infinity, 2]]);
    const student = tensor([[-Infinity, 0, 1], [-Infinity, -Infinity, 2]]).requireGrad();
    const loss = klDivergence(teacher, student);
    expect(loss.item()).toBe(0);
    loss.backward();
    expect(student.grad!.data.every((g) => g === 0)).toBe(true);
  });

  test('stage-3 mix adds weighted cross-entropy', () => {
    const teacher = tensor([[[1, 2, 3]]]);
    const student = tensor([[[1, 1, 1]]]);
    const result = logitDistillationLoss(teacher, student, [2], { temperature: 1, klWeight: 0.5, ceWeight: 0.5 });
    expect(result.ce).toBeCloseTo(Math.log(3), 6);
    expect(result.loss.item()).toBeCloseTo(0.5 * 0.266217 + 0.5 * Math.log(3), 5);
  });
});

describe('stage objectives', () => {
  test('stage 1 loss falls and the teacher is unchanged', () => {
    const teacher = randomTeacher();
    const before = teacher.namedParameters().map(([, p]) => Float32Array.from(p.data));
    const student = convertTeacher(teacher, { init: 'fresh' });
    const objective = new AlignmentObjective(teacher, student);
    expect(objective.trainable.every(([name]) => name.includes('.att.'))).toBe(true);
    const mlpBefore = Float32Array.from(student.blocks[0].mlp.c_fc.weight.data);
    const losses = optimise(objective, 25, 3e-3);
    expect(losses[24]).toBeLessThan(0.8 * losses[0]);
    teacher.namedParameters().forEach(([name, p], i) => {
      expect(p.grad, name).toBeNull();
      expect(Buffer.from(p.data.buffer).equals(Buffer.from(before[i].buffer)), name).toBe(true);
    });
    expect(Buffer.from(student.blocks[0].mlp.c_fc.weight.data.buffer).equals(Buffer.from(mlpBefore.buffer))).toBe(true);
  });

  test('stage 2 KL falls', () => {
    const teacher = randomTeacher();
    const student = convertTeacher(teacher, { init: 'fresh' });
    const objective = new LogitObjective(teacher, student, { temperature: 1, klWeight: 1, ceWeight: 0, freezeMlp: false, freezeEmbeddings: false });
    const losses = optimise(objective, 20, 3e-3);
    expect(losses[19]).toBeLessThan(0.7 * losses[0]);
  });

  test('freeze-mlp leaves the MLPs out', () => {
    const teacher = randomTeacher();
    const student = convertTeacher(teacher);
    const objective = new LogitObjective(teacher, student, { temperature: 1, klWeight: 1, ceWeight: 0, freezeMlp: true, freezeEmbeddings: false });
    expect(objective.trainable.some(([name]) => name.includes('.mlp.'))).toBe(false);
    expect(objective.trainable.some(([name]) => name === 'wte.weight')).toBe(true);
  });

  test('freeze-embeddings leaves wte and wpe out', () => {
    const teacher = randomTeacher();
    const student = convertTeacher(teacher, { positions: 'clamp' });
    const objective = new LogitObjective(teacher, student, { temperature: 1, klWeight: 1, ceWeight: 0, freezeMlp: false, freezeEmbeddings: true });
    const names = objective.trainable.map(([name]) => name);
    expect(names).not.toContain('wte.weight');
    expect(names).not.toContain('wpe.weight');
    expect(names.some((name) => name.includes('.mlp.'))).toBe(true);
    expect(names.some((name) => name.includes('.att.'))).toBe(true);
    optimise(objective, 2, 1e-3);
    expect(student.wte.weight.grad).toBeNull();
  });

  test('teacher logits repeat bit for bit', () => {
    const teacher = randomTeacher();
    const ids = randomIds(16, 4);
    const a = noGrad(() => teacher.forward(ids, 2, 8)).data;
    const b = noGrad(() => teacher.forward(ids, 2, 8)).data;
    expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer))).toBe(true);
  });
});

describe('distill run', () => {
  /** Teacher and student folders plus a corpus of 40 short documents. */
  function setUp(): { teacherDir: string; studentDir: string; dataPath: string } {
    const root = tempFolder();
    const teacherDir = join(root, 'teacher');
    const studentDir = join(root, 'student');
    saveGpt2Folder(randomTeacher(), teacherDir, { tokenizer: byteTokenizer() });
    saveStudentFolder(convertTeacher(randomTeacher()), studentDir);
    const rng = new Rng(9);
    const words = ['the', 'cat', 'sat', 'on', 'a', 'mat', 'and', 'dog', 'ran', 'far'];
    const documents = Array.from({ length: 40 }, () => Array.from({ length: 30 }, () => words[rng.int(words.length)]).join(' ') + '.');
    const dataPath = join(root, 'corpus.txt');
    writeFileSync(dataPath, documents.join(END_OF_TEXT));
    return { teacherDir, studentDir, dataPath };
  }

  const small: StageSettings = { ...DEFAULT_STAGE_SETTINGS[1], tokens: 6 * 2 * 16, batchSize: 2, seqLen: 16 };
  function options(paths: ReturnType<typeof setUp>, out: string, extra: Partial<DistillOptions> = {}): DistillOptions {
    return {
      teacher: paths.teacherDir,
      student: paths.studentDir,
      data: [paths.dataPath],
      out,
      stages: [1, 2],
      stageSettings: { 1: small, 2: { ...DEFAULT_STAGE_SETTINGS[2], ...small, lr: 1e-3 }, 3: { ...DEFAULT_STAGE_SETTINGS[3], ...small } },
      common: { ...DEFAULT_COMMON_SETTINGS, logEvery: 1, saveEvery: 2 },
      temperature: 1,
      klWeight: 0.5,
      ceWeight: 0.5,
      freezeMlp: false,
      freezeEmbeddings: false,
      quick: false,
      resume: false,
      log: () => {},
      progress: { write: () => true },
      ...extra,
    };
  }

  function trainLosses(out: string, stage: number): number[] {
    const lines = readFileSync(join(out, `stage${stage}`, 'metrics.jsonl'), 'utf8').trim().split('\n');
    return lines.map((line) => JSON.parse(line) as { kind: string; loss?: number }).filter((r) => r.kind === 'train').map((r) => r.loss!);
  }

  test('same seed gives the same losses; resume equals an uninterrupted run', async () => {
    const paths = setUp();
    const first = tempFolder();
    const second = tempFolder();
    const resumed = tempFolder();
    const logged: string[] = [];
    await runDistill(options(paths, first, { log: (line) => logged.push(line) }));
    await runDistill(options(paths, second));
    expect(trainLosses(second, 1)).toEqual(trainLosses(first, 1));
    expect(trainLosses(second, 2)).toEqual(trainLosses(first, 2));
    expect(trainLosses(first, 1)).toHaveLength(6);
    expect(logged.some((line) => /^stage 2 \| step 3\/6 \| kl \d+\.\d+ \| lr /.test(line))).toBe(true);
    expect(logged.some((line) => /^stage 1 \| step 1\/6 \| align /.test(line))).toBe(true);
    expect(logged.some((line) => /^stage 2 \| eval step 6 \| val kl \d+\.\d+$/.test(line))).toBe(true);

    // Stop in the middle of stage 2 (after 6 + 3 steps), then resume.
    let polls = 0;
    const stopped = await runDistill(options(paths, resumed, { stopRequested: () => ++polls > 9 }));
    expect(stopped.interrupted).toBe(true);
    const done = await runDistill(options(paths, resumed, { resume: true }));
    expect(done.interrupted).toBe(false);
    expect(done.stages.map((s) => s.skipped)).toEqual([true, false]);
    expect(trainLosses(resumed, 1)).toEqual(trainLosses(first, 1));
    expect(trainLosses(resumed, 2)).toEqual(trainLosses(first, 2));
  });

  test('existing checkpoint without --resume is rejected', async () => {
    const paths = setUp();
    const out = tempFolder();
    await runDistill(options(paths, out, { stages: [1], quick: true }));
    await expect(runDistill(options(paths, out, { stages: [1], quick: true }))).rejects.toThrow(/pass --resume/);
  });

  test('resume with changed stage settings is rejected', async () => {
    const paths = setUp();
    const out = tempFolder();
    await runDistill(options(paths, out, { stages: [1], quick: true }));
    const changed = options(paths, out, { stages: [1], quick: true, resume: true });
    changed.stageSettings = { ...changed.stageSettings, 1: { ...changed.stageSettings[1], lr: 5e-4 } };
    await expect(runDistill(changed)).rejects.toThrow(/stage 1: the checkpoint in .* was made with other settings \(lr 0\.001 → 0\.0005\)/);
  });

  test('resume accepts a changed log interval', async () => {
    const paths = setUp();
    const out = tempFolder();
    let polls = 0;
    const stopped = await runDistill(options(paths, out, { stopRequested: () => ++polls > 9 }));
    expect(stopped.interrupted).toBe(true);
    const resumed = options(paths, out, { resume: true });
    resumed.common = { ...resumed.common, logEvery: 5, saveEvery: 7, evalBatches: 1 };
    const done = await runDistill(resumed);
    expect(done.interrupted).toBe(false);
    const state = JSON.parse(readFileSync(join(out, 'stage2', 'model', 'trainer-state.json'), 'utf8')) as { settings: { logEvery: number; lr: number } };
    expect(state.settings.logEvery).toBe(5);
    expect(state.settings.lr).toBe(1e-3);
  });

  test('student of another teacher is rejected', async () => {
    const paths = setUp();
    saveStudentFolder(convertTeacher(randomTeacher(2)), paths.studentDir);
    await expect(runDistill(options(paths, tempFolder()))).rejects.toThrow(/converted from another teacher/);
  });

  test('vocabulary mismatch is rejected', async () => {
    const paths = setUp();
    const other = new Gpt2Model({ ...TINY, vocabSize: 300 }, { rng: new Rng(3) });
    saveStudentFolder(convertTeacher(other), paths.studentDir);
    const error = await runDistill(options(paths, tempFolder())).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InputError);
    expect((error as Error).message).toMatch(/vocab_size 300 but the teacher .* has 257/);
  });

  test('too small corpus names the tokens needed', async () => {
    const paths = setUp();
    writeFileSync(paths.dataPath, 'tiny text');
    const error = await runDistill(options(paths, tempFolder())).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InputError);
    expect((error as Error).message).toMatch(/stage 1: .*one batch needs batch size × \(sequence length \+ 1\) = 2 × 17 = 34/);
  });

  test('stage list parsing', () => {
    expect(parseStageList('2,1,2')).toEqual([1, 2]);
    expect(() => parseStageList('4')).toThrow(/not a stage/);
  });
});
