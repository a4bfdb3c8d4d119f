import { afterEach, describe, expect, it } from 'vitest';

import { EXP_UNDERFLOW } from '../src/kernels/wasm/softmax-rows-module.js';
import {
  allocateRowExpSums,
  setWasmSoftmaxRowsEnabled,
  softmaxRowKernelsFor,
  softmaxRowsReference,
  wasmSoftmaxRows,
  wasmSoftmaxRowsMemoryBytes,
  type KlGradientParams,
  type KlRowSums,
  type SoftmaxRowKernels,
} from '../src/kernels/wasm/softmax-rows.js';
import { Rng } from '../src/index.js';
import { crossEntropy, klDivergence } from '../src/tensor/ops/index.js';
import { klGradientParams, klOfRow } from '../src/tensor/ops/losses.js';
import { Tensor } from '../src/tensor/tensor.js';

const wasmOrNull = wasmSoftmaxRows();

/** Returns the WebAssembly kernels; Node 20 and later always have SIMD, so their absence fails the test. */
function wasmKernels(): SoftmaxRowKernels {
  if (wasmOrNull === null) throw new Error('WebAssembly SIMD kernels are unavailable on this runtime');
  return wasmOrNull;
}

/** exp of every element through scaledExp with shift 0, scale 1 and a = 1, which adds no rounding. */
function wasmExp(values: ArrayLike<number>): Float32Array {
  const x = Float32Array.from(values);
  const out = new Float32Array(x.length);
  wasmKernels().scaledExp(x, x.length, new Int32Array([0]), 1, new Float64Array([0]), new Float64Array([1]), out);
  return out;
}

type Kind = 'normal' | 'wide' | 'huge' | 'tiny' | 'negInf';

/** Row-major float32 rows of one kind; 'negInf' puts −∞ in about a third of the entries and fills row 2 with −∞. */
function randomRows(rng: Rng, rows: number, cols: number, kind: Kind): Float32Array {
  const data = new Float32Array(rows * cols);
  for (let i = 0; i < data.length; i++) {
    const u = rng.normal();
    switch (kind) {
      case 'normal':
        data[i] = 3 * u;
        break;
      case 'wide':
        data[i] = 80 * (2 * rng.uniform() - 1);
        break;
      case 'huge':
        data[i] = 3e4 + 1e3 * u;
        break;
      case 'tiny':
        data[i] = 1e-30 * u;
        break;
      case 'negInf':
        data[i] = rng.uniform() < 0.35 || Math.floor(i / cols) === 2 ? -Infinity : 2 * u;
        break;
    }
  }
  return data;
}

/** Every row but row 1, so the kernels must leave an unlisted row alone. */
function listedRows(rows: number): Int32Array {
  return Int32Array.from({ length: rows }, (_, r) => r).filter((r) => r !== 1);
}

function expectClose(actual: number, expected: number, tolerance: number, what: string): void {
  const error = Math.abs(actual - expected);
  if (!(error <= tolerance) && !(Number.isNaN(actual) && Number.isNaN(expected)) && actual !== expected) {
    expect.fail(`${what}: got ${actual}, expected ${expected} (error ${error} > ${tolerance})`);
  }
}

function allocateKlSums(rows: number): KlRowSums {
  return { teacher: allocateRowExpSums(rows), student: allocateRowExpSums(rows), weighted: new Float64Array(rows) };
}

/** Gradient parameters from reference sums, built by klDivergence's own helpers. */
function klParams(sums: KlRowSums, rows: Int32Array, scale: number): KlGradientParams {
  const klRows = new Float64Array(sums.weighted.length);
  for (const r of rows) klRows[r] = klOfRow(sums.teacher.sum[r], sums.student.sum[r], sums.weighted[r]);
  return klGradientParams(sums, klRows, rows, scale);
}

/**
 * Float32 error bound of one KL gradient element. Both gradients subtract terms of size
 * scale·p: gs = scaleS·e_s − scaleT·e_t, gt = scaleT·e_t·(z_t − z_s + offset), where the bracket
 * cancels terms of size |z| (log p_t − log p_s − KL is near 0 where the teacher is sure).
 */
function klGradientTolerance(teacherSide: boolean, t: number, s: number, r: number, a: number, params: KlGradientParams): number {
  const zt = a * (t - params.shiftT[r]);
  const zs = a * (s - params.shiftS[r]);
  // q·(1 + |z|) with a zero q (e = 0 at z = −∞) counting as 0.
  const term = (q: number, z: number): number => (q === 0 ? 0 : q * (1 + Math.abs(z)));
  const qt = params.scaleT[r] * Math.exp(zt);
  const qs = params.scaleS[r] * Math.exp(zs);
  const magnitude = teacherSide
    ? term(qt, zt) * (1 + Math.abs(zt) + Math.abs(zs) + Math.abs(params.offset[r]))
    : term(qs, zs) + term(qt, zt);
  // The floor covers entries that wasm flushes to 0 below its exp underflow (e < 1.8e-38).
  return 1e-6 * magnitude + 1e-33;
}

describe('wasm exp', () => {
  it('matches Math.exp within 2e-7 relative', () => {
    const points = 400_001;
    const x = Float32Array.from({ length: points }, (_, i) => EXP_UNDERFLOW + ((88.72 - EXP_UNDERFLOW) * i) / (points - 1));
    const out = wasmExp(x);
    let worst = 0;
    for (let i = 0; i < points; i++) worst = Math.max(worst, Math.abs(out[i] - Math.exp(x[i])) / Math.exp(x[i]));
    expect(worst).toBeLessThan(2e-7);
  });

  it('gives 0 below the underflow threshold', () => {
    const x = Float32Array.from({ length: 1000 }, (_, i) => -104 + ((EXP_UNDERFLOW - -104) * i) / 1000);
    expect(Array.from(wasmExp(x)).every((v) => v === 0)).toBe(true);
  });

  it('handles infinities, zero, NaN and overflow', () => {
    const x = [-Infinity, 0, -0, NaN, Infinity, 88.72, 88.73, -1e30, 1e30];
    const out = wasmExp(x);
    expect(out[0]).toBe(0);
    expect(out[1]).toBe(1);
    expect(out[2]).toBe(1);
    expect(out[3]).toBeNaN();
    expect(out[4]).toBe(Infinity);
    expectClose(out[5], Math.exp(Math.fround(88.72)), 2e-7 * Math.exp(88.72), 'exp(88.72)');
    expect(out[6]).toBe(Infinity);
    expect(out[7]).toBe(0);
    expect(out[8]).toBe(Infinity);
  });
});

describe('softmax row kernels, wasm against reference', () => {
  const widths = [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33, 100, 1000];
  const kinds: Kind[] = ['normal', 'wide', 'huge', 'tiny', 'negInf'];
  const cases = widths.flatMap((cols) => kinds.map((kind) => ({ cols, kind })));

  it.each(cases)('expSums and scaledExp, width $cols, $kind values', ({ cols, kind }) => {
    const rng = new Rng(cols * 31 + kind.length);
    const rows = 4;
    const a = kind === 'wide' ? 1 : 0.7;
    const x = randomRows(rng, rows, cols, kind);
    const list = listedRows(rows);
    const ref = allocateRowExpSums(rows);
    const got = allocateRowExpSums(rows);
    softmaxRowsReference.expSums(x, cols, list, a, ref);
    wasmKernels().expSums(x, cols, list, a, got);
    for (const r of list) {
      expect(got.shift[r]).toBe(ref.shift[r]);
      expectClose(got.sum[r], ref.sum[r], 2e-6 * ref.sum[r], `sum of row ${r}`);
    }

    const scale = Float64Array.from(ref.sum, (s) => (s === 0 ? 0 : 0.5 / s));
    const refOut = new Float32Array(rows * cols).fill(7);
    const gotOut = new Float32Array(rows * cols).fill(7);
    softmaxRowsReference.scaledExp(x, cols, list, a, ref.shift, scale, refOut);
    wasmKernels().scaledExp(x, cols, list, a, ref.shift, scale, gotOut);
    for (let i = 0; i < rows * cols; i++) {
      // exp(z) of a float32 z = a·(x − shift) carries z's rounding, about 2e-7·|z| relative.
      // Reference values below the wasm underflow threshold (about 1e-38) come back as 0.
      const z = a * (x[i] - ref.shift[Math.floor(i / cols)]);
      expectClose(gotOut[i], refOut[i], (1e-6 + 2e-7 * Math.abs(z)) * refOut[i] + 1e-37, `scaledExp element ${i}`);
    }
    expect(Array.from(gotOut.subarray(cols, 2 * cols)).every((v) => v === 7)).toBe(true);
  });

  it.each(cases)('klSums and klGradients, width $cols, $kind values', ({ cols, kind }) => {
    const rng = new Rng(cols * 17 + kind.length);
    const rows = 4;
    const a = kind === 'wide' ? 1 : 1 / 2.5;
    const teacher = randomRows(rng, rows, cols, kind);
    const student = randomRows(rng, rows, cols, kind === 'negInf' ? 'normal' : kind);
    const list = listedRows(rows);
    const ref = allocateKlSums(rows);
    const got = allocateKlSums(rows);
    softmaxRowsReference.klSums(teacher, student, cols, list, a, ref);
    wasmKernels().klSums(teacher, student, cols, list, a, got);
    for (const r of list) {
      expect(got.teacher.shift[r]).toBe(ref.teacher.shift[r]);
      expect(got.student.shift[r]).toBe(ref.student.shift[r]);
      expectClose(got.teacher.sum[r], ref.teacher.sum[r], 2e-6 * ref.teacher.sum[r], `teacher sum of row ${r}`);
      expectClose(got.student.sum[r], ref.student.sum[r], 2e-6 * ref.student.sum[r], `student sum of row ${r}`);
      // Σ e_t·|z_t − z_s| bounds the rounding of the weighted gap.
      let bound = 0;
      for (let c = 0; c < cols; c++) {
        const zt = a * (teacher[r * cols + c] - ref.teacher.shift[r]);
        const zs = a * (student[r * cols + c] - ref.student.shift[r]);
        if (zt !== -Infinity) bound += Math.exp(zt) * Math.abs(zt - zs);
      }
      expectClose(got.weighted[r], ref.weighted[r], 2e-6 * bound + 1e-30, `weighted gap of row ${r}`);
    }

    const params = klParams(ref, list, 0.3);
    for (const [withTeacher, withStudent] of [[true, true], [true, false], [false, true]]) {
      const outputs = (): [Float32Array | null, Float32Array | null] => [
        withTeacher ? new Float32Array(rows * cols).fill(7) : null,
        withStudent ? new Float32Array(rows * cols).fill(7) : null,
      ];
      const [refGt, refGs] = outputs();
      const [gotGt, gotGs] = outputs();
      softmaxRowsReference.klGradients(teacher, student, cols, list, a, params, refGt, refGs);
      wasmKernels().klGradients(teacher, student, cols, list, a, params, gotGt, gotGs);
      const pairs: [string, Float32Array | null, Float32Array | null][] = [
        ['teacher gradient', gotGt, refGt],
        ['student gradient', gotGs, refGs],
      ];
      for (const [name, gotGradient, refGradient] of pairs) {
        if (gotGradient === null || refGradient === null) continue;
        for (const r of list) {
          for (let i = r * cols; i < (r + 1) * cols; i++) {
            const tolerance = klGradientTolerance(name === 'teacher gradient', teacher[i], student[i], r, a, params);
            expectClose(gotGradient[i], refGradient[i], tolerance, `${name} element ${i}`);
          }
        }
        expect(Array.from(gotGradient.subarray(cols, 2 * cols)).every((v) => v === 7)).toBe(true);
      }
    }
  });

  it('splits many rows into chunks', () => {
    // 3000 rows of 17 floats use a stride of 32, so 1024 rows fit in a chunk and this takes three.
    const rows = 3000;
    const cols = 17;
    const x = randomRows(new Rng(3000), rows, cols, 'normal');
    const list = Int32Array.from({ length: rows }, (_, r) => r).filter((r) => r % 7 !== 3);
    const ref = allocateRowExpSums(rows);
    const got = allocateRowExpSums(rows);
    softmaxRowsReference.expSums(x, cols, list, 1, ref);
    wasmKernels().expSums(x, cols, list, 1, got);
    for (const r of list) expectClose(got.sum[r], ref.sum[r], 2e-6 * ref.sum[r], `sum of row ${r}`);
    expect(got.sum[3]).toBe(0);

    const scale = Float64Array.from(ref.sum, (sum) => (sum === 0 ? 0 : 1 / sum));
    const refOut = new Float32Array(rows * cols);
    const gotOut = new Float32Array(rows * cols);
    softmaxRowsReference.scaledExp(x, cols, list, 1, ref.shift, scale, refOut);
    wasmKernels().scaledExp(x, cols, list, 1, ref.shift, scale, gotOut);
    for (let i = 0; i < rows * cols; i++) expectClose(gotOut[i], refOut[i], 4e-6 * refOut[i], `softmax element ${i}`);
  });

  it('sums a 50,257-wide row to 1e-6 relative', () => {
    const rng = new Rng(50257);
    const cols = 50257;
    const x = randomRows(rng, 2, cols, 'normal');
    const list = new Int32Array([0, 1]);
    const ref = allocateRowExpSums(2);
    const got = allocateRowExpSums(2);
    softmaxRowsReference.expSums(x, cols, list, 1, ref);
    wasmKernels().expSums(x, cols, list, 1, got);
    for (const r of [0, 1]) expectClose(got.sum[r], ref.sum[r], 1e-6 * ref.sum[r], `sum of row ${r}`);
  });

  it('expSums of a row of −∞', () => {
    const got = allocateRowExpSums(1);
    wasmKernels().expSums(new Float32Array([-Infinity, -Infinity, -Infinity]), 3, new Int32Array([0]), 1, got);
    expect(got.shift[0]).toBe(0);
    expect(got.sum[0]).toBe(0);
  });

  it('expSums of a row with NaN', () => {
    const got = allocateRowExpSums(1);
    wasmKernels().expSums(new Float32Array([1, NaN, 2]), 3, new Int32Array([0]), 1, got);
    expect(got.sum[0]).toBeNaN();
  });

  it('keeps memory small on long inputs', () => {
    const rows = 64;
    const V = 50257;
    const logits = new Tensor(randomRows(new Rng(3), rows, V, 'normal'), [rows, V]).requireGrad();
    const loss = crossEntropy(logits, Array.from({ length: rows }, (_, r) => r));
    loss.backward();
    expect(Number.isFinite(loss.item())).toBe(true);
    // The input alone is 12.9 MB; the kernels work on one row at a time.
    expect(wasmSoftmaxRowsMemoryBytes()).toBeLessThan(4 * 1024 * 1024);
  });
});

/** Builds a float32 and a float64 tensor of the same float32 values, both requiring gradients. */
function twin(values: Float32Array, shape: number[]): [Tensor, Tensor] {
  return [new Tensor(Float32Array.from(values), shape).requireGrad(), new Tensor(Float64Array.from(values), shape).requireGrad()];
}

/**
 * Checks a float32 gradient against float64: within 2e-6 relative, plus `floor` for the float32
 * rounding of the terms that the gradient subtracts (about 1e-7 of the loss scale per unit of |z|).
 */
function expectGradientClose(got: ArrayLike<number>, expected: ArrayLike<number>, floor: number, what: string): void {
  for (let i = 0; i < expected.length; i++) {
    expectClose(got[i], expected[i], 2e-6 * Math.abs(expected[i]) + floor, `${what} element ${i}`);
  }
}

describe('losses, float32 path against float64', () => {
  afterEach(() => setWasmSoftmaxRowsEnabled(true));

  it('routes float32 to wasm and float64 to the reference', () => {
    expect(softmaxRowKernelsFor(new Float32Array(1)).name).toBe('wasm');
    expect(softmaxRowKernelsFor(new Float64Array(1)).name).toBe('js');
    setWasmSoftmaxRowsEnabled(false);
    expect(softmaxRowKernelsFor(new Float32Array(1)).name).toBe('js');
  });

  const ceCases = [
    { rows: 6, V: 1, wasm: true },
    { rows: 6, V: 7, wasm: true },
    { rows: 5, V: 300, wasm: true },
    { rows: 2, V: 50257, wasm: true },
    { rows: 5, V: 300, wasm: false },
  ];
  it.each(ceCases)('crossEntropy, $rows rows of $V, wasm $wasm', ({ rows, V, wasm }) => {
    setWasmSoftmaxRowsEnabled(wasm);
    const rng = new Rng(V + rows);
    const values = randomRows(rng, rows, V, 'normal');
    const targets = Array.from({ length: rows }, (_, r) => (r === 1 ? -100 : rng.int(V)));
    const [x32, x64] = twin(values, [rows, V]);
    const loss32 = crossEntropy(x32, targets);
    const loss64 = crossEntropy(x64, targets);
    expectClose(loss32.item(), loss64.item(), 1e-6 * Math.max(1, Math.abs(loss64.item())), 'loss');
    loss32.backward();
    loss64.backward();
    // Each counted row's gradient is p·scale − scale at the target, scale = 1 / (rows − 1).
    expectGradientClose(x32.grad!.data, x64.grad!.data, 1e-6 / (rows - 1), 'gradient');
    expect(Array.from(x32.grad!.data.subarray(V, 2 * V)).every((g) => g === 0)).toBe(true);
  });

  const klCases = [
    { V: 1, temperature: 1, needs: 'both', wasm: true },
    { V: 9, temperature: 0.7, needs: 'both', wasm: true },
    { V: 1000, temperature: 3, needs: 'both', wasm: true },
    { V: 1000, temperature: 2, needs: 'student', wasm: true },
    { V: 1000, temperature: 2, needs: 'teacher', wasm: true },
    { V: 333, temperature: 1.5, needs: 'both', wasm: false },
  ];
  it.each(klCases)('klDivergence, V $V, T $temperature, gradient of $needs, wasm $wasm', ({ V, temperature, needs, wasm }) => {
    setWasmSoftmaxRowsEnabled(wasm);
    const rng = new Rng(V * 7 + Math.round(temperature * 10));
    const rows = 5;
    const mask = [1, 0, 1, 1, 1];
    const [t32, t64] = twin(randomRows(rng, rows, V, 'normal'), [rows, V]);
    const [s32, s64] = twin(randomRows(rng, rows, V, 'normal'), [rows, V]);
    for (const t of [t32, t64]) if (needs === 'student') t.requiresGrad = false;
    for (const s of [s32, s64]) if (needs === 'teacher') s.requiresGrad = false;
    const loss32 = klDivergence(t32, s32, { temperature, mask });
    const loss64 = klDivergence(t64, s64, { temperature, mask });
    // KL = Σ p_t·(z_t − z_s) − (lse_t − lse_s) cancels terms of order 1, so its float32 error is absolute.
    expectClose(loss32.item(), loss64.item(), 2e-6 * temperature * temperature * Math.max(1, loss64.item()), 'loss');
    loss32.backward();
    loss64.backward();
    // Gradients are T / count (4 rows) times differences of probabilities, rounded in float32
    // with about 1e-7·|z|, and these logits keep |z| below about 30.
    const floor = 3e-6 * (temperature / 4);
    if (needs !== 'student') expectGradientClose(t32.grad!.data, t64.grad!.data, floor, 'teacher gradient');
    if (needs !== 'teacher') expectGradientClose(s32.grad!.data, s64.grad!.data, floor, 'student gradient');
    if (needs === 'student') expect(t32.grad).toBeNull();
    if (needs === 'teacher') expect(s32.grad).toBeNull();
  });
});

describe('losses, special values', () => {
  const dtypes = ['float32', 'float64'] as const;
  const make = (values: number[], shape: number[], dtype: 'float32' | 'float64'): Tensor =>
    new Tensor(dtype === 'float32' ? Float32Array.from(values) : Float64Array.from(values), shape).requireGrad();

  it.each(dtypes)('crossEntropy gives NaN for a NaN logit in a counted row, %s', (dtype) => {
    const x = make([0, NaN, 1, 2, 3, 4], [2, 3], dtype);
    const loss = crossEntropy(x, [0, 2]);
    expect(loss.item()).toBeNaN();
    loss.backward();
    expect(Array.from(x.grad!.data.subarray(0, 3)).some((g) => Number.isNaN(g))).toBe(true);
  });

  it.each(dtypes)('crossEntropy ignores a NaN in an ignored row, %s', (dtype) => {
    const x = make([0, NaN, 1, 2, 3, 4], [2, 3], dtype);
    const loss = crossEntropy(x, [-100, 2]);
    expectClose(loss.item(), Math.log(Math.exp(2) + Math.exp(3) + Math.exp(4)) - 4, 1e-6, 'loss');
  });

  it.each(dtypes)('klDivergence gives NaN for a NaN on either side, %s', (dtype) => {
    for (const side of ['teacher', 'student']) {
      const clean = [0.5, 1, -1, 2];
      const dirty = [0.5, NaN, -1, 2];
      const t = make(side === 'teacher' ? dirty : clean, [1, 4], dtype);
      const s = make(side === 'student' ? dirty : clean, [1, 4], dtype);
      expect(klDivergence(t, s).item()).toBeNaN();
    }
  });

  it.each(dtypes)('crossEntropy gives exact zero gradient at −∞ logits, %s', (dtype) => {
    const x = make([-Infinity, 0, 1, -Infinity], [1, 4], dtype);
    const loss = crossEntropy(x, [2]);
    expect(loss.item()).toBeCloseTo(Math.log(1 + Math.exp(-1)), 6);
    loss.backward();
    expect(x.grad!.data[0]).toBe(0);
    expect(x.grad!.data[3]).toBe(0);
  });

  it.each(dtypes)('klDivergence with −∞ teacher logits and a finite student is finite, %s', (dtype) => {
    const t = make([-Infinity, 0, 1, -Infinity], [1, 4], dtype);
    const s = make([3, 0.5, 1, -2], [1, 4], dtype);
    const loss = klDivergence(t, s);
    const pt = [0, 1 / (1 + Math.E), Math.E / (1 + Math.E), 0];
    const lse = Math.log(Math.exp(3) + Math.exp(0.5) + Math.exp(1) + Math.exp(-2));
    const expected = pt[1] * (Math.log(pt[1]) - (0.5 - lse)) + pt[2] * (Math.log(pt[2]) - (1 - lse));
    expectClose(loss.item(), expected, 2e-6, 'loss');
    loss.backward();
    expect(t.grad!.data[0]).toBe(0);
    expect(t.grad!.data[3]).toBe(0);
    expect(Array.from(s.grad!.data).every((g) => Number.isFinite(g))).toBe(true);
  });

  it.each(dtypes)('klDivergence rows of −∞ only: teacher gives 0, student gives +∞, %s', (dtype) => {
    const teacherEmpty = klDivergence(make([-Infinity, -Infinity, 1, 2], [2, 2], dtype), make([0, 1, 1, 2], [2, 2], dtype));
    expect(teacherEmpty.item()).toBe(0);
    const studentEmpty = klDivergence(make([0, 1], [1, 2], dtype), make([-Infinity, -Infinity], [1, 2], dtype));
    expect(studentEmpty.item()).toBe(Infinity);
  });
});
