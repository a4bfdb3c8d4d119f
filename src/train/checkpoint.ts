// Training checkpoints. A checkpoint is one folder, `<out>/model/`, that is a complete model folder
// (written by the model's own save function) plus two trainer files:
//   trainer-state.json       step, settings, model config, command-line arguments, sampler state
//   optimizer.safetensors    AdamW moments as F64, named exp_avg.<param> and exp_avg_sq.<param>
// The moments live in safetensors rather than in the JSON because a small model already has
// millions of them, and F64 keeps them bit-exact so a resumed run repeats the original one.
//
// Writing is crash-safe at folder level: the new checkpoint is written to a staging folder, the
// old one is renamed to `model.old`, the staging folder is renamed to `model`, and `model.old` is
// removed. A crash at any point leaves either `model` or `model.old` complete, and
// `findCheckpoint` picks whichever survived.

import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import { writeFileAtomic } from '../io/atomic.js';
import { readSafetensorsFile, readTensor, writeSafetensorsFile, type SafetensorsFile, type SafetensorsInput } from '../io/safetensors.js';
import type { AdamW, AdamWState } from '../optim/index.js';
import type { SamplerState } from '../data/dataset.js';
import { InputError } from '../data/input-error.js';
import type { Tensor } from '../tensor/index.js';
import type { TrainingSettings } from './settings.js';

/** Version of trainer-state.json; a checkpoint with another version cannot be resumed. */
export const TRAINER_STATE_FORMAT = 1;

export const TRAINER_STATE_FILE = 'trainer-state.json';
export const OPTIMIZER_FILE = 'optimizer.safetensors';
const CHECKPOINT_FOLDER = 'model';
const PREVIOUS_FOLDER = 'model.old';

/** Contents of trainer-state.json. */
export interface TrainerState {
  format: number;
  /** Optimizer steps completed. */
  step: number;
  /** Training tokens consumed so far (steps × gradient accumulation × B × T). */
  tokensSeen: number;
  settings: TrainingSettings;
  /** The model's architecture name and configuration, for people reading the file. */
  model: { arch: string; config: unknown };
  /** The command-line arguments of the run, as parsed. */
  args: Record<string, unknown>;
  sampler: SamplerState;
  optimizer: { step: number; file: string };
  /** ISO 8601 time of writing. */
  savedAt: string;
}

/** Inputs of a checkpoint write, supplied by the trainer. */
export interface CheckpointContents {
  state: Omit<TrainerState, 'format' | 'savedAt' | 'optimizer'>;
  optimizer: AdamW;
  /** Parameter names in the optimizer's order (groups flattened), matching `optimizer.getState()`. */
  parameterNames: readonly string[];
  /** Writes the model folder (config, weights, tokenizer) into the given empty folder. */
  saveModel: (dir: string) => void;
}

/** Returns the checkpoint folder of a run, `<outDir>/model`. */
export function checkpointDir(outDir: string): string {
  return join(outDir, CHECKPOINT_FOLDER);
}

/**
 * Returns the folder of the newest complete checkpoint in `outDir`, or undefined when there is
 * none. Restores `model.old` to `model` when a crash happened between the two renames.
 */
export function findCheckpoint(outDir: string): string | undefined {
  const current = join(outDir, CHECKPOINT_FOLDER);
  const previous = join(outDir, PREVIOUS_FOLDER);
  if (existsSync(join(current, TRAINER_STATE_FILE))) return current;
  if (existsSync(join(previous, TRAINER_STATE_FILE))) {
    rmSync(current, { recursive: true, force: true });
    renameSync(previous, current);
    return current;
  }
  return undefined;
}

/** Writes a checkpoint of the current training state to `<outDir>/model`, replacing the old one. */
export function writeCheckpoint(outDir: string, contents: CheckpointContents): string {
  const final = join(outDir, CHECKPOINT_FOLDER);
  const previous = join(outDir, PREVIOUS_FOLDER);
  const staging = join(outDir, `${CHECKPOINT_FOLDER}.staging-${process.pid}`);
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });

  contents.saveModel(staging);
  writeOptimizerFile(join(staging, OPTIMIZER_FILE), contents.optimizer.getState(), contents.parameterNames);
  const state: TrainerState = {
    format: TRAINER_STATE_FORMAT,
    ...contents.state,
    optimizer: { step: contents.optimizer.steps, file: OPTIMIZER_FILE },
    savedAt: new Date().toISOString(),
  };
  writeFileAtomic(join(staging, TRAINER_STATE_FILE), JSON.stringify(state, null, 2) + '\n');

  rmSync(previous, { recursive: true, force: true });
  if (existsSync(final)) renameSync(final, previous);
  renameSync(staging, final);
  rmSync(previous, { recursive: true, force: true });
  return final;
}

// NOTE: AdamW.getState copies both moments into plain number arrays, so writing a checkpoint
// briefly needs two more copies of them (array and Float64Array). That is small for the tiny and
// small presets but several GB for a 124M model.
function writeOptimizerFile(path: string, state: AdamWState, names: readonly string[]): void {
  const tensors: SafetensorsInput[] = [];
  state.moments.forEach((moment, i) => {
    if (moment === null) return; // a parameter that never had a gradient has no moments yet
    tensors.push({ name: `exp_avg.${names[i]}`, dtype: 'F64', shape: [moment.m.length], data: Float64Array.from(moment.m) });
    tensors.push({ name: `exp_avg_sq.${names[i]}`, dtype: 'F64', shape: [moment.v.length], data: Float64Array.from(moment.v) });
  });
  writeSafetensorsFile(path, tensors, { format: 'rwkvify-adamw', step: String(state.step) });
}

/** Reads and checks trainer-state.json from a checkpoint folder. */
export function readTrainerState(dir: string): TrainerState {
  const path = join(dir, TRAINER_STATE_FILE);
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new InputError(`checkpoint: cannot read "${path}": ${reason}`);
  }
  const state = parsed as TrainerState;
  if (typeof state !== 'object' || state === null || state.format !== TRAINER_STATE_FORMAT) {
    throw new InputError(`checkpoint: "${path}" has format ${JSON.stringify((state as { format?: unknown } | null)?.format)}, expected ${TRAINER_STATE_FORMAT}; it was written by another version of rwkvify`);
  }
  if (!Number.isInteger(state.step) || state.step < 0) {
    throw new InputError(`checkpoint: "${path}" has an invalid step ${JSON.stringify(state.step)}`);
  }
  return state;
}

/** Reads the optimizer file of a checkpoint; a missing or damaged file is an InputError. */
function readOptimizerFile(path: string): SafetensorsFile {
  if (!existsSync(path)) {
    throw new InputError(`checkpoint: "${path}" is missing, so the optimizer state cannot be restored; start a new run with another --out`);
  }
  try {
    return readSafetensorsFile(path);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new InputError(`checkpoint: the optimizer state cannot be restored because the file is damaged (${reason}); start a new run with another --out`);
  }
}

/**
 * Throws an InputError when the optimizer file contains moments of parameters that the model does
 * not train, because the model files were replaced or the run now trains other parameters.
 */
function rejectForeignMoments(path: string, tensorNames: Iterable<string>, parameters: ReadonlyArray<readonly [string, Tensor]>): void {
  const trained = new Set(parameters.map(([name]) => name));
  const momentOwners = [...tensorNames].map((name) => name.replace(/^exp_avg(_sq)?\./, ''));
  const foreign = [...new Set(momentOwners)].filter((name) => !trained.has(name));
  if (foreign.length === 0) return;
  const examples = foreign.slice(0, 3).map((name) => `"${name}"`).join(', ');
  throw new InputError(
    `checkpoint: "${path}" contains optimizer moments of ${foreign.length} parameter(s) that this run does not train, such as ${examples}; ` +
      'the checkpoint belongs to another model or to other options, so resume with the original model and options or start a new run with another --out',
  );
}

/**
 * Loads the AdamW moments of a checkpoint into `optimizer`, matching them to parameters by name.
 * `parameters` must be in the optimizer's order (groups flattened).
 */
export function restoreOptimizer(dir: string, state: TrainerState, optimizer: AdamW, parameters: ReadonlyArray<readonly [string, Tensor]>): void {
  const path = join(dir, state.optimizer.file);
  const file = readOptimizerFile(path);
  rejectForeignMoments(path, file.tensors.keys(), parameters);
  const moments: AdamWState['moments'] = parameters.map(([name, tensor]) => {
    const mName = `exp_avg.${name}`;
    const vName = `exp_avg_sq.${name}`;
    if (!file.tensors.has(mName)) return null;
    const m = readTensor(file, mName, 'float64');
    const v = readTensor(file, vName, 'float64');
    if (m.length !== tensor.size) {
      throw new InputError(`checkpoint: optimizer moments of "${name}" have ${m.length} elements but the parameter has ${tensor.size}; the checkpoint belongs to another model`);
    }
    return { m: Array.from(m), v: Array.from(v) };
  });
  optimizer.setState({ step: state.optimizer.step, moments });
}
