// Student text generation: a NextLogits function that carries the recurrent state between calls,
// for the shared sampling loop in ../sampling.ts.
import { noGrad } from '../../autograd/index.js';
import { generate, type GenerateOptions, type NextLogits } from '../sampling.js';
import type { PositionMode } from './config.js';
import type { StudentModel, StudentState } from './model.js';

/**
 * Returns a NextLogits function for one sequence (B = 1). Each call reads only the tokens the
 * state has not seen: the prompt in one sequence-mode pass, then one token per call (RNN mode,
 * constant cost per token). A context that does not extend the previous one starts again from
 * the zero state, so unrelated calls never share state.
 */
export function studentNextLogits(model: StudentModel, positions?: PositionMode): NextLogits {
  const V = model.config.teacher.vocabSize;
  let state: StudentState | null = null;
  let seen: number[] = [];

  return (context) => {
    if (context.length === 0) throw new RangeError('studentNextLogits: the context is empty; give at least one token');
    if (!extendsSeen(seen, context)) {
      state = null;
      seen = [];
    }
    const fresh = context.slice(seen.length);
    const out = noGrad(() => model.forward(fresh, 1, fresh.length, { state, positions })); // logits (1, T, V)
    state = out.state;
    seen = [...context];
    return out.logits.data.slice((fresh.length - 1) * V, fresh.length * V); // (V)
  };
}

/** True when `context` starts with every token already read and adds at least one. */
function extendsSeen(seen: readonly number[], context: readonly number[]): boolean {
  if (seen.length === 0 || context.length <= seen.length) return false;
  for (let i = 0; i < seen.length; i++) if (seen[i] !== context[i]) return false;
  return true;
}

/** Generates tokens after `prompt` from the zero state; returns only the new tokens. */
export function generateStudent(model: StudentModel, prompt: readonly number[], options: GenerateOptions): number[] {
  return generate(studentNextLogits(model), prompt, options);
}
