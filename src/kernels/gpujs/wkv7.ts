// WKV-7 recurrence on gpu.js: forward and backward as sequences of per-step kernels.
//
// gpu.js threads have no private arrays longer than 4 and return one value each, so a thread
// cannot hold a row of the state across steps the way the CUDA kernel does (one thread per row,
// N floats in registers). The state therefore stays on the device as a kernel result
// (pipeline: true, immutable: true), and each time step launches small kernels over it:
//   forward:  s = S·a, S ← S·diag(w) + s·bᵀ + v·kᵀ, y = S·r                  (3 launches)
//             with y collected on the device per checkpoint chunk (one readback per chunk)
//   backward: replay S_{t-1}, S_t from a checkpoint, then ds/dv, dr, da, dk/db/dw and
//             G ← (G + dy·rᵀ)·diag(w) + ds·aᵀ                               (2 + 6 launches)
// The time loop runs on the host, so no kernel loops over T and gpu.js's loopMaxIterations cap
// (default 1000, applied silently to loop bounds read from arguments) cannot truncate a sequence.
// Loops over the head size use the constant N, which compiles to a literal bound.
//
// Layouts inside the kernels (gpu.js indexes [z][y][x]; output sizes are given as [x, y, z]):
//   state S, G     [N, N, BH]: thread.x = key column j, thread.y = value row i, thread.z = b·H + h
//   vectors        [N, BH]:    thread.x = channel, thread.y = b·H + h
//   stacked grads  [N, BH, P]: thread.z picks which of P gradients the thread computes
// Every kernel takes at most 6 arrays, under WebGPU's default of 8 storage buffers per stage
// (one is the output). Arithmetic is float32 on every gpu.js backend.
import type { FloatArray } from '../types.js';
import { defaultCheckpointInterval } from '../wkv7.js';
import {
  checkWkv7BackwardInputs,
  checkWkv7Inputs,
  chunkCount,
  zerosLike,
  type Wkv7Dims,
  type Wkv7Forward,
  type Wkv7Gradients,
  type Wkv7Inputs,
  type Wkv7Saved,
} from '../wkv7-types.js';
import { type GpuJsRuntime, type Task, deviceInput, launch, readInto, release, runAsync, runSync } from './runtime.js';

// ---------------------------------------------------------------------------------------------
// Kernels

/** Uploads a (BH, N, N) state: output [N, N, BH]. */
const LOAD_STATE = `function (s) {
  return s[this.thread.z][this.thread.y][this.thread.x];
}`;

/** (S·vec)_i per head: output [N, BH], thread.x = row i. */
const ROW_DOT = `function (S, vec) {
  const bh = this.thread.y;
  const i = this.thread.x;
  let sum = 0;
  for (let j = 0; j < this.constants.N; j++) {
    sum += S[bh][i][j] * vec[bh][j];
  }
  return sum;
}`;

/**
 * Writes y = S·r for step `step` of a chunk into slot z = step of the chunk's outputs, copying
 * the other slots from Y: output [N, BH, L]. `step` arrives as a float scalar (gpu.js types
 * number arguments as floats), hence the comparison with a tolerance. Collecting a chunk on the device costs a copy of L
 * vectors per step but replaces L readbacks (each a full round trip on webgpu) with one.
 */
const APPEND_Y = `function (Y, S, r, step) {
  const bh = this.thread.y;
  const i = this.thread.x;
  if (Math.abs(this.thread.z - step) < 0.5) {
    let sum = 0;
    for (let j = 0; j < this.constants.N; j++) {
      sum += S[bh][i][j] * r[bh][j];
    }
    return sum;
  }
  return Y[this.thread.z][bh][i];
}`;

/** Zero-filled output of any size, the initial Y of a chunk. */
const ZEROS = `function () {
  return 0;
}`;

/** (Sᵀ·vec)_j per head: output [N, BH], thread.x = column j. */
const COL_DOT = `function (S, vec) {
  const bh = this.thread.y;
  const j = this.thread.x;
  let sum = 0;
  for (let i = 0; i < this.constants.N; i++) {
    sum += S[bh][i][j] * vec[bh][i];
  }
  return sum;
}`;

/** S_t = S_{t-1}·diag(w) + s·bᵀ + v·kᵀ: output [N, N, BH]. */
const STATE_STEP = `function (S, w, k, v, b, s) {
  const bh = this.thread.z;
  const i = this.thread.y;
  const j = this.thread.x;
  return S[bh][i][j] * w[bh][j] + s[bh][i] * b[bh][j] + v[bh][i] * k[bh][j];
}`;

/**
 * Row reductions of Ĝ = G + dy·rᵀ: output [N, BH, 2], z = 0 gives ds = Ĝ·b, z = 1 gives dv = Ĝ·k.
 */
const GRAD_ROWS = `function (G, dy, r, b, k) {
  const bh = this.thread.y;
  const i = this.thread.x;
  let sum = 0;
  for (let j = 0; j < this.constants.N; j++) {
    const g = G[bh][i][j] + dy[bh][i] * r[bh][j];
    if (this.thread.z === 0) {
      sum += g * b[bh][j];
    } else {
      sum += g * k[bh][j];
    }
  }
  return sum;
}`;

/**
 * Column reductions of Ĝ = G + dy·rᵀ: output [N, BH, 3], z = 0 gives dk = Ĝᵀ·v, z = 1 gives
 * db = Ĝᵀ·s, z = 2 gives dw_j = Σ_i Ĝ[i,j]·S_{t-1}[i,j].
 */
const GRAD_COLS = `function (G, dy, r, v, s, Sprev) {
  const bh = this.thread.y;
  const j = this.thread.x;
  let sum = 0;
  for (let i = 0; i < this.constants.N; i++) {
    const g = G[bh][i][j] + dy[bh][i] * r[bh][j];
    let other = 0;
    if (this.thread.z === 0) {
      other = v[bh][i];
    } else if (this.thread.z === 1) {
      other = s[bh][i];
    } else {
      other = Sprev[bh][i][j];
    }
    sum += g * other;
  }
  return sum;
}`;

/** da = S_{t-1}ᵀ·ds, reading ds from the GRAD_ROWS result: output [N, BH]. */
const GRAD_DA = `function (Sprev, dsdv) {
  const bh = this.thread.y;
  const j = this.thread.x;
  let sum = 0;
  for (let i = 0; i < this.constants.N; i++) {
    sum += Sprev[bh][i][j] * dsdv[0][bh][i];
  }
  return sum;
}`;

/** G_{t-1} = (G + dy·rᵀ)·diag(w) + ds·aᵀ: output [N, N, BH]. */
const GRAD_STATE_STEP = `function (G, dy, r, w, a, dsdv) {
  const bh = this.thread.z;
  const i = this.thread.y;
  const j = this.thread.x;
  return (G[bh][i][j] + dy[bh][i] * r[bh][j]) * w[bh][j] + dsdv[0][bh][i] * a[bh][j];
}`;

// ---------------------------------------------------------------------------------------------
// Host-side layout

/** Returns a (T, B, H, N) float32 copy of a (B, T, H, N) array, so each step's slice is contiguous. */
function toTimeMajor(x: FloatArray, d: Wkv7Dims): Float32Array {
  const { B, T, H, N } = d;
  const row = H * N;
  const out = new Float32Array(B * T * row); // (T, B, H, N)
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const src = (b * T + t) * row;
      const dst = (t * B + b) * row;
      for (let q = 0; q < row; q++) out[dst + q] = x[src + q];
    }
  }
  return out;
}

/** Copies a (T, B, H, N) float32 array back into a (B, T, H, N) array. */
function fromTimeMajor(tm: Float32Array, out: FloatArray, d: Wkv7Dims): void {
  const { B, T, H, N } = d;
  const row = H * N;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const src = (t * B + b) * row;
      const dst = (b * T + t) * row;
      for (let q = 0; q < row; q++) out[dst + q] = tm[src + q];
    }
  }
}

/** Per-token inputs in time-major float32, sliced per step as gpu.js inputs of size [N, BH]. */
class StepInputs {
  private readonly arrays: Record<string, Float32Array> = {};
  private readonly stride: number;

  constructor(
    source: Record<string, FloatArray>,
    private readonly d: Wkv7Dims,
  ) {
    for (const [name, array] of Object.entries(source)) this.arrays[name] = toTimeMajor(array, d);
    this.stride = d.B * d.H * d.N;
  }

  at(name: string, t: number): unknown {
    const array = this.arrays[name];
    return deviceInput(array.subarray(t * this.stride, (t + 1) * this.stride), [this.d.N, this.d.B * this.d.H]);
  }
}

/** The compiled kernels for one (N, BH). */
interface WkvKernels {
  zerosY: ReturnType<GpuJsRuntime['kernel']>;
  appendY: ReturnType<GpuJsRuntime['kernel']>;
  loadState: ReturnType<GpuJsRuntime['kernel']>;
  rowDot: ReturnType<GpuJsRuntime['kernel']>;
  colDot: ReturnType<GpuJsRuntime['kernel']>;
  stateStep: ReturnType<GpuJsRuntime['kernel']>;
  gradRows: ReturnType<GpuJsRuntime['kernel']>;
  gradCols: ReturnType<GpuJsRuntime['kernel']>;
  gradDa: ReturnType<GpuJsRuntime['kernel']>;
  gradStateStep: ReturnType<GpuJsRuntime['kernel']>;
}

function wkvKernels(rt: GpuJsRuntime, N: number, BH: number, chunkLength: number): WkvKernels {
  if (BH * N * N > rt.limits.maxArrayElements) {
    throw new Error(
      `gpujs wkv7: state of B·H = ${BH} heads of ${N}×${N} exceeds the ${rt.limits.maxArrayElements}-element ` +
        `limit of one array on ${rt.mode}; split the batch`,
    );
  }
  const state = { output: [N, N, BH] as [number, number, number], pipeline: true, immutable: true, constants: { N } };
  const vector = { output: [N, BH] as [number, number], pipeline: true, immutable: true, constants: { N } };
  const stacked = (parts: number) => ({
    output: [N, BH, parts] as [number, number, number],
    pipeline: true,
    immutable: true,
    constants: { N },
  });
  const key = (name: string) => `wkv7 ${name} N=${N} BH=${BH}`;
  return {
    zerosY: rt.kernel(`${key('zerosY')} L=${chunkLength}`, ZEROS, stacked(chunkLength)),
    appendY: rt.kernel(`${key('appendY')} L=${chunkLength}`, APPEND_Y, stacked(chunkLength)),
    loadState: rt.kernel(key('loadState'), LOAD_STATE, state),
    rowDot: rt.kernel(key('rowDot'), ROW_DOT, vector),
    colDot: rt.kernel(key('colDot'), COL_DOT, vector),
    stateStep: rt.kernel(key('stateStep'), STATE_STEP, state),
    gradRows: rt.kernel(key('gradRows'), GRAD_ROWS, stacked(2)),
    gradCols: rt.kernel(key('gradCols'), GRAD_COLS, stacked(3)),
    gradDa: rt.kernel(key('gradDa'), GRAD_DA, vector),
    gradStateStep: rt.kernel(key('gradStateStep'), GRAD_STATE_STEP, state),
  };
}

/** Uploads a (B, H, N, N) state (or zeros) as a device-resident [N, N, BH] result. */
function* uploadState(kernels: WkvKernels, state: FloatArray | null, d: Wkv7Dims): Task<unknown> {
  const BH = d.B * d.H;
  const values = state === null ? new Float32Array(BH * d.N * d.N) : Float32Array.from(state);
  return yield* launch(kernels.loadState, deviceInput(values, [d.N, d.N, BH]));
}

// ---------------------------------------------------------------------------------------------
// Forward

function* forwardTask(rt: GpuJsRuntime, x: Wkv7Inputs, d: Wkv7Dims): Task<Wkv7Forward> {
  checkWkv7Inputs(x, d);
  const { B, T, H, N } = d;
  const BH = B * H;
  const NN = N * N;
  const interval = defaultCheckpointInterval(T);
  const chunks = chunkCount(T, interval);
  const kernels = wkvKernels(rt, N, BH, interval);
  const steps = new StepInputs({ r: x.r, w: x.w, k: x.k, v: x.v, a: x.a, b: x.b }, d);

  const yTimeMajor = new Float32Array(T * BH * N); // (T, B, H, N)
  const checkpoints = new Float64Array(BH * chunks * NN); // (B, H, chunks, N, N)
  const stateBuffer = new Float32Array(BH * NN); // (B, H, N, N)

  const yChunk = new Float32Array(interval * BH * N); // (interval, B, H, N)
  let S = yield* uploadState(kernels, x.s0, d);
  let Y: unknown = null;
  for (let t = 0; t < T; t++) {
    const step = t % interval;
    if (step === 0) {
      yield* readInto(S, stateBuffer, 0);
      storeCheckpoint(stateBuffer, checkpoints, t / interval, chunks, NN, BH);
      Y = yield* launch(kernels.zerosY);
    }
    const s = yield* launch(kernels.rowDot, S, steps.at('a', t));
    const next = yield* launch(kernels.stateStep, S, steps.at('w', t), steps.at('k', t), steps.at('v', t), steps.at('b', t), s);
    release(S);
    release(s);
    S = next;

    const nextY = yield* launch(kernels.appendY, Y, S, steps.at('r', t), step);
    release(Y);
    Y = nextY;
    if (step === interval - 1 || t === T - 1) {
      yield* readInto(Y, yChunk, 0);
      const t0 = t - step;
      yTimeMajor.set(yChunk.subarray(0, (step + 1) * BH * N), t0 * BH * N);
      release(Y);
      Y = null;
    }
  }

  yield* readInto(S, stateBuffer, 0);
  release(S);

  const out = zerosLike(x.r, B * T * H * N); // (B, T, H, N)
  fromTimeMajor(yTimeMajor, out, d);
  const sT = zerosLike(x.r, BH * NN); // (B, H, N, N)
  sT.set(stateBuffer);
  const saved: Wkv7Saved = { dims: { ...d }, interval, checkpoints };
  return { y: out, sT, saved };
}

function storeCheckpoint(
  state: Float32Array,
  checkpoints: Float64Array,
  chunk: number,
  chunks: number,
  NN: number,
  BH: number,
): void {
  for (let head = 0; head < BH; head++) {
    checkpoints.set(state.subarray(head * NN, (head + 1) * NN), (head * chunks + chunk) * NN);
  }
}

function loadCheckpoint(checkpoints: Float64Array, chunk: number, chunks: number, NN: number, BH: number): Float32Array {
  const state = new Float32Array(BH * NN); // (B, H, N, N)
  for (let head = 0; head < BH; head++) {
    const src = (head * chunks + chunk) * NN;
    state.set(checkpoints.subarray(src, src + NN), head * NN);
  }
  return state;
}

// ---------------------------------------------------------------------------------------------
// Backward

interface TimeMajorGradients {
  dr: Float32Array; // (T, B, H, N)
  dw: Float32Array;
  dk: Float32Array;
  dv: Float32Array;
  da: Float32Array;
  db: Float32Array;
}

function* backwardTask(
  rt: GpuJsRuntime,
  x: Wkv7Inputs,
  d: Wkv7Dims,
  saved: Wkv7Saved,
  dy: FloatArray,
  dsT: FloatArray | null,
): Task<Wkv7Gradients> {
  checkWkv7BackwardInputs(x, d, saved, dy, dsT);
  const { B, T, H, N } = d;
  const BH = B * H;
  const NN = N * N;
  const vectorLength = BH * N;
  const interval = saved.interval;
  const chunks = chunkCount(T, interval);
  const kernels = wkvKernels(rt, N, BH, interval);
  const steps = new StepInputs({ r: x.r, w: x.w, k: x.k, v: x.v, a: x.a, b: x.b, dy }, d);

  const tm: TimeMajorGradients = {
    dr: new Float32Array(T * vectorLength),
    dw: new Float32Array(T * vectorLength),
    dk: new Float32Array(T * vectorLength),
    dv: new Float32Array(T * vectorLength),
    da: new Float32Array(T * vectorLength),
    db: new Float32Array(T * vectorLength),
  };
  const dsdvBuffer = new Float32Array(2 * vectorLength); // (2, B, H, N)
  const colsBuffer = new Float32Array(3 * vectorLength); // (3, B, H, N)

  let G = yield* uploadState(kernels, dsT, d);
  for (let c = chunks - 1; c >= 0; c--) {
    const t0 = c * interval;
    const t1 = Math.min(T, t0 + interval);

    // Replay the chunk: states[q] = S_{t0+q-1}, sVectors[q] = S_{t0+q-1}·a_{t0+q}.
    const states: unknown[] = [yield* uploadState(kernels, loadCheckpoint(saved.checkpoints, c, chunks, NN, BH), d)];
    const sVectors: unknown[] = [];
    for (let t = t0; t < t1; t++) {
      const prev = states[t - t0];
      const s = yield* launch(kernels.rowDot, prev, steps.at('a', t));
      sVectors.push(s);
      states.push(yield* launch(kernels.stateStep, prev, steps.at('w', t), steps.at('k', t), steps.at('v', t), steps.at('b', t), s));
    }

    for (let t = t1 - 1; t >= t0; t--) {
      const prev = states[t - t0];
      const cur = states[t - t0 + 1];
      const s = sVectors[t - t0];
      const dyt = steps.at('dy', t);
      const rVec = steps.at('r', t);
      const at = t * vectorLength;

      const dsdv = yield* launch(kernels.gradRows, G, dyt, rVec, steps.at('b', t), steps.at('k', t));
      const dr = yield* launch(kernels.colDot, cur, dyt);
      const da = yield* launch(kernels.gradDa, prev, dsdv);
      const cols = yield* launch(kernels.gradCols, G, dyt, rVec, steps.at('v', t), s, prev);
      const nextG = yield* launch(kernels.gradStateStep, G, dyt, rVec, steps.at('w', t), steps.at('a', t), dsdv);

      // NOTE: four readbacks per step; on webgpu each is a queue round trip, and they dominate
      // its backward time (bench/wkv7.bench.ts). Collecting them per chunk, as the forward does
      // for y, would remove most of that cost.
      yield* readInto(dr, tm.dr, at);
      yield* readInto(da, tm.da, at);
      yield* readInto(dsdv, dsdvBuffer, 0);
      tm.dv.set(dsdvBuffer.subarray(vectorLength), at);
      yield* readInto(cols, colsBuffer, 0);
      tm.dk.set(colsBuffer.subarray(0, vectorLength), at);
      tm.db.set(colsBuffer.subarray(vectorLength, 2 * vectorLength), at);
      tm.dw.set(colsBuffer.subarray(2 * vectorLength), at);

      for (const result of [G, dsdv, dr, da, cols, cur, s]) release(result);
      G = nextG;
    }
    release(states[0]);
  }

  const ds0Buffer = new Float32Array(BH * NN);
  yield* readInto(G, ds0Buffer, 0);
  release(G);

  const grads: Wkv7Gradients = {
    dr: zerosLike(x.r, B * T * H * N),
    dw: zerosLike(x.r, B * T * H * N),
    dk: zerosLike(x.r, B * T * H * N),
    dv: zerosLike(x.r, B * T * H * N),
    da: zerosLike(x.r, B * T * H * N),
    db: zerosLike(x.r, B * T * H * N),
    ds0: zerosLike(x.r, BH * NN),
  };
  for (const name of ['dr', 'dw', 'dk', 'dv', 'da', 'db'] as const) fromTimeMajor(tm[name], grads[name], d);
  grads.ds0.set(ds0Buffer);
  return grads;
}

// ---------------------------------------------------------------------------------------------
// Entry points

/** WKV-7 forward on a synchronous gpu.js backend (cpu, webasm, headlessgl). */
export function wkv7ForwardGpuJs(rt: GpuJsRuntime, x: Wkv7Inputs, d: Wkv7Dims): Wkv7Forward {
  return runSync(forwardTask(rt, x, d));
}

/** WKV-7 backward on a synchronous gpu.js backend; accepts `saved` from any backend. */
export function wkv7BackwardGpuJs(
  rt: GpuJsRuntime,
  x: Wkv7Inputs,
  d: Wkv7Dims,
  saved: Wkv7Saved,
  dy: FloatArray,
  dsT: FloatArray | null,
): Wkv7Gradients {
  return runSync(backwardTask(rt, x, d, saved, dy, dsT));
}

/** WKV-7 forward on any gpu.js backend, webgpu included. */
export function wkv7ForwardGpuJsAsync(rt: GpuJsRuntime, x: Wkv7Inputs, d: Wkv7Dims): Promise<Wkv7Forward> {
  return runAsync(forwardTask(rt, x, d));
}

/** WKV-7 backward on any gpu.js backend, webgpu included. */
export function wkv7BackwardGpuJsAsync(
  rt: GpuJsRuntime,
  x: Wkv7Inputs,
  d: Wkv7Dims,
  saved: Wkv7Saved,
  dy: FloatArray,
  dsT: FloatArray | null,
): Promise<Wkv7Gradients> {
  return runAsync(backwardTask(rt, x, d, saved, dy, dsT));
}
