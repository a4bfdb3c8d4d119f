// Backend selection for the kernel layer.
//
// Backends:
//   reference   plain TypeScript oracles (float64 accumulation; WKV-7 stores every state)
//   js          hand-written TypeScript kernels: the fast WKV-7 recurrence, the plain matmul
//   wasm        WebAssembly SIMD matmul (float32, threaded); WKV-7 runs on the js kernel
//   cpu         gpu.js transpiled JavaScript
//   webasm      gpu.js WebAssembly (synchronous calls, one thread)
//   headlessgl  gpu.js WebGL through the `gl` package (needs an X display, e.g. xvfb-run)
//   webgpu      gpu.js WebGPU through Dawn (npm webgpu@0.6.2 aliased as webgpu062)
//   auto        per op and size, the fastest backend that starts here (rule below)
//
// Sync and async. The engine (tensor ops, autograd) calls kernels synchronously: a training step
// is a long chain of dependent ops, and making every op return a Promise would make the whole
// engine async for the sake of one backend. cpu, webasm and headlessgl can return results
// synchronously. WebGPU cannot, because its readback (mapAsync) only exists as a Promise. So the synchronous
// entry points (`matmul`, `wkv7Forward`, `wkv7Backward` in index.ts) serve every backend except
// webgpu, and selecting webgpu for them is an error that names the alternative. WebGPU is reached
// through `startAsyncKernels(name)`, which returns Promise-returning versions of the same kernels
// for any backend; it serves benchmarks, tests and callers that can await.
//
// Precision. Every backend except reference and js computes in float32. Float64 inputs (gradient
// checks) therefore always run on float64-capable kernels: matmul on the reference loop, WKV-7
// on the js kernel (or the reference when that is selected).
//
// The auto rule (measurements from bench/wkv7.bench.ts and a matmul sweep on the 2-core
// development machine, no GPU):
//   matmul float32: wasm from M·N·K·batch ≥ 512 multiply-adds (8×8×8: 2.0 µs against 2.5 µs
//     for js; 16×16×16: 2.9 against 18.7 µs), js below, where the call overhead of wasm dominates
//     (4×4×4: 2.0 µs against 0.4 µs). Medians of 7 runs under other load.
//   WKV-7: js. The gpu.js backends run the recurrence as several kernel launches per step and
//     were slower than js at B=1, T=256, H=4, N=64 (bench/wkv7.bench.ts, forward + backward):
//     webasm 1.4-1.6×, cpu 2.8-3.8×, headlessgl (Mesa llvmpipe) 3.6×, webgpu (Dawn on Mesa GLES)
//     9.3×; webasm was also 1.8× slower at B=4, H=12.
//   gpu.js cpu and webasm never join auto: they run on the same CPU as js and wasm with extra
//     per-call work. headlessgl can be backed by a real GPU, so when an X display is set and it
//     starts, auto times it once per op against the CPU choice on a representative size and
//     keeps the faster one.
//   webgpu is async and never serves the synchronous path.
// RWKVIFY_BACKEND (environment) or setBackend(name) replace auto with one fixed backend.
import { matmulReference } from './matmul-reference.js';
import { matmulWasm } from './wasm/index.js';
import { matmulGpuJs, matmulGpuJsAsync } from './gpujs/matmul.js';
import { GpuJsUnavailableError, startGpuJsSync, startGpuJsWebGpu, type GpuJsRuntime } from './gpujs/runtime.js';
import {
  wkv7BackwardGpuJs,
  wkv7BackwardGpuJsAsync,
  wkv7ForwardGpuJs,
  wkv7ForwardGpuJsAsync,
} from './gpujs/wkv7.js';
import type { FloatArray, MatmulGeometry } from './types.js';
import { wkv7Backward as wkv7BackwardJs, wkv7Forward as wkv7ForwardJs } from './wkv7.js';
import { wkv7BackwardReference, wkv7ForwardReference } from './wkv7-reference.js';
import type { Wkv7Dims, Wkv7Forward, Wkv7Gradients, Wkv7Inputs, Wkv7Saved } from './wkv7-types.js';

export const BACKEND_NAMES = ['reference', 'js', 'wasm', 'cpu', 'webasm', 'headlessgl', 'webgpu'] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];
export type BackendChoice = BackendName | 'auto';

/** Kernels of one backend with the synchronous contract of the engine. */
export interface SyncKernels {
  name: BackendName;
  matmul(a: FloatArray, b: FloatArray, out: FloatArray, g: MatmulGeometry): void;
  wkv7Forward(x: Wkv7Inputs, d: Wkv7Dims): Wkv7Forward;
  wkv7Backward(x: Wkv7Inputs, d: Wkv7Dims, saved: Wkv7Saved, dy: FloatArray, dsT: FloatArray | null): Wkv7Gradients;
  /** Frees device resources (gpu.js kernels and textures); absent where there are none. */
  destroy?(): void;
}

/** The same kernels returning Promises; the only way to run webgpu. */
export interface AsyncKernels {
  name: BackendName;
  matmul(a: FloatArray, b: FloatArray, out: FloatArray, g: MatmulGeometry): Promise<void>;
  wkv7Forward(x: Wkv7Inputs, d: Wkv7Dims): Promise<Wkv7Forward>;
  wkv7Backward(
    x: Wkv7Inputs,
    d: Wkv7Dims,
    saved: Wkv7Saved,
    dy: FloatArray,
    dsT: FloatArray | null,
  ): Promise<Wkv7Gradients>;
  /** Frees the backend's device resources (gpu.js kernels, textures, buffers). */
  destroy(): void;
}

/** A backend that was requested but cannot start here, with the reason and what to install. */
export class BackendUnavailableError extends Error {
  constructor(
    readonly backend: BackendName,
    readonly reason: string,
    readonly install = '',
  ) {
    super(`backend: ${backend} cannot start: ${reason}${install === '' ? '' : `. ${install}`}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Name handling

const ENV_VARIABLE = 'RWKVIFY_BACKEND';

function isFloat32(...arrays: FloatArray[]): boolean {
  return arrays.every((array) => array instanceof Float32Array);
}

/** Validates a backend name, throwing an error that lists the valid names. */
export function parseBackendChoice(name: string, source: string): BackendChoice {
  if (name === 'auto' || (BACKEND_NAMES as readonly string[]).includes(name)) return name as BackendChoice;
  throw new Error(`backend: unknown backend "${name}" (from ${source}); valid names: ${[...BACKEND_NAMES, 'auto'].join(', ')}`);
}

// ---------------------------------------------------------------------------------------------
// Synchronous backends

function withFloat64Fallback(
  name: BackendName,
  matmul32: (a: Float32Array, b: Float32Array, out: Float32Array, g: MatmulGeometry) => void,
  wkvForward32: SyncKernels['wkv7Forward'],
  wkvBackward32: SyncKernels['wkv7Backward'],
): SyncKernels {
  return {
    name,
    matmul(a, b, out, g) {
      if (a instanceof Float32Array && b instanceof Float32Array && out instanceof Float32Array) matmul32(a, b, out, g);
      else matmulReference(a, b, out, g);
    },
    wkv7Forward(x, d) {
      return x.r instanceof Float32Array ? wkvForward32(x, d) : wkv7ForwardJs(x, d);
    },
    wkv7Backward(x, d, saved, dy, dsT) {
      return x.r instanceof Float32Array ? wkvBackward32(x, d, saved, dy, dsT) : wkv7BackwardJs(x, d, saved, dy, dsT);
    },
  };
}

const referenceKernels: SyncKernels = {
  name: 'reference',
  matmul: matmulReference,
  wkv7Forward: wkv7ForwardReference,
  wkv7Backward: wkv7BackwardReference,
};

const jsKernels: SyncKernels = {
  name: 'js',
  matmul: matmulReference,
  wkv7Forward: (x, d) => wkv7ForwardJs(x, d),
  wkv7Backward: wkv7BackwardJs,
};

function startWasm(): SyncKernels {
  try {
    const out = new Float32Array(1);
    const g: MatmulGeometry = {
      batch: 1, M: 1, N: 1, K: 1, transA: false, transB: false,
      strideA: 1, strideB: 1, strideOut: 1, accumulate: false,
    };
    matmulWasm(new Float32Array([3]), new Float32Array([2]), out, g);
    if (out[0] !== 6) throw new Error(`probe 3·2 returned ${out[0]}`);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new BackendUnavailableError('wasm', message, 'Use Node 20 or later (WebAssembly SIMD)');
  }
  return withFloat64Fallback(
    'wasm',
    matmulWasm,
    (x, d) => wkv7ForwardJs(x, d),
    wkv7BackwardJs,
  );
}

function gpuJsSyncKernels(rt: GpuJsRuntime): SyncKernels {
  const kernels = withFloat64Fallback(
    rt.mode,
    (a, b, out, g) => matmulGpuJs(rt, a, b, out, g),
    (x, d) => wkv7ForwardGpuJs(rt, x, d),
    (x, d, saved, dy, dsT) => wkv7BackwardGpuJs(rt, x, d, saved, dy, dsT),
  );
  return { ...kernels, destroy: () => rt.destroy() };
}

function startGpuJsBackend(mode: 'cpu' | 'webasm' | 'headlessgl'): SyncKernels {
  try {
    return gpuJsSyncKernels(startGpuJsSync(mode));
  } catch (error) {
    if (error instanceof GpuJsUnavailableError) {
      throw new BackendUnavailableError(mode, error.reason, error.install);
    }
    throw error;
  }
}

const WEBGPU_SYNC_MESSAGE =
  'webgpu kernels return Promises (WebGPU has no synchronous readback), so webgpu cannot serve the ' +
  'synchronous engine; use `await startAsyncKernels("webgpu")` for async calls, or choose another backend ' +
  `(${BACKEND_NAMES.filter((n) => n !== 'webgpu').join(', ')}, auto)`;

const started = new Map<BackendName, SyncKernels>();
const failed = new Map<BackendName, BackendUnavailableError>();

/** Starts a backend for the synchronous path (once per process); throws BackendUnavailableError. */
export function startSyncKernels(name: BackendName): SyncKernels {
  const existing = started.get(name);
  if (existing !== undefined) return existing;
  const failure = failed.get(name);
  if (failure !== undefined) throw failure;

  try {
    const kernels = createSyncKernels(name);
    started.set(name, kernels);
    return kernels;
  } catch (error) {
    if (error instanceof BackendUnavailableError) failed.set(name, error);
    throw error;
  }
}

function createSyncKernels(name: BackendName): SyncKernels {
  switch (name) {
    case 'reference':
      return referenceKernels;
    case 'js':
      return jsKernels;
    case 'wasm':
      return startWasm();
    case 'cpu':
    case 'webasm':
    case 'headlessgl':
      return startGpuJsBackend(name);
    case 'webgpu':
      throw new BackendUnavailableError('webgpu', WEBGPU_SYNC_MESSAGE);
  }
}

/** Returns the started backend, or null with the failure recorded, without throwing. */
function tryStart(name: BackendName): SyncKernels | null {
  try {
    return startSyncKernels(name);
  } catch (error) {
    if (error instanceof BackendUnavailableError) return null;
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// Selection

let selected: BackendChoice | null = null;

/**
 * Fixes the backend of the synchronous kernels, overriding RWKVIFY_BACKEND. A named backend is
 * started at once, so a missing package or display is reported here and not at the first op.
 */
export function setBackend(name: string): BackendChoice {
  const choice = parseBackendChoice(name, 'setBackend');
  if (choice !== 'auto') startSyncKernels(choice);
  selected = choice;
  return choice;
}

/** Returns the backend choice in force: setBackend's, else RWKVIFY_BACKEND, else auto. */
export function backendChoice(): BackendChoice {
  if (selected !== null) return selected;
  const fromEnv = process.env[ENV_VARIABLE];
  if (fromEnv !== undefined && fromEnv !== '') return parseBackendChoice(fromEnv, ENV_VARIABLE);
  return 'auto';
}

/** Products below this many multiply-adds run on js, where wasm's call overhead dominates. */
const WASM_MIN_MACS = 512;

type AutoSlot = 'matmul-small' | 'matmul-large' | 'wkv7';
const autoPicks = new Map<AutoSlot, SyncKernels>();

function matmulSlot(g: MatmulGeometry): AutoSlot {
  return g.M * g.N * g.K * g.batch < WASM_MIN_MACS ? 'matmul-small' : 'matmul-large';
}

function cpuPick(slot: AutoSlot): SyncKernels {
  if (slot === 'matmul-large') return tryStart('wasm') ?? jsKernels;
  return jsKernels;
}

/** Returns the auto pick for a slot, timing headlessgl against the CPU pick once if it starts. */
function autoPick(slot: AutoSlot): SyncKernels {
  const cached = autoPicks.get(slot);
  if (cached !== undefined) return cached;

  let pick = cpuPick(slot);
  // headlessgl needs an X display; without one, auto skips it before loading gpu.js (0.2-0.5 s).
  const glPossible = slot !== 'matmul-small' && (process.env.DISPLAY ?? '') !== '';
  const gl = glPossible ? tryStart('headlessgl') : null;
  if (gl !== null && timeSlot(gl, slot) < timeSlot(pick, slot)) pick = gl;
  autoPicks.set(slot, pick);
  return pick;
}

/** Milliseconds of the faster of two runs of a representative float32 problem for a slot. */
function timeSlot(kernels: SyncKernels, slot: AutoSlot): number {
  const run = slot === 'wkv7' ? representativeWkv(kernels) : representativeMatmul(kernels);
  let best = Number.POSITIVE_INFINITY;
  for (let rep = 0; rep < 2; rep++) {
    const start = performance.now();
    run();
    best = Math.min(best, performance.now() - start);
  }
  return best;
}

function representativeMatmul(kernels: SyncKernels): () => void {
  const n = 256;
  const a = new Float32Array(n * n).fill(0.5);
  const b = new Float32Array(n * n).fill(0.25);
  const out = new Float32Array(n * n);
  const g: MatmulGeometry = {
    batch: 1, M: n, N: n, K: n, transA: false, transB: true,
    strideA: n * n, strideB: n * n, strideOut: n * n, accumulate: false,
  };
  return () => kernels.matmul(a, b, out, g);
}

function representativeWkv(kernels: SyncKernels): () => void {
  const d: Wkv7Dims = { B: 1, T: 16, H: 4, N: 64 };
  const length = d.B * d.T * d.H * d.N;
  const x: Wkv7Inputs = {
    r: new Float32Array(length).fill(0.1),
    w: new Float32Array(length).fill(0.9),
    k: new Float32Array(length).fill(0.1),
    v: new Float32Array(length).fill(0.1),
    a: new Float32Array(length).fill(-0.1),
    b: new Float32Array(length).fill(0.05),
    s0: null,
  };
  const dy = new Float32Array(length).fill(0.1);
  return () => {
    const forward = kernels.wkv7Forward(x, d);
    kernels.wkv7Backward(x, d, forward.saved, dy, null);
  };
}

/** Backend of the synchronous path for a matmul of this geometry. */
export function matmulKernels(g: MatmulGeometry): SyncKernels {
  const choice = backendChoice();
  return choice === 'auto' ? autoPick(matmulSlot(g)) : startSyncKernels(choice);
}

/** Backend of the synchronous path for WKV-7. */
export function wkv7Kernels(): SyncKernels {
  const choice = backendChoice();
  return choice === 'auto' ? autoPick('wkv7') : startSyncKernels(choice);
}

/**
 * Writes one line to stderr naming the backend in force (for auto: what each op uses and which
 * backends could not start). The CLI calls this once at start-up; library code never logs.
 */
export function logBackendChoice(stream: NodeJS.WritableStream = process.stderr): string {
  const line = describeBackendChoice();
  stream.write(`${line}\n`);
  return line;
}

/** Returns the one-line description that logBackendChoice writes. */
export function describeBackendChoice(): string {
  const choice = backendChoice();
  if (choice !== 'auto') return `backend: ${choice}`;

  const small = autoPick('matmul-small').name;
  const large = autoPick('matmul-large').name;
  const wkv = autoPick('wkv7').name;
  const unavailable = [...failed.values()].map((e) => `${e.backend} (${e.reason.split('. ')[0]})`);
  const notes = unavailable.length > 0 ? `; not available: ${unavailable.join(', ')}` : '';
  return `backend: auto (matmul < ${WASM_MIN_MACS} MACs: ${small}, larger: ${large}; wkv7: ${wkv})${notes}`;
}

/** Forgets the selection and auto picks, and stops every started backend; for tests. */
export function resetBackends(): void {
  selected = null;
  autoPicks.clear();
  failed.clear();
  for (const kernels of started.values()) kernels.destroy?.();
  started.clear();
}

// ---------------------------------------------------------------------------------------------
// Async kernels

/** Wraps a started synchronous backend; it stays started for the engine, so destroy does nothing. */
function asyncFromSync(kernels: SyncKernels): AsyncKernels {
  return {
    name: kernels.name,
    matmul: async (a, b, out, g) => kernels.matmul(a, b, out, g),
    wkv7Forward: async (x, d) => kernels.wkv7Forward(x, d),
    wkv7Backward: async (x, d, saved, dy, dsT) => kernels.wkv7Backward(x, d, saved, dy, dsT),
    destroy: () => undefined,
  };
}

async function startWebGpuKernels(): Promise<AsyncKernels> {
  let rt: GpuJsRuntime;
  try {
    rt = await startGpuJsWebGpu();
  } catch (error) {
    if (error instanceof GpuJsUnavailableError) {
      throw new BackendUnavailableError('webgpu', error.reason, error.install);
    }
    throw error;
  }
  return {
    name: 'webgpu',
    async matmul(a, b, out, g) {
      if (isFloat32(a, b, out)) await matmulGpuJsAsync(rt, a, b, out, g);
      else matmulReference(a, b, out, g);
    },
    wkv7Forward: async (x, d) => (x.r instanceof Float32Array ? wkv7ForwardGpuJsAsync(rt, x, d) : wkv7ForwardJs(x, d)),
    wkv7Backward: async (x, d, saved, dy, dsT) =>
      x.r instanceof Float32Array
        ? wkv7BackwardGpuJsAsync(rt, x, d, saved, dy, dsT)
        : wkv7BackwardJs(x, d, saved, dy, dsT),
    destroy: () => rt.destroy(),
  };
}

/**
 * Starts a backend under the async contract: webgpu natively, every other backend by wrapping its
 * synchronous kernels. Throws BackendUnavailableError with the reason and what to install.
 */
export async function startAsyncKernels(name: string): Promise<AsyncKernels> {
  const choice = parseBackendChoice(name, 'startAsyncKernels');
  if (choice === 'webgpu') return startWebGpuKernels();
  if (choice === 'auto') {
    throw new Error('backend: startAsyncKernels needs a named backend; auto applies to the synchronous kernels');
  }
  return asyncFromSync(startSyncKernels(choice));
}
