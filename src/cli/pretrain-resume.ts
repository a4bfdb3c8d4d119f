// `rwkvify pretrain --resume`: checking a run folder's checkpoint against the command line and
// against its own model files, and deriving the settings the resumed run continues with.
//
// A resumed run keeps every setting that shapes its results (batches, learning-rate schedule,
// AdamW, seed). Options that try to change one are rejected together in one error. --steps may
// only grow the run: the schedule keeps the length it was planned with, and steps past that
// length run at the schedule's final learning rate, so no step's rate changes after the fact.

import { join } from 'node:path';

import { InputError } from '../data/input-error.js';
import type { TrainerState } from '../train/checkpoint.js';
import type { TrainingSettings } from '../train/settings.js';
import { detectArchitecture, loadModelFolder, type LoadedModel } from './model-folder.js';

/** Settings keys (camelCase option names) whose options must match the checkpoint on --resume. */
const RESUME_CHECKED: ReadonlyArray<keyof TrainingSettings> = [
  'batchSize',
  'seqLen',
  'gradAccum',
  'lr',
  'minLr',
  'warmup',
  'schedule',
  'weightDecay',
  'gradClip',
  'seed',
  'valFraction',
];

/** Converts a settings key (seqLen) to its option name (--seq-len). */
export function optionName(key: string): string {
  return '--' + key.replace(/[A-Z]/g, (letter) => '-' + letter.toLowerCase());
}

/** Returns the number of steps the learning-rate schedule of `settings` spans. */
export function scheduleSpan(settings: TrainingSettings): number {
  return settings.scheduleSteps ?? settings.steps;
}

/** Throws one InputError listing every checked option that was given and differs from the checkpoint. */
function rejectChangedSettings(saved: TrainingSettings, requested: TrainingSettings, explicit: ReadonlySet<string>): void {
  const changed = RESUME_CHECKED.filter((key) => explicit.has(key) && JSON.stringify(requested[key]) !== JSON.stringify(saved[key]));
  if (changed.length === 0) return;
  const details = changed.map((key) => `${optionName(key)} ${String(requested[key])} (checkpoint: ${String(saved[key])})`).join(', ');
  const [differ, optionsToDrop] = changed.length === 1 ? ['differs', 'that option'] : ['differ', 'those options'];
  throw new InputError(
    `--resume continues with the checkpoint's settings, but ${details} ${differ} from them; ` +
      `drop ${optionsToDrop} to continue the run, or start a new run with another --out`,
  );
}

/**
 * Returns the step count of the resumed run. It may not fall below the steps already done, nor
 * below the span of a decaying schedule, because stopping there would end the run mid-decay.
 */
function resumedSteps(state: TrainerState, options: { steps: number }, explicit: ReadonlySet<string>): number {
  const saved = state.settings;
  if (!explicit.has('steps')) return saved.steps;
  if (options.steps < state.step) {
    throw new InputError(`--resume: --steps ${options.steps} is below the ${state.step} steps the checkpoint has already done; pass a larger --steps`);
  }
  const span = scheduleSpan(saved);
  if (options.steps < span && saved.schedule !== 'constant') {
    throw new InputError(
      `--resume: --steps ${options.steps} is below the ${span} steps that this run's ${saved.schedule} learning-rate schedule spans, ` +
        `so the run would stop before the rate decays to --min-lr ${saved.minLr}; ` +
        `resume with --steps ${span} or more (or without --steps), or start a new run with --steps ${options.steps} and another --out`,
    );
  }
  return options.steps;
}

/**
 * Returns the settings of the resumed run: the checkpoint's, with --steps and the reporting
 * intervals from the command line. `requested` contains the settings the options describe.
 */
export function resumedSettings(state: TrainerState, requested: TrainingSettings, explicit: ReadonlySet<string>): TrainingSettings {
  const saved = state.settings;
  rejectChangedSettings(saved, requested, explicit);
  const steps = resumedSteps(state, requested, explicit);
  const pick = <K extends keyof TrainingSettings>(key: K): TrainingSettings[K] => (explicit.has(key) ? requested[key] : saved[key]);
  return {
    ...saved,
    steps,
    // Only a constant schedule may end before its span, and its rate does not depend on the span.
    scheduleSteps: Math.min(scheduleSpan(saved), steps),
    logEvery: pick('logEvery'),
    evalEvery: pick('evalEvery'),
    evalBatches: pick('evalBatches'),
    saveEvery: pick('saveEvery'),
  };
}

/** Returns the learning rate the schedule ends with: the peak for a constant schedule, else --min-lr. */
function finalRate(settings: TrainingSettings): number {
  return settings.schedule === 'constant' ? settings.lr : settings.minLr;
}

/** Returns a note for runs longer than their schedule, or undefined when the schedule covers every step. */
export function scheduleTailNote(settings: TrainingSettings): string | undefined {
  const span = scheduleSpan(settings);
  if (settings.steps <= span) return undefined;
  const tail = span + 1 === settings.steps ? `step ${settings.steps} runs` : `steps ${span + 1}–${settings.steps} run`;
  // Warm-up is not part of the span: a run shorter than its warm-up keeps warming up in the tail.
  const warmup = settings.warmup > span ? ` once the ${settings.warmup}-step warm-up ends` : '';
  return (
    `note: --steps ${settings.steps} runs past the ${span} steps of this run's ${settings.schedule} learning-rate schedule, ` +
    `so ${tail} at its final rate ${finalRate(settings).toExponential(1)}${warmup}`
  );
}

// ---------------------------------------------------------------------------------------------------
// The checkpoint's model files

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Lists the configuration fields whose values differ, as `field <folder value> (trainer-state.json: <saved value>)`. */
function configDifferences(saved: unknown, current: Record<string, unknown>): string[] {
  if (!isRecord(saved)) return [`the configuration (trainer-state.json records ${JSON.stringify(saved)})`];
  const keys = [...new Set([...Object.keys(saved), ...Object.keys(current)])];
  return keys
    .filter((key) => JSON.stringify(saved[key]) !== JSON.stringify(current[key]))
    .map((key) => `${key} ${JSON.stringify(current[key]) ?? 'missing'} (trainer-state.json: ${JSON.stringify(saved[key]) ?? 'missing'})`);
}

/**
 * Loads the model of a checkpoint and checks it against trainer-state.json, which records the
 * architecture and configuration that the optimizer moments belong to. Model files replaced after
 * the checkpoint was written (for example by `rwkvify convert --force`) are an InputError.
 */
export function loadCheckpointModel(checkpoint: string, state: TrainerState, outDir: string): LoadedModel {
  const fix = `start a new run with another --out, or remove "${outDir}" and start again`;
  const replaced = 'so the model files were replaced after the checkpoint was written (for example by `rwkvify convert --force`)';
  const configPath = join(checkpoint, 'config.json');

  const folderArch = detectArchitecture(checkpoint);
  if (folderArch !== state.model.arch) {
    throw new InputError(
      `--resume: "${configPath}" describes a ${folderArch} model but trainer-state.json next to it was written while training a ${state.model.arch} model, ${replaced}; ${fix}`,
    );
  }
  const loaded = loadModelFolder(checkpoint);
  const differences = configDifferences(state.model.config, loaded.model.configJson);
  if (differences.length > 0) {
    throw new InputError(`--resume: the ${folderArch} model in "${checkpoint}" differs from the one trainer-state.json records in ${differences.join(', ')}, ${replaced}; ${fix}`);
  }
  return loaded;
}
