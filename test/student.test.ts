// The converted student: copy init reproduces the teacher's projections, sequence and RNN modes
// agree, folders round-trip, and the three position modes behave at the teacher's limit.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { noGrad } from '../src/autograd/index.js';
import { Gpt2Model, type BlockCapture, type Gpt2Config } from '../src/models/gpt2/index.js';
import { convertTeacher, loadStudentFolder, saveStudentFolder, studentNextLogits, type StudentModel } from '../src/models/student/index.js';
import type { TimeMixProbe } from '../src/models/rwkv7/index.js';
import { add, matmul, slice } from '../src/tensor/ops/index.js';
import { Rng } from '../src/tensor/random.js';
import type { Tensor } from '../src/tensor/tensor.js';

const TINY: Gpt2Config = { nEmbd: 32, nLayer: 2, nHead: 2, nPositions: 16, vocabSize: 64, layerNormEpsilon: 1e-5, nInner: 128, activation: 'gelu_new' };

/** Builds a teacher with N(0, 0.2²) weights and biases, so every copied tensor matters. */
function randomTeacher(seed = 1): Gpt2Model {
  const model = new Gpt2Model(TINY, 'zeros');
  const rng = new Rng(seed);
  for (const [name, p] of model.namedParameters()) {
    const offset = /ln_\d\.weight|ln_f\.weight/.test(name) ? 1 : 0;
    for (let i = 0; i < p.size; i++) p.data[i] = offset + 0.2 * rng.normal();
  }
  return model.setRequiresGrad(false);
}

/** Moves every time-mix parameter by N(0, 0.05²), so μ, gate and LoRAs are all non-zero. */
function perturbTimeMix(student: StudentModel, seed = 7): void {
  const rng = new Rng(seed);
  for (const [name, p] of student.namedParameters()) {
    if (!name.includes('.att.')) continue;
    for (let i = 0; i < p.size; i++) p.data[i] += 0.05 * rng.normal();
  }
}

function maxAbsDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

const ids = [3, 17, 42, 8, 8, 63, 0, 21, 5, 9];
const folders: string[] = [];
afterAll(() => folders.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

describe('copy init', () => {
  test('time mix uses exactly the copied projections', () => {
    const teacher = randomTeacher();
    const student = convertTeacher(teacher, { init: 'copy', tokenShift: false, bonus: false });
    const capture: BlockCapture = { attentionInputs: [], attentionOutputs: [] };
    noGrad(() => teacher.forward(ids, 1, ids.length, { capture }));
    const C = TINY.nEmbd;

    let vFirst: Tensor | null = null;
    for (let layer = 0; layer < TINY.nLayer; layer++) {
      const attention = teacher.h.blocks[layer].attn;
      const input = capture.attentionInputs[layer]; // (1, T, C)
      const qkv = add(matmul(input, attention.c_attn.weight), attention.c_attn.bias); // (1, T, 3C)
      const probe: TimeMixProbe = {};
      const result = noGrad(() => student.blocks[layer].att.forward(input, vFirst, null, probe));
      vFirst = result.vFirst;

      expect(maxAbsDifference(probe.r!.data, slice(qkv, 2, 0, C).data)).toBeLessThan(1e-5);
      expect(maxAbsDifference(probe.k!.data, slice(qkv, 2, C, 2 * C).data)).toBeLessThan(1e-5);
      if (layer === 0) expect(maxAbsDifference(probe.v!.data, slice(qkv, 2, 2 * C, 3 * C).data)).toBeLessThan(1e-5);
      // The gate is 1, so the output is c_proj applied to the normalised WKV output.
      expect(maxAbsDifference(probe.g!.data, new Float32Array(probe.g!.size).fill(1))).toBe(0);
      const expected = add(matmul(probe.normalized!, attention.c_proj.weight), attention.c_proj.bias); // (1, T, C)
      expect(maxAbsDifference(result.out.data, expected.data)).toBeLessThan(1e-5);
    }
  });

  test('initial values follow the recipe', () => {
    const student = convertTeacher(randomTeacher(), { init: 'copy' });
    const att = student.blocks[1].att;
    expect(att.x_r!.data.every((v) => v === 0)).toBe(true);
    expect(att.x_g!.data.every((v) => v === 0)).toBe(true);
    expect(att.a0.data.every((v) => v === 0)).toBe(true);
    expect(att.v0.data.every((v) => v === 1)).toBe(true);
    expect(att.k_k.data.every((v) => Math.abs(v - 0.85) < 1e-7)).toBe(true);
    expect(att.k_a.data.every((v) => v === 1)).toBe(true);
    expect(att.r_k!.data.every((v) => v === 0)).toBe(true);
    expect(att.g1.data.every((v) => v === 0)).toBe(true);
    expect(att.g2.data.every((v) => v === 0)).toBe(true);
    expect(att.w1.data.every((v) => v === 0)).toBe(true);
    expect(att.w2.data.some((v) => v !== 0)).toBe(true);
    expect(att.ln_x!.weight.data.every((v) => v === 1)).toBe(true);
    expect(att.ln_x!.bias.data.every((v) => v === 0)).toBe(true);
  });

  test('kept tensors equal the teacher', () => {
    const teacher = randomTeacher();
    const student = convertTeacher(teacher);
    const source = new Map(teacher.namedParameters());
    for (const [name, p] of student.namedParameters()) {
      if (name.includes('.att.')) continue;
      expect(maxAbsDifference(p.data, source.get(name)!.data), name).toBe(0);
    }
  });
});

describe('fresh init', () => {
  test('token shift follows ARWKV ramps, projections are not copied', () => {
    const teacher = randomTeacher();
    const student = convertTeacher(teacher, { init: 'fresh' });
    const att = student.blocks[0].att; // layer 0: ρ0 = 0, ρ1 = 1
    const C = TINY.nEmbd;
    expect(att.x_r!.data[4]).toBeCloseTo(1 - Math.pow(4 / C, 0.2), 6);
    expect(att.x_v!.data[4]).toBeCloseTo(1 - Math.pow(4 / C, 0.4), 6);
    expect(att.x_g!.data.every((v) => v === 1)).toBe(true);
    const q = teacher.h.blocks[0].attn.c_attn.weight;
    expect(att.receptance.weight.data[0]).not.toBe(q.data[0]);
  });
});

describe('recurrent mode', () => {
  test('sequence and RNN logits agree', () => {
    const student = convertTeacher(randomTeacher(), { init: 'copy' });
    perturbTimeMix(student);
    const sequence = noGrad(() => student.forward(ids, 1, ids.length)).logits.data;
    let state = null;
    const V = TINY.vocabSize;
    for (let t = 0; t < ids.length; t++) {
      const step = student.step(ids[t], state);
      state = step.state;
      expect(maxAbsDifference(step.logits.data, sequence.subarray(t * V, (t + 1) * V))).toBeLessThan(2e-5);
    }
  });

  test('step leaves its input state unchanged', () => {
    const student = convertTeacher(randomTeacher());
    perturbTimeMix(student);
    const first = student.step(ids[0]);
    const before = first.state.layers.map((layer) => [Float32Array.from(layer.xPrev.data), Float32Array.from(layer.wkv.data)]);
    const a = student.step(ids[1], first.state).logits.data;
    const b = student.step(ids[1], first.state).logits.data;
    expect(maxAbsDifference(a, b)).toBe(0);
    first.state.layers.forEach((layer, i) => {
      expect(maxAbsDifference(layer.xPrev.data, before[i][0])).toBe(0);
      expect(maxAbsDifference(layer.wkv.data, before[i][1])).toBe(0);
    });
    expect(first.state.position).toBe(1);
  });

  test('chunked sequence mode equals one pass', () => {
    const student = convertTeacher(randomTeacher(), { init: 'fresh' });
    const whole = noGrad(() => student.forward(ids, 1, ids.length)).logits.data;
    const first = noGrad(() => student.forward(ids.slice(0, 4), 1, 4));
    const second = noGrad(() => student.forward(ids.slice(4), 1, ids.length - 4, { state: first.state })).logits.data;
    expect(maxAbsDifference(second, whole.subarray(4 * TINY.vocabSize))).toBeLessThan(2e-5);
  });

  test('nextLogits matches sequence logits and resets for a new context', () => {
    const student = convertTeacher(randomTeacher());
    perturbTimeMix(student);
    const V = TINY.vocabSize;
    const sequence = noGrad(() => student.forward(ids, 1, ids.length)).logits.data;
    const next = studentNextLogits(student);
    expect(maxAbsDifference(next(ids.slice(0, 5)), sequence.subarray(4 * V, 5 * V))).toBeLessThan(2e-5);
    expect(maxAbsDifference(next(ids.slice(0, 6)), sequence.subarray(5 * V, 6 * V))).toBeLessThan(2e-5);
    const other = next([9, 9]);
    const fresh = noGrad(() => student.forward([9, 9], 1, 2)).logits.data;
    expect(maxAbsDifference(other, fresh.subarray(V))).toBeLessThan(2e-5);
    expect(maxAbsDifference(next(ids.slice(0, 5)), sequence.subarray(4 * V, 5 * V))).toBeLessThan(2e-5);
  });
});

describe('positions', () => {
  const long = Array.from({ length: TINY.nPositions + 4 }, (_, i) => (i * 7) % TINY.vocabSize);

  test('keep rejects a position beyond the limit', () => {
    const student = convertTeacher(randomTeacher(), { positions: 'keep' });
    expect(() => student.forward(long, 1, long.length)).toThrow(/beyond the 16 learned positions/);
  });

  test('clamp reuses the last learned row', () => {
    const student = convertTeacher(randomTeacher(), { positions: 'clamp' });
    const logits = noGrad(() => student.forward(long, 1, long.length)).logits;
    expect(logits.data.every(Number.isFinite)).toBe(true);
    const keepWithin = noGrad(() => student.forward(long.slice(0, 16), 1, 16, { positions: 'keep' })).logits.data;
    expect(maxAbsDifference(keepWithin, logits.data.subarray(0, 16 * TINY.vocabSize))).toBe(0);
  });

  test('drop has no position table', () => {
    const student = convertTeacher(randomTeacher(), { positions: 'drop' });
    expect(student.wpe).toBeNull();
    expect(student.namedParameters().some(([name]) => name.startsWith('wpe'))).toBe(false);
    expect(noGrad(() => student.forward(long, 1, long.length)).logits.data.every(Number.isFinite)).toBe(true);
  });
});

describe('student folders', () => {
  test('save and load round-trip', () => {
    const student = convertTeacher(randomTeacher(), { tokenShift: true, bonus: false, positions: 'clamp' });
    perturbTimeMix(student);
    const dir = mkdtempSync(join(tmpdir(), 'rwkvify-student-'));
    folders.push(dir);
    saveStudentFolder(student, dir);
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(config.model_type).toBe('rwkv7-student');
    expect(config.positions).toBe('clamp');
    expect(config.teacher_fingerprint).toBe(student.config.teacherFingerprint);
    const loaded = loadStudentFolder(dir);
    expect(loaded.namedParameters().map(([n]) => n)).toEqual(student.namedParameters().map(([n]) => n));
    const a = noGrad(() => student.forward(ids, 1, ids.length)).logits.data;
    const b = noGrad(() => loaded.forward(ids, 1, ids.length)).logits.data;
    expect(maxAbsDifference(a, b)).toBe(0);
    expect(student.namedParameters().some(([n]) => n === 'h.1.att.receptance.bias')).toBe(true);
    expect(student.namedParameters().some(([n]) => n === 'h.0.ln_1.weight')).toBe(true);
  });

  test('fingerprint differs between teachers', () => {
    const a = convertTeacher(randomTeacher(1));
    const b = convertTeacher(randomTeacher(2));
    expect(a.config.teacherFingerprint).not.toBe(b.config.teacherFingerprint);
    expect(a.config.teacherFingerprint).toBe(convertTeacher(randomTeacher(1)).config.teacherFingerprint);
  });
});
