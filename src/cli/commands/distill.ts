// `rwkvify convert`, `rwkvify distill` and `rwkvify eval`: turn a GPT-2 into an RWKV-7 student,
// distil it in up to three stages, and compare it with the teacher.
//
// Register them with `registerDistillCommands(program, setExitCode)` in the program builder.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { Command, InvalidArgumentError, Option } from 'commander';

import { DEFAULT_EXTENSIONS } from '../../data/corpus.js';
import { InputError } from '../../data/input-error.js';
import { evaluateDistillation } from '../../distill/eval.js';
import { formatSummary, writeReport } from '../../distill/report-html.js';
import { loadTeacher, runDistill } from '../../distill/run.js';
import {
  DEFAULT_COMMON_SETTINGS,
  DEFAULT_STAGE_SETTINGS,
  parseStageList,
  QUICK_STEPS,
  STAGE_NUMBERS,
  type StageNumber,
  type StageSettings,
} from '../../distill/settings.js';
import { convertTeacher, POSITION_MODES, saveStudentFolder, STUDENT_INITS, type PositionMode, type StudentInit } from '../../models/student/index.js';
import type { ScheduleKind } from '../../optim/index.js';
import { MAX_SEED } from '../../train/settings.js';
import { hasTokenizerFiles, loadTokenizer } from '../model-folder.js';
import { extensionList, integerAtLeast, numberInRange, seedValue } from '../options.js';
import { createOutputFolder } from '../output-folder.js';
import { INTERRUPTED_EXIT_CODE, withInterruptHandling } from '../interrupt.js';

/** Receives the exit code of the command that ran. */
export type ExitCodeSink = (code: number) => void;

const SCHEDULES: readonly ScheduleKind[] = ['quarter-cosine', 'exponential', 'cosine', 'linear', 'constant'];

function onOff(value: string): boolean {
  if (value === 'on') return true;
  if (value === 'off') return false;
  throw new InvalidArgumentError(`expected "on" or "off", got "${value}".`);
}

function integerList(value: string): number[] {
  const parts = value.split(',').map((part) => part.trim()).filter((part) => part.length > 0);
  const numbers = parts.map(Number);
  if (parts.length === 0 || numbers.some((n) => !Number.isInteger(n) || n < 1)) {
    throw new InvalidArgumentError(`expected comma-separated integers ≥ 1 such as "16,64,256", got "${value}".`);
  }
  return numbers;
}

/** Builds the --extensions option, showing its default as the user would type it. */
function extensionsOption(): Option {
  return new Option('--extensions <list>', 'comma-separated file extensions read from folders; files named directly are always read')
    .argParser(extensionList)
    .default([...DEFAULT_EXTENSIONS], DEFAULT_EXTENSIONS.join(','));
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

// ---------------------------------------------------------------------------------------------------
// convert

interface ConvertCommandOptions {
  teacher: string;
  out: string;
  init: StudentInit;
  bonus: boolean;
  tokenShift: boolean;
  groupNorm: boolean;
  positions: PositionMode;
  seed: number;
  force: boolean;
}

function runConvert(options: ConvertCommandOptions): number {
  const out = resolve(options.out);
  if (existsSync(join(out, 'config.json')) && !options.force) {
    throw new InputError(`"${out}" already contains a model (config.json); choose another --out or pass --force to overwrite it`);
  }
  const { dir, model: teacher } = loadTeacher(options.teacher);
  createOutputFolder(out);
  const student = convertTeacher(teacher, { init: options.init, bonus: options.bonus, tokenShift: options.tokenShift, groupNorm: options.groupNorm, positions: options.positions }, options.seed);
  const tokenizer = hasTokenizerFiles(dir) ? loadTokenizer(dir).tokenizer : undefined;
  saveStudentFolder(student, out, { tokenizer });
  const c = student.config;
  console.log(`converted ${dir} → ${out}`);
  console.log(
    `  ${c.teacher.nLayer} time mixes of ${c.teacher.nHead} heads × ${c.teacher.nEmbd / c.teacher.nHead} channels; init ${c.init}, ` +
      `token shift ${c.tokenShift ? 'on' : 'off'}, bonus ${c.bonus ? 'on' : 'off'}, GroupNorm ${c.groupNorm ? 'on' : 'off'}, positions ${c.positions}`,
  );
  console.log(`  ${student.parameterCount().toLocaleString('en-US')} parameters (teacher ${teacher.parameterCount().toLocaleString('en-US')})`);
  console.log(`next: rwkvify distill --teacher ${dir} --student ${out} --data <text files> --out <run folder>`);
  return 0;
}

function addConvertCommand(program: Command, setExitCode: ExitCodeSink): void {
  program
    .command('convert')
    .description('turn a GPT-2 folder into an RWKV-7 student folder: every attention block becomes a time mix')
    .requiredOption('--teacher <dir>', 'GPT-2 model folder (config.json + model.safetensors)')
    .requiredOption('--out <dir>', 'folder for the student (config.json, model.safetensors, tokenizer files)')
    .addOption(new Option('--init <kind>', 'copy: r/k/v/output from the attention weights; fresh: new random projections').choices(STUDENT_INITS).default('copy'))
    .addOption(new Option('--bonus <on|off>', 'the RWKV-7 bonus term (r_k)').argParser(onOff).default(true, 'on'))
    .addOption(new Option('--token-shift <on|off>', 'token shift in the time mix (μ parameters)').argParser(onOff).default(true, 'on'))
    .addOption(new Option('--group-norm <on|off>', 'per-head GroupNorm of the WKV output (ln_x)').argParser(onOff).default(true, 'on'))
    .addOption(new Option('--positions <mode>', "keep: wpe[t] up to the teacher's limit; clamp: wpe[min(t, limit − 1)]; drop: no position embedding").choices(POSITION_MODES).default('clamp'))
    .option('--seed <n>', `seed of the random student matrices (the LoRA matrices w2, a2 and v2, plus the r/k/v/output projections with --init fresh), an integer in [0, ${MAX_SEED}]`, seedValue, 0)
    .option('--force', 'overwrite an existing model in --out', false)
    .action((options: ConvertCommandOptions) => setExitCode(runConvert(options)));
}

// ---------------------------------------------------------------------------------------------------
// distill

type StageOptionValues = Record<string, number | string | boolean | string[] | undefined>;

interface DistillCommandOptions extends StageOptionValues {
  data: string[];
  extensions: string[];
  teacher: string;
  student: string;
  out: string;
  stages: string;
  temperature: number;
  klWeight: number;
  ceWeight: number;
  freezeMlp: boolean;
  freezeEmbeddings: boolean;
  quick: boolean;
  resume: boolean;
  seed: number;
  valFraction: number;
  logEvery: number;
  saveEvery: number;
  evalBatches: number;
  warmup: number;
}

/** Per-stage option names: --stage2-lr etc., stored by commander as stage2Lr. */
const STAGE_FIELDS: ReadonlyArray<{ field: keyof StageSettings; flag: string; help: string; parse: (value: string) => number | string }> = [
  { field: 'tokens', flag: 'tokens <n>', help: 'training tokens (steps = tokens / (batch × seq-len), rounded up)', parse: integerAtLeast(1) },
  { field: 'seqLen', flag: 'seq-len <n>', help: "tokens per sequence (at most the teacher's n_positions)", parse: integerAtLeast(1) },
  { field: 'batchSize', flag: 'batch-size <n>', help: 'sequences per batch', parse: integerAtLeast(1) },
  { field: 'lr', flag: 'lr <rate>', help: 'peak learning rate', parse: numberInRange(0, 1) },
  { field: 'minLr', flag: 'min-lr <rate>', help: 'final learning rate', parse: numberInRange(0, 1) },
  { field: 'schedule', flag: 'schedule <kind>', help: `learning-rate schedule (${SCHEDULES.join(', ')})`, parse: scheduleKind },
  { field: 'weightDecay', flag: 'weight-decay <coef>', help: 'AdamW weight decay on 2-D weights', parse: numberInRange(0, 10) },
  { field: 'gradClip', flag: 'grad-clip <norm>', help: 'maximum gradient L2 norm; 0 turns clipping off', parse: numberInRange(0, Infinity) },
];

function scheduleKind(value: string): string {
  if (!(SCHEDULES as readonly string[]).includes(value)) throw new InvalidArgumentError(`expected one of ${SCHEDULES.join(', ')}, got "${value}".`);
  return value;
}

function stageOptionKey(stage: StageNumber, field: string): string {
  return `stage${stage}${field[0].toUpperCase()}${field.slice(1)}`;
}

function stageSettingsFrom(options: StageOptionValues): Record<StageNumber, StageSettings> {
  const result = {} as Record<StageNumber, StageSettings>;
  for (const stage of STAGE_NUMBERS) {
    const settings: StageSettings = { ...DEFAULT_STAGE_SETTINGS[stage] };
    for (const { field } of STAGE_FIELDS) {
      const value = options[stageOptionKey(stage, field)];
      if (typeof value === 'number' || typeof value === 'string') (settings as unknown as Record<string, number | string>)[field] = value;
    }
    if (settings.minLr > settings.lr) {
      // A default minimum above a lowered peak follows the peak; an explicit one is a mistake.
      if (options[stageOptionKey(stage, 'minLr')] !== undefined) {
        throw new InputError(`--stage${stage}-min-lr ${settings.minLr} exceeds --stage${stage}-lr ${settings.lr}; lower it`);
      }
      settings.minLr = settings.lr;
    }
    result[stage] = settings;
  }
  return result;
}

async function runDistillCommand(options: DistillCommandOptions, data: string[], extensions: string[]): Promise<number> {
  return withInterruptHandling(
    {
      first: 'Ctrl-C: saving a checkpoint after the current step (press Ctrl-C again to exit without saving)',
      second: 'second Ctrl-C: exiting now; the last checkpoint on disk is unchanged',
    },
    async (stopRequested) => {
      const result = await runDistill({
        teacher: options.teacher,
        student: options.student,
        data,
        out: options.out,
        stages: parseStageList(options.stages),
        stageSettings: stageSettingsFrom(options),
        common: { seed: options.seed, valFraction: options.valFraction, logEvery: options.logEvery, saveEvery: options.saveEvery, evalBatches: options.evalBatches, warmup: options.warmup },
        temperature: options.temperature,
        klWeight: options.klWeight,
        ceWeight: options.ceWeight,
        freezeMlp: options.freezeMlp,
        freezeEmbeddings: options.freezeEmbeddings,
        quick: options.quick,
        resume: options.resume,
        extensions,
        stopRequested,
      });
      if (result.interrupted) {
        console.log('continue with the same command plus --resume');
        return INTERRUPTED_EXIT_CODE;
      }
      console.log(`try: rwkvify eval --teacher ${options.teacher} --student ${result.studentDir} --data <held-out text>`);
      return 0;
    },
  );
}

function addDistillCommand(program: Command, setExitCode: ExitCodeSink): void {
  const c = DEFAULT_COMMON_SETTINGS;
  const command = program
    .command('distill')
    .description('distil a converted student from its GPT-2 teacher: stage 1 aligns attention outputs, stage 2 matches logits (KL), stage 3 mixes KL and cross-entropy')
    .requiredOption('--teacher <dir>', 'GPT-2 teacher folder')
    .requiredOption('--student <dir>', 'student folder written by `rwkvify convert`')
    .requiredOption('--data <paths...>', 'training text files or folders (UTF-8)')
    .requiredOption('--out <dir>', 'run folder: stage<N>/ checkpoints and metrics, student/ at the end')
    .option('--stages <list>', 'stages to run, comma-separated', '1,2')
    .option('--temperature <t>', 'softmax temperature of the KL in stages 2 and 3 (the loss is multiplied by T²)', numberInRange(0.01, 100), 1)
    .option('--kl-weight <w>', 'stage-3 weight of the KL term', numberInRange(0, 100), 0.5)
    .option('--ce-weight <w>', 'stage-3 weight of the cross-entropy term', numberInRange(0, 100), 0.5)
    .option('--freeze-mlp', 'keep the MLP weights fixed in stages 2 and 3', false)
    .option('--freeze-embeddings', 'keep the token and position embeddings (and so the tied output head) fixed in stages 2 and 3', false)
    .option('--quick', `smoke test: run ${QUICK_STEPS} steps of each requested stage with batches of at most 2 sequences × 32 tokens`, false)
    .option('--resume', 'continue the run in --out from its checkpoints; repeat the original options, because a stage whose training settings differ is rejected (--log-every, --save-every and --eval-batches may change)', false)
    .option('--seed <n>', `seed of the batch order, an integer in [0, ${MAX_SEED}]`, seedValue, c.seed)
    .option('--val-fraction <fraction>', 'fraction of documents held out for evaluation', numberInRange(0, 1, true), c.valFraction)
    .option('--log-every <steps>', 'steps between log lines', integerAtLeast(1), c.logEvery)
    .option('--save-every <steps>', 'steps between checkpoints; 0 saves at the end of each stage only', integerAtLeast(0), c.saveEvery)
    .option('--eval-batches <n>', 'held-out batches evaluated at the end of each stage', integerAtLeast(1), c.evalBatches)
    .option('--warmup <steps>', 'maximum warm-up steps per stage (each stage uses at most a tenth of its steps)', integerAtLeast(0), c.warmup)
    .addOption(extensionsOption());
  for (const stage of STAGE_NUMBERS) {
    for (const { field, flag, help, parse } of STAGE_FIELDS) {
      const fallback = DEFAULT_STAGE_SETTINGS[stage][field];
      command.addOption(new Option(`--stage${stage}-${flag}`, `stage ${stage}: ${help} (default: ${fallback})`).argParser(parse));
    }
  }
  command.action(async (options: DistillCommandOptions) => {
    setExitCode(await runDistillCommand(options, options.data, options.extensions));
  });
}

// ---------------------------------------------------------------------------------------------------
// eval

interface EvalCommandOptions {
  teacher: string;
  student: string;
  baseline?: string;
  data: string[];
  out: string;
  seqLen?: number;
  maxTokens: number;
  contexts: number[];
  timingTokens: number;
  prompt?: string[];
  sampleTokens: number;
  seed: number;
  run?: string;
  extensions: string[];
}

const DEFAULT_PROMPTS = ['The meaning of life is', 'Once upon a time'];

async function runEval(options: EvalCommandOptions): Promise<number> {
  const { report } = await evaluateDistillation({
    teacher: options.teacher,
    student: options.student,
    baseline: options.baseline,
    data: options.data,
    out: resolve(options.out),
    seqLen: options.seqLen,
    maxTokens: options.maxTokens,
    contexts: options.contexts,
    timingTokens: options.timingTokens,
    prompts: options.prompt ?? DEFAULT_PROMPTS,
    sampleTokens: options.sampleTokens,
    seed: options.seed,
    run: options.run,
    extensions: options.extensions,
    log: (line) => console.log(line),
  });
  const paths = writeReport(report, resolve(options.out));
  console.log('summary');
  console.log(formatSummary(report));
  console.log(`wrote ${paths.json} and ${paths.html}`);
  return 0;
}

function addEvalCommand(program: Command, setExitCode: ExitCodeSink): void {
  program
    .command('eval')
    .description('compare a student with its teacher on held-out text; writes report.json and report.html')
    .requiredOption('--teacher <dir>', 'GPT-2 teacher folder')
    .requiredOption('--student <dir>', 'student folder, or a distill run folder')
    .option('--baseline <dir>', 'another model folder to score on the same text')
    .requiredOption('--data <paths...>', 'held-out text files or folders')
    .option('--out <dir>', 'folder for report.json, report.html and the token cache', 'eval-report')
    .option('--seq-len <n>', "tokens per scored window (default: min(teacher's n_positions, 128))", integerAtLeast(1))
    .option('--max-tokens <n>', 'maximum tokens scored', integerAtLeast(1), 20_000)
    .addOption(new Option('--contexts <list>', 'comma-separated context lengths, in tokens, at which generation speed is measured').argParser(integerList).default([16, 64, 256, 1024], '16,64,256,1024'))
    .option('--timing-tokens <n>', 'tokens generated per speed measurement', integerAtLeast(1), 16)
    .option('--prompt <text>', 'prompt of a sample generation (repeatable)', collect)
    .option('--sample-tokens <n>', 'tokens generated per sample', integerAtLeast(0), 40)
    .option('--seed <n>', `seed of the sample generations, an integer in [0, ${MAX_SEED}]`, seedValue, 0)
    .option('--run <dir>', "distill run folder whose stage metrics give the loss chart (default: the student's parent folder)")
    .addOption(extensionsOption())
    .action(async (options: EvalCommandOptions) => setExitCode(await runEval(options)));
}

/** Adds `convert`, `distill` and `eval` to the program. Errors propagate to the program's handler. */
export function registerDistillCommands(program: Command, setExitCode: ExitCodeSink = (code) => void (process.exitCode = code)): void {
  addConvertCommand(program, setExitCode);
  addDistillCommand(program, setExitCode);
  addEvalCommand(program, setExitCode);
}
