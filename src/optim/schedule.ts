// Learning-rate schedules used by the conversion recipes (ARWKV and RADLADS training code).
// All return the learning rate at optimiser step `step` (0-based).

export type ScheduleKind = 'constant' | 'cosine' | 'quarter-cosine' | 'exponential' | 'linear';

export interface Schedule {
  kind: ScheduleKind;
  /** Learning rate after warm-up. */
  lr0: number;
  /** Final learning rate (ignored by 'constant'). */
  lr1: number;
  warmupSteps: number;
  totalSteps: number;
}

/**
 * Warm-up factor 0.01 + 0.99·step/warmup for step < warmup, then 1. Both recipes start from 1%
 * rather than 0 so the first step already moves the weights.
 */
export function warmupFactor(step: number, warmupSteps: number): number {
  if (warmupSteps <= 0 || step >= warmupSteps) return 1;
  return 0.01 + (0.99 * step) / warmupSteps;
}

/**
 * Progress p ∈ [0, 1] through the decay phase after warm-up; 0 during warm-up, so warm-up always
 * ramps toward lr0 even when the run is shorter than its warm-up.
 */
function progress(step: number, s: Schedule): number {
  if (step < s.warmupSteps) return 0;
  const span = s.totalSteps - s.warmupSteps;
  if (span <= 0) return 1;
  return Math.min(1, Math.max(0, (step - s.warmupSteps + 1) / span));
}

/** Returns the learning rate at `step`. */
export function learningRate(step: number, s: Schedule): number {
  if (!(s.lr0 >= 0) || !(s.lr1 >= 0)) throw new RangeError(`learningRate: lr0 and lr1 must be ≥ 0, got ${s.lr0} and ${s.lr1}`);
  const p = progress(step, s);
  let lr: number;
  switch (s.kind) {
    case 'constant':
      lr = s.lr0;
      break;
    case 'linear':
      lr = s.lr1 + (s.lr0 - s.lr1) * (1 - p);
      break;
    case 'cosine':
      // Full half-period cosine from lr0 down to lr1.
      lr = s.lr1 + 0.5 * (s.lr0 - s.lr1) * (1 + Math.cos(Math.PI * p));
      break;
    case 'quarter-cosine':
      // RADLADS' "cos": a quarter period, lr1 + (lr0 − lr1)·cos(π/2·p); it decays slowly at first.
      lr = s.lr1 + (s.lr0 - s.lr1) * Math.cos((Math.PI / 2) * p);
      break;
    case 'exponential':
      // ARWKV: geometric interpolation lr0·(lr1/lr0)^p.
      lr = s.lr0 === 0 ? 0 : s.lr0 * Math.exp(Math.log(s.lr1 / s.lr0) * p);
      break;
  }
  return lr * warmupFactor(step, s.warmupSteps);
}
