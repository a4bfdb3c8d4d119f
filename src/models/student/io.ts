// Student model folders. config.json has model_type "rwkv7-student" and stores the teacher's
// GPT-2 config, the init, position mode, switches and teacher fingerprint. model.safetensors
// stores every parameter in F32 under its own name (`wte.weight`, `h.0.ln_1.weight`,
// `h.0.att.w0`, …). vocab.json and merges.txt are added when a tokenizer is given.
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../../io/atomic.js';
import { readSafetensorsFile, readTensor, writeSafetensorsFile, type SafetensorsInput } from '../../io/safetensors.js';
import type { Gpt2Tokenizer } from '../../tokenizer/index.js';
import { studentConfigFromJson, studentConfigToJson, type StudentConfig } from './config.js';
import { StudentModel } from './model.js';

export const STUDENT_CONFIG_FILE = 'config.json';
export const STUDENT_WEIGHTS_FILE = 'model.safetensors';

/** Reads and checks a student's config.json. */
export function readStudentConfig(dir: string): StudentConfig {
  const path = join(dir, STUDENT_CONFIG_FILE);
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`loadStudentFolder: cannot read ${path}: ${reason}; a student folder needs config.json next to model.safetensors`, { cause: error });
  }
  return studentConfigFromJson(json, path);
}

/**
 * Loads a student folder into float32. A missing, unexpected, mis-shaped or non-finite tensor
 * throws an error naming it and the file.
 */
export function loadStudentFolder(dir: string): StudentModel {
  const config = readStudentConfig(dir);
  const file = readSafetensorsFile(join(dir, STUDENT_WEIGHTS_FILE));
  const model = new StudentModel(config, { timeMixInit: 'none' });
  const expected = new Set<string>();
  const missing: string[] = [];
  for (const [name, param] of model.namedParameters()) {
    expected.add(name);
    const entry = file.tensors.get(name);
    if (entry === undefined) {
      missing.push(name);
      continue;
    }
    if (entry.shape.join(',') !== param.shape.join(',')) {
      throw new Error(
        `loadStudentFolder: tensor "${name}" in ${file.source} has shape [${entry.shape.join(', ')}] but config.json implies [${param.shape.join(', ')}]; ` +
          'use the config.json saved with these weights',
      );
    }
    const values = readTensor(file, name, 'float32');
    const bad = values.findIndex((v) => !Number.isFinite(v));
    if (bad !== -1) throw new Error(`loadStudentFolder: tensor "${name}" in ${file.source} has the non-finite value ${values[bad]} at flat index ${bad}; the checkpoint is corrupt`);
    param.data.set(values);
  }
  if (missing.length > 0) {
    throw new Error(`loadStudentFolder: ${file.source} is missing ${missing.length} tensor(s): ${missing.slice(0, 5).map((n) => `"${n}"`).join(', ')}; check that config.json belongs to these weights`);
  }
  const unexpected = [...file.tensors.keys()].filter((name) => !expected.has(name));
  if (unexpected.length > 0) {
    throw new Error(
      `loadStudentFolder: ${file.source} has ${unexpected.length} tensor(s) that this student configuration does not use: ` +
        `${unexpected.slice(0, 5).map((n) => `"${n}"`).join(', ')}; check the token_shift, bonus, group_norm and positions fields of config.json`,
    );
  }
  return model;
}

/** Writes config.json and model.safetensors (and the tokenizer files when given) into `dir`, each file atomically. */
export function saveStudentFolder(model: StudentModel, dir: string, options: { tokenizer?: Gpt2Tokenizer } = {}): void {
  const tensors: SafetensorsInput[] = model.namedParameters().map(([name, t]) => ({ name, dtype: 'F32', shape: t.shape, data: t.data }));
  mkdirSync(dir, { recursive: true });
  writeFileAtomic(join(dir, STUDENT_CONFIG_FILE), `${JSON.stringify(studentConfigToJson(model.config), null, 2)}\n`);
  writeSafetensorsFile(join(dir, STUDENT_WEIGHTS_FILE), tensors, { format: 'pt' });
  options.tokenizer?.saveToFolder(dir);
}
