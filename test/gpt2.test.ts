// GPT-2 model, checkpoint folders and sampling on small random models (the PyTorch comparison is
// in gpt2-golden.test.ts).
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { assertGradients } from '../src/autograd/index.js';
import { readSafetensorsFile, readTensor, writeSafetensorsFile, type SafetensorsInput } from '../src/io/safetensors.js';
import {
  configFromHf,
  configToHf,
  generateGpt2,
  GPT2_PRESETS,
  gpt2ParameterCount,
  gpt2Preset,
  Gpt2Model,
  loadGpt2Folder,
  saveGpt2Folder,
  type BlockCapture,
  type Gpt2Config,
} from '../src/models/gpt2/index.js';
import { matmul } from '../src/tensor/ops/index.js';
import { argmax, generate, sampleToken, validateSamplingOptions } from '../src/models/sampling.js';
import { Rng } from '../src/tensor/random.js';
import type { Tensor } from '../src/tensor/tensor.js';
import { Gpt2Tokenizer } from '../src/tokenizer/index.js';

const FIXTURE = new URL('./fixtures/gpt2-tiny/', import.meta.url).pathname;

/** A model small enough for gradient checks: V = 23, C = 8, 2 heads, 2 layers, 16 positions. */
const SMALL: Gpt2Config = { nEmbd: 8, nLayer: 2, nHead: 2, nPositions: 16, vocabSize: 23, layerNormEpsilon: 1e-5, nInner: 32, activation: 'gelu_new' };

/**
 * Builds a model whose weights are all N(0, 0.3²), so attention is far from uniform and every
 * parameter moves the logits (GPT-2's own 0.02 init would hide wiring mistakes).
 */
function randomModel(config: Gpt2Config = SMALL, seed = 1, dtype: 'float32' | 'float64' = 'float32'): Gpt2Model {
  const model = new Gpt2Model(config, 'zeros', dtype);
  const rng = new Rng(seed);
  for (const [name, p] of model.namedParameters()) {
    const offset = name.endsWith('ln_1.weight') || name.endsWith('ln_2.weight') || name === 'ln_f.weight' ? 1 : 0;
    for (let i = 0; i < p.size; i++) p.data[i] = offset + 0.3 * rng.normal();
  }
  return model;
}

function randomIds(count: number, V: number, seed: number): number[] {
  const rng = new Rng(seed);
  return Array.from({ length: count }, () => rng.int(V));
}

function maxAbsDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

/** Logits of batch row `b`, positions [from, to), as a flat array. */
function rowLogits(logits: Tensor, b: number, from: number, to: number): Float32Array | Float64Array {
  const [, T, V] = logits.shape;
  return logits.data.slice((b * T + from) * V, (b * T + to) * V);
}

const folders: string[] = [];
function tempFolder(): string {
  const dir = mkdtempSync(join(tmpdir(), 'rwkvify-gpt2-'));
  folders.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of folders) rmSync(dir, { recursive: true, force: true });
});

describe('gpt2 config', () => {
  test('reads the fixture config.json', () => {
    const json = JSON.parse(readFileSync(join(FIXTURE, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(configFromHf(json)).toEqual(gpt2Preset('tiny'));
  });

  test('n_ctx replaces a missing n_positions', () => {
    const json = { ...configToHf(SMALL), n_positions: undefined, n_ctx: 16 };
    expect(configFromHf(json).nPositions).toBe(16);
  });

  test('round trip through configToHf', () => {
    const custom: Gpt2Config = { ...SMALL, nInner: 24, layerNormEpsilon: 1e-6 };
    expect(configFromHf(configToHf(SMALL))).toEqual(SMALL);
    expect(configFromHf(configToHf(custom))).toEqual(custom);
    const hf = configToHf(gpt2Preset('124M'));
    expect(hf.model_type).toBe('gpt2');
    expect(hf.architectures).toEqual(['GPT2LMHeadModel']);
    expect(hf.tie_word_embeddings).toBe(true);
    expect(hf.bos_token_id).toBe(50256);
    expect(hf.eos_token_id).toBe(50256);
    expect(hf.n_inner).toBeNull();
    expect(hf.n_positions).toBe(1024);
    expect(hf.resid_pdrop).toBe(0.1);
  });

  test('rejects exact GELU', () => {
    expect(() => configFromHf({ ...configToHf(SMALL), activation_function: 'gelu' })).toThrow(/"gelu" is not supported.*gelu_new/);
    expect(configFromHf({ ...configToHf(SMALL), activation_function: 'gelu_pytorch_tanh' }).activation).toBe('gelu_pytorch_tanh');
  });

  test('rejects n_embd not divisible by n_head', () => {
    expect(() => configFromHf({ ...configToHf(SMALL), n_head: 3 })).toThrow(/n_embd \(8\) must be divisible by n_head \(3\)/);
  });

  test('rejects missing and invalid fields', () => {
    expect(() => configFromHf({ ...configToHf(SMALL), n_layer: undefined })).toThrow(/"n_layer" must be a positive integer/);
    expect(() => configFromHf({ ...configToHf(SMALL), vocab_size: 1.5 })).toThrow(/"vocab_size" must be a positive integer, got 1.5/);
    expect(() => configFromHf({ ...configToHf(SMALL), model_type: 'llama' })).toThrow(/model_type "llama"/);
    expect(() => configFromHf([])).toThrow(/JSON object/);
  });

  test('preset parameter counts', () => {
    expect(gpt2ParameterCount(GPT2_PRESETS['124M'])).toBe(124_439_808);
    expect(gpt2ParameterCount(GPT2_PRESETS.small)).toBe(7_259_008);
    expect(gpt2ParameterCount(GPT2_PRESETS.tiny)).toBe(1_635_744);
    expect(new Gpt2Model(gpt2Preset('tiny'), 'zeros').parameterCount()).toBe(1_635_744);
    expect(new Gpt2Model(gpt2Preset('small'), 'zeros').parameterCount()).toBe(7_259_008);
  });
});

describe('gpt2 forward', () => {
  test('forwardBlocks matches forward before the head', () => {
    const model = randomModel();
    const ids = randomIds(12, 23, 5);
    const fullCapture: BlockCapture = { attentionInputs: [], attentionOutputs: [] };
    const blocksCapture: BlockCapture = { attentionInputs: [], attentionOutputs: [] };
    const logits = model.forward(ids, 2, 6, { capture: fullCapture }); // (2, 6, V)
    const hidden = model.forwardBlocks(ids, 2, 6, { capture: blocksCapture }); // (2, 6, C)
    expect(hidden.shape).toEqual([2, 6, 8]);
    const recomputed = matmul(model.ln_f.forward(hidden), model.wte.weight, { transB: true }); // (2, 6, V)
    expect(Array.from(recomputed.data)).toEqual(Array.from(logits.data));
    expect(blocksCapture.attentionOutputs.length).toBe(2);
    for (let layer = 0; layer < 2; layer++) {
      expect(Array.from(blocksCapture.attentionInputs[layer].data)).toEqual(Array.from(fullCapture.attentionInputs[layer].data));
      expect(Array.from(blocksCapture.attentionOutputs[layer].data)).toEqual(Array.from(fullCapture.attentionOutputs[layer].data));
    }
  });

  test('T = n_positions works', () => {
    const model = randomModel();
    const logits = model.forward(randomIds(16, 23, 2), 1, 16);
    expect(logits.shape).toEqual([1, 16, 23]);
    expect(logits.data.every(Number.isFinite)).toBe(true);
  });

  test('n_positions + 1 throws before lookup', () => {
    const model = randomModel();
    // The message comes from the length check, not from gather's index check on wpe.
    expect(() => model.forward(randomIds(17, 23, 2), 1, 17)).toThrow(
      /Gpt2Model\.forward: sequence length T=17 exceeds n_positions=16.*crop the input to the last 16 tokens or use a shorter --seq-len/,
    );
    const cache = model.createCache();
    model.forward(randomIds(10, 23, 3), 1, 10, { cache });
    expect(() => model.forward(randomIds(7, 23, 4), 1, 7, { cache })).toThrow(/cached 10 \+ new 7 = 17 tokens exceeds n_positions=16/);
  });

  test('rejects ids outside the vocabulary', () => {
    const model = randomModel();
    expect(() => model.forward([1, 2, 23], 1, 3)).toThrow(/token id 23 at batch 0 position 2 is outside the vocabulary \[0, 23\)/);
    expect(() => model.forward([1, -1], 1, 2)).toThrow(/token id -1/);
    expect(() => model.forward([1, 2, 3], 2, 2)).toThrow(/got 3 token ids for B=2 × T=2 = 4/);
  });

  test('changing a later token keeps earlier logits', () => {
    const model = randomModel();
    const ids = randomIds(12, 23, 5);
    const changed = [...ids];
    changed[7] = (changed[7] + 5) % 23;
    const a = model.forward(ids, 1, 12);
    const b = model.forward(changed, 1, 12);
    // Masked keys get exactly zero probability, so positions before 7 are bitwise identical.
    expect(Array.from(rowLogits(a, 0, 0, 7))).toEqual(Array.from(rowLogits(b, 0, 0, 7)));
    expect(maxAbsDifference(rowLogits(a, 0, 7, 8), rowLogits(b, 0, 7, 8))).toBeGreaterThan(1e-3);
  });

  test('two forward passes are bitwise equal', () => {
    const model = loadGpt2Folder(FIXTURE);
    const ids = randomIds(2 * 12, 50257, 6);
    const first = model.forward(ids, 2, 12);
    const second = model.forward(ids, 2, 12);
    expect(Buffer.from(first.data.buffer).equals(Buffer.from(second.data.buffer))).toBe(true);
  });

  test('frozen teacher builds no graph', () => {
    const teacher = randomModel().setRequiresGrad(false);
    const logits = teacher.forward(randomIds(6, 23, 20), 1, 6);
    expect(logits.requiresGrad).toBe(false);
    expect(logits.node).toBeNull();
    expect(teacher.parameters().every((p) => p.grad === null)).toBe(true);
  });

  test('fresh model loss is near ln V', () => {
    const config = gpt2Preset('tiny');
    const model = new Gpt2Model(config, { rng: new Rng(7) });
    const ids = randomIds(2 * 17, config.vocabSize, 8);
    const inputs = [...ids.slice(0, 16), ...ids.slice(17, 33)];
    const targets = [...ids.slice(1, 17), ...ids.slice(18, 34)];
    const loss = model.loss(inputs, targets, 2, 16).item();
    expect(Math.abs(loss - Math.log(config.vocabSize))).toBeLessThan(0.05);
  });

  test('loss ignores -100 targets', () => {
    const model = randomModel();
    const ids = randomIds(6, 23, 9);
    const targets = randomIds(6, 23, 10);
    const masked = [...targets];
    masked[5] = -100;
    const full = model.loss(ids, targets.slice(0, 5).concat([targets[5]]), 1, 6).item();
    const partial = model.loss(ids, masked, 1, 6).item();
    const onlyFirst5 = model.forward(ids, 1, 6);
    expect(partial).not.toBeCloseTo(full, 6);
    // The mean over 5 rows equals the per-row losses of rows 0..4 averaged.
    let sum = 0;
    for (let t = 0; t < 5; t++) {
      const row = rowLogits(onlyFirst5, 0, t, t + 1);
      const max = Math.max(...row);
      const logSumExp = max + Math.log(Array.from(row).reduce((s, v) => s + Math.exp(v - max), 0));
      sum += logSumExp - row[targets[t]];
    }
    expect(partial).toBeCloseTo(sum / 5, 5);
  });
});

describe('gpt2 gradients', () => {
  test('tied wte gradient sums lookup and head', () => {
    // float64, so central differences are exact enough; one layer keeps the check fast.
    const model = randomModel({ ...SMALL, nLayer: 1, vocabSize: 11 }, 11, 'float64');
    const ids = randomIds(2 * 5, 11, 12);
    const targets = randomIds(2 * 5, 11, 13);
    const lossOf = (): Tensor => model.loss(ids, targets, 2, 5);
    // wte is both the lookup table and the output head, so this checks the sum of both paths.
    assertGradients(lossOf, [model.wte.weight], { eps: 1e-6, rtol: 1e-5, atol: 1e-9 });
    assertGradients(lossOf, [model.wpe.weight, model.h.blocks[0].attn.c_attn.bias, model.ln_f.weight], { eps: 1e-6, rtol: 1e-5, atol: 1e-9 });
  });

  test('unused wte row gets head gradient', () => {
    // Rows of wte that are never looked up get gradient only from the head. So an unused row's
    // gradient must still be nonzero, which separates the two contributions.
    const model = randomModel({ ...SMALL, nLayer: 1, vocabSize: 11 }, 14, 'float64');
    const ids = [0, 1, 2, 3];
    model.loss(ids, [1, 2, 3, 4], 1, 4).backward();
    const grad = model.wte.weight.grad;
    expect(grad).not.toBeNull();
    const C = SMALL.nEmbd;
    const unusedRow = Array.from(grad?.data.slice(9 * C, 10 * C) ?? []);
    expect(unusedRow.some((v) => v !== 0)).toBe(true);
  });
});

describe('gpt2 cache and padding', () => {
  test('cached logits equal full forward', () => {
    const model = randomModel();
    const B = 2;
    const ids = randomIds(B * 12, 23, 15);
    const full = model.forward(ids, B, 12); // (B, 12, V)

    const cache = model.createCache();
    const pieces: Array<[number, number]> = [[0, 5], [5, 6], [6, 7], [7, 12]];
    for (const [from, to] of pieces) {
      const chunk: number[] = [];
      for (let b = 0; b < B; b++) chunk.push(...ids.slice(b * 12 + from, b * 12 + to));
      const logits = model.forward(chunk, B, to - from, { cache });
      expect(logits.requiresGrad).toBe(false);
      for (let b = 0; b < B; b++) {
        expect(maxAbsDifference(rowLogits(logits, b, 0, to - from), rowLogits(full, b, from, to))).toBeLessThan(1e-5);
      }
    }
    expect(cache.length).toBe(12);
    expect(() => model.forward([1], 1, 1, { cache })).toThrow(/cache was filled with batch 2 but this call has B=1/);
  });

  test('left-padded row equals unpadded run', () => {
    const model = randomModel();
    const long = randomIds(7, 23, 16);
    const short = randomIds(4, 23, 17);
    const pad = 0;
    const ids = [...long, pad, pad, pad, ...short];
    const attentionMask = [1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1];
    const batched = model.forward(ids, 2, 7, { attentionMask });
    expect(batched.data.every(Number.isFinite)).toBe(true);

    const alone = model.forward(short, 1, 4);
    expect(maxAbsDifference(rowLogits(batched, 1, 3, 7), rowLogits(alone, 0, 0, 4))).toBeLessThan(1e-4);
    const longAlone = model.forward(long, 1, 7);
    expect(maxAbsDifference(rowLogits(batched, 0, 0, 7), rowLogits(longAlone, 0, 0, 7))).toBeLessThan(1e-4);

    // Without the mask and position ids the padded row differs: this is the bug being guarded.
    const naive = model.forward(ids, 2, 7);
    expect(maxAbsDifference(rowLogits(naive, 1, 3, 7), rowLogits(alone, 0, 0, 4))).toBeGreaterThan(1e-2);
  });

  test('left-padded cache continues correctly', () => {
    const model = randomModel();
    const long = randomIds(6, 23, 18);
    const short = randomIds(3, 23, 19);
    const next = [5, 9];
    const cache = model.createCache();
    model.forward([...long, 0, 0, 0, ...short], 2, 6, { cache, attentionMask: [1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1] });
    const step = model.forward(next, 2, 1, { cache, attentionMask: [1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1] });

    const shortAlone = model.forward([...short, next[1]], 1, 4);
    expect(maxAbsDifference(rowLogits(step, 1, 0, 1), rowLogits(shortAlone, 0, 3, 4))).toBeLessThan(1e-4);
    const longAlone = model.forward([...long, next[0]], 1, 7);
    expect(maxAbsDifference(rowLogits(step, 0, 0, 1), rowLogits(longAlone, 0, 6, 7))).toBeLessThan(1e-4);
  });

  test('explicit position ids are checked', () => {
    const model = randomModel();
    const shifted = model.forward([3, 4], 1, 2, { positionIds: [5, 6] });
    const plain = model.forward([3, 4], 1, 2);
    expect(maxAbsDifference(shifted.data, plain.data)).toBeGreaterThan(1e-3);
    expect(() => model.forward([3, 4], 1, 2, { positionIds: [15, 16] })).toThrow(/position id 16 at index 1 is outside the position table \[0, 16\)/);
    expect(() => model.forward([3, 4], 1, 2, { attentionMask: [1, 2] })).toThrow(/attentionMask entry 1 is 2/);
    expect(() => model.forward([3, 4], 1, 2, { attentionMask: [1] })).toThrow(/attentionMask has 1 entries/);
  });
});

describe('gpt2 folders', () => {
  /** Writes `tensors` (plus a config for SMALL) into a new folder and returns it. */
  function writeFolder(tensors: SafetensorsInput[], config: Record<string, unknown> = configToHf(SMALL)): string {
    const dir = tempFolder();
    writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
    writeSafetensorsFile(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
    return dir;
  }

  function tensorsOf(model: Gpt2Model, prefix = ''): SafetensorsInput[] {
    return model.namedParameters().map(([name, t]) => ({ name: prefix + name, dtype: 'F32', shape: t.shape, data: t.data }));
  }

  function expectSameWeights(a: Gpt2Model, b: Gpt2Model): void {
    const bParams = new Map(b.namedParameters());
    for (const [name, p] of a.namedParameters()) {
      const q = bParams.get(name);
      expect(q, name).toBeDefined();
      expect(Buffer.from(p.data.buffer).equals(Buffer.from(q?.data.buffer ?? new ArrayBuffer(0))), name).toBe(true);
    }
  }

  const buffers = (): SafetensorsInput[] => [
    { name: 'h.0.attn.bias', dtype: 'F32', shape: [1, 1, 16, 16], data: new Float32Array(256).fill(1) },
    { name: 'h.0.attn.masked_bias', dtype: 'F32', shape: [], data: new Float32Array([-1e4]) },
    { name: 'h.1.attn.bias', dtype: 'F32', shape: [1, 1, 16, 16], data: new Float32Array(256).fill(1) },
  ];

  test('skips buffer keys', () => {
    const model = randomModel();
    const loaded = loadGpt2Folder(writeFolder([...tensorsOf(model), ...buffers()]));
    expectSameWeights(model, loaded);
  });

  test('strips the transformer. prefix', () => {
    const model = randomModel();
    const prefixedBuffers = buffers().map((t) => ({ ...t, name: `transformer.${t.name}` }));
    const lmHead: SafetensorsInput = { name: 'lm_head.weight', dtype: 'F32', shape: model.wte.weight.shape, data: model.wte.weight.data };
    const loaded = loadGpt2Folder(writeFolder([...tensorsOf(model, 'transformer.'), ...prefixedBuffers, lmHead]));
    expectSameWeights(model, loaded);
  });

  test('untied lm_head is rejected', () => {
    const model = randomModel();
    const head = new Float32Array(model.wte.weight.data);
    head[17] += 0.25;
    const lmHead: SafetensorsInput = { name: 'lm_head.weight', dtype: 'F32', shape: model.wte.weight.shape, data: head };
    expect(() => loadGpt2Folder(writeFolder([...tensorsOf(model), lmHead]))).toThrow(
      /"lm_head.weight" in .*model\.safetensors differs from wte\.weight \(max \|difference\| 2\.500e-1 at flat index 17\)/,
    );
  });

  test('missing key error names it', () => {
    const model = randomModel();
    const tensors = tensorsOf(model).filter((t) => t.name !== 'h.1.mlp.c_fc.weight');
    expect(() => loadGpt2Folder(writeFolder(tensors))).toThrow(/model\.safetensors is missing 1 parameter tensor\(s\): "h\.1\.mlp\.c_fc\.weight" \[8, 32\]/);
  });

  test('unexpected and duplicate keys', () => {
    const model = randomModel();
    const extra: SafetensorsInput = { name: 'h.2.ln_1.weight', dtype: 'F32', shape: [8], data: new Float32Array(8) };
    expect(() => loadGpt2Folder(writeFolder([...tensorsOf(model), extra]))).toThrow(/1 tensor\(s\) that are not parameters.*"h\.2\.ln_1\.weight"/);
    const duplicate: SafetensorsInput = { ...tensorsOf(model)[0], name: 'transformer.wte.weight' };
    expect(() => loadGpt2Folder(writeFolder([...tensorsOf(model), duplicate]))).toThrow(/stores parameter "wte\.weight" twice/);
  });

  test('config contradicting weights', () => {
    const model = randomModel();
    expect(() => loadGpt2Folder(writeFolder(tensorsOf(model), configToHf({ ...SMALL, vocabSize: 50 })))).toThrow(
      /tensor "wte\.weight" in .*model\.safetensors has shape \[23, 8\] but .*config\.json implies \[50, 8\] = \[vocab_size, n_embd\]/,
    );
    const wrongShape = tensorsOf(model).map((t) =>
      t.name === 'h.0.attn.c_proj.weight' ? { ...t, shape: [4, 16] } : t,
    );
    expect(() => loadGpt2Folder(writeFolder(wrongShape))).toThrow(/"h\.0\.attn\.c_proj\.weight" .* has shape \[4, 16\] .* implies \[8, 8\]/);
  });

  test('non-finite weight error names index', () => {
    const model = randomModel();
    const tensors = tensorsOf(model).map((t) => {
      if (t.name !== 'h.1.ln_2.bias') return t;
      const data = new Float32Array(t.data);
      data[3] = Number.NaN;
      return { ...t, data };
    });
    expect(() => loadGpt2Folder(writeFolder(tensors))).toThrow(/"h\.1\.ln_2\.bias" .* non-finite value NaN at flat index 3/);
  });

  test('missing config.json', () => {
    const dir = tempFolder();
    expect(() => loadGpt2Folder(dir)).toThrow(/cannot read .*config\.json/);
  });

  test('F32 save and load is bit-exact', () => {
    const model = randomModel();
    const dir = join(tempFolder(), 'nested', 'model');
    saveGpt2Folder(model, dir);
    const loaded = loadGpt2Folder(dir);
    expectSameWeights(model, loaded);
    expect(loaded.config).toEqual(SMALL);

    const file = readSafetensorsFile(join(dir, 'model.safetensors'));
    expect(file.metadata).toEqual({ format: 'pt' });
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(config.architectures).toEqual(['GPT2LMHeadModel']);
    expect(config.torch_dtype).toBe('float32');
  });

  test('saved layout matches the PyTorch fixture', () => {
    const dir = tempFolder();
    saveGpt2Folder(loadGpt2Folder(FIXTURE), dir);
    const ours = readSafetensorsFile(join(dir, 'model.safetensors'));
    const theirs = readSafetensorsFile(join(FIXTURE, 'model.safetensors'));
    const layout = (file: typeof ours): string[] =>
      [...file.tensors.values()]
        .filter((t) => !/\.attn\.bias$/.test(t.name))
        .map((t) => `${t.name} ${t.dtype} [${t.shape.join(',')}]`)
        .sort();
    expect(layout(ours)).toEqual(layout(theirs));
    expect(readTensor(ours, 'h.1.attn.c_attn.weight')).toEqual(readTensor(theirs, 'h.1.attn.c_attn.weight'));
    const savedConfig = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    const fixtureConfig = JSON.parse(readFileSync(join(FIXTURE, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(savedConfig).toEqual(fixtureConfig);
  });

  test('F16 save rounds to half precision', () => {
    const model = randomModel();
    const dir = tempFolder();
    saveGpt2Folder(model, dir, { dtype: 'F16' });
    const loaded = loadGpt2Folder(dir);
    for (const [name, p] of model.namedParameters()) {
      const q = loaded.namedParameters().find(([n]) => n === name)?.[1];
      // Half precision keeps 11 significant bits: relative error ≤ 2^-11 for normal values.
      for (let i = 0; i < p.size; i++) expect(Math.abs((q?.data[i] ?? 0) - p.data[i])).toBeLessThanOrEqual(Math.abs(p.data[i]) * 2 ** -11 + 1e-7);
    }
    model.ln_f.bias.data[0] = 70000;
    expect(() => saveGpt2Folder(model, tempFolder(), { dtype: 'F16' })).toThrow(/"ln_f\.bias" value 70000 at flat index 0 does not fit F16/);
  });

  test('saves the tokenizer alongside', () => {
    const dir = tempFolder();
    const tokenizer = Gpt2Tokenizer.bundled();
    saveGpt2Folder(randomModel(), dir, { tokenizer });
    expect(existsSync(join(dir, 'vocab.json'))).toBe(true);
    expect(existsSync(join(dir, 'merges.txt'))).toBe(true);
    const text = 'Hello, my dog is a little';
    expect(Gpt2Tokenizer.fromFolder(dir).encode(text)).toEqual(tokenizer.encode(text));
  });
});

describe('sampling', () => {
  const logits = [0.5, 2.0, -1.0, 1.9, 0.0];

  test('validates options', () => {
    expect(() => validateSamplingOptions({ temperature: -0.1 })).toThrow(/temperature must be a finite number ≥ 0/);
    expect(() => validateSamplingOptions({ temperature: Number.NaN })).toThrow(/temperature/);
    expect(() => validateSamplingOptions({ topP: 0 })).toThrow(/top-p must be in \(0, 1\], got 0/);
    expect(() => validateSamplingOptions({ topP: 1.5 })).toThrow(/top-p/);
    expect(() => validateSamplingOptions({ topK: 0 })).toThrow(/top-k must be an integer ≥ 1, got 0/);
    expect(() => validateSamplingOptions({ topK: 2.5 })).toThrow(/top-k/);
    expect(() => generate(() => logits, [1], { maxNewTokens: -1 })).toThrow(/maxNewTokens must be an integer ≥ 0/);
    expect(() => generate(() => logits, [], { maxNewTokens: 1 })).toThrow(/prompt is empty/);
  });

  test('greedy and narrow filters pick argmax', () => {
    const rng = new Rng(1);
    expect(argmax(logits)).toBe(1);
    expect(sampleToken(logits, { temperature: 0 }, rng)).toBe(1);
    for (let i = 0; i < 20; i++) {
      expect(sampleToken(logits, { topK: 1 }, rng)).toBe(1);
      expect(sampleToken(logits, { topP: 0.01 }, rng)).toBe(1);
    }
  });

  test('top-k and top-p restrict the support', () => {
    const rng = new Rng(2);
    const seenTopK = new Set<number>();
    const seenTopP = new Set<number>();
    for (let i = 0; i < 300; i++) {
      seenTopK.add(sampleToken(logits, { topK: 2 }, rng));
      // p(1) ≈ 0.40 and p(3) ≈ 0.36 at temperature 1, so top-p 0.7 keeps exactly these two.
      seenTopP.add(sampleToken(logits, { topP: 0.7 }, rng));
    }
    expect([...seenTopK].sort()).toEqual([1, 3]);
    expect([...seenTopP].sort()).toEqual([1, 3]);
  });

  test('sampling frequencies follow softmax', () => {
    const rng = new Rng(3);
    const counts = new Array(5).fill(0) as number[];
    const draws = 20000;
    for (let i = 0; i < draws; i++) counts[sampleToken(logits, { temperature: 2 }, rng)]++;
    const scaled = logits.map((v) => Math.exp(v / 2));
    const total = scaled.reduce((a, b) => a + b, 0);
    // 4 standard deviations of a binomial proportion at n = 20000 is at most 0.015.
    scaled.forEach((w, i) => expect(Math.abs(counts[i] / draws - w / total)).toBeLessThan(0.015));
  });

  test('same seed gives the same tokens', () => {
    const model = randomModel();
    const options = { maxNewTokens: 12, temperature: 1.2, topK: 10, topP: 0.95, seed: 42 };
    const first = generateGpt2(model, [1, 2, 3], options);
    const second = generateGpt2(model, [1, 2, 3], options);
    const other = generateGpt2(model, [1, 2, 3], { ...options, seed: 43 });
    expect(first).toHaveLength(12);
    expect(second).toEqual(first);
    expect(other).not.toEqual(first);
  });

  test('generation crops to n_positions', () => {
    // 3 prompt + 25 new tokens exceed the 16 positions; compare with full recomputation on the
    // last 16 tokens at every step.
    const model = randomModel();
    const prompt = [4, 8, 15];
    const generated = generateGpt2(model, prompt, { maxNewTokens: 25, temperature: 0 });
    const context = [...prompt];
    for (let i = 0; i < 25; i++) {
      const window = context.slice(-16);
      const logits = model.forward(window, 1, window.length);
      context.push(argmax(rowLogits(logits, 0, window.length - 1, window.length)));
    }
    expect(generated).toEqual(context.slice(3));
  });

  test('stop token ends generation', () => {
    const model = randomModel();
    const greedy = generateGpt2(model, [1, 2], { maxNewTokens: 8, temperature: 0 });
    const stopped = generateGpt2(model, [1, 2], { maxNewTokens: 8, temperature: 0, stopTokens: [greedy[2]] });
    expect(stopped).toEqual(greedy.slice(0, greedy.indexOf(greedy[2]) + 1));
  });
});
