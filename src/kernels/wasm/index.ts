// Public entry of the WebAssembly float32 matmul: one engine per process, created on first use.
import { availableParallelism } from 'node:os';
import type { MatmulGeometry } from '../types.js';
import type { GemmConfig } from './gemm-layout.js';
import { MAX_THREADS } from './gemm-layout.js';
import { relaxedSimdSupported } from './gemm-module.js';
import { WasmGemmEngine, type GemmBlocking, type WasmEngineInfo } from './matmul-wasm.js';

export { WasmGemmEngine, type GemmBlocking, type WasmEngineInfo, type WasmEngineOptions, type WasmEngineTimings } from './matmul-wasm.js';
export type { GemmConfig } from './gemm-layout.js';
export { relaxedSimdSupported } from './gemm-module.js';

/**
 * Micro-tile of the default engine. On Node 20 (V8 11.3, x64, 16 xmm registers) 4x8 and 2x16
 * tiles ran at about 29 GFLOP/s per core with data in L1 on an AMD EPYC (Zen 3). Larger tiles and
 * kUnroll 2 spill registers and ran at 20-25. Fused multiply-add is used where the runtime offers
 * relaxed SIMD (Node 20 only with --experimental-wasm-relaxed-simd), and it raised the same
 * kernel to about 46.
 */
export const DEFAULT_GEMM_CONFIG: GemmConfig = { mr: 4, nr: 8, kUnroll: 1, fusedMultiplyAdd: relaxedSimdSupported() };

/** Blocking of the default engine: kc 128-512 and tiles 64-256 x 128-512 measured within noise at 1024³ and 2048³. */
export const DEFAULT_GEMM_BLOCKING: GemmBlocking = {
  kc: 256,
  tileRows: 128,
  tileCols: 256,
  packTaskFloats: 65536,
  minTasksPerThread: 4,
};

/**
 * Products below this many flops (2·M·N·K·batch) stay on the calling thread: about 0.15 ms of
 * single-thread work, against tens of microseconds to wake a worker.
 * NOTE: an estimate. The machine this was written on never had a second core free to measure it.
 */
export const DEFAULT_PARALLEL_THRESHOLD_FLOPS = 4_000_000;

let engine: WasmGemmEngine | undefined;

/** Thread count from RWKVIFY_THREADS, else min(2, available cores). */
function defaultThreads(): number {
  const fromEnv = process.env.RWKVIFY_THREADS;
  if (fromEnv !== undefined && fromEnv !== '') {
    const threads = Number(fromEnv);
    if (!Number.isInteger(threads) || threads < 1 || threads > MAX_THREADS) {
      throw new Error(`RWKVIFY_THREADS must be an integer in [1, ${MAX_THREADS}], got "${fromEnv}"`);
    }
    return threads;
  }
  return Math.min(2, availableParallelism());
}

/** Returns the process-wide engine, replacing one that failed with a fresh one on the same settings. */
function getEngine(): WasmGemmEngine {
  if (engine === undefined || engine.failed) {
    const previous = engine?.info();
    engine = new WasmGemmEngine({
      config: DEFAULT_GEMM_CONFIG,
      blocking: DEFAULT_GEMM_BLOCKING,
      threads: previous?.threads ?? defaultThreads(),
      parallelThresholdFlops: previous?.parallelThresholdFlops ?? DEFAULT_PARALLEL_THRESHOLD_FLOPS,
    });
  }
  return engine;
}

/**
 * Computes `out[b] (+)= op(A[b]) · op(B[b])` in float32 with WebAssembly SIMD, on up to
 * `setWasmThreads` threads. Same contract as matmulReference; sums are float32, in a different
 * order than the reference, so results differ by rounding.
 */
export function matmulWasm(a: Float32Array, b: Float32Array, out: Float32Array, g: MatmulGeometry): void {
  getEngine().matmul(a, b, out, g);
}

/** Sets how many threads (the caller plus workers) large products use; 1 turns the workers off. */
export function setWasmThreads(threads: number): void {
  getEngine().setThreads(threads);
}

/** Sets the size (2·M·N·K·batch flops) from which products use the workers; 0 uses them always. */
export function setWasmParallelThreshold(flops: number): void {
  getEngine().setParallelThreshold(flops);
}

/** Settings and counters of the engine, for benchmarks and tests. */
export function wasmInfo(): WasmEngineInfo {
  return getEngine().info();
}
