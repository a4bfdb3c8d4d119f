// Generation speed of student and teacher at long contexts. The student prefills its context in
// chunks that carry the recurrent state (so the (T, V) logits of one chunk are the largest array)
// and then generates one token per step from its fixed-size state. The teacher uses its key/value
// cache while the context and the generated tokens fit in its n_positions. Beyond that it slides
// the window, so every new token re-runs the last n_positions tokens without a cache, because
// GPT-2's learned positions cannot extend past the limit.
import { noGrad } from '../autograd/index.js';
import type { EvaluationCheckpoint } from '../distill/eval.js';
import type { Gpt2Model } from '../models/gpt2/index.js';
import type { PositionMode, StudentModel, StudentState } from '../models/student/index.js';

/** Tokens per student prefill chunk. */
const PREFILL_CHUNK = 256;

/** Untimed tokens generated before each measurement, so JIT warm-up is not counted. */
const WARM_UP_TOKENS = 2;

export type TeacherSpeedMethod = 'kv-cache' | 'sliding-window';

export interface SpeedRow {
  context: number;
  /** Milliseconds per generated token, student in RNN mode. */
  studentMs: number;
  teacherMs: number;
  /** kv-cache: one cached step per token; sliding-window: each token re-runs the last n_positions tokens. */
  teacherMethod: TeacherSpeedMethod;
}

function argmax(values: ArrayLike<number>, offset: number, length: number): number {
  let best = 0;
  for (let i = 1; i < length; i++) if (values[offset + i] > values[offset + best]) best = i;
  return best;
}

/** Cuts a context of `length` tokens from `tokens`, repeating them when there are fewer. */
export function contextOf(tokens: ArrayLike<number>, length: number): number[] {
  return Array.from({ length }, (_, i) => tokens[i % tokens.length]);
}

/** Runs the student over `context` in chunks and returns its state after the last token. */
function prefillStudent(student: StudentModel, context: readonly number[], positions: PositionMode): StudentState {
  let state: StudentState | null = null;
  for (let start = 0; start < context.length; start += PREFILL_CHUNK) {
    const chunk = context.slice(start, start + PREFILL_CHUNK);
    state = noGrad(() => student.forward(chunk, 1, chunk.length, { state, positions })).state;
  }
  if (state === null) throw new Error('prefillStudent: the context is empty; pass at least one token');
  return state;
}

/** Milliseconds per generated token after a prefilled context, student in RNN mode. */
export function studentMsPerToken(student: StudentModel, context: readonly number[], tokens: number, positions: PositionMode): number {
  const V = student.config.teacher.vocabSize;
  let state = prefillStudent(student, context, positions);
  let id = context[context.length - 1];
  let started = performance.now();
  for (let i = 0; i < WARM_UP_TOKENS + tokens; i++) {
    if (i === WARM_UP_TOKENS) started = performance.now();
    const step = student.step(id, state, positions);
    state = step.state;
    id = argmax(step.logits.data, 0, V);
  }
  return (performance.now() - started) / tokens;
}

/** Milliseconds per generated token with the key/value cache; the context plus tokens must fit in n_positions. */
function teacherCachedMsPerToken(teacher: Gpt2Model, context: readonly number[], tokens: number): number {
  const V = teacher.config.vocabSize;
  const cache = teacher.createCache();
  const prefill = noGrad(() => teacher.forward(context, 1, context.length, { cache })); // (1, T, V)
  let id = argmax(prefill.data, (context.length - 1) * V, V);
  let started = performance.now();
  for (let i = 0; i < WARM_UP_TOKENS + tokens; i++) {
    if (i === WARM_UP_TOKENS) started = performance.now();
    const logits = noGrad(() => teacher.forward([id], 1, 1, { cache })); // (1, 1, V)
    id = argmax(logits.data, 0, V);
  }
  return (performance.now() - started) / tokens;
}

/** Milliseconds per generated token when each token re-runs the last n_positions tokens of the context. */
function teacherSlidingMsPerToken(teacher: Gpt2Model, context: readonly number[], tokens: number): number {
  const limit = teacher.config.nPositions;
  const V = teacher.config.vocabSize;
  const window = context.slice(-limit);
  let started = performance.now();
  for (let i = 0; i < WARM_UP_TOKENS + tokens; i++) {
    if (i === WARM_UP_TOKENS) started = performance.now();
    const logits = noGrad(() => teacher.forward(window, 1, window.length)); // (1, T, V)
    window.push(argmax(logits.data, (window.length - 1) * V, V));
    if (window.length > limit) window.shift();
  }
  return (performance.now() - started) / tokens;
}

/**
 * Measures both models at each context length, on contexts cut from `tokens`. `checkpoint` runs
 * before each context, so a stop request takes effect between measurements.
 */
export async function measureSpeed(
  student: StudentModel,
  teacher: Gpt2Model,
  tokens: ArrayLike<number>,
  contexts: readonly number[],
  timingTokens: number,
  positions: PositionMode,
  log: (line: string) => void,
  checkpoint: EvaluationCheckpoint = async () => {},
): Promise<SpeedRow[]> {
  const limit = teacher.config.nPositions;
  const rows: SpeedRow[] = [];
  for (const context of contexts) {
    await checkpoint();
    const ids = contextOf(tokens, context);
    const studentMs = studentMsPerToken(student, ids, timingTokens, positions);
    const fits = context + WARM_UP_TOKENS + timingTokens <= limit;
    const teacherMethod: TeacherSpeedMethod = fits ? 'kv-cache' : 'sliding-window';
    const teacherMs = fits ? teacherCachedMsPerToken(teacher, ids, timingTokens) : teacherSlidingMsPerToken(teacher, ids, timingTokens);
    log(`speed: context ${context}: student ${studentMs.toFixed(2)} ms/token, teacher ${teacherMs.toFixed(2)} ms/token (${teacherMethod})`);
    rows.push({ context, studentMs, teacherMs, teacherMethod });
  }
  return rows;
}
