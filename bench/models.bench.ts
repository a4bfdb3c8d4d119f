// Whole-model throughput. GPT-2 training and forward tokens per second on rwkvify are compared with
// the same model in TensorFlow.js on its wasm backend (bench/tfjs-gpt2.ts, same weights). Training
// tokens per second of an RWKV-7 are compared with a GPT-2 of the same width and depth on rwkvify.
// Engines are interleaved rep by rep so machine load hits them alike. The first reps warm up (JIT,
// wasm compilation, buffer pools) and are not counted, and tables report the median rep.
// Usage: node --import tsx bench/models.bench.ts [--quick] [--reps N] [--warmup N]
import { pathToFileURL } from 'node:url';

import { noGrad } from '../src/autograd/index.js';
import { describeBackendChoice } from '../src/kernels/index.js';
import { wasmInfo } from '../src/kernels/wasm/index.js';
import { Gpt2Model, type Gpt2Config } from '../src/models/gpt2/index.js';
import { Rwkv7Model } from '../src/models/rwkv7/index.js';
import { AdamW } from '../src/optim/index.js';
import { Rng } from '../src/tensor/random.js';
import { TfjsGpt2, describeTfjsWasm, startTfjsWasm } from './tfjs-gpt2.js';

export interface ModelsBenchOptions {
  /** Fewer reps and a 2-layer stand-in for the 124M forward, for a smoke run. */
  quick?: boolean;
  /** Timed reps per engine and case (default 5, quick 1). */
  reps?: number;
  /** Untimed reps before them (default 2, quick 1). */
  warmup?: number;
}

/** rwkvify must reach this multiple of tfjs-wasm's tokens per second. */
const SPEED_GOAL = 1.5;
const LEARNING_RATE = 1e-4;

interface TrainingCase {
  label: string;
  config: Gpt2Config;
  B: number;
  T: number;
}

const TRAINING_CASES: TrainingCase[] = [
  {
    label: 'tiny',
    config: { nEmbd: 64, nLayer: 2, nHead: 2, nPositions: 64, vocabSize: 512, layerNormEpsilon: 1e-5, nInner: 256, activation: 'gelu_new' },
    B: 8,
    T: 64,
  },
  {
    label: 'small',
    config: { nEmbd: 256, nLayer: 4, nHead: 4, nPositions: 128, vocabSize: 50257, layerNormEpsilon: 1e-5, nInner: 1024, activation: 'gelu_new' },
    B: 1,
    T: 128,
  },
];

/** GPT-2 124M's shape; quick runs keep the width and vocabulary but use 2 layers. */
function forwardCase(quick: boolean): TrainingCase {
  const nLayer = quick ? 2 : 12;
  return {
    label: quick ? '124M-wide, 2 layers (quick)' : '124M',
    config: { nEmbd: 768, nLayer, nHead: 12, nPositions: 1024, vocabSize: 50257, layerNormEpsilon: 1e-5, nInner: 3072, activation: 'gelu_new' },
    B: 1,
    T: 64,
  };
}

/** A step under test: runs once and returns nothing; the harness times it. */
type Step = () => void;

interface Contender {
  name: string;
  step: Step;
  times: number[];
}

function median(values: number[]): number {
  const sorted = [...values].sort((p, q) => p - q);
  return sorted[Math.floor(sorted.length / 2)];
}

function randomTokens(count: number, vocabSize: number, rng: Rng): number[] {
  return Array.from({ length: count }, () => rng.int(vocabSize));
}

/** Upper bound on timed reps when short steps keep repeating to fill the minimum timed span. */
const MAX_REPS = 50;

/**
 * Runs every contender `warmup` times untimed, then interleaved timed reps until there are at
 * least `reps` and each contender has spent `minTimedMs` (at most MAX_REPS), so cheap cases get
 * enough samples for a stable median on a loaded machine. Records the timed reps in ms.
 */
function timeInterleaved(contenders: Contender[], warmup: number, reps: number, minTimedMs: number): void {
  for (let rep = 0; rep < warmup; rep++) for (const contender of contenders) contender.step();
  const spent = (contender: Contender): number => contender.times.reduce((sum, ms) => sum + ms, 0);
  for (let rep = 0; rep < MAX_REPS; rep++) {
    const enough = rep >= reps && contenders.every((contender) => spent(contender) >= minTimedMs);
    if (enough) break;
    for (const contender of contenders) {
      const t0 = performance.now();
      contender.step();
      contender.times.push(performance.now() - t0);
    }
  }
}

function tokensPerSecond(contender: Contender, tokens: number): number {
  return (tokens * 1000) / median(contender.times);
}

/** Returns one rwkvify training step: zero the gradients, loss, backward, AdamW (no decay, no clipping). */
function rwkvifyTrainingStep(model: Gpt2Model | Rwkv7Model, ids: number[], targets: number[], B: number, T: number): Step {
  const optimizer = new AdamW([{ params: model.parameters(), lr: LEARNING_RATE, weightDecay: 0 }]);
  return () => {
    model.zeroGrad();
    const loss = model.loss(ids, targets, B, T); // ()
    loss.item();
    loss.backward();
    optimizer.step();
  };
}

function goalCell(ratio: number): string {
  return ratio >= SPEED_GOAL ? 'met' : 'not met';
}

function formatRate(value: number): string {
  return value >= 100 ? value.toFixed(0) : value.toPrecision(3);
}

/** Trains GPT-2 on rwkvify and on tfjs-wasm from the same weights; returns one table row. */
function measureTraining(c: TrainingCase, warmup: number, reps: number, minTimedMs: number): string {
  const rng = new Rng(7);
  const ids = randomTokens(c.B * c.T, c.config.vocabSize, rng);
  const targets = randomTokens(c.B * c.T, c.config.vocabSize, rng);
  const model = new Gpt2Model(c.config, { rng });
  const peer = TfjsGpt2.fromGpt2Model(model);
  const rwkvify: Contender = { name: 'rwkvify', step: rwkvifyTrainingStep(model, ids, targets, c.B, c.T), times: [] };
  const tfjs: Contender = {
    name: 'tfjs-wasm',
    step: () => void peer.trainStep(ids, targets, c.B, c.T, { learningRate: LEARNING_RATE }),
    times: [],
  };
  timeInterleaved([rwkvify, tfjs], warmup, reps, minTimedMs);
  peer.dispose();
  return comparisonRow(`${c.label} train`, c, rwkvify, tfjs);
}

/** Runs GPT-2's forward pass (logits read back) on both engines; returns one table row. */
function measureForward(c: TrainingCase, warmup: number, reps: number, minTimedMs: number): string {
  const rng = new Rng(8);
  const ids = randomTokens(c.B * c.T, c.config.vocabSize, rng);
  const model = new Gpt2Model(c.config, { rng });
  const peer = TfjsGpt2.fromGpt2Model(model);
  const rwkvify: Contender = { name: 'rwkvify', step: () => void noGrad(() => model.forward(ids, c.B, c.T)), times: [] };
  const tfjs: Contender = {
    name: 'tfjs-wasm',
    step: () => {
      const logits = peer.forward(ids, c.B, c.T); // (B·T, V)
      logits.dataSync();
      logits.dispose();
    },
    times: [],
  };
  timeInterleaved([rwkvify, tfjs], warmup, reps, minTimedMs);
  peer.dispose();
  return comparisonRow(`${c.label} forward`, c, rwkvify, tfjs);
}

function comparisonRow(label: string, c: TrainingCase, rwkvify: Contender, tfjs: Contender): string {
  const tokens = c.B * c.T;
  const ours = tokensPerSecond(rwkvify, tokens);
  const theirs = tokensPerSecond(tfjs, tokens);
  const ratio = ours / theirs;
  const { nLayer, nHead, nEmbd, vocabSize } = c.config;
  return (
    `| ${label} | L${nLayer} H${nHead} C${nEmbd} V${vocabSize}, ${c.B}×${c.T} | ${formatRate(ours)} | ${formatRate(theirs)} | ` +
    `${ratio.toFixed(2)} | ${goalCell(ratio)} | ${rwkvify.times.length} |`
  );
}

/** Trains an RWKV-7 and a GPT-2 of the same width, depth and head size on rwkvify; returns one row. */
function measureRwkvAgainstGpt2(c: TrainingCase, warmup: number, reps: number, minTimedMs: number): string {
  const rng = new Rng(9);
  const ids = randomTokens(c.B * c.T, c.config.vocabSize, rng);
  const targets = randomTokens(c.B * c.T, c.config.vocabSize, rng);
  const gpt2 = new Gpt2Model(c.config, { rng });
  const headSize = c.config.nEmbd / c.config.nHead;
  const rwkv = new Rwkv7Model({ nEmbd: c.config.nEmbd, nLayer: c.config.nLayer, vocabSize: c.config.vocabSize, headSize }, { seed: 9 });
  const gpt2Step: Contender = { name: 'GPT-2', step: rwkvifyTrainingStep(gpt2, ids, targets, c.B, c.T), times: [] };
  const rwkvStep: Contender = { name: 'RWKV-7', step: rwkvifyTrainingStep(rwkv, ids, targets, c.B, c.T), times: [] };
  timeInterleaved([gpt2Step, rwkvStep], warmup, reps, minTimedMs);
  const tokens = c.B * c.T;
  const gpt2Rate = tokensPerSecond(gpt2Step, tokens);
  const rwkvRate = tokensPerSecond(rwkvStep, tokens);
  return (
    `| ${c.label} | L${c.config.nLayer} C${c.config.nEmbd} V${c.config.vocabSize} head size ${headSize}, ${c.B}×${c.T} | ` +
    `${formatRate(gpt2Rate)} | ${formatRate(rwkvRate)} | ${(rwkvRate / gpt2Rate).toFixed(2)} | ` +
    `${(gpt2.parameterCount() / 1e6).toFixed(2)} M | ${(rwkv.parameterCount() / 1e6).toFixed(2)} M |`
  );
}

/** Runs the benchmark and returns a markdown section. */
export async function runModelsBench(options: ModelsBenchOptions = {}): Promise<string> {
  const quick = options.quick ?? false;
  const reps = options.reps ?? (quick ? 1 : 5);
  const warmup = options.warmup ?? (quick ? 1 : 2);
  const minTimedMs = quick ? 2_000 : 10_000;
  await startTfjsWasm();

  const comparisonRows: string[] = [];
  for (const c of TRAINING_CASES) {
    process.stderr.write(`models bench: ${c.label} training, rwkvify vs tfjs-wasm\n`);
    comparisonRows.push(measureTraining(c, warmup, reps, minTimedMs));
  }
  const forward = forwardCase(quick);
  process.stderr.write(`models bench: ${forward.label} forward, rwkvify vs tfjs-wasm\n`);
  comparisonRows.push(measureForward(forward, warmup, reps, minTimedMs));

  const architectureRows: string[] = [];
  for (const c of TRAINING_CASES) {
    process.stderr.write(`models bench: ${c.label} training, RWKV-7 vs GPT-2\n`);
    architectureRows.push(measureRwkvAgainstGpt2(c, warmup, reps, minTimedMs));
  }

  const threads = wasmInfo().threads;
  return [
    `GPT-2 tokens per second (B×T tokens per step, higher is better), median of at least ${reps} reps ` +
      `(more, up to ${MAX_REPS}, until each engine has run ${minTimedMs / 1000} s) after ${warmup} warm-up rep(s), engines interleaved. Training = loss, backward and one Adam update (AdamW with decay 0 on rwkvify, tf.train.adam on tfjs), ` +
      `no gradient clipping. Forward = logits of all B×T positions read back to JavaScript, random GPT-2-initialised weights. ` +
      `Goal: rwkvify ≥ ${SPEED_GOAL}× tfjs-wasm.`,
    '',
    `rwkvify: ${describeBackendChoice()}; wasm matmul threads: ${threads}. tfjs: ${describeTfjsWasm()}; ` +
      '2-D products and their gradients use explicit transposes, because its transposed matMul is several times slower.',
    '',
    '| case | shape | rwkvify tok/s | tfjs-wasm tok/s | rwkvify / tfjs | goal | reps |',
    '|---|---|---|---|---|---|---|',
    ...comparisonRows,
    '',
    `RWKV-7 against GPT-2 of the same width, depth and head count, training on rwkvify (same step as above), tokens per second.`,
    '',
    '| case | shape | GPT-2 tok/s | RWKV-7 tok/s | RWKV-7 / GPT-2 | GPT-2 params | RWKV-7 params |',
    '|---|---|---|---|---|---|---|',
    ...architectureRows,
  ].join('\n');
}

/** Parses --quick, --reps N and --warmup N. */
export function parseBenchArgs(argv: readonly string[]): ModelsBenchOptions {
  const options: ModelsBenchOptions = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--quick') options.quick = true;
    else if (arg === '--reps' || arg === '--warmup') {
      const value = Number(argv[i + 1]);
      const minimum = arg === '--reps' ? 1 : 0;
      if (!Number.isInteger(value) || value < minimum) {
        throw new RangeError(`bench: ${arg} needs an integer ≥ ${minimum}, got "${argv[i + 1] ?? ''}"`);
      }
      if (arg === '--reps') options.reps = value;
      else options.warmup = value;
      i++;
    } else {
      throw new RangeError(`bench: unknown argument "${arg}"; valid: --quick, --reps N, --warmup N`);
    }
  }
  return options;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.stdout.write(`${await runModelsBench(parseBenchArgs(process.argv.slice(2)))}\n`);
}
