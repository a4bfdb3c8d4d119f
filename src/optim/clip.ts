import type { Tensor } from '../tensor/tensor.js';

/**
 * Scales all gradients so their global L2 norm is at most `maxNorm`, as
 * torch.nn.utils.clip_grad_norm_ does. Returns the norm before clipping; a non-finite norm is
 * returned without touching the gradients, so the caller can stop and report the step.
 */
export function clipGradNorm(params: readonly Tensor[], maxNorm: number): number {
  if (!(maxNorm > 0)) throw new RangeError(`clipGradNorm: maxNorm must be > 0, got ${maxNorm}`);
  let sq = 0;
  for (const p of params) {
    if (p.grad === null) continue;
    for (const g of p.grad.data) sq += g * g;
  }
  const norm = Math.sqrt(sq);
  if (!Number.isFinite(norm)) return norm;
  // 1e-6 keeps the factor finite for a zero norm, as PyTorch does.
  const factor = maxNorm / (norm + 1e-6);
  if (factor < 1) {
    for (const p of params) {
      if (p.grad === null) continue;
      const g = p.grad.data;
      for (let i = 0; i < g.length; i++) g[i] *= factor;
    }
  }
  return norm;
}
