// The RWKV-7 WKV recurrence as a differentiable op, on top of the kernel layer.
//
// Legend: B = batch, T = time steps, H = heads, N = head size.
//   S_t = S_{t−1}·diag(w_t) + (S_{t−1}·a_t)·b_tᵀ + v_t·k_tᵀ,   y_t = S_t·r_t
// The op has two results, the per-token outputs y and the final state. The tape records one
// output per op, so the op returns both packed in one flat tensor and `wkv7` splits it with slice
// and reshape; the packed op's backward then receives dy and d(final state) together.
import { record } from '../../autograd/tape.js';
import { wkv7Backward, wkv7Forward } from '../../kernels/wkv7.js';
import { allocate } from '../dtype.js';
import { fmt, ShapeError } from '../shape.js';
import { Tensor } from '../tensor.js';
import { reshape, slice } from './shape-ops.js';
import { checkSameDtype } from './util.js';

export interface Wkv7Result {
  y: Tensor; // (B, T, H, N)
  state: Tensor; // (B, H, N, N), the state after the last step
}

/**
 * Runs the recurrence over (B, T, H, N) inputs from `s0` (null = zero state). `w` is the
 * multiplicative decay in (0, 1]. Gradients flow to all six inputs and to `s0`, so a sequence
 * split into chunks with the state carried trains exactly like one pass.
 */
export function wkv7(r: Tensor, w: Tensor, k: Tensor, v: Tensor, a: Tensor, b: Tensor, s0: Tensor | null = null): Wkv7Result {
  const inputs = [r, w, k, v, a, b];
  for (const t of inputs) {
    if (t.rank !== 4 || t.shape.some((d, i) => d !== r.shape[i])) {
      throw new ShapeError(`wkv7: r, w, k, v, a, b must share one (B, T, H, N) shape, got ${inputs.map((x) => fmt(x.shape)).join(' ')}`);
    }
  }
  const [B, T, H, N] = r.shape;
  if (s0 !== null && fmt(s0.shape) !== fmt([B, H, N, N])) {
    throw new ShapeError(`wkv7: s0 must have shape [${B},${H},${N},${N}] (B, H, N, N), got ${fmt(s0.shape)}`);
  }
  checkSameDtype('wkv7', ...inputs, ...(s0 === null ? [] : [s0]));

  const dims = { B, T, H, N };
  const kernelInputs = { r: r.data, w: w.data, k: k.data, v: v.data, a: a.data, b: b.data, s0: s0?.data ?? null };
  const forward = wkv7Forward(kernelInputs, dims);
  const yLength = B * T * H * N;
  const packedData = allocate(r.dtype, yLength + B * H * N * N);
  packedData.set(forward.y, 0);
  packedData.set(forward.sT, yLength);
  const packed = new Tensor(packedData, [packedData.length]); // (B·T·H·N + B·H·N·N)

  const opInputs = s0 === null ? inputs : [...inputs, s0];
  record('wkv7', packed, opInputs, (g) => {
    const dy = g.subarray(0, yLength);
    const dsT = g.subarray(yLength);
    const grads = wkv7Backward(kernelInputs, dims, forward.saved, dy, dsT);
    const list = [grads.dr, grads.dw, grads.dk, grads.dv, grads.da, grads.db];
    return s0 === null ? list : [...list, grads.ds0];
  });

  const y = reshape(slice(packed, 0, 0, yLength), [B, T, H, N]); // (B, T, H, N)
  const state = reshape(slice(packed, 0, yLength, packedData.length), [B, H, N, N]); // (B, H, N, N)
  return { y, state };
}
