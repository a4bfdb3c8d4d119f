// Building a student from a GPT-2 teacher. Everything except attention is copied; each attention
// block becomes an RWKV-7 time mix whose initial values follow one of two published recipes.
//
// copy (RADLADS-style attention transfer), per layer with W = c_attn.weight [C, 3C] stored
// [in, out] and b = c_attn.bias:
//   receptance.weight = W[:, 0:C]ᵀ,  key.weight = W[:, C:2C]ᵀ,  value.weight = W[:, 2C:3C]ᵀ
//   receptance/key/value.bias = b[0:C], b[C:2C], b[2C:3C]
//   output.weight = c_proj.weightᵀ, output.bias = c_proj.bias
// with token-shift μ = 0 and the gate g = 1 + σ(x·g1)·g2 at g1 = g2 = 0, so at step 0 the copied
// projections see exactly the inputs they saw in the teacher.
//
// fresh (ARWKV / RWKVInside TimeMixer): projection weights are drawn uniform ±1/√C as PyTorch's
// Linear does, and token shift follows ARWKV's ramps (below). Projection biases start at 0 because
// ARWKV's projections have none. Nothing is taken from the attention weights.
//
// Both: w0 = −7 + 5·(n/(C−1))^{0.85+√ρ0} + 0.5, a0 = 0, v0 = 1, k_k = 0.85, k_a = 1, r_k = 0,
// ln_x weight 1 and bias 0, w1/a1/v1 = 0 with w2/a2/v2 orthogonal (gain 0.1).
import { createHash } from 'node:crypto';
import { configToHf } from '../gpt2/config.js';
import type { Gpt2Model } from '../gpt2/model.js';
import { layerRatios } from '../rwkv7/init.js';
import type { Rwkv7TimeMix } from '../rwkv7/time-mix.js';
import type { Tensor } from '../../tensor/tensor.js';
import { studentConfig, type StudentOptions } from './config.js';
import { StudentModel } from './model.js';

/** Teacher tensors hashed into the fingerprint besides the configuration (small, and all change when a model is trained). */
function fingerprintTensorNames(nLayer: number): string[] {
  return ['ln_f.weight', 'ln_f.bias', 'h.0.attn.c_attn.bias', `h.${nLayer - 1}.mlp.c_proj.bias`, 'h.0.ln_1.weight', 'wpe.weight'];
}

/**
 * Returns a SHA-256 hex digest of the teacher's config.json fields and of a few of its tensors,
 * stored in the student's config so that distillation can reject a student converted from
 * another teacher.
 */
export function teacherFingerprint(teacher: Gpt2Model): string {
  const hash = createHash('sha256');
  const config = configToHf(teacher.config);
  hash.update(JSON.stringify(Object.keys(config).sort().map((key) => [key, config[key]])));
  const byName = new Map(teacher.namedParameters());
  for (const name of fingerprintTensorNames(teacher.config.nLayer)) {
    const t = byName.get(name);
    if (t === undefined) throw new Error(`teacherFingerprint: the teacher has no tensor "${name}"`);
    hash.update(name);
    hash.update(new Uint8Array(Float32Array.from(t.data).buffer));
  }
  return hash.digest('hex');
}

/**
 * Converts a GPT-2 teacher into a student. `seed` fixes the random matrices (w2, a2, v2 and, for
 * 'fresh', the projections).
 */
export function convertTeacher(teacher: Gpt2Model, options: StudentOptions = {}, seed = 0): StudentModel {
  const config = studentConfig(teacher.config, teacherFingerprint(teacher), options);
  const student = new StudentModel(config, { seed, timeMixInit: 'converted' });
  copyKeptParameters(teacher, student);
  student.blocks.forEach((block, layer) => {
    if (config.init === 'copy') copyAttentionProjections(teacher, layer, block.att);
    else applyFreshInit(block.att, layer, config.teacher.nLayer);
  });
  return student;
}

/** Copies every student parameter that exists under the same name in the teacher (all but `att`). */
function copyKeptParameters(teacher: Gpt2Model, student: StudentModel): void {
  const source = new Map(teacher.namedParameters());
  for (const [name, param] of student.namedParameters()) {
    if (name.includes('.att.')) continue;
    const t = source.get(name);
    if (t === undefined || t.size !== param.size) {
      throw new Error(`convertTeacher: teacher tensor "${name}" is missing or has another size (${t?.size ?? 0} vs ${param.size})`);
    }
    param.data.set(t.data);
  }
}

/** Writes columns [offset, offset + C) of a Conv1D weight W [C, cols] transposed into a Linear weight [C, C]. */
function copyTransposedColumns(weight: Tensor, offset: number, target: Tensor): void {
  const [rows, cols] = weight.shape;
  const C = target.shape[0];
  for (let out = 0; out < C; out++) {
    for (let input = 0; input < rows; input++) target.data[out * rows + input] = weight.data[input * cols + offset + out];
  }
}

function copyAttentionProjections(teacher: Gpt2Model, layer: number, att: Rwkv7TimeMix): void {
  const attention = teacher.h.blocks[layer].attn;
  const C = teacher.config.nEmbd;
  const projections = [att.receptance, att.key, att.value];
  projections.forEach((linear, i) => {
    copyTransposedColumns(attention.c_attn.weight, i * C, linear.weight);
    linear.bias?.data.set(attention.c_attn.bias.data.subarray(i * C, (i + 1) * C));
  });
  copyTransposedColumns(attention.c_proj.weight, 0, att.output.weight);
  att.output.bias?.data.set(attention.c_proj.bias.data);
}

/**
 * Zero projection biases and ARWKV's token-shift init, with d = n/C, ρ0 = l/(L−1), ρ1 = 1 − l/L:
 * x_r = 1 − d^{0.2ρ1}, x_w = x_a = 1 − d^{0.9ρ1}, x_k = 1 − (d^{0.9ρ1} + 0.4ρ0),
 * x_v = 1 − (d^{0.4ρ1} + 0.6ρ0), x_g = 1.
 */
function applyFreshInit(att: Rwkv7TimeMix, layer: number, nLayer: number): void {
  for (const projection of [att.receptance, att.key, att.value, att.output]) projection.bias?.data.fill(0);
  const { rho0, rho1 } = layerRatios(layer, nLayer);
  const C = att.C;
  const fill = (mu: Tensor | null, f: (d: number) => number): void => {
    if (mu === null) return;
    for (let n = 0; n < C; n++) mu.data[n] = f(n / C);
  };
  fill(att.x_r, (d) => 1 - Math.pow(d, 0.2 * rho1));
  fill(att.x_w, (d) => 1 - Math.pow(d, 0.9 * rho1));
  fill(att.x_k, (d) => 1 - (Math.pow(d, 0.9 * rho1) + 0.4 * rho0));
  fill(att.x_v, (d) => 1 - (Math.pow(d, 0.4 * rho1) + 0.6 * rho0));
  fill(att.x_a, (d) => 1 - Math.pow(d, 0.9 * rho1));
  fill(att.x_g, () => 1);
}
