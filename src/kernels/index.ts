// Public entry of the kernel layer: the tensor ops call these functions and never a backend
// directly, so the backend choice stays a kernel-layer concern. Every function here is
// synchronous; backend.ts explains why and how the async (webgpu) kernels are reached.
import { matmulKernels, wkv7Kernels } from './backend.js';
import type { FloatArray, MatmulGeometry } from './types.js';
import type { Wkv7Dims, Wkv7Forward, Wkv7Gradients, Wkv7Inputs, Wkv7Saved } from './wkv7-types.js';

export type { FloatArray, MatmulGeometry } from './types.js';
export type { Wkv7Dims, Wkv7Forward, Wkv7Gradients, Wkv7Inputs, Wkv7Saved } from './wkv7-types.js';
export {
  BACKEND_NAMES,
  BackendUnavailableError,
  backendChoice,
  describeBackendChoice,
  logBackendChoice,
  resetBackends,
  setBackend,
  startAsyncKernels,
  type AsyncKernels,
  type BackendChoice,
  type BackendName,
  type SyncKernels,
} from './backend.js';

/** Computes `out (+)= op(A) · op(B)` for every batch entry on the selected backend. */
export function matmul(a: FloatArray, b: FloatArray, out: FloatArray, g: MatmulGeometry): void {
  matmulKernels(g).matmul(a, b, out, g);
}

/** Runs the WKV-7 recurrence on the selected backend; see wkv7-types.ts for the contract. */
export function wkv7Forward(x: Wkv7Inputs, d: Wkv7Dims): Wkv7Forward {
  return wkv7Kernels().wkv7Forward(x, d);
}

/** Back-propagates through the WKV-7 recurrence; `saved` may come from any backend's forward. */
export function wkv7Backward(
  x: Wkv7Inputs,
  d: Wkv7Dims,
  saved: Wkv7Saved,
  dy: FloatArray,
  dsT: FloatArray | null,
): Wkv7Gradients {
  return wkv7Kernels().wkv7Backward(x, d, saved, dy, dsT);
}
