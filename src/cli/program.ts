// The `rwkvify` command line: commands, options and error reporting.
//
// Exit codes:
//   0    success
//   1    a bug, printed with its stack
//   2    a user mistake (bad path, option value or input file) or a diverged training run,
//        printed as `error: <message>`
//   130  a training run stopped with Ctrl-C after saving its checkpoint

import { Command, CommanderError, Option } from 'commander';

import { DEFAULT_EXTENSIONS } from '../data/corpus.js';
import { InputError } from '../data/input-error.js';
import { BACKEND_NAMES, BackendUnavailableError, backendChoice, setBackend } from '../kernels/index.js';
import { DEFAULT_SETTINGS, MAX_SEED } from '../train/settings.js';
import { TrainingDivergedError } from '../train/trainer.js';
import { registerBenchCommands } from './commands/bench.js';
import { registerDemoCommand } from './commands/demo.js';
import { registerDistillCommands } from './commands/distill.js';
import { extensionList, integerAtLeast, numberInRange, positiveNumberUpTo, seedValue, tokenIdList } from './options.js';
import { runGenerate, runLogits, runTokenize, type GenerateCommandOptions, type LogitsCommandOptions, type TokenizeCommandOptions } from './inspect.js';
import { ARCHITECTURES, PRESETS } from './model-folder.js';
import { runPretrain, type PretrainOptions } from './pretrain.js';

const USER_ERROR_EXIT_CODE = 2;
const BUG_EXIT_CODE = 1;

/** Receives the exit code of the command that ran. */
type ExitCodeSink = (code: number) => void;

function addPretrainCommand(program: Command, setExitCode: ExitCodeSink): void {
  const d = DEFAULT_SETTINGS;
  const allPresets = [...new Set(Object.values(PRESETS).flat())];
  const command = program
    .command('pretrain')
    .description('train a GPT-2 or RWKV-7 from scratch on text files, writing checkpoints, logs and metrics to --out')
    .addOption(new Option('--arch <name>', 'model architecture to train').choices(ARCHITECTURES).makeOptionMandatory())
    .requiredOption('--data <paths...>', 'text files or folders (read recursively) that form the corpus; files must be UTF-8')
    .requiredOption('--out <dir>', 'run folder: receives model/ (latest checkpoint), metrics.jsonl and data-cache/')
    .addOption(new Option('--preset <name>', `model size; gpt2 has ${PRESETS.gpt2.join(', ')} and rwkv7 has ${PRESETS.rwkv7.join(', ')}`).choices(allPresets).default('tiny'))
    .option('--steps <n>', 'optimizer steps to run in total; with --resume, a larger value extends the run, whose extra steps keep the final learning rate', integerAtLeast(1), d.steps)
    .option('--batch-size <n>', 'sequences per micro-batch (B)', integerAtLeast(1), d.batchSize)
    .option('--seq-len <n>', 'tokens per sequence (T)', integerAtLeast(1), d.seqLen)
    .option('--grad-accum <n>', 'micro-batches accumulated per optimizer step', integerAtLeast(1), d.gradAccum)
    .option('--lr <rate>', 'peak learning rate, reached after warm-up', numberInRange(0, 1), d.lr)
    .option('--min-lr <rate>', 'final learning rate of the decay; unused by --schedule constant (default: --lr / 10)', numberInRange(0, 1))
    .option('--warmup <steps>', 'optimizer steps of linear warm-up from 1% of --lr', integerAtLeast(0), d.warmup)
    .addOption(new Option('--schedule <kind>', 'learning-rate decay after warm-up').choices(['cosine', 'linear', 'quarter-cosine', 'constant']).default(d.schedule))
    .option('--weight-decay <coef>', 'AdamW decoupled weight decay on 2-D weights (per step, times lr)', numberInRange(0, 10), d.weightDecay)
    .option('--grad-clip <norm>', 'maximum global L2 norm of the gradient; 0 turns clipping off', numberInRange(0, Infinity), d.gradClip)
    .option('--eval-every <steps>', 'optimizer steps between held-out evaluations; 0 evaluates at the end only', integerAtLeast(0), d.evalEvery)
    .option('--eval-batches <n>', 'maximum held-out batches per evaluation', integerAtLeast(1), d.evalBatches)
    .option('--save-every <steps>', 'optimizer steps between checkpoints, besides the one at the end; 0 saves at the end only', integerAtLeast(0), d.saveEvery)
    .option('--log-every <steps>', 'optimizer steps between log lines', integerAtLeast(1), d.logEvery)
    .option('--seed <n>', `seed of the initial weights and of the batch order, an integer in [0, ${MAX_SEED}]`, seedValue, d.seed)
    .option('--val-fraction <fraction>', 'fraction of documents held out for evaluation, in [0, 1)', numberInRange(0, 1, true), d.valFraction)
    .addOption(
      new Option('--extensions <list>', 'comma-separated file extensions read from folders; files named directly are always read')
        .argParser(extensionList)
        .default([...DEFAULT_EXTENSIONS], DEFAULT_EXTENSIONS.join(',')),
    )
    .option('--resume', 'continue the run in --out from its last checkpoint with its saved settings; only --steps (to extend the run) and the --log-every, --eval-every, --eval-batches and --save-every intervals may change', false);

  command.action(async (options: PretrainOptions) => {
    const explicit = new Set(Object.keys(options).filter((key) => command.getOptionValueSource(key) === 'cli'));
    setExitCode(await runPretrain(options, explicit));
  });
}

function addGenerateCommand(program: Command, setExitCode: ExitCodeSink): void {
  program
    .command('generate')
    .description('sample text from a model folder, streaming it to stdout as it is generated')
    .requiredOption('--model <dir>', 'model folder (config.json + model.safetensors), or a pretrain --out folder')
    .requiredOption('--prompt <text>', 'text to continue; "<|endoftext|>" in it is the end-of-text token')
    .option('--max-tokens <n>', 'number of tokens to generate', integerAtLeast(0), 100)
    .option('--temperature <t>', 'divides the logits before sampling; 0 picks the most likely token', numberInRange(0, 100), 1)
    .option('--top-k <k>', 'sample only from the k most likely tokens (default: all)', integerAtLeast(1))
    .option('--top-p <p>', 'sample only from the most likely tokens whose probabilities sum to p, in (0, 1]', positiveNumberUpTo(1), 1)
    .option('--seed <n>', `seed of the sampling generator, an integer in [0, ${MAX_SEED}]`, seedValue, 0)
    .action((options: GenerateCommandOptions) => setExitCode(runGenerate(options)));
}

function addTokenizeCommand(program: Command, setExitCode: ExitCodeSink): void {
  program
    .command('tokenize')
    .description('print the token ids and token strings of a text')
    .argument('<text>', 'text to tokenize; "<|endoftext|>" in it is the end-of-text token')
    .option('--model <dir>', 'model folder whose tokenizer to use (default: the bundled GPT-2 tokenizer)')
    .option('--json', 'print {"ids": [...], "tokens": [...]} instead of a table', false)
    .action((text: string, options: TokenizeCommandOptions) => setExitCode(runTokenize(text, options)));
}

function addLogitsCommand(program: Command, setExitCode: ExitCodeSink): void {
  program
    .command('logits')
    .description('print, for each input position, the top-k next tokens and their probabilities')
    .requiredOption('--model <dir>', 'model folder, or a pretrain --out folder')
    .option('--prompt <text>', 'input text (give either --prompt or --ids)')
    .option('--ids <list>', 'input as comma-separated token ids, such as 15496,995 (give either --prompt or --ids)', tokenIdList)
    .option('--top-k <k>', 'next tokens shown per position', integerAtLeast(1), 5)
    .option('--json', 'print JSON, including the full logits of the last position', false)
    .addOption(new Option('--mode <mode>', 'sequence: one forward pass; rnn: one token at a time (key/value cache or recurrent state)').choices(['sequence', 'rnn']).default('sequence'))
    .action((options: LogitsCommandOptions) => setExitCode(runLogits(options)));
}

/** Every backend name; webgpu is asynchronous, so only `bench kernels` accepts it. */
const CLI_BACKENDS = [...BACKEND_NAMES, 'auto'];

/**
 * Applies --backend (or checks RWKVIFY_BACKEND when it is absent) before a command runs, so an
 * unknown or unavailable backend is a user error reported up front.
 */
function applyBackendOption(program: Command, action: Command): void {
  const requested = program.opts<{ backend?: string }>().backend;
  // `bench kernels` starts the named backend itself, through the asynchronous kernels.
  if (action.name() === 'kernels') return;
  const effective = requested ?? (process.env.RWKVIFY_BACKEND === undefined ? undefined : process.env.RWKVIFY_BACKEND.trim());
  if (effective === 'webgpu') {
    const source = requested === undefined ? 'RWKVIFY_BACKEND=webgpu' : '--backend webgpu';
    throw new InputError(`${source}: WebGPU returns results only asynchronously, so it can run \`rwkvify bench kernels\` but not training or inference; use auto, wasm or headlessgl`);
  }
  if (requested === 'webgpu') {
    throw new InputError('--backend webgpu: WebGPU returns results only asynchronously, so it can run `rwkvify bench kernels` but not training or inference; use auto, wasm or headlessgl');
  }
  try {
    if (requested === undefined) backendChoice();
    else setBackend(requested);
  } catch (error) {
    if (error instanceof BackendUnavailableError || (error instanceof Error && error.message.startsWith('backend:'))) {
      const source = requested === undefined ? 'RWKVIFY_BACKEND' : `--backend ${requested}`;
      throw new InputError(`${source}: ${error.message.replace(/^backend: /, '')}`);
    }
    throw error;
  }
}

/** Builds the command-line program; the commands report their exit code through `setExitCode`. */
export function buildProgram(setExitCode: ExitCodeSink): Command {
  const program = new Command();
  program
    .name('rwkvify')
    .description('train GPT-2 and RWKV-7 language models, convert a GPT-2 into an RWKV-7 by distillation, and inspect them')
    .exitOverride()
    .showHelpAfterError('(add --help for the options)')
    .addOption(
      new Option(
        '--backend <name>',
        'compute backend of the matmul and WKV-7 kernels: auto picks js or wasm (WebAssembly SIMD) by size; reference is the slow float64 oracle; ' +
          'cpu, webasm and headlessgl run gpu.js; webgpu works only for `bench kernels` (default: $RWKVIFY_BACKEND, else auto)',
      ).choices(CLI_BACKENDS),
    )
    .hook('preAction', (_program, action) => applyBackendOption(program, action));
  addPretrainCommand(program, setExitCode);
  addGenerateCommand(program, setExitCode);
  addTokenizeCommand(program, setExitCode);
  addLogitsCommand(program, setExitCode);
  registerDistillCommands(program, setExitCode);
  registerDemoCommand(program, setExitCode);
  registerBenchCommands(program, setExitCode);
  return program;
}

const FILE_SYSTEM_ERROR_CODES = new Set(['EACCES', 'EPERM', 'EEXIST', 'ENOTDIR', 'EISDIR', 'ENOENT', 'ENOSPC', 'EROFS', 'EDQUOT']);

function isFileSystemError(error: unknown): error is NodeJS.ErrnoException {
  if (!(error instanceof Error)) return false;
  const code = (error as NodeJS.ErrnoException).code;
  return typeof code === 'string' && FILE_SYSTEM_ERROR_CODES.has(code);
}

/** Maps an error to an exit code, printing it: user mistakes as one line, bugs with the stack. */
export function reportError(error: unknown): number {
  if (error instanceof CommanderError) {
    // commander has already printed the message or the help text.
    return error.exitCode === 0 ? 0 : USER_ERROR_EXIT_CODE;
  }
  if (error instanceof InputError || error instanceof TrainingDivergedError) {
    process.stderr.write(`error: ${error.message}\n`);
    return USER_ERROR_EXIT_CODE;
  }
  if (isFileSystemError(error)) {
    // A path that is a file, a folder without permission or a full disk is a problem of the
    // user's environment, not a bug: Node's message already names the path and the operation.
    process.stderr.write(`error: ${error.message}\n`);
    return USER_ERROR_EXIT_CODE;
  }
  const text = error instanceof Error ? (error.stack ?? error.message) : String(error);
  process.stderr.write(`rwkvify: internal error (a bug; please report it with the command you ran)\n${text}\n`);
  return BUG_EXIT_CODE;
}

/** Runs the command line with `argv` (as process.argv) and returns the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  let exitCode = 0;
  const program = buildProgram((code) => {
    exitCode = code;
  });
  try {
    await program.parseAsync([...argv]);
    return exitCode;
  } catch (error) {
    return reportError(error);
  }
}

