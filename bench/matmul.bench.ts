// Float32 matmul throughput: rwkvify's WebAssembly kernel on 1 and 2 threads, the plain TypeScript
// reference and tfjs-wasm (XNNPACK), measured in the same process with the backends interleaved
// rep by rep, so machine load hits them alike. GFLOP/s = 2·M·N·K / wall time.
// Usage: node --import tsx bench/matmul.bench.ts
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';

import { matmulReference } from '../src/kernels/matmul-reference.js';
import type { MatmulGeometry } from '../src/kernels/types.js';
import { matmulWasm, setWasmThreads, wasmInfo } from '../src/kernels/wasm/index.js';

interface BenchShape {
  label: string;
  M: number;
  N: number;
  K: number;
  transB: boolean;
  reps: number;
}

const SHAPES: BenchShape[] = [
  { label: '256³', M: 256, N: 256, K: 256, transB: false, reps: 15 },
  { label: '512³', M: 512, N: 512, K: 512, transB: false, reps: 9 },
  { label: '1024³', M: 1024, N: 1024, K: 1024, transB: false, reps: 7 },
  { label: '2048³', M: 2048, N: 2048, K: 2048, transB: false, reps: 5 },
  // GPT-2 head at T=64: x (64, 768) times the tied embedding wte (50257, 768), transposed.
  { label: 'GPT-2 head [64,768]×[768,50257] (B stored transposed)', M: 64, N: 50257, K: 768, transB: true, reps: 5 },
];

/** The reference runs at about 1 GFLOP/s, so it is measured only up to 512³. */
const REFERENCE_MAX_FLOPS = 2 * 512 ** 3;

/** One way to compute C = A·op(B) on prepared inputs; returns the output for a sanity check. */
interface Runner {
  name: string;
  run: () => Float32Array;
}

function randomFloats(length: number): Float32Array {
  const values = new Float32Array(length);
  for (let i = 0; i < length; i++) values[i] = Math.random() * 2 - 1;
  return values;
}

function geometryOf(shape: BenchShape): MatmulGeometry {
  const { M, N, K, transB } = shape;
  return { batch: 1, M, N, K, transA: false, transB, strideA: 0, strideB: 0, strideOut: M * N, accumulate: false };
}

type TfModule = typeof import('@tensorflow/tfjs-core');

/** Loads tfjs-core with the wasm backend, or returns the reason it is unavailable. */
async function loadTfjsWasm(): Promise<{ tf: TfModule } | { error: string }> {
  try {
    const tf = await import('@tensorflow/tfjs-core');
    await import('@tensorflow/tfjs-backend-wasm');
    const ok = await tf.setBackend('wasm');
    await tf.ready();
    if (!ok || tf.getBackend() !== 'wasm') return { error: `setBackend('wasm') gave ${tf.getBackend()}` };
    return { tf };
  } catch (error) {
    return { error: String(error) };
  }
}

function wasmRunner(name: string, threads: number, a: Float32Array, b: Float32Array, g: MatmulGeometry): Runner {
  const out = new Float32Array(g.M * g.N);
  return {
    name,
    run: () => {
      setWasmThreads(threads);
      matmulWasm(a, b, out, g);
      return out;
    },
  };
}

function referenceRunner(a: Float32Array, b: Float32Array, g: MatmulGeometry): Runner {
  const out = new Float32Array(g.M * g.N);
  return {
    name: 'TS reference',
    run: () => {
      matmulReference(a, b, out, g);
      return out;
    },
  };
}

function tfjsRunner(tf: TfModule, a: Float32Array, b: Float32Array, shape: BenchShape): Runner {
  const ta = tf.tensor2d(a, [shape.M, shape.K]);
  const tb = shape.transB ? tf.tensor2d(b, [shape.N, shape.K]) : tf.tensor2d(b, [shape.K, shape.N]);
  return {
    name: 'tfjs-wasm',
    run: () => {
      const c = tf.matMul(ta, tb, false, shape.transB);
      const data = c.dataSync() as Float32Array;
      c.dispose();
      return data;
    },
  };
}

function median(sorted: number[]): number {
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** GFLOP/s of one runner over its reps. */
interface Timing {
  wallBest: number;
  wallMedian: number;
  /**
   * From this process's CPU time (process.cpuUsage), which leaves out the time other processes
   * held the core. It measures speed only for single-threaded runners.
   */
  cpuBest: number;
  reps: number;
}

/** A runner stops after MIN_REPS once its timed calls add up to this many seconds. */
const RUNNER_BUDGET_SECONDS = 8;
const MIN_REPS = 3;

function processCpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

/**
 * Times every runner up to `reps` times, interleaved, after one warm-up call each. Slow runners
 * stop early (RUNNER_BUDGET_SECONDS).
 */
function measure(runners: Runner[], flops: number, reps: number): Map<string, Timing> {
  const wall = new Map<string, number[]>(runners.map((r) => [r.name, []]));
  const cpu = new Map<string, number[]>(runners.map((r) => [r.name, []]));
  for (const runner of runners) runner.run();
  for (let rep = 0; rep < reps; rep++) {
    for (const runner of runners) {
      const times = wall.get(runner.name) ?? [];
      const spent = times.reduce((sum, t) => sum + t, 0);
      if (times.length >= MIN_REPS && spent > RUNNER_BUDGET_SECONDS) continue;
      const cpuStart = processCpuSeconds();
      const start = performance.now();
      runner.run();
      times.push((performance.now() - start) / 1000);
      cpu.get(runner.name)?.push(processCpuSeconds() - cpuStart);
    }
  }
  const result = new Map<string, Timing>();
  for (const [name, times] of wall) {
    times.sort((x, y) => x - y);
    const cpuBest = Math.min(...(cpu.get(name) ?? []));
    result.set(name, {
      wallBest: flops / times[0] / 1e9,
      wallMedian: flops / median(times) / 1e9,
      cpuBest: flops / cpuBest / 1e9,
      reps: times.length,
    });
  }
  return result;
}

/** Busy CPU seconds of the whole machine so far, from /proc/stat; undefined off Linux. */
function machineBusySeconds(): number | undefined {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const idle = fields[3] + (fields[4] ?? 0); // idle + iowait
    const total = fields.slice(0, 8).reduce((sum, value) => sum + value, 0);
    return (total - idle) / 100; // USER_HZ is 100 on Linux
  } catch {
    return undefined;
  }
}

/**
 * Runs `work` and returns how many cores other processes kept busy meanwhile, on average: the
 * machine's busy time minus this process's CPU time, over the wall time.
 */
function otherProcessesLoad(work: () => void): number | undefined {
  const busyBefore = machineBusySeconds();
  const ownBefore = processCpuSeconds();
  const start = performance.now();
  work();
  const wall = (performance.now() - start) / 1000;
  const busyAfter = machineBusySeconds();
  if (busyBefore === undefined || busyAfter === undefined) return undefined;
  return Math.max(0, busyAfter - busyBefore - (processCpuSeconds() - ownBefore)) / wall;
}

function maxAbsDifference(x: Float32Array, y: Float32Array): number {
  let worst = 0;
  for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i] - y[i]));
  return worst;
}

function wallCell(timing: Timing | undefined, missing: string): string {
  if (timing === undefined) return missing;
  return `${timing.wallBest.toFixed(1)} / ${timing.wallMedian.toFixed(1)} (${timing.reps})`;
}

function cpuCell(timing: Timing | undefined, missing: string): string {
  return timing === undefined ? missing : timing.cpuBest.toFixed(1);
}

function wallRatio(x: Timing | undefined, y: Timing | undefined): string {
  if (x === undefined || y === undefined) return '–';
  return `${(x.wallBest / y.wallBest).toFixed(2)}× / ${(x.wallMedian / y.wallMedian).toFixed(2)}×`;
}

function cpuRatio(x: Timing | undefined, y: Timing | undefined): string {
  return x === undefined || y === undefined ? '–' : `${(x.cpuBest / y.cpuBest).toFixed(2)}×`;
}

const SKIPPED_REFERENCE = 'skipped (too slow above 512³)';

/** A fixed integer loop for the parallel-headroom control; posts its own run time in ms. */
const SPIN_WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const start = Date.now();
let x = 0;
for (let i = 0; i < 2e8; i++) x = (x + i) % 1000003;
parentPort.postMessage([Date.now() - start, x]);
`;

function spinWorkers(count: number): Promise<number[]> {
  return Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<number>((resolve, reject) => {
          const worker = new Worker(SPIN_WORKER_SOURCE, { eval: true });
          worker.once('message', (message: [number, number]) => {
            resolve(message[0]);
            void worker.terminate();
          });
          worker.once('error', reject);
        }),
    ),
  );
}

/**
 * Control for the 2-thread column: how much faster two copies of a CPU-bound loop run side by
 * side than one alone (2 = two free cores, 1 = other processes leave the equivalent of one).
 */
async function parallelHeadroom(): Promise<number> {
  const [alone] = await spinWorkers(1);
  const together = await spinWorkers(2);
  return (2 * alone) / Math.max(...together);
}

/** Runs the matmul benchmark and returns a markdown section: machine, tables and notes. */
export async function runMatmulBench(): Promise<string> {
  const tfjs = await loadTfjsWasm();
  const loadBefore = os.loadavg()[0];
  const headroomBefore = await parallelHeadroom();
  const wallRows: string[] = [];
  const cpuRows: string[] = [];
  const checks: string[] = [];

  for (const shape of SHAPES) {
    const g = geometryOf(shape);
    const flops = 2 * shape.M * shape.N * shape.K;
    const a = randomFloats(shape.M * shape.K);
    const b = randomFloats(shape.K * shape.N);
    const runners = [wasmRunner('wasm 1 thread', 1, a, b, g), wasmRunner('wasm 2 threads', 2, a, b, g)];
    if (flops <= REFERENCE_MAX_FLOPS) runners.push(referenceRunner(a, b, g));
    if ('tf' in tfjs) runners.push(tfjsRunner(tfjs.tf, a, b, shape));

    // Sanity check before timing: every backend computes the same product.
    const outputs = runners.map((r) => r.run().slice());
    const differences = outputs.slice(1).map((o, i) => `${runners[i + 1].name} ${maxAbsDifference(outputs[0], o).toExponential(1)}`);
    checks.push(`${shape.label}: max |difference| from wasm 1 thread: ${differences.join(', ')}`);

    let timings = new Map<string, Timing>();
    const othersLoad = otherProcessesLoad(() => {
      timings = measure(runners, flops, shape.reps);
    });
    const oneThread = timings.get('wasm 1 thread');
    const twoThreads = timings.get('wasm 2 threads');
    const reference = timings.get('TS reference');
    const tf = timings.get('tfjs-wasm');
    wallRows.push(
      `| ${shape.label} | ${wallCell(oneThread, '–')} | ${wallCell(twoThreads, '–')} | ${wallCell(reference, SKIPPED_REFERENCE)} | ` +
        `${wallCell(tf, 'unavailable')} | ${wallRatio(oneThread, tf)} | ${wallRatio(twoThreads, tf)} | ` +
        `${othersLoad === undefined ? '?' : othersLoad.toFixed(2)} |`,
    );
    cpuRows.push(
      `| ${shape.label} | ${cpuCell(oneThread, '–')} | ${cpuCell(reference, SKIPPED_REFERENCE)} | ${cpuCell(tf, 'unavailable')} | ` +
        `${cpuRatio(oneThread, tf)} |`,
    );
  }
  setWasmThreads(Math.min(2, os.availableParallelism()));

  const info = wasmInfo();
  const loadAfter = os.loadavg()[0];
  const headroomAfter = await parallelHeadroom();
  return [
    `CPU: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'unknown'}, Node ${process.version}; load average (1 min) ` +
      `${loadBefore.toFixed(1)} before, ${loadAfter.toFixed(1)} after. Backends are interleaved rep by rep after one ` +
      `warm-up call each; a backend stops after ${MIN_REPS} reps once they add up to ${RUNNER_BUDGET_SECONDS} s. ` +
      'rwkvify timings include copying A and B into WebAssembly memory and C back out. tfjs keeps its tensors ' +
      'resident, and its time covers the product and `dataSync`.',
    '',
    `Parallel headroom (two copies of a CPU-bound loop on worker threads, speed relative to one copy; 2.00 = two ` +
      `free cores): ${headroomBefore.toFixed(2)} before, ${headroomAfter.toFixed(2)} after.`,
    '',
    'Wall clock, GFLOP/s as best / median (reps). The last column is the average number of cores that other ' +
      'processes kept busy meanwhile (from /proc/stat): on 2 cores, a value near 1 leaves the 2-thread runs one core.',
    '',
    '| shape | rwkvify wasm, 1 thread | rwkvify wasm, 2 threads | TS reference | tfjs-wasm 4.22 (1 thread) | 1 thread / tfjs | 2 threads / tfjs | other processes (cores) |',
    '|---|---|---|---|---|---|---|---|',
    ...wallRows,
    '',
    'Single-threaded backends by CPU time (best rep), which leaves out the time other processes held the core:',
    '',
    '| shape | rwkvify wasm, 1 thread | TS reference | tfjs-wasm 4.22 | rwkvify / tfjs |',
    '|---|---|---|---|---|',
    ...cpuRows,
    '',
    `tfjs-wasm: ${'tf' in tfjs ? 'loaded' : `not measured: ${tfjs.error}`}. rwkvify micro-tile ${info.config.mr}×${info.config.nr}, ` +
      `fused multiply-add ${info.config.fusedMultiplyAdd === true ? 'on' : 'off (needs relaxed SIMD)'}, ` +
      `kc ${info.blocking.kc}, task tile ${info.blocking.tileRows}×${info.blocking.tileCols}, ` +
      `threads used above ${info.parallelThresholdFlops} flops.`,
    '',
    ...checks.map((line) => `- ${line}`),
  ].join('\n');
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.stdout.write(`${await runMatmulBench()}\n`);
}
