// Code shared by the command line's model adapters. Every model class is a Module with a
// next-token loss, so training and parameter access delegate unchanged. The recurrent models
// (RWKV-7 and the student) compute per-token logits with the same step loop.

import type { Module } from '../nn/module.js';
import type { Tensor } from '../tensor/index.js';

/** A model the adapters can wrap: a Module with the next-token loss the trainer calls. */
export interface AdaptableModel extends Module {
  loss(ids: Int32Array, targets: Int32Array, B: number, T: number): Tensor;
}

/** Delegates the trainer's part of LanguageModel to the wrapped model. */
export abstract class ModelAdapter<M extends AdaptableModel> {
  constructor(readonly model: M) {}

  loss(ids: Int32Array, targets: Int32Array, B: number, T: number): Tensor {
    return this.model.loss(ids, targets, B, T);
  }
  parameters(): Tensor[] {
    return this.model.parameters();
  }
  namedParameters(): Array<[string, Tensor]> {
    return this.model.namedParameters();
  }
  train(flag = true): unknown {
    return this.model.train(flag);
  }
  parameterCount(): number {
    return this.model.parameterCount();
  }
}

/** One recurrent step: the next-token logits (1, V) and the state after the token. */
export type RecurrentStep<S> = (id: number, state: S | null) => { logits: Tensor; state: S };

/** Feeds `ids` one at a time from an empty state and returns the logits (T, V), row-major. */
export function recurrentLogitsOf<S>(ids: readonly number[], vocabSize: number, step: RecurrentStep<S>): Float32Array {
  const out = new Float32Array(ids.length * vocabSize);
  let state: S | null = null;
  ids.forEach((id, t) => {
    const result = step(id, state); // logits (1, V)
    out.set(result.logits.data, t * vocabSize);
    state = result.state;
  });
  return out;
}
