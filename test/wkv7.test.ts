import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { wkv7Backward, wkv7Forward } from '../src/kernels/wkv7.js';
import { wkv7BackwardReference, wkv7ForwardReference } from '../src/kernels/wkv7-reference.js';
import type { Wkv7Dims, Wkv7Gradients, Wkv7Inputs } from '../src/kernels/wkv7-types.js';
import type { FloatArray } from '../src/kernels/types.js';

// ---------------------------------------------------------------------------------------------
// Helpers

const GRAD_NAMES = ['dr', 'dw', 'dk', 'dv', 'da', 'db', 'ds0'] as const;
const TOKEN_NAMES = ['r', 'w', 'k', 'v', 'a', 'b'] as const;

/** Deterministic uniform [0, 1) generator (32-bit LCG), so failures reproduce. */
function makeRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 4294967296;
  };
}

/**
 * Random kernel inputs shaped like the model's: a = −κ̂ and b = κ̂·α with κ̂ of unit length per
 * head, decays in (0.55, 1) as the soft clamp produces, and a random initial state when asked.
 */
function randomInputs(d: Wkv7Dims, seed: number, withState: boolean): Wkv7Inputs {
  const random = makeRandom(seed);
  const length = d.B * d.T * d.H * d.N;
  const fill = (f: () => number): Float64Array => Float64Array.from({ length }, f);
  const kappa = fill(() => random() - 0.5);
  for (let o = 0; o < length; o += d.N) {
    let norm = 0;
    for (let j = 0; j < d.N; j++) norm += kappa[o + j] ** 2;
    norm = Math.max(Math.sqrt(norm), 1e-12);
    for (let j = 0; j < d.N; j++) kappa[o + j] /= norm;
  }
  const alpha = fill(() => random());
  return {
    r: fill(() => random() - 0.5),
    w: fill(() => Math.exp(-Math.exp(-0.5) * random())),
    k: fill(() => (random() - 0.5) * 0.6),
    v: fill(() => random() - 0.5),
    a: kappa.map((z) => -z),
    b: kappa.map((z, q) => z * alpha[q]),
    s0: withState ? Float64Array.from({ length: d.B * d.H * d.N * d.N }, () => (random() - 0.5) * 0.6) : null,
  };
}

function randomArray(length: number, seed: number): Float64Array {
  const random = makeRandom(seed);
  return Float64Array.from({ length }, () => random() - 0.5);
}

function toFloat32(x: Wkv7Inputs): Wkv7Inputs {
  return {
    r: Float32Array.from(x.r),
    w: Float32Array.from(x.w),
    k: Float32Array.from(x.k),
    v: Float32Array.from(x.v),
    a: Float32Array.from(x.a),
    b: Float32Array.from(x.b),
    s0: x.s0 === null ? null : Float32Array.from(x.s0),
  };
}

/** Largest |actual − expected| / (atol + rtol·|expected|); ≤ 1 means within tolerance. */
function worstRatio(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number, atol: number) {
  let worst = 0;
  let index = -1;
  for (let i = 0; i < expected.length; i++) {
    const diff = Math.abs(actual[i] - expected[i]);
    const ratio = diff === 0 ? 0 : diff / (atol + rtol * Math.abs(expected[i]));
    if (!(ratio <= worst)) {
      worst = ratio;
      index = i;
    }
  }
  return { worst, index };
}

function expectClose(
  name: string,
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  rtol: number,
  atol: number,
): void {
  expect(actual.length, `${name} length`).toBe(expected.length);
  const { worst, index } = worstRatio(actual, expected, rtol, atol);
  const detail = index < 0 ? '' : `at [${index}]: got ${actual[index]}, expected ${expected[index]}`;
  expect(worst, `${name} ${detail}`).toBeLessThanOrEqual(1);
}

function expectGradientsClose(actual: Wkv7Gradients, expected: Wkv7Gradients, rtol: number, atol: number): void {
  for (const name of GRAD_NAMES) expectClose(name, actual[name], expected[name], rtol, atol);
}

/** L = Σ y·dy + Σ s_T·dsT, the scalar whose gradient the backward returns. */
function lossOf(x: Wkv7Inputs, d: Wkv7Dims, dy: Float64Array, dsT: Float64Array | null): number {
  const { y, sT } = wkv7ForwardReference(x, d);
  let loss = 0;
  for (let i = 0; i < y.length; i++) loss += y[i] * dy[i];
  if (dsT !== null) for (let i = 0; i < sT.length; i++) loss += sT[i] * dsT[i];
  return loss;
}

// ---------------------------------------------------------------------------------------------
// Worked example: C = 4, one head N = 4, T = 2, values printed with 6 decimals

describe('wkv7 worked example', () => {
  const rows = (m: number[][]) => Float64Array.from(m.flat());
  const r = [[0.550992, -0.660195, 0.312073, 0.252226], [-0.007776, 0.146723, -0.184033, 0.093861]];
  const w = [[0.92578, 0.90156, 0.817691, 0.749235], [0.934193, 0.905459, 0.808099, 0.732997]];
  const v = [[-0.024484, -0.552104, 0.746242, -0.423449], [0.347288, -0.093435, -0.225142, 0.38776]];
  const alpha = [[0.505074, 0.40285, 0.390401, 0.478029], [0.517068, 0.395545, 0.371323, 0.463832]];
  const kappa = [[0.054378, -0.526318, 0.763286, -0.37071], [0.534957, -0.626716, 0.205226, 0.528139]];
  const kTilde = [[0.027687, -0.176445, 0.154904, -0.075212], [0.18559, -0.139066, 0.026374, 0.068656]];
  const dy = rows([[-0.702579, -0.978401, -0.354685, 0.595127], [0.997781, 0.48308, -0.475762, -0.997191]]);

  const x: Wkv7Inputs = {
    r: rows(r),
    w: rows(w),
    k: rows(kTilde),
    v: rows(v),
    a: rows(kappa.map((row) => row.map((z) => -z))),
    b: rows(kappa.map((row, t) => row.map((z, j) => z * alpha[t][j]))),
    s0: null,
  };
  const d: Wkv7Dims = { B: 1, T: 2, H: 1, N: 4 };

  const expectedY = [-0.003945, -0.088952, 0.12023, -0.068224, -0.00585, 0.028605, -0.031544, 0.012632];
  const expectedS2 = [
    0.064616, -0.045097, 0.006314, 0.025898, -0.013683, 0.085124, -0.066634, 0.039909, -0.046729, -0.066184,
    0.080795, -0.07807, 0.07477, 0.001398, -0.038989, 0.062151,
  ];
  const expectedGrads = {
    dr: [0.001127, -0.00718, 0.006304, -0.003061, 0.005534, 0.026218, -0.025449, 0.020286],
    dw: [0, 0, 0, 0, 0.000048, 0.005797, 0.006383, 0.001581],
    dk: [0.020509, -0.052466, 0.044641, -0.008636, -0.00017, 0.003202, -0.004016, 0.002048],
    dv: [-0.16147, -0.181006, -0.034126, 0.144129, -0.020212, -0.009786, 0.009637, 0.0202],
    da: [0, 0, 0, 0, 0.000183, -0.001168, 0.001025, -0.000498],
    db: [0, 0, 0, 0, -0.000205, 0.003859, -0.00484, 0.002469],
  };

  // The inputs are themselves rounded to 6 decimals, so 1e-6 absolute covers both roundings.
  const kernels = [
    { name: 'reference', forward: wkv7ForwardReference, backward: wkv7BackwardReference },
    { name: 'fast', forward: wkv7Forward, backward: wkv7Backward },
  ];
  for (const kernel of kernels) {
    it(`${kernel.name} forward matches y and S_2`, () => {
      const out = kernel.forward(x, d);
      expectClose('y', out.y, expectedY, 0, 1e-6);
      expectClose('S_2', out.sT, expectedS2, 0, 1e-6);
    });

    it(`${kernel.name} backward matches printed gradients`, () => {
      const out = kernel.forward(x, d);
      const grads = kernel.backward(x, d, out.saved, dy, null);
      for (const name of ['dr', 'dw', 'dk', 'dv', 'da', 'db'] as const) {
        expectClose(name, grads[name], expectedGrads[name], 0, 1e-6);
      }
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Gradients against central finite differences (float64)

describe('wkv7 gradients vs finite differences', () => {
  const cases: { d: Wkv7Dims; withState: boolean; withDsT: boolean; seed: number }[] = [
    { d: { B: 1, T: 3, H: 1, N: 3 }, withState: false, withDsT: false, seed: 1 },
    { d: { B: 2, T: 4, H: 2, N: 3 }, withState: true, withDsT: true, seed: 2 },
    { d: { B: 1, T: 5, H: 1, N: 4 }, withState: true, withDsT: false, seed: 3 },
  ];

  for (const { d, withState, withDsT, seed } of cases) {
    const label = `B=${d.B} T=${d.T} H=${d.H} N=${d.N} s0=${withState} dsT=${withDsT}`;
    it(`all seven inputs, ${label}`, () => {
      const x = randomInputs(d, seed, withState);
      const dy = randomArray(d.B * d.T * d.H * d.N, seed + 100);
      const dsT = withDsT ? randomArray(d.B * d.H * d.N * d.N, seed + 200) : null;
      const reference = wkv7BackwardReference(x, d, wkv7ForwardReference(x, d).saved, dy, dsT);
      const fast = wkv7Backward(x, d, wkv7Forward(x, d, { checkpointInterval: 2 }).saved, dy, dsT);

      // Every input, s0 included (a zero s0 is perturbed as an explicit array).
      const inputs: Wkv7Inputs = { ...x, s0: x.s0 ?? new Float64Array(d.B * d.H * d.N * d.N) };
      const eps = 1e-6;
      for (const name of [...TOKEN_NAMES, 's0'] as const) {
        const array = inputs[name] as Float64Array;
        const numeric = new Float64Array(array.length);
        for (let i = 0; i < array.length; i++) {
          const saved = array[i];
          array[i] = saved + eps;
          const plus = lossOf(inputs, d, dy, dsT);
          array[i] = saved - eps;
          const minus = lossOf(inputs, d, dy, dsT);
          array[i] = saved;
          numeric[i] = (plus - minus) / (2 * eps);
        }
        const gradName = `d${name}` as (typeof GRAD_NAMES)[number];
        // Central differences with eps = 1e-6 carry ~1e-10 truncation/rounding error at these scales.
        expectClose(`reference ${gradName}`, reference[gradName], numeric, 1e-6, 1e-8);
        expectClose(`fast ${gradName}`, fast[gradName], numeric, 1e-6, 1e-8);
      }
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Fast kernel against the reference

describe('wkv7 fast vs reference', () => {
  it('random dims, intervals and states', () => {
    fc.assert(
      fc.property(
        fc.record({
          B: fc.integer({ min: 1, max: 2 }),
          T: fc.integer({ min: 1, max: 40 }),
          H: fc.integer({ min: 1, max: 3 }),
          N: fc.integer({ min: 1, max: 8 }),
          interval: fc.integer({ min: 1, max: 12 }),
          withState: fc.boolean(),
          withDsT: fc.boolean(),
          seed: fc.integer({ min: 0, max: 1_000_000 }),
        }),
        ({ B, T, H, N, interval, withState, withDsT, seed }) => {
          const d = { B, T, H, N };
          const x = randomInputs(d, seed, withState);
          const dy = randomArray(B * T * H * N, seed + 1);
          const dsT = withDsT ? randomArray(B * H * N * N, seed + 2) : null;

          const ref = wkv7ForwardReference(x, d);
          const fast = wkv7Forward(x, d, { checkpointInterval: interval });
          expectClose('y', fast.y, ref.y, 1e-12, 1e-14);
          expectClose('sT', fast.sT, ref.sT, 1e-12, 1e-14);

          const refGrads = wkv7BackwardReference(x, d, ref.saved, dy, dsT);
          const fastGrads = wkv7Backward(x, d, fast.saved, dy, dsT);
          expectGradientsClose(fastGrads, refGrads, 1e-10, 1e-13);
        },
      ),
      { numRuns: 60, seed: 20261204 },
    );
  });

  it('T of 1, 2, 17 and 100', () => {
    for (const T of [1, 2, 17, 100]) {
      const d = { B: 2, T, H: 2, N: 5 };
      const x = randomInputs(d, T, true);
      const dy = randomArray(d.B * T * d.H * d.N, T + 7);
      const ref = wkv7ForwardReference(x, d);
      const fast = wkv7Forward(x, d);
      expectClose(`y T=${T}`, fast.y, ref.y, 1e-12, 1e-14);
      const grads = wkv7Backward(x, d, fast.saved, dy, null);
      expectGradientsClose(grads, wkv7BackwardReference(x, d, ref.saved, dy, null), 1e-10, 1e-13);
    }
  });

  it('reference backward accepts checkpointed saved state', () => {
    const d = { B: 1, T: 9, H: 1, N: 3 };
    const x = randomInputs(d, 5, true);
    const dy = randomArray(9 * 3, 6);
    const fromAll = wkv7BackwardReference(x, d, wkv7ForwardReference(x, d).saved, dy, null);
    const fromCheckpoints = wkv7BackwardReference(x, d, wkv7Forward(x, d).saved, dy, null);
    expectGradientsClose(fromCheckpoints, fromAll, 0, 0);
  });

  it('T = 1024 last position', () => {
    const d = { B: 1, T: 1024, H: 1, N: 8 };
    const x = randomInputs(d, 11, true);
    const dy = randomArray(1024 * 8, 12);
    const ref = wkv7ForwardReference(x, d);
    const fast = wkv7Forward(x, d);
    const last = (y: FloatArray) => y.subarray(1023 * 8, 1024 * 8);
    expectClose('y[1023]', last(fast.y), last(ref.y), 1e-12, 1e-14);
    expectClose('sT', fast.sT, ref.sT, 1e-12, 1e-14);

    const grads = wkv7Backward(x, d, fast.saved, dy, null);
    const refGrads = wkv7BackwardReference(x, d, ref.saved, dy, null);
    expectGradientsClose(grads, refGrads, 1e-10, 1e-13);

    const fast32 = wkv7Forward(toFloat32(x), d);
    expectClose('float32 y[1023]', last(fast32.y), last(ref.y), 1e-5, 1e-6);
  });
});

// ---------------------------------------------------------------------------------------------
// Carrying the state across calls

describe('wkv7 chunked sequence', () => {
  /** Returns the tokens [t0, t1) of every per-token input as a new (B, t1 - t0, H, N) input. */
  function sliceTime(x: Wkv7Inputs, d: Wkv7Dims, t0: number, t1: number, s0: FloatArray | null): Wkv7Inputs {
    const pick = (a: FloatArray) => {
      const rowLength = d.H * d.N;
      const out = new Float64Array(d.B * (t1 - t0) * rowLength);
      for (let b = 0; b < d.B; b++) {
        out.set(a.subarray((b * d.T + t0) * rowLength, (b * d.T + t1) * rowLength), b * (t1 - t0) * rowLength);
      }
      return out;
    };
    return { r: pick(x.r), w: pick(x.w), k: pick(x.k), v: pick(x.v), a: pick(x.a), b: pick(x.b), s0 };
  }

  it('T1 then T2 equals one pass', () => {
    const d: Wkv7Dims = { B: 2, T: 23, H: 2, N: 4 };
    const T1 = 9;
    const T2 = d.T - T1;
    const x = randomInputs(d, 21, true);
    const dy = randomArray(d.B * d.T * d.H * d.N, 22);
    const dsT = randomArray(d.B * d.H * d.N * d.N, 23);
    const d1 = { ...d, T: T1 };
    const d2 = { ...d, T: T2 };

    const whole = wkv7Forward(x, d);
    const x1 = sliceTime(x, d, 0, T1, x.s0);
    const first = wkv7Forward(x1, d1);
    const x2 = sliceTime(x, d, T1, d.T, first.sT);
    const second = wkv7Forward(x2, d2);

    const asInput = (a: FloatArray) => ({ r: a, w: a, k: a, v: a, a, b: a, s0: null });
    expectClose('y first part', first.y, sliceTime(asInput(whole.y), d, 0, T1, null).r, 1e-12, 1e-14);
    expectClose('y second part', second.y, sliceTime(asInput(whole.y), d, T1, d.T, null).r, 1e-12, 1e-14);
    expectClose('sT', second.sT, whole.sT, 1e-12, 1e-14);

    // Backward: the second part's ds0 is the first part's upstream state gradient.
    const dy1 = sliceTime(asInput(dy), d, 0, T1, null).r;
    const dy2 = sliceTime(asInput(dy), d, T1, d.T, null).r;
    const g2 = wkv7Backward(x2, d2, second.saved, dy2, dsT);
    const g1 = wkv7Backward(x1, d1, first.saved, dy1, g2.ds0);
    const gWhole = wkv7Backward(x, d, whole.saved, dy, dsT);

    for (const name of ['dr', 'dw', 'dk', 'dv', 'da', 'db'] as const) {
      expectClose(`${name} first part`, g1[name], sliceTime(asInput(gWhole[name]), d, 0, T1, null).r, 1e-10, 1e-13);
      expectClose(`${name} second part`, g2[name], sliceTime(asInput(gWhole[name]), d, T1, d.T, null).r, 1e-10, 1e-13);
    }
    expectClose('ds0', g1.ds0, gWhole.ds0, 1e-10, 1e-13);
  });
});

// ---------------------------------------------------------------------------------------------
// Precision

describe('wkv7 float32', () => {
  it('agrees with float64 and keeps the dtype', () => {
    const d = { B: 2, T: 64, H: 3, N: 16 };
    const x = randomInputs(d, 31, true);
    const dy = randomArray(d.B * d.T * d.H * d.N, 32);
    const dsT = randomArray(d.B * d.H * d.N * d.N, 33);
    const x32 = toFloat32(x);

    const f64 = wkv7Forward(x, d);
    const f32 = wkv7Forward(x32, d);
    expect(f32.y).toBeInstanceOf(Float32Array);
    expect(f32.sT).toBeInstanceOf(Float32Array);
    expect(f64.y).toBeInstanceOf(Float64Array);

    // The float32 run differs only by the rounding of its inputs (~6e-8 relative) and outputs.
    expectClose('y', f32.y, f64.y, 1e-5, 1e-6);
    expectClose('sT', f32.sT, f64.sT, 1e-5, 1e-6);

    const g64 = wkv7Backward(x, d, f64.saved, dy, dsT);
    const g32 = wkv7Backward(x32, d, f32.saved, Float32Array.from(dy), Float32Array.from(dsT));
    for (const name of GRAD_NAMES) expect(g32[name]).toBeInstanceOf(Float32Array);
    expectGradientsClose(g32, g64, 1e-4, 1e-5);
  });
});

// ---------------------------------------------------------------------------------------------
// Input validation

describe('wkv7 input checks', () => {
  const d = { B: 1, T: 3, H: 1, N: 2 };
  const base = () => randomInputs(d, 41, false);

  it('rejects a wrong length naming the array', () => {
    const x = { ...base(), k: new Float64Array(5) };
    expect(() => wkv7Forward(x, d)).toThrow('wkv7: k has length 5 but the dims need 6');
    expect(() => wkv7ForwardReference(x, d)).toThrow('wkv7: k has length 5 but the dims need 6');
  });

  it('rejects mixed dtypes', () => {
    const x = { ...base(), v: new Float32Array(6) };
    expect(() => wkv7Forward(x, d)).toThrow('wkv7: v is float32 but r is float64');
  });

  it('rejects a wrong state length', () => {
    const x = { ...base(), s0: new Float64Array(3) };
    expect(() => wkv7Forward(x, d)).toThrow('wkv7: s0 has length 3 but the dims need 4');
  });

  it('rejects decays outside (0, 1]', () => {
    for (const bad of [0, -0.1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      const x = base();
      x.w[4] = bad;
      expect(() => wkv7Forward(x, d)).toThrow(`wkv7: decay w[4] = ${bad} is outside (0, 1]`);
    }
    const x = base();
    x.w.fill(1);
    expect(() => wkv7Forward(x, d)).not.toThrow();
  });

  it('rejects invalid dims', () => {
    expect(() => wkv7Forward(base(), { ...d, T: 0 })).toThrow('wkv7: dimension T must be a positive integer, got 0');
  });

  it('rejects a saved state of other dims', () => {
    const x = base();
    const saved = wkv7Forward(x, d).saved;
    const other = { B: 1, T: 2, H: 1, N: 3 };
    const x2 = randomInputs(other, 1, false);
    expect(() => wkv7Backward(x2, other, saved, new Float64Array(6), null)).toThrow(
      'wkv7: saved state is for B=1 T=3 H=1 N=2 but the backward got B=1 T=2 H=1 N=3',
    );
  });

  it('rejects a wrong dy length', () => {
    const x = base();
    const saved = wkv7Forward(x, d).saved;
    expect(() => wkv7Backward(x, d, saved, new Float64Array(2), null)).toThrow('wkv7: dy has length 2 but the dims need 6');
  });
});
