// RWKV-7 safetensors files with official tensor names: round trips, loading without config.json,
// and the errors for files that do not fit.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '../src/index.js';
import { writeSafetensorsFile, type SafetensorsInput } from '../src/io/safetensors.js';
import { loadRwkv7Safetensors, saveRwkv7Safetensors } from '../src/models/rwkv7/io.js';
import { Rwkv7Model } from '../src/models/rwkv7/model.js';
import type { Rwkv7ConfigInput } from '../src/models/rwkv7/config.js';

const folders: string[] = [];
afterAll(() => {
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

function newFolder(): string {
  const folder = mkdtempSync(join(tmpdir(), 'rwkv7-io-'));
  folders.push(folder);
  return folder;
}

const SMALL: Rwkv7ConfigInput = { nEmbd: 8, nLayer: 3, headSize: 4, vocabSize: 13, dDecay: 3, dIclr: 2, dValue: 5, dGate: 4, dimFfn: 16 };

function randomModel(config: Rwkv7ConfigInput, seed: number): Rwkv7Model {
  const model = new Rwkv7Model(config, { seed });
  const rng = new Rng(seed + 1);
  for (const p of model.parameters()) for (let i = 0; i < p.size; i++) p.data[i] = rng.uniform() - 0.5;
  return model;
}

const PROMPT = [1, 5, 12, 0, 7];
const logitsOf = (model: Rwkv7Model): Float32Array | Float64Array => model.forward(PROMPT, 1, PROMPT.length).logits.data;

/** Copies the parameters as safetensors inputs, for writing altered files. */
function tensorsOf(model: Rwkv7Model): SafetensorsInput[] {
  return model.namedParameters().map(([name, t]) => ({ name, dtype: 'F32', shape: [...t.shape], data: t.data.slice() }));
}

describe('rwkv7 safetensors round trip', () => {
  it('save then load gives the same logits', () => {
    const folder = newFolder();
    const model = randomModel(SMALL, 1);
    saveRwkv7Safetensors(model, join(folder, 'model.safetensors'));
    const config = JSON.parse(readFileSync(join(folder, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(config).toMatchObject({ model_type: 'rwkv7', n_embd: 8, n_layer: 3, head_size: 4, d_value_lora: 5, gate: 'official' });

    const loaded = loadRwkv7Safetensors(join(folder, 'model.safetensors'));
    expect(loaded.config).toEqual(model.config);
    expect(logitsOf(loaded)).toEqual(logitsOf(model));
  });

  it('official names alone infer the config', () => {
    const folder = newFolder();
    const model = randomModel(SMALL, 2);
    const path = join(folder, 'weights.safetensors');
    saveRwkv7Safetensors(model, path);
    unlinkSync(join(folder, 'config.json'));

    const loaded = loadRwkv7Safetensors(path);
    expect(loaded.config).toEqual(model.config);
    expect(logitsOf(loaded)).toEqual(logitsOf(model));
  });

  it('converted-student switches survive the round trip', () => {
    const folder = newFolder();
    const config = { ...SMALL, tokenShift: false, bonus: false, groupNorm: false, biases: true, gate: 'identity-plus' as const };
    const model = randomModel(config, 3);
    const path = join(folder, 'model.safetensors');
    saveRwkv7Safetensors(model, path);
    const names = model.namedParameters().map(([name]) => name);
    expect(names).toContain('blocks.0.att.receptance.bias');
    expect(names).not.toContain('blocks.0.att.x_r');
    expect(names).not.toContain('blocks.0.att.r_k');
    expect(names).not.toContain('blocks.0.att.ln_x.weight');

    const loaded = loadRwkv7Safetensors(path);
    expect(loaded.config).toEqual(model.config);
    expect(logitsOf(loaded)).toEqual(logitsOf(model));
  });

  it('float64 load keeps float32 values exactly', () => {
    const folder = newFolder();
    const model = randomModel(SMALL, 4);
    const path = join(folder, 'model.safetensors');
    saveRwkv7Safetensors(model, path);
    const loaded = loadRwkv7Safetensors(path, { dtype: 'float64' });
    expect(loaded.emb.weight.dtype).toBe('float64');
    expect(Array.from(loaded.head.weight.data)).toEqual(Array.from(model.head.weight.data));
  });

  it('squeezed [C] vectors load into [1,1,C]', () => {
    const folder = newFolder();
    const model = randomModel(SMALL, 5);
    const tensors = tensorsOf(model).map((t) => (t.shape.length === 3 ? { ...t, shape: [t.shape[2]] } : t));
    const path = join(folder, 'model.safetensors');
    writeSafetensorsFile(path, tensors);
    expect(logitsOf(loadRwkv7Safetensors(path))).toEqual(logitsOf(model));
  });
});

describe('rwkv7 safetensors errors', () => {
  function savedFolder(seed: number, config: Rwkv7ConfigInput = SMALL): { folder: string; path: string; model: Rwkv7Model } {
    const folder = newFolder();
    const model = randomModel(config, seed);
    const path = join(folder, 'model.safetensors');
    saveRwkv7Safetensors(model, path);
    return { folder, path, model };
  }

  it('config.json disagreeing with the tensors names the field', () => {
    const { folder, path } = savedFolder(10);
    const configPath = join(folder, 'config.json');
    const json = JSON.parse(readFileSync(configPath, 'utf8')) as Record<string, unknown>;
    writeFileSync(configPath, JSON.stringify({ ...json, n_layer: 4 }));
    expect(() => loadRwkv7Safetensors(path)).toThrow(/sets n_layer = 4 but the tensors .* imply 3/);
    writeFileSync(configPath, JSON.stringify({ ...json, d_gate_lora: 32 }));
    expect(() => loadRwkv7Safetensors(path)).toThrow(/sets d_gate_lora = 32 but the tensors .* imply 4/);
    expect(loadRwkv7Safetensors(path, { configPath: null }).config.dGate).toBe(4);
  });

  it('config.json of another model type is rejected', () => {
    const { folder, path } = savedFolder(11);
    writeFileSync(join(folder, 'config.json'), JSON.stringify({ model_type: 'gpt2', n_embd: 8 }));
    expect(() => loadRwkv7Safetensors(path)).toThrow(/model_type "gpt2", expected "rwkv7"/);
  });

  it('without bonus and config.json the head size is unknown', () => {
    const { folder, path } = savedFolder(12, { ...SMALL, bonus: false });
    unlinkSync(join(folder, 'config.json'));
    expect(() => loadRwkv7Safetensors(path)).toThrow(/no "blocks.0.att.r_k".*add config.json with head_size/);
  });

  it('non-finite parameters name the tensor', () => {
    const folder = newFolder();
    const tensors = tensorsOf(randomModel(SMALL, 13));
    const target = tensors.find((t) => t.name === 'blocks.1.att.w0');
    if (target === undefined) throw new Error('blocks.1.att.w0 missing');
    target.data[2] = Number.NaN;
    const path = join(folder, 'model.safetensors');
    writeSafetensorsFile(path, tensors);
    expect(() => loadRwkv7Safetensors(path)).toThrow(/"blocks.1.att.w0" element 2 is NaN/);
  });

  it('a tensor of the wrong shape names the tensor and both shapes', () => {
    const folder = newFolder();
    const tensors = tensorsOf(randomModel(SMALL, 14)).map((t) => (t.name === 'blocks.2.ffn.value.weight' ? { ...t, shape: [16, 8] } : t));
    const path = join(folder, 'model.safetensors');
    writeSafetensorsFile(path, tensors);
    expect(() => loadRwkv7Safetensors(path)).toThrow(/"blocks.2.ffn.value.weight" has shape \[16,8\] but the model needs \[8,16\]/);
  });

  it('r_k that does not tile the width is rejected', () => {
    const folder = newFolder();
    const tensors = tensorsOf(randomModel(SMALL, 15)).map((t) => (t.name.endsWith('att.r_k') ? { ...t, shape: [1, 8 * 2], data: new Float32Array(16) } : t));
    const path = join(folder, 'model.safetensors');
    writeSafetensorsFile(path, tensors);
    expect(() => loadRwkv7Safetensors(path, { configPath: null })).toThrow(/r_k" has shape \[1,16\] but H·N must equal the width 8/);
  });

  it('missing and unexpected tensors are named', () => {
    const folder = newFolder();
    const all = tensorsOf(randomModel(SMALL, 16));
    const path = join(folder, 'model.safetensors');
    writeSafetensorsFile(path, all.filter((t) => t.name !== 'blocks.1.ln2.bias'));
    expect(() => loadRwkv7Safetensors(path)).toThrow(/has no tensor "blocks.1.ln2.bias" of shape \[8\]/);
    writeSafetensorsFile(path, [...all, { name: 'blocks.0.att.time_faaaa', dtype: 'F32', shape: [2], data: new Float32Array(2) }]);
    expect(() => loadRwkv7Safetensors(path)).toThrow(/1 tensor\(s\) that an RWKV-7 model with this configuration does not use: "blocks.0.att.time_faaaa"/);
  });

  it('a file without emb.weight is not an RWKV-7 checkpoint', () => {
    const folder = newFolder();
    const path = join(folder, 'model.safetensors');
    writeSafetensorsFile(path, [{ name: 'wte.weight', dtype: 'F32', shape: [2, 2], data: new Float32Array(4) }]);
    expect(() => loadRwkv7Safetensors(path)).toThrow(/has no tensor "emb.weight"/);
  });
});
