// Public entry of the kernel layer: the tensor ops call these functions and never a backend
// directly, so the backend choice stays a kernel-layer concern.
import { matmulReference } from './matmul-reference.js';
import type { FloatArray, MatmulGeometry } from './types.js';

export type { FloatArray, MatmulGeometry } from './types.js';

/** Computes `out (+)= op(A) · op(B)` for every batch entry on the selected backend. */
export function matmul(a: FloatArray, b: FloatArray, out: FloatArray, g: MatmulGeometry): void {
  matmulReference(a, b, out, g);
}
