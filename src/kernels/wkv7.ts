// Fast CPU WKV-7 recurrence: the same maths as wkv7-reference.ts, organised for speed.
//
// Every row i of the state evolves on its own given the shared vectors of one step:
//   s_i = Σ_j S[i,j]·a[j]
//   S[i,j] ← S[i,j]·w[j] + s_i·b[j] + v[i]·k[j]
//   y[i]  = Σ_j S[i,j]·r[j]
// so one pass over a row does the whole update, and the backward is row-wise too (each row of
// G = ∂L/∂S needs only its own ds_i = Σ_j G[i,j]·b[j]). State and accumulators are float64 (JS
// arithmetic is float64 anyway, so this costs nothing and keeps float32 outputs within one rounding
// of the float64 reference). All scratch memory is allocated once per call, none per step.
//
// How the backward gets the earlier states: checkpoints every `interval` steps, and a replay of
// the forward inside one chunk at a time (exact, no division). With interval = ceil(√T) the saved
// memory is about √T states per head instead of T, and the replay costs one extra forward.
// Measured with throwaway scripts on this 2-core machine (B=1, H=4, N=64, T=1024, float32 inputs,
// second of two runs):
//   store every state (interval 1):  134 MB saved, forward+backward 1.04 s
//   checkpoints + replay (√T = 32):  4.2 MB saved, forward+backward 0.70 s (writing 134 MB of
//                                    states costs more than the extra forward)
//   back-stepping, S_{t-1} = (S_t − s·bᵀ − v·kᵀ)·diag(w)⁻¹ in float32 over a 16-step chunk (the
//   official CUDA scheme): relative state error 5e-7 with w ≈ 0.9, 2.4e-4 with w ≈ 0.55, and
//   1e28 with w ≈ 0.001, which the input check allows since w only has to lie in (0, 1].
// Replay needs 1/32 of the memory at T = 1024, was faster here and is exact for every decay, so it
// is the default.
import type { FloatArray } from './types.js';
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
} from './wkv7-types.js';

export interface Wkv7Options {
  /** Steps between saved states; default ceil(√T), the memory minimum of checkpoints + replay. */
  checkpointInterval?: number;
}

/** Returns the checkpoint interval that minimises checkpoint + replay-buffer memory, ceil(√T). */
export function defaultCheckpointInterval(T: number): number {
  return Math.max(1, Math.ceil(Math.sqrt(T)));
}

// ---------------------------------------------------------------------------------------------
// Per-step vectors

/** The six per-token vectors of one (b, t, h), copied into float64 scratch. */
interface StepVectors {
  r: Float64Array; // (N)
  w: Float64Array; // (N)
  k: Float64Array; // (N)
  v: Float64Array; // (N)
  a: Float64Array; // (N)
  b: Float64Array; // (N)
}

function allocStepVectors(N: number): StepVectors {
  return {
    r: new Float64Array(N),
    w: new Float64Array(N),
    k: new Float64Array(N),
    v: new Float64Array(N),
    a: new Float64Array(N),
    b: new Float64Array(N),
  };
}

function loadStepVectors(x: Wkv7Inputs, offset: number, N: number, out: StepVectors): void {
  for (let j = 0; j < N; j++) {
    out.r[j] = x.r[offset + j];
    out.w[j] = x.w[offset + j];
    out.k[j] = x.k[offset + j];
    out.v[j] = x.v[offset + j];
    out.a[j] = x.a[offset + j];
    out.b[j] = x.b[offset + j];
  }
}

// ---------------------------------------------------------------------------------------------
// Forward

/**
 * Applies one step, reading S_{t-1} from `prev` and writing S_t into `next` (which may be the same
 * memory, since each row is read fully before it is written). Writes s_i = Σ_j S_{t-1}[i,j]·a[j]
 * into s[sOffset + i] and, when `y` is given, y_i into y[yOffset + i].
 */
function stepForward(
  prev: Float64Array,
  prevOffset: number,
  next: Float64Array,
  nextOffset: number,
  vec: StepVectors,
  N: number,
  s: Float64Array,
  sOffset: number,
  y: FloatArray | null,
  yOffset: number,
): void {
  const { r, w, k, v, a, b } = vec;
  for (let i = 0; i < N; i++) {
    const src = prevOffset + i * N;
    const dst = nextOffset + i * N;

    let si = 0;
    for (let j = 0; j < N; j++) si += prev[src + j] * a[j];
    s[sOffset + i] = si;

    const vi = v[i];
    let yi = 0;
    for (let j = 0; j < N; j++) {
      const value = prev[src + j] * w[j] + si * b[j] + vi * k[j];
      next[dst + j] = value;
      yi += value * r[j];
    }
    if (y !== null) y[yOffset + i] = yi;
  }
}

/** Runs the recurrence, saving the state before every `interval`-th step for the backward. */
export function wkv7Forward(x: Wkv7Inputs, d: Wkv7Dims, options: Wkv7Options = {}): Wkv7Forward {
  checkWkv7Inputs(x, d);
  const { B, T, H, N } = d;
  const interval = options.checkpointInterval ?? defaultCheckpointInterval(T);
  if (!Number.isInteger(interval) || interval < 1) {
    throw new Error(`wkv7Forward: checkpointInterval must be a positive integer, got ${interval}`);
  }
  const chunks = chunkCount(T, interval);
  const NN = N * N;

  const y = zerosLike(x.r, B * T * H * N); // (B, T, H, N)
  const sT = zerosLike(x.r, B * H * NN); // (B, H, N, N)
  const checkpoints = new Float64Array(B * H * chunks * NN); // (B, H, chunks, N, N)
  const S = new Float64Array(NN); // (N, N)
  const s = new Float64Array(N); // (N)
  const vec = allocStepVectors(N);

  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const head = b * H + h;
      if (x.s0 === null) S.fill(0);
      else for (let q = 0; q < NN; q++) S[q] = x.s0[head * NN + q];

      for (let t = 0; t < T; t++) {
        if (t % interval === 0) checkpoints.set(S, (head * chunks + t / interval) * NN);
        const o = ((b * T + t) * H + h) * N;
        loadStepVectors(x, o, N, vec);
        stepForward(S, 0, S, 0, vec, N, s, 0, y, o);
      }
      for (let q = 0; q < NN; q++) sT[head * NN + q] = S[q];
    }
  }

  const saved: Wkv7Saved = { dims: { ...d }, interval, checkpoints };
  return { y, sT, saved };
}

// ---------------------------------------------------------------------------------------------
// Backward

/** Scratch buffers of the backward, allocated once per call. */
interface BackwardScratch {
  states: Float64Array; // (interval + 1, N, N): S_{t0-1} .. S_{t1-1} of the current chunk
  sAll: Float64Array; // (interval, N): s_t = S_{t-1}·a_t of the current chunk
  G: Float64Array; // (N, N): ∂L/∂S_t
  vec: StepVectors;
  dy: Float64Array; // (N)
  dr: Float64Array; // (N)
  dk: Float64Array; // (N)
  db: Float64Array; // (N)
  dw: Float64Array; // (N)
  da: Float64Array; // (N)
}

function allocBackwardScratch(interval: number, N: number): BackwardScratch {
  return {
    states: new Float64Array((interval + 1) * N * N),
    sAll: new Float64Array(interval * N),
    G: new Float64Array(N * N),
    vec: allocStepVectors(N),
    dy: new Float64Array(N),
    dr: new Float64Array(N),
    dk: new Float64Array(N),
    db: new Float64Array(N),
    dw: new Float64Array(N),
    da: new Float64Array(N),
  };
}

/** Rebuilds S_{t0-1} .. S_{t1-1} and s_{t0} .. s_{t1-1} of one chunk from its checkpoint. */
function replayChunk(
  x: Wkv7Inputs,
  d: Wkv7Dims,
  b: number,
  h: number,
  t0: number,
  t1: number,
  checkpoint: Float64Array,
  scratch: BackwardScratch,
): void {
  const { T, H, N } = d;
  const NN = N * N;
  const { states, sAll, vec } = scratch;
  states.set(checkpoint, 0);

  for (let t = t0; t < t1; t++) {
    const step = t - t0;
    loadStepVectors(x, ((b * T + t) * H + h) * N, N, vec);
    stepForward(states, step * NN, states, (step + 1) * NN, vec, N, sAll, step * N, null, 0);
  }
}

/**
 * Runs one backward step over every row: turns G = ∂L/∂S_t into ∂L/∂S_{t-1} in place and writes
 * the token gradients of step t into the scratch vectors (dr, dk, db, dw, da) and dv[dvOffset + i].
 */
function stepBackward(
  scratch: BackwardScratch,
  prevOffset: number,
  curOffset: number,
  sOffset: number,
  N: number,
  dv: FloatArray,
  dvOffset: number,
): void {
  const { states, sAll, G, vec, dy } = scratch;
  const { r, w, k, v, a, b } = vec;
  const { dr, dk, db, dw, da } = scratch;
  dr.fill(0);
  dk.fill(0);
  db.fill(0);
  dw.fill(0);
  da.fill(0);

  for (let i = 0; i < N; i++) {
    const row = i * N;
    const prev = prevOffset + row;
    const cur = curOffset + row;
    const dyi = dy[i];
    const vi = v[i];
    const si = sAll[sOffset + i];

    // Pass 1: G += dy·rᵀ, then every reduction over G's row and columns.
    let dvi = 0;
    let dsi = 0;
    for (let j = 0; j < N; j++) {
      const g = G[row + j] + dyi * r[j];
      G[row + j] = g;
      dvi += g * k[j];
      dsi += g * b[j];
      dr[j] += states[cur + j] * dyi;
      dk[j] += g * vi;
      db[j] += g * si;
      dw[j] += g * states[prev + j];
    }
    dv[dvOffset + i] = dvi;

    // Pass 2: da = S_{t-1}ᵀ·ds, and G ← G·diag(w) + ds·aᵀ.
    for (let j = 0; j < N; j++) {
      da[j] += states[prev + j] * dsi;
      G[row + j] = G[row + j] * w[j] + dsi * a[j];
    }
  }
}

/** Back-propagates through the recurrence, replaying the forward one chunk at a time. */
export function wkv7Backward(
  x: Wkv7Inputs,
  d: Wkv7Dims,
  saved: Wkv7Saved,
  dy: FloatArray,
  dsT: FloatArray | null,
): Wkv7Gradients {
  checkWkv7BackwardInputs(x, d, saved, dy, dsT);
  const { B, T, H, N } = d;
  const NN = N * N;
  const interval = saved.interval;
  const chunks = chunkCount(T, interval);

  const grads: Wkv7Gradients = {
    dr: zerosLike(x.r, B * T * H * N),
    dw: zerosLike(x.r, B * T * H * N),
    dk: zerosLike(x.r, B * T * H * N),
    dv: zerosLike(x.r, B * T * H * N),
    da: zerosLike(x.r, B * T * H * N),
    db: zerosLike(x.r, B * T * H * N),
    ds0: zerosLike(x.r, B * H * NN),
  };
  const scratch = allocBackwardScratch(interval, N);
  const { G } = scratch;

  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const head = b * H + h;
      if (dsT === null) G.fill(0);
      else for (let q = 0; q < NN; q++) G[q] = dsT[head * NN + q];

      for (let c = chunks - 1; c >= 0; c--) {
        const t0 = c * interval;
        const t1 = Math.min(T, t0 + interval);
        const checkpoint = saved.checkpoints.subarray((head * chunks + c) * NN, (head * chunks + c + 1) * NN);
        replayChunk(x, d, b, h, t0, t1, checkpoint, scratch);

        for (let t = t1 - 1; t >= t0; t--) {
          const step = t - t0;
          const o = ((b * T + t) * H + h) * N;
          loadStepVectors(x, o, N, scratch.vec);
          for (let i = 0; i < N; i++) scratch.dy[i] = dy[o + i];

          stepBackward(scratch, step * NN, (step + 1) * NN, step * N, N, grads.dv, o);
          storeTokenGradients(scratch, grads, o, N);
        }
      }
      for (let q = 0; q < NN; q++) grads.ds0[head * NN + q] = G[q];
    }
  }
  return grads;
}

function storeTokenGradients(scratch: BackwardScratch, grads: Wkv7Gradients, offset: number, N: number): void {
  for (let j = 0; j < N; j++) {
    grads.dr[offset + j] = scratch.dr[j];
    grads.dk[offset + j] = scratch.dk[j];
    grads.db[offset + j] = scratch.db[j];
    grads.dw[offset + j] = scratch.dw[j];
    grads.da[offset + j] = scratch.da[j];
  }
}
