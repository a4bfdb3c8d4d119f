// Configuration of a converted student: the teacher's GPT-2 configuration, the RWKV-7 time-mix
// switches that replace its attention, how positions are embedded, and a fingerprint of the
// teacher it was converted from. Stored in config.json with model_type "rwkv7-student".
import { configFromHf, configToHf, type Gpt2Config } from '../gpt2/config.js';
import { LORA_FACTORS, rwkv7Config, suggestedLoraRank, type Rwkv7Config } from '../rwkv7/config.js';

/** Value of "model_type" in a student's config.json. */
export const STUDENT_MODEL_TYPE = 'rwkv7-student';

/** Initialisation recipe of the student's time-mix parameters. */
export type StudentInit =
  /** r, k, v, output copied from c_attn / c_proj with their biases, μ = 0, identity gate (RADLADS-style). */
  | 'copy'
  /** Projections drawn uniform ±1/√C and ARWKV's token-shift ramps; nothing taken from the attention. */
  | 'fresh';

/**
 * Position-embedding mode of the residual stream. GPT-2's learned table wpe has n_positions rows,
 * while an RNN can run for any number of tokens.
 */
export type PositionMode =
  /** wpe[t]; a position at or beyond n_positions is an error, as in GPT-2. */
  | 'keep'
  /** wpe[min(t, n_positions − 1)]: the last learned row for every later token. */
  | 'clamp'
  /** No position embedding at all (the recurrence alone orders the tokens). */
  | 'drop';

export const STUDENT_INITS: readonly StudentInit[] = ['copy', 'fresh'];
export const POSITION_MODES: readonly PositionMode[] = ['keep', 'clamp', 'drop'];

export interface StudentConfig {
  /** The teacher's GPT-2 configuration; width, heads, depth, vocabulary and MLP come from it. */
  teacher: Gpt2Config;
  init: StudentInit;
  positions: PositionMode;
  /** Token shift in the time mix (μ parameters x_r … x_g). */
  tokenShift: boolean;
  /** The RWKV-7 bonus term (r_k parameters). */
  bonus: boolean;
  /** Per-head GroupNorm ln_x of the WKV output. */
  groupNorm: boolean;
  /** LoRA ranks of decay, in-context learning rate, value residual and gate. */
  dDecay: number;
  dIclr: number;
  dValue: number;
  dGate: number;
  /** SHA-256 hex digest of the teacher's configuration and a few of its tensors (see teacherFingerprint in convert.ts). */
  teacherFingerprint: string;
}

/** Options a caller may set when converting; the rest follows from the teacher. */
export interface StudentOptions {
  init?: StudentInit;
  positions?: PositionMode;
  tokenShift?: boolean;
  bonus?: boolean;
  groupNorm?: boolean;
}

/** Builds a student configuration for `teacher` with RWKV-7's suggested LoRA ranks for its width. */
export function studentConfig(teacher: Gpt2Config, fingerprint: string, options: StudentOptions = {}): StudentConfig {
  const C = teacher.nEmbd;
  const config: StudentConfig = {
    teacher: { ...teacher },
    init: options.init ?? 'copy',
    positions: options.positions ?? 'clamp',
    tokenShift: options.tokenShift ?? true,
    bonus: options.bonus ?? true,
    groupNorm: options.groupNorm ?? true,
    dDecay: suggestedLoraRank(C, LORA_FACTORS.decay),
    dIclr: suggestedLoraRank(C, LORA_FACTORS.iclr),
    dValue: suggestedLoraRank(C, LORA_FACTORS.value),
    dGate: suggestedLoraRank(C, LORA_FACTORS.gate),
    teacherFingerprint: fingerprint,
  };
  validateStudentConfig(config);
  return config;
}

/**
 * Returns the RWKV-7 configuration of one student time mix: H = n_head heads of N = C / n_head
 * channels, biases on r/k/v/output (the copied GPT-2 projections have them) and the
 * identity-plus gate g = 1 + σ(x·g1)·g2.
 */
export function timeMixConfig(config: StudentConfig): Rwkv7Config {
  const t = config.teacher;
  return rwkv7Config({
    nEmbd: t.nEmbd,
    nLayer: t.nLayer,
    vocabSize: t.vocabSize,
    headSize: t.nEmbd / t.nHead,
    dimFfn: t.nInner,
    dDecay: config.dDecay,
    dIclr: config.dIclr,
    dValue: config.dValue,
    dGate: config.dGate,
    tokenShift: config.tokenShift,
    bonus: config.bonus,
    groupNorm: config.groupNorm,
    biases: true,
    gate: 'identity-plus',
  });
}

/** Throws a RangeError naming the field, its value and the valid choices. */
export function validateStudentConfig(config: StudentConfig): void {
  if (!STUDENT_INITS.includes(config.init)) {
    throw new RangeError(`student config: init must be one of ${STUDENT_INITS.join(', ')}, got ${JSON.stringify(config.init)}`);
  }
  if (!POSITION_MODES.includes(config.positions)) {
    throw new RangeError(`student config: positions must be one of ${POSITION_MODES.join(', ')}, got ${JSON.stringify(config.positions)}`);
  }
  if (typeof config.teacherFingerprint !== 'string' || config.teacherFingerprint.length === 0) {
    throw new RangeError('student config: teacher_fingerprint is missing; convert the student again with `rwkvify convert`');
  }
  timeMixConfig(config); // validates width, head size, ranks and switches
}

/** Converts a configuration to its config.json object. */
export function studentConfigToJson(config: StudentConfig): Record<string, unknown> {
  return {
    model_type: STUDENT_MODEL_TYPE,
    init: config.init,
    positions: config.positions,
    token_shift: config.tokenShift,
    bonus: config.bonus,
    group_norm: config.groupNorm,
    gate: 'identity-plus',
    biases: true,
    d_decay_lora: config.dDecay,
    d_iclr_lora: config.dIclr,
    d_value_lora: config.dValue,
    d_gate_lora: config.dGate,
    teacher_fingerprint: config.teacherFingerprint,
    teacher: configToHf(config.teacher),
  };
}

/** Reads a student's config.json object; `source` labels error messages. */
export function studentConfigFromJson(json: unknown, source = 'config.json'): StudentConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new RangeError(`student config: ${source} must contain a JSON object`);
  }
  const fields = json as Record<string, unknown>;
  if (fields.model_type !== STUDENT_MODEL_TYPE) {
    throw new RangeError(`student config: ${source} has model_type ${JSON.stringify(fields.model_type)}, expected "${STUDENT_MODEL_TYPE}"; create a student with \`rwkvify convert\``);
  }
  const flag = (key: string): boolean => {
    const value = fields[key];
    if (typeof value !== 'boolean') throw new RangeError(`student config: ${source} field "${key}" must be true or false, got ${JSON.stringify(value)}`);
    return value;
  };
  const rank = (key: string): number => {
    const value = fields[key];
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
      throw new RangeError(`student config: ${source} field "${key}" must be a positive integer, got ${JSON.stringify(value)}`);
    }
    return value;
  };
  if (fields.gate !== 'identity-plus' || fields.biases !== true) {
    throw new RangeError(`student config: ${source} must have gate "identity-plus" and biases true, got gate ${JSON.stringify(fields.gate)}, biases ${JSON.stringify(fields.biases)}`);
  }
  const config: StudentConfig = {
    teacher: configFromHf(fields.teacher, `${source} field "teacher"`),
    init: fields.init as StudentInit,
    positions: fields.positions as PositionMode,
    tokenShift: flag('token_shift'),
    bonus: flag('bonus'),
    groupNorm: flag('group_norm'),
    dDecay: rank('d_decay_lora'),
    dIclr: rank('d_iclr_lora'),
    dValue: rank('d_value_lora'),
    dGate: rank('d_gate_lora'),
    teacherFingerprint: typeof fields.teacher_fingerprint === 'string' ? fields.teacher_fingerprint : '',
  };
  validateStudentConfig(config);
  return config;
}
