// Kernel speed on the user's machine: matmul GFLOP/s and WKV-7 microseconds per token per head,
// for every backend that starts here, as structured records (the `rwkvify bench kernels` command
// prints them as a table or JSON). Every timing includes upload and readback, and every result is
// checked against the plain TypeScript reference so a fast wrong kernel cannot win.
import { createRequire } from 'node:module';
import { BACKEND_NAMES, BackendUnavailableError, startAsyncKernels, type AsyncKernels, type BackendName } from '../kernels/index.js';
import { matmulReference } from '../kernels/matmul-reference.js';
import type { MatmulGeometry } from '../kernels/types.js';
import { wkv7ForwardReference } from '../kernels/wkv7-reference.js';
import type { Wkv7Dims, Wkv7Inputs } from '../kernels/wkv7-types.js';
import { Rng } from '../tensor/random.js';

export interface KernelBenchRecord {
  kernel: 'matmul' | 'wkv7';
  /** Backend name; `tfjs-wasm` is the TensorFlow.js peer, measured when the package is installed. */
  backend: string;
  /** `MxKxN` for matmul, `B=…,T=…,H=…,N=…` for WKV-7. */
  shape: string;
  /** Matmul throughput in 10⁹ floating-point operations per second (2·M·N·K per product). */
  gflops: number | null;
  /** WKV-7 forward + backward time in microseconds per token per head. */
  usPerTokenHead: number | null;
  /** Largest |result − reference| on this run's inputs. */
  maxAbsError: number;
}

export interface KernelBenchOptions {
  /** One backend name, or every backend that starts (the default). */
  backend?: string;
  /** Smaller shapes and fewer repetitions, for a smoke run. */
  quick?: boolean;
  /** Called with a one-line note for each backend skipped, and why. */
  onSkip?: (message: string) => void;
}

interface MatmulShape {
  M: number;
  K: number;
  N: number;
  /** The GPT-2 head multiplies by wte [V, C] stored row-major, so its right operand is transposed. */
  transB: boolean;
}

function matmulShapes(quick: boolean): MatmulShape[] {
  const cubes = (quick ? [256, 512] : [256, 512, 1024, 2048]).map((n) => ({ M: n, K: n, N: n, transB: false }));
  // T = 64 tokens of a 768-wide GPT-2 against its 50,257-token vocabulary.
  const head = quick ? { M: 16, K: 768, N: 50257, transB: true } : { M: 64, K: 768, N: 50257, transB: true };
  return [...cubes, head];
}

function randomArray(rng: Rng, length: number, low = -1, high = 1): Float32Array {
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = low + (high - low) * rng.uniform();
  return out;
}

function maxAbsDifference(x: ArrayLike<number>, y: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i] - y[i]));
  return worst;
}

/** Median seconds of `reps` timed runs after one warm-up run. */
async function timeMedian(run: () => Promise<void>, reps: number): Promise<number> {
  await run();
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const start = performance.now();
    await run();
    times.push((performance.now() - start) / 1000);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

function geometry(s: MatmulShape): MatmulGeometry {
  return { batch: 1, M: s.M, N: s.N, K: s.K, transA: false, transB: s.transB, strideA: 0, strideB: 0, strideOut: 0, accumulate: false };
}

/** Reference product of a few sampled rows only: the full product at 2048³ takes minutes in plain TS. */
function referenceRows(a: Float32Array, b: Float32Array, s: MatmulShape, rows: number[]): Float32Array[] {
  return rows.map((m) => {
    const out = new Float32Array(s.N);
    matmulReference(a.subarray(m * s.K, (m + 1) * s.K), b, out, { ...geometry(s), M: 1 });
    return out;
  });
}

async function benchMatmul(kernels: AsyncKernels, shapes: MatmulShape[], reps: number, rng: Rng): Promise<KernelBenchRecord[]> {
  const records: KernelBenchRecord[] = [];
  for (const s of shapes) {
    const a = randomArray(rng, s.M * s.K);
    const b = randomArray(rng, s.K * s.N);
    const out = new Float32Array(s.M * s.N);
    const g = geometry(s);
    const seconds = await timeMedian(() => kernels.matmul(a, b, out, g), reps);
    const rows = [0, Math.floor(s.M / 2), s.M - 1];
    const expected = referenceRows(a, b, s, rows);
    const error = Math.max(...rows.map((m, i) => maxAbsDifference(out.subarray(m * s.N, (m + 1) * s.N), expected[i])));
    records.push({
      kernel: 'matmul',
      backend: kernels.name,
      shape: `${s.M}x${s.K}x${s.N}`,
      gflops: (2 * s.M * s.N * s.K) / seconds / 1e9,
      usPerTokenHead: null,
      maxAbsError: error,
    });
  }
  return records;
}

function wkvInputs(d: Wkv7Dims, rng: Rng): Wkv7Inputs {
  const n = d.B * d.T * d.H * d.N;
  const kappa = randomArray(rng, n, -0.3, 0.3);
  return {
    r: randomArray(rng, n),
    w: randomArray(rng, n, 0.6, 0.99),
    k: randomArray(rng, n, -0.5, 0.5),
    v: randomArray(rng, n),
    // a = −κ̂ and b = κ̂·α as in the model, so the state stays bounded.
    a: kappa.map((x) => -x),
    b: kappa.map((x) => 0.5 * x),
    s0: null,
  };
}

async function benchWkv(kernels: AsyncKernels, d: Wkv7Dims, reps: number, rng: Rng): Promise<KernelBenchRecord> {
  const x = wkvInputs(d, rng);
  const dy = randomArray(rng, d.B * d.T * d.H * d.N);
  let y: ArrayLike<number> = [];
  const seconds = await timeMedian(async () => {
    const forward = await kernels.wkv7Forward(x, d);
    await kernels.wkv7Backward(x, d, forward.saved, dy, null);
    y = forward.y;
  }, reps);
  const expected = wkv7ForwardReference(x, d).y;
  return {
    kernel: 'wkv7',
    backend: kernels.name,
    shape: `B=${d.B},T=${d.T},H=${d.H},N=${d.N}`,
    gflops: null,
    usPerTokenHead: (seconds * 1e6) / (d.B * d.T * d.H),
    maxAbsError: maxAbsDifference(y, expected),
  };
}

interface TfjsModule {
  setBackend(name: string): Promise<boolean>;
  ready(): Promise<void>;
  tensor2d(values: Float32Array, shape: [number, number]): { dispose(): void };
  matMul(a: unknown, b: unknown, transposeA?: boolean, transposeB?: boolean): { dataSync(): Float32Array; dispose(): void };
}

/** Loads TensorFlow.js with its WebAssembly backend, or returns null when it is not installed. */
async function loadTfjsWasm(): Promise<TfjsModule | null> {
  try {
    const require = createRequire(import.meta.url);
    const tf = require('@tensorflow/tfjs-core') as TfjsModule;
    require('@tensorflow/tfjs-backend-wasm');
    await tf.setBackend('wasm');
    await tf.ready();
    return tf;
  } catch {
    return null;
  }
}

async function benchTfjs(tf: TfjsModule, shapes: MatmulShape[], reps: number, rng: Rng): Promise<KernelBenchRecord[]> {
  const records: KernelBenchRecord[] = [];
  for (const s of shapes) {
    const a = randomArray(rng, s.M * s.K);
    const b = randomArray(rng, s.K * s.N);
    let result: Float32Array = new Float32Array(0);
    const seconds = await timeMedian(async () => {
      const ta = tf.tensor2d(a, [s.M, s.K]);
      const tb = tf.tensor2d(b, s.transB ? [s.N, s.K] : [s.K, s.N]);
      const tc = tf.matMul(ta, tb, false, s.transB);
      result = tc.dataSync();
      ta.dispose();
      tb.dispose();
      tc.dispose();
    }, reps);
    const rows = [0, s.M - 1];
    const expected = referenceRows(a, b, s, rows);
    const error = Math.max(...rows.map((m, i) => maxAbsDifference(result.subarray(m * s.N, (m + 1) * s.N), expected[i])));
    records.push({ kernel: 'matmul', backend: 'tfjs-wasm', shape: `${s.M}x${s.K}x${s.N}`, gflops: (2 * s.M * s.N * s.K) / seconds / 1e9, usPerTokenHead: null, maxAbsError: error });
  }
  return records;
}

/**
 * Measures every backend that starts (or the one named). The plain `reference` matmul runs only up
 * to 512³, because larger cubes take minutes in plain TypeScript.
 */
export async function benchKernels(options: KernelBenchOptions = {}): Promise<KernelBenchRecord[]> {
  const quick = options.quick ?? false;
  const reps = quick ? 1 : 3;
  const rng = new Rng(2026);
  const names: readonly string[] = options.backend === undefined || options.backend === 'all' ? BACKEND_NAMES : [options.backend];
  const shapes = matmulShapes(quick);
  const wkvDims: Wkv7Dims = quick ? { B: 1, T: 64, H: 2, N: 64 } : { B: 1, T: 256, H: 4, N: 64 };
  const records: KernelBenchRecord[] = [];

  for (const name of names) {
    let kernels: AsyncKernels;
    try {
      kernels = await startAsyncKernels(name);
    } catch (error) {
      if (error instanceof BackendUnavailableError && options.backend === undefined) {
        options.onSkip?.(`skipped ${name}: ${error.message}`);
        continue;
      }
      throw error;
    }
    try {
      const usable = (kernels.name as BackendName) === 'reference' ? shapes.filter((s) => s.M * s.N * s.K <= 512 ** 3) : shapes;
      records.push(...(await benchMatmul(kernels, usable, reps, rng)));
      records.push(await benchWkv(kernels, wkvDims, reps, rng));
    } finally {
      kernels.destroy();
    }
  }

  if (options.backend === undefined || options.backend === 'tfjs-wasm') {
    const tf = await loadTfjsWasm();
    if (tf === null) options.onSkip?.('skipped tfjs-wasm: @tensorflow/tfjs-core and @tensorflow/tfjs-backend-wasm are not installed');
    else records.push(...(await benchTfjs(tf, shapes, reps, rng)));
  }
  return records;
}

/** Formats records as a Markdown table. */
export function formatKernelBench(records: readonly KernelBenchRecord[]): string {
  const lines = ['| kernel | backend | shape | GFLOP/s | µs/token/head | max abs error |', '|---|---|---|---:|---:|---:|'];
  for (const r of records) {
    lines.push(
      `| ${r.kernel} | ${r.backend} | ${r.shape} | ${r.gflops === null ? '' : r.gflops.toFixed(2)} | ` +
        `${r.usPerTokenHead === null ? '' : r.usPerTokenHead.toFixed(1)} | ${r.maxAbsError.toExponential(1)} |`,
    );
  }
  return lines.join('\n');
}
