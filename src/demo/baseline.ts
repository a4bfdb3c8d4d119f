// The from-scratch baseline of the demo: an RWKV-7 of the preset closest to the teacher's width
// and depth. It uses the teacher's tokenizer and vocabulary, so its perplexity is comparable, and
// trains with cross-entropy on the same corpus for as many tokens as the student saw in
// distillation. It resumes from its checkpoint in <out>/baseline/model like any pretraining run.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

import { RWKV7_PRESETS, type Rwkv7PresetName } from '../cli/rwkv7-adapter.js';
import { BatchSampler, heldOutBatches, loadTokenCorpus, splitHeldOut } from '../data/dataset.js';
import { InputError } from '../data/input-error.js';
import { WEIGHTS_FILE, type Gpt2Config } from '../models/gpt2/index.js';
import { loadRwkv7Safetensors, saveRwkv7Safetensors } from '../models/rwkv7/io.js';
import { Rwkv7Model } from '../models/rwkv7/model.js';
import type { Gpt2Tokenizer } from '../tokenizer/index.js';
import { findCheckpoint, readTrainerState } from '../train/checkpoint.js';
import type { ProgressStream } from '../train/report.js';
import type { TrainingSettings } from '../train/settings.js';
import { train } from '../train/trainer.js';

/** Picks the RWKV-7 preset closest to the teacher in width (log scale), then depth. */
export function closestRwkv7Preset(teacher: Pick<Gpt2Config, 'nEmbd' | 'nLayer'>): Rwkv7PresetName {
  const names = Object.keys(RWKV7_PRESETS) as Rwkv7PresetName[];
  const distance = (name: Rwkv7PresetName): number => {
    const preset = RWKV7_PRESETS[name];
    return Math.abs(Math.log2(preset.nEmbd / teacher.nEmbd)) * 10 + Math.abs(preset.nLayer - teacher.nLayer);
  };
  return names.reduce((best, name) => (distance(name) < distance(best) ? name : best));
}

export interface BaselineOptions {
  /** Run folder: data-cache/, metrics.jsonl and the checkpoint model/. */
  out: string;
  data: string[];
  tokenizer: Gpt2Tokenizer;
  /** The teacher's vocabulary size, which the baseline's embedding and head take. */
  vocabSize: number;
  preset: Rwkv7PresetName;
  settings: TrainingSettings;
  log: (line: string) => void;
  progress?: ProgressStream;
  stopRequested?: () => boolean;
}

/** Trains (or continues) the baseline; returns its model folder, or null when it was interrupted. */
export async function trainBaseline(options: BaselineOptions): Promise<string | null> {
  const { out, settings, tokenizer } = options;
  mkdirSync(out, { recursive: true });
  const checkpoint = findCheckpoint(out);
  const model = checkpoint === undefined ? new Rwkv7Model({ ...RWKV7_PRESETS[options.preset], vocabSize: options.vocabSize }, { seed: settings.seed }) : loadRwkv7Safetensors(join(checkpoint, WEIGHTS_FILE));
  if (checkpoint !== undefined) options.log(`baseline: resuming after step ${readTrainerState(checkpoint).step}`);

  const B = settings.batchSize;
  const T = settings.seqLen;
  const corpus = loadTokenCorpus({ paths: options.data, outDir: out, tokenizer, requiredTokens: B * (T + 1), log: options.log });
  const split = splitHeldOut(corpus.tokens.length, corpus.documentStarts, settings.valFraction);
  let sampler: BatchSampler;
  try {
    sampler = new BatchSampler(corpus.tokens, split.train, B, T, settings.seed + 1);
  } catch (error) {
    if (error instanceof InputError) throw new InputError(`baseline: ${error.message}`);
    throw error;
  }
  const heldOut = heldOutBatches(corpus.tokens, split.validation, B, T, settings.evalBatches);

  const result = await train({
    model,
    settings,
    sampler,
    heldOut,
    outDir: out,
    saveModel: (dir) => {
      saveRwkv7Safetensors(model, join(dir, WEIGHTS_FILE), { dtype: 'F32' });
      tokenizer.saveToFolder(dir);
    },
    modelInfo: { arch: 'rwkv7', config: model.config },
    args: { preset: options.preset, corpusTokens: corpus.tokens.length },
    resumeFrom: checkpoint,
    log: (line) => options.log(`baseline | ${line}`),
    progress: options.progress,
    stopRequested: options.stopRequested,
  });
  return result.interrupted ? null : result.checkpoint;
}
