// `rwkvify bench kernels`: kernel speed per backend on this machine.
import type { Command } from 'commander';
import { benchKernels, formatKernelBench } from '../../bench/kernels.js';

interface BenchKernelsOptions {
  json: boolean;
  quick: boolean;
}

/** Adds the `bench` command group. The global --backend option selects one backend to measure. */
export function registerBenchCommands(program: Command, setExitCode: (code: number) => void): void {
  const bench = program.command('bench').description('measure speed on this machine');
  bench
    .command('kernels')
    .description('matmul GFLOP/s and WKV-7 µs per token per head for every backend that starts here (or the one named by --backend), with TensorFlow.js WebAssembly as the peer when installed')
    .option('--json', 'print an array of {kernel, backend, shape, gflops, usPerTokenHead, maxAbsError} records', false)
    .option('--quick', 'smaller shapes and one repetition, for a smoke run', false)
    .action(async (options: BenchKernelsOptions) => {
      const backend = program.opts<{ backend?: string }>().backend;
      const records = await benchKernels({
        backend: backend === 'auto' ? undefined : backend,
        quick: options.quick,
        onSkip: (message) => process.stderr.write(`${message}\n`),
      });
      process.stdout.write(options.json ? `${JSON.stringify(records, null, 2)}\n` : `${formatKernelBench(records)}\n`);
      setExitCode(0);
    });
}
