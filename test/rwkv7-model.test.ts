// RWKV-7 model: configuration, initialisation, sequence vs recurrent mode, chunked training with a
// carried state, and state isolation between independent calls.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { assertGradients, Rng, Tensor, concat, mul, reshape, sum } from '../src/index.js';
import { LORA_FACTORS, rwkv7Config, suggestedLoraRank } from '../src/models/rwkv7/config.js';
import { orthogonal } from '../src/models/rwkv7/init.js';
import { cloneState, Rwkv7Model, type Rwkv7State } from '../src/models/rwkv7/model.js';

// ---------------------------------------------------------------------------------------------
// Helpers

/** Replaces every parameter by uniform noise of the given scale, so no path is silent (official init zeroes the outputs). */
function randomizeParameters(model: Rwkv7Model, seed: number, scale = 0.5): void {
  const rng = new Rng(seed);
  for (const p of model.parameters()) for (let i = 0; i < p.size; i++) p.data[i] = (rng.uniform() - 0.5) * 2 * scale;
}

function randomIds(rng: Rng, count: number, V: number): number[] {
  return Array.from({ length: count }, () => rng.int(V));
}

function maxAbs(data: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < data.length; i++) m = Math.max(m, Math.abs(data[i]));
  return m;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function stateTensors(state: Rwkv7State): Tensor[] {
  return state.layers.flatMap((layer) => [layer.att.xPrev, layer.att.wkv, layer.ffn.xPrev]);
}

const SMALL = { nEmbd: 8, nLayer: 2, headSize: 4, vocabSize: 11, dDecay: 3, dIclr: 2, dValue: 2, dGate: 3, dimFfn: 12 };

// ---------------------------------------------------------------------------------------------

describe('rwkv7 config', () => {
  it('suggested LoRA ranks at C = 768', () => {
    expect(suggestedLoraRank(768, LORA_FACTORS.decay)).toBe(64);
    expect(suggestedLoraRank(768, LORA_FACTORS.iclr)).toBe(64);
    expect(suggestedLoraRank(768, LORA_FACTORS.value)).toBe(32);
    expect(suggestedLoraRank(768, LORA_FACTORS.gate)).toBe(128);
  });

  it('defaults are official', () => {
    const config = rwkv7Config({ nEmbd: 768, nLayer: 12, vocabSize: 50257 });
    expect(config).toMatchObject({ headSize: 64, dimFfn: 3072, dDecay: 64, dIclr: 64, dValue: 32, dGate: 128 });
    expect(config).toMatchObject({ tokenShift: true, bonus: true, groupNorm: true, biases: false, gate: 'official' });
  });

  it('head size must divide the width', () => {
    expect(() => rwkv7Config({ nEmbd: 100, nLayer: 1, vocabSize: 10, headSize: 64 })).toThrow(/headSize 64 does not divide nEmbd 100.*for example 50/);
  });

  it('rejects non-integer sizes and unknown gates', () => {
    expect(() => rwkv7Config({ nEmbd: 8, nLayer: 0, vocabSize: 10, headSize: 4 })).toThrow(/nLayer must be a positive integer, got 0/);
    expect(() => rwkv7Config({ nEmbd: 8, nLayer: 1, vocabSize: 10, headSize: 4, dGate: 2.5 })).toThrow(/dGate must be a positive integer, got 2.5/);
    expect(() => rwkv7Config({ nEmbd: 8, nLayer: 1, vocabSize: 10, headSize: 4, gate: 'sigmoid' as never })).toThrow(/gate must be "official" or "identity-plus"/);
  });
});

describe('rwkv7 orthogonal init', () => {
  for (const [rows, cols] of [[7, 3], [3, 7], [5, 5]]) {
    it(`${rows}x${cols} has orthonormal ${rows >= cols ? 'columns' : 'rows'} times the gain`, () => {
      const gain = 0.7;
      const q = orthogonal(rows, cols, gain, new Rng(3), 'float64');
      const count = Math.min(rows, cols);
      const at = (vector: number, j: number): number => (rows >= cols ? q.data[j * cols + vector] : q.data[vector * cols + j]);
      for (let a = 0; a < count; a++) {
        for (let b = 0; b < count; b++) {
          let dot = 0;
          for (let j = 0; j < Math.max(rows, cols); j++) dot += at(a, j) * at(b, j);
          expect(Math.abs(dot - (a === b ? gain * gain : 0))).toBeLessThan(1e-12);
        }
      }
    });
  }
});

describe('rwkv7 model init', () => {
  it('official parameter names and shapes', () => {
    const model = new Rwkv7Model({ ...SMALL, biases: true }, { seed: 1 });
    const shapes = new Map(model.namedParameters().map(([name, t]) => [name, t.shape.join(',')]));
    expect(shapes.get('emb.weight')).toBe('11,8');
    expect(shapes.get('blocks.0.ln0.weight')).toBe('8');
    expect(shapes.has('blocks.1.ln0.weight')).toBe(false);
    expect(shapes.get('blocks.1.att.x_g')).toBe('1,1,8');
    expect(shapes.get('blocks.1.att.w1')).toBe('8,3');
    expect(shapes.get('blocks.1.att.a2')).toBe('2,8');
    expect(shapes.get('blocks.1.att.v1')).toBe('8,2');
    expect(shapes.get('blocks.1.att.g2')).toBe('3,8');
    expect(shapes.get('blocks.1.att.r_k')).toBe('2,4');
    expect(shapes.get('blocks.1.att.receptance.bias')).toBe('8');
    expect(shapes.get('blocks.1.att.output.weight')).toBe('8,8');
    expect(shapes.get('blocks.1.att.ln_x.bias')).toBe('8');
    expect(shapes.get('blocks.1.ffn.key.weight')).toBe('12,8');
    expect(shapes.get('blocks.1.ffn.value.weight')).toBe('8,12');
    expect(shapes.get('ln_out.weight')).toBe('8');
    expect(shapes.get('head.weight')).toBe('11,8');
  });

  it('official per-channel values of layer 1 of 2', () => {
    const model = new Rwkv7Model(SMALL, { seed: 1, dtype: 'float64' });
    const att = model.blocks[1].att;
    // ρ0 = 1, ρ1 = 0.5, C = 8, N = 4; channel 3: d = 3/8, lin = 3/7 − 0.5, zig = 1.
    expect(att.x_r?.data[3]).toBeCloseTo(1 - Math.pow(3 / 8, 0.1), 12);
    expect(att.w0.data[3]).toBeCloseTo(-6 + 6 * Math.pow(3 / 7, 2) + 0.5 + 2.5, 12);
    expect(att.a0.data[3]).toBeCloseTo(-0.19 + 0.3 + 0.4 * (3 / 7 - 0.5), 12);
    expect(att.k_a.data[0]).toBe(1.02);
    expect(att.r_k?.data[0]).toBe(-0.04);
    expect(att.ln_x?.weight.data[0]).toBeCloseTo(1, 12);
    expect(model.blocks[0].att.ln_x?.weight.data[0]).toBeCloseTo(Math.pow(0.5, 0.7), 12);
    expect(maxAbs(att.output.weight.data)).toBe(0);
    expect(maxAbs(model.blocks[1].ffn.value.weight.data)).toBe(0);
    expect(maxAbs(model.emb.weight.data)).toBeLessThanOrEqual(1e-4);
  });

  it('initial loss is close to ln(vocab)', () => {
    const V = 512;
    const model = new Rwkv7Model({ nEmbd: 32, nLayer: 2, headSize: 8, vocabSize: V }, { seed: 7 });
    const rng = new Rng(11);
    const B = 2;
    const T = 64;
    const ids = randomIds(rng, B * T, V);
    const loss = model.loss(ids, randomIds(rng, B * T, V), B, T).item();
    // Zero output projections leave ln_out(x) with |x|² ≈ C, and the orthogonal head of gain
    // 0.5·√(V/C) turns it into logits of standard deviation ≈ 0.5, which puts the expected loss
    // at about ln V + 0.5²/2.
    const logits = model.forward(ids, B, T).logits.data;
    let squares = 0;
    for (const l of logits) squares += l * l;
    expect(Math.sqrt(squares / logits.length)).toBeCloseTo(0.5, 1);
    expect(loss).toBeGreaterThan(Math.log(V));
    expect(loss - Math.log(V)).toBeLessThan(0.25);
  });
});

describe('rwkv7 sequence vs recurrent mode', () => {
  it('step-by-step logits equal the sequence pass', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 }), fc.integer({ min: 1, max: 5 }), fc.boolean(), fc.integer({ min: 1, max: 1e6 }), (B, T, biases, seed) => {
        const model = new Rwkv7Model({ ...SMALL, biases }, { seed });
        randomizeParameters(model, seed + 1);
        const V = SMALL.vocabSize;
        const ids = randomIds(new Rng(seed + 2), B * T, V);
        const sequence = model.forward(ids, B, T).logits; // (B, T, V)
        let state: Rwkv7State | null = null;
        let worst = 0;
        for (let t = 0; t < T; t++) {
          const column = Array.from({ length: B }, (_, b) => ids[b * T + t]);
          const step = model.step(column, state); // logits (B, V)
          state = step.state;
          for (let b = 0; b < B; b++) {
            const expected = sequence.data.subarray((b * T + t) * V, (b * T + t + 1) * V);
            worst = Math.max(worst, maxAbsDiff(step.logits.data.subarray(b * V, (b + 1) * V), expected));
          }
        }
        expect(worst / maxAbs(sequence.data)).toBeLessThan(1e-5);
      }),
      { numRuns: 15, seed: 42 },
    );
  });
});

describe('rwkv7 chunked pass with carried state', () => {
  /** Sums the logits times fixed random weights, so the loss depends on every output. */
  function weightedLoss(logits: Tensor, weights: Tensor): Tensor {
    return sum(mul(logits, weights));
  }

  it('two chunks equal one pass in outputs and gradients', () => {
    const B = 2;
    const T1 = 3;
    const T2 = 4;
    const T = T1 + T2;
    const V = SMALL.vocabSize;
    const model = new Rwkv7Model(SMALL, { seed: 5, dtype: 'float64' });
    randomizeParameters(model, 6);
    const rng = new Rng(9);
    const ids = randomIds(rng, B * T, V);
    const weights = new Tensor(Float64Array.from({ length: B * T * V }, () => rng.normal()), [B, T, V]);

    // A random initial state as a leaf, so the gradient into the carried state is checked too.
    const initial = model.createState(B);
    for (const t of stateTensors(initial)) {
      for (let i = 0; i < t.size; i++) t.data[i] = (rng.uniform() - 0.5) * 0.6;
      t.requireGrad();
    }

    const full = model.forward(ids, B, T, initial);
    weightedLoss(full.logits, weights).backward();
    const fullParamGrads = model.parameters().map((p) => Float64Array.from(p.grad?.data ?? new Float64Array(p.size)));
    const fullStateGrads = stateTensors(initial).map((t) => Float64Array.from(t.grad?.data ?? []));
    model.zeroGrad();
    for (const t of stateTensors(initial)) t.zeroGrad();

    const chunk = (from: number, to: number): number[] => ids.filter((_, q) => q % T >= from && q % T < to);
    const first = model.forward(chunk(0, T1), B, T1, initial);
    const second = model.forward(chunk(T1, T), B, T2, first.state);
    const chunkedLogits = concat([first.logits, second.logits], 1); // (B, T, V)
    weightedLoss(chunkedLogits, weights).backward();

    expect(maxAbsDiff(chunkedLogits.data, full.logits.data)).toBeLessThan(1e-12);
    expect(maxAbsDiff(stateTensors(second.state).flatMap((t) => [...t.data]), stateTensors(full.state).flatMap((t) => [...t.data]))).toBeLessThan(1e-12);
    model.namedParameters().forEach(([name, p], i) => {
      const grad = p.grad?.data ?? new Float64Array(p.size);
      expect(maxAbsDiff(grad, fullParamGrads[i]), `parameter ${name}`).toBeLessThan(1e-10);
    });
    stateTensors(initial).forEach((t, i) => {
      expect(maxAbs(fullStateGrads[i])).toBeGreaterThan(0);
      expect(maxAbsDiff(t.grad?.data ?? [], fullStateGrads[i]), `state tensor ${i}`).toBeLessThan(1e-10);
    });
  });

  it('gradient into the carried state matches central differences', () => {
    const model = new Rwkv7Model({ ...SMALL, nEmbd: 4, headSize: 2, dimFfn: 6 }, { seed: 12, dtype: 'float64' });
    randomizeParameters(model, 13);
    const B = 1;
    const T = 2;
    const state = model.createState(B);
    const rng = new Rng(14);
    for (const t of stateTensors(state)) {
      for (let i = 0; i < t.size; i++) t.data[i] = (rng.uniform() - 0.5) * 0.6;
      t.requireGrad();
    }
    const ids = randomIds(rng, B * T, SMALL.vocabSize);
    assertGradients(
      () => {
        const out = model.forward(ids, B, T, state);
        const carried = stateTensors(out.state).map((t) => reshape(t, [t.size]));
        return concat([reshape(out.logits, [out.logits.size]), ...carried], 0);
      },
      stateTensors(state),
      { eps: 1e-6, rtol: 1e-5, atol: 1e-8 },
    );
  });
});

describe('rwkv7 state isolation', () => {
  it('same prompt twice gives identical logits', () => {
    const model = new Rwkv7Model(SMALL, { seed: 21 });
    randomizeParameters(model, 22);
    const run = (prompt: number[]): Float32Array | Float64Array => {
      let state: Rwkv7State | null = null;
      let logits: Tensor | null = null;
      for (const id of prompt) ({ logits, state } = model.step(id, state));
      return (logits as unknown as Tensor).data.slice();
    };
    const a = run([1, 2, 3, 4]);
    run([7, 7, 9, 0, 10]);
    const again = run([1, 2, 3, 4]);
    expect(again).toEqual(a);
    expect(model.forward([1, 2, 3, 4], 1, 4).logits.data.subarray(3 * SMALL.vocabSize)).toEqual(model.forward([1, 2, 3, 4], 1, 4).logits.data.subarray(3 * SMALL.vocabSize));
  });

  it('mutating a returned state changes nothing else', () => {
    const model = new Rwkv7Model(SMALL, { seed: 23 });
    randomizeParameters(model, 24);
    const first = model.step(3, null);
    const kept = cloneState(first.state);
    const next = model.step(5, first.state).logits.data.slice();

    for (const t of stateTensors(first.state)) t.data.fill(99);
    expect(model.step(5, kept).logits.data).toEqual(next);
    expect(model.step(3, null).logits.data).toEqual(first.logits.data);
  });

  it('step leaves its input state unchanged', () => {
    const model = new Rwkv7Model(SMALL, { seed: 25 });
    randomizeParameters(model, 26);
    const state = model.step(2, null).state;
    const before = cloneState(state);
    model.step(8, state);
    stateTensors(state).forEach((t, i) => expect(t.data).toEqual(stateTensors(before)[i].data));
  });

  it('cloneState copies storage and drops the graph', () => {
    const model = new Rwkv7Model(SMALL, { seed: 27 });
    const { state } = model.forward([1, 2], 1, 2);
    const copy = cloneState(state);
    stateTensors(copy).forEach((t, i) => {
      const original = stateTensors(state)[i];
      expect(t.data).not.toBe(original.data);
      expect(t.data).toEqual(original.data);
      expect(t.node).toBeNull();
    });
  });

  it('rejects a state of the wrong shape', () => {
    const model = new Rwkv7Model(SMALL, { seed: 28 });
    const state = model.createState(2);
    expect(() => model.forward([1, 2, 3], 1, 3, state)).toThrow(/state xPrev must have shape \[1,8\].*got \[2,8\]/);
    expect(() => model.forward([1, 2, 3], 1, 3, { layers: state.layers.slice(1) })).toThrow(/state has 1 layers but the model has 2/);
  });
});
