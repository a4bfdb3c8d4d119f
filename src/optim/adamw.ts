// AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization"), as torch.optim.AdamW
// computes it: the decay multiplies the weight by (1 − lr·wd) before the Adam update, separately
// from the gradient statistics.
import type { Tensor } from '../tensor/tensor.js';

export interface ParamGroup {
  params: Tensor[];
  /** Learning rate of this group; `step(lrScale)` multiplies it. */
  lr: number;
  /** Decoupled weight decay coefficient (0 = none). */
  weightDecay: number;
}

export interface AdamWOptions {
  betas?: [number, number];
  eps?: number;
}

/** Serializable optimiser state, for checkpoints and exact resumption. */
export interface AdamWState {
  step: number;
  moments: Array<{ m: number[]; v: number[] } | null>;
}

export class AdamW {
  readonly groups: ParamGroup[];
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  private stepCount = 0;
  private readonly m = new Map<Tensor, Float64Array>();
  private readonly v = new Map<Tensor, Float64Array>();

  constructor(groups: ParamGroup[], options: AdamWOptions = {}) {
    [this.beta1, this.beta2] = options.betas ?? [0.9, 0.999];
    this.eps = options.eps ?? 1e-8;
    for (const [i, g] of groups.entries()) {
      if (!(g.lr >= 0) || !(g.weightDecay >= 0)) {
        throw new RangeError(`AdamW: group ${i} needs lr ≥ 0 and weightDecay ≥ 0, got lr=${g.lr} weightDecay=${g.weightDecay}`);
      }
    }
    this.groups = groups;
  }

  get steps(): number {
    return this.stepCount;
  }

  /**
   * Applies one update to every parameter that has a gradient. `lrScale` multiplies each group's
   * learning rate (a schedule factor); parameters without a gradient are skipped.
   */
  step(lrScale = 1): void {
    this.stepCount++;
    const t = this.stepCount;
    const correction1 = 1 - Math.pow(this.beta1, t);
    const correction2 = 1 - Math.pow(this.beta2, t);
    for (const group of this.groups) {
      const lr = group.lr * lrScale;
      for (const p of group.params) {
        if (p.grad === null) continue;
        const g = p.grad.data;
        const w = p.data;
        const m = this.moment(this.m, p);
        const v = this.moment(this.v, p);
        const decay = 1 - lr * group.weightDecay;
        for (let i = 0; i < w.length; i++) {
          m[i] = this.beta1 * m[i] + (1 - this.beta1) * g[i];
          v[i] = this.beta2 * v[i] + (1 - this.beta2) * g[i] * g[i];
          const mHat = m[i] / correction1;
          const vHat = v[i] / correction2;
          w[i] = w[i] * decay - (lr * mHat) / (Math.sqrt(vHat) + this.eps);
        }
      }
    }
  }

  zeroGrad(): void {
    for (const group of this.groups) for (const p of group.params) p.zeroGrad();
  }

  private moment(store: Map<Tensor, Float64Array>, p: Tensor): Float64Array {
    let s = store.get(p);
    if (s === undefined) {
      s = new Float64Array(p.size);
      store.set(p, s);
    }
    return s;
  }

  /** Returns the step count and moments in parameter order (groups flattened). */
  getState(): AdamWState {
    const moments = this.groups.flatMap((g) =>
      g.params.map((p) => {
        const m = this.m.get(p);
        const v = this.v.get(p);
        return m === undefined || v === undefined ? null : { m: Array.from(m), v: Array.from(v) };
      }),
    );
    return { step: this.stepCount, moments };
  }

  /** Restores a state from getState(); the parameter list must be the same. */
  setState(state: AdamWState): void {
    const params = this.groups.flatMap((g) => g.params);
    if (state.moments.length !== params.length) {
      throw new Error(`AdamW.setState: state has ${state.moments.length} parameters but the optimiser has ${params.length}`);
    }
    this.stepCount = state.step;
    params.forEach((p, i) => {
      const entry = state.moments[i];
      if (entry === null) return;
      if (entry.m.length !== p.size) {
        throw new Error(`AdamW.setState: parameter ${i} ("${p.name}") has ${p.size} elements but the state has ${entry.m.length}`);
      }
      this.m.set(p, Float64Array.from(entry.m));
      this.v.set(p, Float64Array.from(entry.v));
    });
  }
}
