// Plain WKV-7 recurrence in float64: the oracle for every faster kernel. It stores every state,
// writes each formula as a separate loop and favours obviousness over speed.
//
// Forward, per batch entry and head (S: N×N, rows = value index i, columns = key index j):
//   s_t = S_{t-1}·a_t
//   S_t = S_{t-1}·diag(w_t) + s_t·b_tᵀ + v_t·k_tᵀ
//   y_t = S_t·r_t
//
// Backward for t = T..1 with G = ∂L/∂S_t, starting from G = ∂L/∂S_T (zero unless given):
//   G   += dy_t·r_tᵀ
//   dr_t = S_tᵀ·dy_t
//   dk_t = Gᵀ·v_t,   dv_t = G·k_t
//   ds_t = G·b_t,    db_t = Gᵀ·s_t
//   dw_t[j] = Σ_i G[i,j]·S_{t-1}[i,j],   da_t = S_{t-1}ᵀ·ds_t
//   G    = G·diag(w_t) + ds_t·a_tᵀ          (G is now ∂L/∂S_{t-1})
import type { FloatArray } from './types.js';
import {
  checkWkv7BackwardInputs,
  checkWkv7Inputs,
  zerosLike,
  type Wkv7Dims,
  type Wkv7Forward,
  type Wkv7Gradients,
  type Wkv7Inputs,
  type Wkv7Saved,
} from './wkv7-types.js';

/** Offset of token (b, t, h) in a (B, T, H, N) array. */
function tokenOffset(d: Wkv7Dims, b: number, t: number, h: number): number {
  return ((b * d.T + t) * d.H + h) * d.N;
}

/** Offset of head (b, h) in a (B, H, N, N) state array. */
function stateOffset(d: Wkv7Dims, b: number, h: number): number {
  return (b * d.H + h) * d.N * d.N;
}

/** Offset of the state before step t of head (b, h) in the (B, H, T, N, N) list of all states. */
function allStatesOffset(d: Wkv7Dims, b: number, h: number, t: number): number {
  return ((b * d.H + h) * d.T + t) * d.N * d.N;
}

/** Runs the recurrence and keeps the state before every step (saved.interval = 1). */
export function wkv7ForwardReference(x: Wkv7Inputs, d: Wkv7Dims): Wkv7Forward {
  checkWkv7Inputs(x, d);
  const { B, T, H, N } = d;
  const y = zerosLike(x.r, B * T * H * N); // (B, T, H, N)
  const sT = zerosLike(x.r, B * H * N * N); // (B, H, N, N)
  const states = new Float64Array(B * H * T * N * N); // (B, H, T, N, N)

  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const S = new Float64Array(N * N); // (N, N)
      if (x.s0 !== null) S.set(x.s0.subarray(stateOffset(d, b, h), stateOffset(d, b, h) + N * N));

      for (let t = 0; t < T; t++) {
        states.set(S, allStatesOffset(d, b, h, t));
        const o = tokenOffset(d, b, t, h);

        const s = new Float64Array(N); // s_t = S_{t-1}·a_t
        for (let i = 0; i < N; i++) {
          for (let j = 0; j < N; j++) s[i] += S[i * N + j] * x.a[o + j];
        }

        for (let i = 0; i < N; i++) {
          for (let j = 0; j < N; j++) {
            S[i * N + j] = S[i * N + j] * x.w[o + j] + s[i] * x.b[o + j] + x.v[o + i] * x.k[o + j];
          }
        }

        for (let i = 0; i < N; i++) {
          let yi = 0;
          for (let j = 0; j < N; j++) yi += S[i * N + j] * x.r[o + j];
          y[o + i] = yi;
        }
      }
      sT.set(S, stateOffset(d, b, h));
    }
  }

  const saved: Wkv7Saved = { dims: { ...d }, interval: 1, checkpoints: states };
  return { y, sT, saved };
}

/** Returns the (B, H, T, N, N) list of states before every step, reusing `saved` when it has it. */
function allStates(x: Wkv7Inputs, d: Wkv7Dims, saved: Wkv7Saved): Float64Array {
  if (saved.interval === 1) return saved.checkpoints;
  return wkv7ForwardReference(x, d).saved.checkpoints;
}

/** Back-propagates through the recurrence with every state at hand. */
export function wkv7BackwardReference(
  x: Wkv7Inputs,
  d: Wkv7Dims,
  saved: Wkv7Saved,
  dy: FloatArray,
  dsT: FloatArray | null,
): Wkv7Gradients {
  checkWkv7BackwardInputs(x, d, saved, dy, dsT);
  const { B, T, H, N } = d;
  const states = allStates(x, d, saved); // (B, H, T, N, N)
  const finalState = wkv7ForwardReference(x, d).sT; // (B, H, N, N)

  const grads: Wkv7Gradients = {
    dr: zerosLike(x.r, B * T * H * N),
    dw: zerosLike(x.r, B * T * H * N),
    dk: zerosLike(x.r, B * T * H * N),
    dv: zerosLike(x.r, B * T * H * N),
    da: zerosLike(x.r, B * T * H * N),
    db: zerosLike(x.r, B * T * H * N),
    ds0: zerosLike(x.r, B * H * N * N),
  };

  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const G = new Float64Array(N * N); // (N, N), ∂L/∂S_t
      if (dsT !== null) G.set(dsT.subarray(stateOffset(d, b, h), stateOffset(d, b, h) + N * N));

      for (let t = T - 1; t >= 0; t--) {
        const o = tokenOffset(d, b, t, h);
        const prev = states.subarray(allStatesOffset(d, b, h, t), allStatesOffset(d, b, h, t) + N * N);
        const cur =
          t === T - 1
            ? finalState.subarray(stateOffset(d, b, h), stateOffset(d, b, h) + N * N)
            : states.subarray(allStatesOffset(d, b, h, t + 1), allStatesOffset(d, b, h, t + 1) + N * N);

        // G += dy·rᵀ
        for (let i = 0; i < N; i++) {
          for (let j = 0; j < N; j++) G[i * N + j] += dy[o + i] * x.r[o + j];
        }

        // dr = S_tᵀ·dy
        for (let j = 0; j < N; j++) {
          let sum = 0;
          for (let i = 0; i < N; i++) sum += cur[i * N + j] * dy[o + i];
          grads.dr[o + j] = sum;
        }

        // s = S_{t-1}·a (recomputed from the stored state)
        const s = new Float64Array(N);
        for (let i = 0; i < N; i++) {
          for (let j = 0; j < N; j++) s[i] += prev[i * N + j] * x.a[o + j];
        }

        // dk = Gᵀ·v, db = Gᵀ·s, dw = Σ_i G ⊙ S_{t-1}
        for (let j = 0; j < N; j++) {
          let dk = 0;
          let db = 0;
          let dw = 0;
          for (let i = 0; i < N; i++) {
            dk += G[i * N + j] * x.v[o + i];
            db += G[i * N + j] * s[i];
            dw += G[i * N + j] * prev[i * N + j];
          }
          grads.dk[o + j] = dk;
          grads.db[o + j] = db;
          grads.dw[o + j] = dw;
        }

        // dv = G·k, ds = G·b
        const ds = new Float64Array(N);
        for (let i = 0; i < N; i++) {
          let dv = 0;
          for (let j = 0; j < N; j++) {
            dv += G[i * N + j] * x.k[o + j];
            ds[i] += G[i * N + j] * x.b[o + j];
          }
          grads.dv[o + i] = dv;
        }

        // da = S_{t-1}ᵀ·ds
        for (let j = 0; j < N; j++) {
          let sum = 0;
          for (let i = 0; i < N; i++) sum += prev[i * N + j] * ds[i];
          grads.da[o + j] = sum;
        }

        // G ← G·diag(w) + ds·aᵀ
        for (let i = 0; i < N; i++) {
          for (let j = 0; j < N; j++) G[i * N + j] = G[i * N + j] * x.w[o + j] + ds[i] * x.a[o + j];
        }
      }
      grads.ds0.set(G, stateOffset(d, b, h));
    }
  }
  return grads;
}
