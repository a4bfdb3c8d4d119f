// RWKV-7 time mix: a worked numeric example, numerical gradients of every parameter, and the
// configuration rules.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { assertGradients, concat, reshape, Rng, Tensor } from '../src/index.js';
import { rwkv7Config, suggestedLoraRank, LORA_FACTORS, type Rwkv7Config, type Rwkv7Options } from '../src/models/rwkv7/config.js';
import { orthogonal } from '../src/models/rwkv7/init.js';
import { Rwkv7TimeMix, type TimeMixProbe } from '../src/models/rwkv7/time-mix.js';

// ---------------------------------------------------------------------------------------------
// Worked example: C = 4, one head of N = 4, T = 2, every LoRA of rank 2, float64.
//
// Every tensor comes from P(shape, scale, offset)[q] = scale·sin(offset + 1 + q) + shift in
// row-major order. The expected values come from an independent float64 numpy implementation of
// the same formulas. Its layer-0 values also agree to 6 decimals with a second, separately
// written float64 implementation.

function P(shape: number[], scale: number, offset: number, shift = 0): Float64Array {
  const size = shape.reduce((a, b) => a * b, 1);
  return Float64Array.from({ length: size }, (_, q) => scale * Math.sin(offset + 1 + q) + shift);
}

function exampleConfig(): Rwkv7Config {
  return rwkv7Config({ nEmbd: 4, nLayer: 2, headSize: 4, vocabSize: 8, dDecay: 2, dIclr: 2, dValue: 2, dGate: 2 });
}

/** Sets every parameter of a time mix to the worked example's values. */
function loadExample(tm: Rwkv7TimeMix): void {
  const set = (t: Tensor | null | undefined, values: Float64Array): void => {
    if (t === null || t === undefined) throw new Error('loadExample: parameter missing');
    expect(t.size).toBe(values.length);
    t.data.set(values);
  };
  ['x_r', 'x_w', 'x_k', 'x_v', 'x_a', 'x_g'].forEach((name, i) => {
    const param = tm.namedParameters().find(([n]) => n === name)?.[1];
    set(param, P([4], 0.5, 10 * (i + 1), 0.5));
  });
  set(tm.receptance.weight, P([4, 4], 0.5, 100));
  set(tm.key.weight, P([4, 4], 0.5, 200));
  set(tm.value.weight, P([4, 4], 0.5, 300));
  set(tm.output.weight, P([4, 4], 0.5, 400));
  set(tm.w0, P([4], 1, 500, -1));
  set(tm.w1, P([4, 2], 0.3, 600));
  set(tm.w2, P([2, 4], 0.3, 700));
  set(tm.a0, P([4], 0.5, 800));
  set(tm.a1, P([4, 2], 0.3, 900));
  set(tm.a2, P([2, 4], 0.3, 1000));
  set(tm.v0, P([4], 0.5, 1100, 0.5));
  set(tm.v1, P([4, 2], 0.3, 1200));
  set(tm.v2, P([2, 4], 0.3, 1300));
  set(tm.g1, P([4, 2], 0.5, 1400));
  set(tm.g2, P([2, 4], 0.5, 1500));
  set(tm.k_k, P([4], 0.2, 1600, 0.85));
  set(tm.k_a, P([4], 0.2, 1700, 1));
  set(tm.r_k, P([1, 4], 0.3, 1800));
  set(tm.ln_x?.weight, P([4], 0.2, 1900, 1));
  set(tm.ln_x?.bias, P([4], 0.1, 2000));
}

const exampleInput = (): Tensor => new Tensor(P([2, 4], 1, 0), [1, 2, 4]);
const exampleVFirst = (): Tensor => new Tensor(P([2, 4], 1, 2100), [1, 2, 4]);

// Values shared by both layers (the value residual changes only v and what follows from it).
const SHARED = {
  r: [[0.550991532168, -0.660194897969, 0.312072835, 0.252226062284], [-0.007776086395, 0.1467226397, -0.184032548557, 0.093860763091]],
  z: [[-1.926414919213, -1.579576060593, -0.699877644716, -0.096110338202], [-2.068143602279, -1.630662892623, -0.61335362794, 0.048474745382]],
  w: [[0.925779572625, 0.901559607954, 0.817691016978, 0.7492346419], [0.934193144124, 0.905459191071, 0.808098818858, 0.732996577924]],
  k: [[0.045946054651, -0.364808684674, 0.430963684495, -0.198584641714], [0.303142074428, -0.291331049908, 0.077711290235, 0.189740071645]],
  alpha: [[0.505073965614, 0.402849916449, 0.390400918514, 0.478028532612], [0.5170683018, 0.395544658518, 0.371322987701, 0.463832466467]],
  g: [[-0.233776834992, -0.184819034564, 0.034060533906, 0.221625004581], [-0.189165284459, -0.070611882081, 0.112861759039, 0.192570819387]],
  removalKey: [[0.054377638018, -0.526318287465, 0.763286303264, -0.370710334375], [0.534956874916, -0.626715601253, 0.2052255148, 0.528139361533]],
  replacementKey: [[0.027686698903, -0.176444663378, 0.154904314092, -0.075211747196], [0.185590390122, -0.139065981805, 0.026374440619, 0.068656030893]],
};

const LAYER0 = {
  ...SHARED,
  v: [[-0.024483547093, -0.552103828929, 0.74624183876, -0.423448606126], [0.347288481529, -0.09343535276, -0.22514163694, 0.387760142313]],
  y: [[-0.003944643891, -0.088951694282, 0.120230058955, -0.068223527863], [-0.005850439744, 0.028604607215, -0.031543998322, 0.012632459345]],
  normalized: [[0.087978275596, -0.814577050124, 1.209878411443, -0.738366659119], [-0.16900888587, 0.587111249379, -0.920850818181, 0.325961164435]],
  bonus: [[0.001092328227, 0.024631994464, -0.033293420328, 0.018892069164], [0.002730231193, -0.000734548159, -0.001769965757, 0.003048401811]],
  out: [[-0.060274360861, -0.039864561814, 0.112388793918, -0.107059874588], [-0.021410799504, 0.056828124883, -0.052879883127, 0.012301071673]],
  S2: [[0.064615626755, -0.045097339834, 0.006313890907, 0.025897713277], [-0.013682598889, 0.085123753053, -0.066633661074, 0.039908752114], [-0.046728539794, -0.066183856501, 0.080795444085, -0.078069915748], [0.074770222786, 0.001397558158, -0.038989192168, 0.062151052707]],
};

const LAYER1 = {
  ...SHARED,
  v: [[0.485416466453, -0.353309204525, -0.257376943488, -0.590210439022], [0.190982017209, 0.588566771544, 0.391194907448, 0.196132997637]],
  y: [[0.078207421975, -0.056923083487, -0.041467046582, -0.095091205282], [-0.027354135835, 0.005171245734, 0.004528000771, 0.024582512034]],
  normalized: [[1.456275015806, -0.397534710493, -0.252868732833, -1.022564488925], [-0.845383040155, 0.016064805372, -0.021088850988, 0.72254620629]],
  bonus: [[-0.021656752024, 0.015762814735, 0.011482817389, 0.026332112738], [0.001501417664, 0.004627056307, 0.003075404442, 0.001541912435]],
  out: [[0.038413613722, -0.019877896309, -0.012427493485, 0.036124199988], [-0.006173140883, -0.005169523034, 0.012931192391, -0.011735259799]],
  S2: [[0.032228176522, -0.089976748566, 0.061455529615, -0.027616256947], [0.111573276957, -0.035691234625, -0.025540939428, 0.070052671017], [0.074307332046, -0.020776674344, -0.019596595782, 0.048452813445], [0.040310989289, 0.04983311657, -0.063425473691, 0.062986658107]],
};

function expectClose(name: string, actual: Tensor | undefined, expected: number[][], tolerance = 1e-9): void {
  expect(actual, `${name} was not recorded`).toBeDefined();
  const flat = expected.flat();
  expect(actual?.size, `${name} size`).toBe(flat.length);
  flat.forEach((value, i) => {
    expect(Math.abs((actual as Tensor).data[i] - value), `${name}[${i}] = ${(actual as Tensor).data[i]}, expected ${value}`).toBeLessThan(tolerance);
  });
}

function checkExample(layerId: number, expected: typeof LAYER0): void {
  const tm = new Rwkv7TimeMix(exampleConfig(), layerId, { rng: new Rng(1), dtype: 'float64' });
  loadExample(tm);
  const probe: TimeMixProbe = {};
  const result = tm.forward(exampleInput(), layerId === 0 ? null : exampleVFirst(), null, probe);

  for (const name of ['r', 'z', 'w', 'k', 'v', 'alpha', 'g', 'removalKey', 'replacementKey', 'y', 'normalized', 'bonus'] as const) {
    expectClose(name, probe[name], expected[name]);
  }
  expectClose('out', result.out, expected.out);
  expectClose('S_2', result.state.wkv, expected.S2);
  expectClose('xPrev', result.state.xPrev, [Array.from(P([2, 4], 1, 0).subarray(4))]);
  if (layerId === 0) expectClose('vFirst', result.vFirst, expected.v);
  else expect(result.vFirst.data).toEqual(exampleVFirst().data);
}

describe('rwkv7 time mix worked example', () => {
  it('layer 0 matches every intermediate', () => {
    checkExample(0, LAYER0);
  });

  it('layer 1 mixes in vFirst', () => {
    checkExample(1, LAYER1);
  });

  it('layer 1 without vFirst throws', () => {
    const tm = new Rwkv7TimeMix(exampleConfig(), 1, { rng: new Rng(1), dtype: 'float64' });
    expect(() => tm.forward(exampleInput(), null)).toThrow(/need vFirst/);
  });

  it('layer index out of range throws', () => {
    expect(() => new Rwkv7TimeMix(exampleConfig(), 2, { rng: new Rng(1) })).toThrow(/layerId must be an integer in \[0, 2\) \(nLayer\), got 2/);
  });

  it('decay stays inside (0.5452, 1)', () => {
    const tm = new Rwkv7TimeMix(exampleConfig(), 0, { rng: new Rng(1), dtype: 'float64' });
    tm.w0.data.set([-1000, -5, 5, 1000]);
    const probe: TimeMixProbe = {};
    tm.forward(exampleInput(), null, null, probe);
    for (const w of probe.w?.data ?? []) {
      expect(w).toBeGreaterThanOrEqual(Math.exp(-Math.exp(-0.5)) - 1e-12);
      expect(w).toBeLessThanOrEqual(1);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Numerical gradients of a whole block, float64.

/** Fills every parameter with small random values so that every path carries a gradient. */
function randomizeParameters(tm: Rwkv7TimeMix, rng: Rng): void {
  for (const [, p] of tm.namedParameters()) {
    for (let i = 0; i < p.size; i++) p.data[i] = (rng.uniform() - 0.5) * 1.2;
  }
}

function randomLeaf(rng: Rng, shape: number[], scale = 1): Tensor {
  const size = shape.reduce((a, b) => a * b, 1);
  return new Tensor(Float64Array.from({ length: size }, () => (rng.uniform() - 0.5) * 2 * scale), shape).requireGrad();
}

const optionsArbitrary: fc.Arbitrary<Rwkv7Options> = fc.record({
  tokenShift: fc.boolean(),
  bonus: fc.boolean(),
  groupNorm: fc.boolean(),
  biases: fc.boolean(),
  gate: fc.constantFrom('official' as const, 'identity-plus' as const),
});

describe('rwkv7 time mix gradients', () => {
  it('every parameter and input matches central differences', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2 }), // B
        fc.integer({ min: 1, max: 2 }), // H
        fc.integer({ min: 1, max: 3 }), // N
        fc.integer({ min: 1, max: 3 }), // T
        fc.integer({ min: 0, max: 1 }), // layer
        fc.boolean(), // carried state
        optionsArbitrary,
        fc.integer({ min: 1, max: 1_000_000 }),
        (B, H, N, T, layerId, carried, options, seed) => {
          const C = H * N;
          const config = rwkv7Config({ nEmbd: C, nLayer: 2, headSize: N, vocabSize: 4, dDecay: 2, dIclr: 2, dValue: 2, dGate: 2, ...options });
          const rng = new Rng(seed);
          const tm = new Rwkv7TimeMix(config, layerId, { rng, dtype: 'float64' });
          randomizeParameters(tm, rng);
          const x = randomLeaf(rng, [B, T, C]);
          const vFirst = randomLeaf(rng, [B, T, C]);
          const xPrev = randomLeaf(rng, [B, C]);
          const wkv = randomLeaf(rng, [B, H, N, N], 0.3);
          const params = tm.parameters();
          const inputs = [x, vFirst, xPrev, wkv, ...params];
          assertGradients(
            () => {
              const state = carried ? { xPrev, wkv } : null;
              const result = tm.forward(x, layerId === 0 ? null : vFirst, state);
              // Check the outputs and the carried state together, as a chunked pass would use them.
              const parts = [result.out, result.state.wkv, ...(layerId === 0 ? [result.vFirst] : [])];
              return concat(parts.map((t) => reshape(t, [t.size])), 0);
            },
            inputs,
            { eps: 1e-6, rtol: 1e-5, atol: 1e-7 },
          );
        },
      ),
      { numRuns: 12, seed: 20261204 },
    );
  });
});

describe('rwkv7 time mix converted init', () => {
  it('starts with no token shift and an identity gate', () => {
    const config = rwkv7Config({ nEmbd: 8, nLayer: 2, headSize: 4, vocabSize: 4, gate: 'identity-plus', biases: true });
    const tm = new Rwkv7TimeMix(config, 1, { rng: new Rng(2), dtype: 'float64', init: 'converted' });
    for (const mu of [tm.x_r, tm.x_w, tm.x_k, tm.x_v, tm.x_a, tm.x_g]) expect(Array.from(mu?.data ?? [1])).toEqual(new Array(8).fill(0));
    expect(Array.from(tm.v0.data)).toEqual(new Array(8).fill(1));
    expect(Array.from(tm.k_k.data)).toEqual(new Array(8).fill(0.85));
    expect(Array.from(tm.r_k?.data ?? [1])).toEqual(new Array(8).fill(0));
    const probe: TimeMixProbe = {};
    const x = new Tensor(P([3, 8], 1, 5), [1, 3, 8]);
    const vFirst = new Tensor(P([3, 8], 1, 9), [1, 3, 8]);
    tm.forward(x, vFirst, null, probe);
    expect(Array.from(probe.g?.data ?? [])).toEqual(new Array(24).fill(1));
    // ν = σ(1) mixes vFirst in from the first step.
    const v = probe.v?.data ?? new Float64Array(0);
    expect(v[0]).not.toBeCloseTo(tm.value.forward(x).data[0], 6);
  });

  it('official init has the suggested LoRA shapes', () => {
    const config = rwkv7Config({ nEmbd: 64, nLayer: 1, headSize: 16, vocabSize: 4 });
    const tm = new Rwkv7TimeMix(config, 0, { rng: new Rng(2) });
    expect(tm.w1.shape).toEqual([64, suggestedLoraRank(64, LORA_FACTORS.decay)]);
    expect(tm.g2.shape).toEqual([suggestedLoraRank(64, LORA_FACTORS.gate), 64]);
    expect(tm.r_k?.shape).toEqual([4, 16]);
    // w2 rows are orthonormal with gain 0.1.
    const D = tm.w2.shape[0];
    let norm = 0;
    for (let j = 0; j < 64; j++) norm += tm.w2.data[j] ** 2;
    expect(Math.sqrt(norm)).toBeCloseTo(0.1, 5);
    expect(D).toBe(32);
    expect(orthogonal(2, 2, 0, new Rng(1), 'float32').data).toEqual(new Float32Array(4));
  });
});

