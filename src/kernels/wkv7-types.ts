// Contract shared by every WKV-7 kernel (reference, fast CPU, gpu.js): shapes, saved state and the
// input checks run before any kernel starts.
//
// Legend: B = batch, T = time steps, H = heads, N = head size. Per-token tensors are (B, T, H, N)
// row-major; states are (B, H, N, N) with S[i][j]: i = value row, j = key column.
//
// Recurrence per batch entry and head, y computed after the update:
//   S_t = S_{t-1}·diag(w_t) + (S_{t-1}·a_t)·b_tᵀ + v_t·k_tᵀ,   y_t = S_t·r_t
import type { FloatArray } from './types.js';

export interface Wkv7Dims {
  B: number;
  T: number;
  H: number;
  N: number;
}

/** Kernel inputs; `w` is the multiplicative decay in (0, 1], not its logarithm. */
export interface Wkv7Inputs {
  r: FloatArray; // (B, T, H, N)
  w: FloatArray; // (B, T, H, N)
  k: FloatArray; // (B, T, H, N)
  v: FloatArray; // (B, T, H, N)
  a: FloatArray; // (B, T, H, N)
  b: FloatArray; // (B, T, H, N)
  /** Initial state; null means the zero state. */
  s0: FloatArray | null; // (B, H, N, N)
}

/**
 * State that a forward pass keeps for its backward: the state before the first step of every
 * chunk of `interval` steps. The backward replays the forward inside one chunk at a time from these
 * checkpoints. Every backend writes and reads this one format, so a forward on one backend can be
 * differentiated on another.
 */
export interface Wkv7Saved {
  dims: Wkv7Dims;
  /** Steps per chunk (the last chunk may be shorter). */
  interval: number;
  /** States before steps 0, interval, 2·interval, ...; float64 whatever the input dtype. */
  checkpoints: Float64Array; // (B, H, chunkCount, N, N)
}

export interface Wkv7Forward {
  y: FloatArray; // (B, T, H, N)
  sT: FloatArray; // (B, H, N, N), state after the last step
  saved: Wkv7Saved;
}

export interface Wkv7Gradients {
  dr: FloatArray; // (B, T, H, N)
  dw: FloatArray; // (B, T, H, N)
  dk: FloatArray; // (B, T, H, N)
  dv: FloatArray; // (B, T, H, N)
  da: FloatArray; // (B, T, H, N)
  db: FloatArray; // (B, T, H, N)
  /** Gradient of the initial state; computed even when `s0` was null (the zero state). */
  ds0: FloatArray; // (B, H, N, N)
}

export type Wkv7ForwardFn = (x: Wkv7Inputs, d: Wkv7Dims) => Wkv7Forward;
export type Wkv7BackwardFn = (
  x: Wkv7Inputs,
  d: Wkv7Dims,
  saved: Wkv7Saved,
  dy: FloatArray,
  dsT: FloatArray | null,
) => Wkv7Gradients;

const TOKEN_INPUTS = ['r', 'w', 'k', 'v', 'a', 'b'] as const;

/** Returns the number of chunks a sequence of T steps splits into. */
export function chunkCount(T: number, interval: number): number {
  return Math.ceil(T / interval);
}

/** Returns a zero-filled array of the same dtype as `like`. */
export function zerosLike(like: FloatArray, length: number): FloatArray {
  return like instanceof Float32Array ? new Float32Array(length) : new Float64Array(length);
}

function dtypeName(x: FloatArray): string {
  return x instanceof Float32Array ? 'float32' : 'float64';
}

/** Rejects dims that are not positive integers. */
export function checkWkv7Dims(d: Wkv7Dims): void {
  for (const key of ['B', 'T', 'H', 'N'] as const) {
    const value = d[key];
    if (!Number.isInteger(value) || value < 1) {
      throw new Error(`wkv7: dimension ${key} must be a positive integer, got ${value}`);
    }
  }
}

function checkArray(name: string, x: FloatArray | null | undefined, expected: number, dtype: string): void {
  if (!(x instanceof Float32Array) && !(x instanceof Float64Array)) {
    throw new Error(`wkv7: ${name} must be a Float32Array or Float64Array, got ${x === null ? 'null' : typeof x}`);
  }
  if (x.length !== expected) {
    throw new Error(`wkv7: ${name} has length ${x.length} but the dims need ${expected}`);
  }
  if (dtypeName(x) !== dtype) {
    throw new Error(`wkv7: ${name} is ${dtypeName(x)} but r is ${dtype}; pass every array in one dtype`);
  }
}

/**
 * Rejects inputs of the wrong length or dtype, and decays that are not finite or lie outside
 * (0, 1]. A decay above 1 makes the state grow without bound, and a log-space decay (≤ 0) passed
 * by mistake would silently produce garbage.
 */
export function checkWkv7Inputs(x: Wkv7Inputs, d: Wkv7Dims): void {
  checkWkv7Dims(d);
  const tokenLength = d.B * d.T * d.H * d.N;
  const stateLength = d.B * d.H * d.N * d.N;
  const dtype = x.r instanceof Float64Array ? 'float64' : 'float32';

  for (const name of TOKEN_INPUTS) {
    checkArray(name, x[name], tokenLength, dtype);
  }
  if (x.s0 !== null) checkArray('s0', x.s0, stateLength, dtype);

  const w = x.w;
  for (let i = 0; i < w.length; i++) {
    const value = w[i];
    if (!(value > 0 && value <= 1)) {
      throw new Error(
        `wkv7: decay w[${i}] = ${value} is outside (0, 1]; pass the multiplicative decay ` +
          `exp(-e^-0.5·sigmoid(z)), not its logarithm`,
      );
    }
  }
}

/** Rejects backward inputs (upstream gradients, saved state) that do not match the forward. */
export function checkWkv7BackwardInputs(
  x: Wkv7Inputs,
  d: Wkv7Dims,
  saved: Wkv7Saved,
  dy: FloatArray,
  dsT: FloatArray | null,
): void {
  checkWkv7Inputs(x, d);
  const dtype = dtypeName(x.r);
  checkArray('dy', dy, d.B * d.T * d.H * d.N, dtype);
  if (dsT !== null) checkArray('dsT', dsT, d.B * d.H * d.N * d.N, dtype);

  const s = saved.dims;
  if (s.B !== d.B || s.T !== d.T || s.H !== d.H || s.N !== d.N) {
    throw new Error(
      `wkv7: saved state is for B=${s.B} T=${s.T} H=${s.H} N=${s.N} but the backward got ` +
        `B=${d.B} T=${d.T} H=${d.H} N=${d.N}; pass the saved object of the matching forward`,
    );
  }
  if (!Number.isInteger(saved.interval) || saved.interval < 1) {
    throw new Error(`wkv7: saved.interval must be a positive integer, got ${saved.interval}`);
  }
  const expected = d.B * d.H * chunkCount(d.T, saved.interval) * d.N * d.N;
  if (saved.checkpoints.length !== expected) {
    throw new Error(
      `wkv7: saved.checkpoints has length ${saved.checkpoints.length} but interval ${saved.interval} ` +
        `needs ${expected}`,
    );
  }
}
