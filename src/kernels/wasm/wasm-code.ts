// Instruction encoders for the WebAssembly subset the matmul and softmax-row kernels use. Each encoder returns the
// bytes of one expression: operands first (they push values on the stack), then the opcode, so
// nested calls read like the expression they compute: `i32.add(local.get(x), i32.const(4))`.
// Opcodes: WebAssembly Core Specification 2.0 (chapter 5.4), the fixed-width SIMD proposal
// (merged into 2.0) and the threads proposal (atomics, shared memory).
import { sleb128, uleb128, ValType } from './wasm-binary.js';

/** Encoded instructions. */
export type Code = readonly number[];

const SIMD_PREFIX = 0xfd;
const ATOMIC_PREFIX = 0xfe;
const BLOCK_TYPE_EMPTY = 0x40;

/** Concatenates instruction sequences. */
export function seq(...parts: Code[]): Code {
  return parts.flat();
}

/** Memory immediate: alignment as log2 of bytes, and a constant byte offset. */
function memarg(alignLog2: number, offset: number): number[] {
  return [...uleb128(alignLog2), ...uleb128(offset)];
}

function simd(opcode: number): number[] {
  return [SIMD_PREFIX, ...uleb128(opcode)];
}

function atomic(opcode: number): number[] {
  return [ATOMIC_PREFIX, ...uleb128(opcode)];
}

export const local = {
  get: (index: number): Code => [0x20, ...uleb128(index)],
  set: (index: number, value: Code): Code => [...value, 0x21, ...uleb128(index)],
  tee: (index: number, value: Code): Code => [...value, 0x22, ...uleb128(index)],
};

export const i32 = {
  const: (value: number): Code => [0x41, ...sleb128(value | 0)],
  eqz: (a: Code): Code => [...a, 0x45],
  eq: (a: Code, b: Code): Code => [...a, ...b, 0x46],
  ne: (a: Code, b: Code): Code => [...a, ...b, 0x47],
  ltS: (a: Code, b: Code): Code => [...a, ...b, 0x48],
  ltU: (a: Code, b: Code): Code => [...a, ...b, 0x49],
  gtU: (a: Code, b: Code): Code => [...a, ...b, 0x4b],
  leU: (a: Code, b: Code): Code => [...a, ...b, 0x4d],
  geU: (a: Code, b: Code): Code => [...a, ...b, 0x4f],
  add: (a: Code, b: Code): Code => [...a, ...b, 0x6a],
  sub: (a: Code, b: Code): Code => [...a, ...b, 0x6b],
  mul: (a: Code, b: Code): Code => [...a, ...b, 0x6c],
  divU: (a: Code, b: Code): Code => [...a, ...b, 0x6e],
  remU: (a: Code, b: Code): Code => [...a, ...b, 0x70],
  and: (a: Code, b: Code): Code => [...a, ...b, 0x71],
  or: (a: Code, b: Code): Code => [...a, ...b, 0x72],
  shl: (a: Code, b: Code): Code => [...a, ...b, 0x74],
  shrU: (a: Code, b: Code): Code => [...a, ...b, 0x76],
  /** Unsigned minimum, built from `select` because wasm has no integer min. */
  minU: (a: Code, b: Code, scratchA: number, scratchB: number): Code => [
    ...local.tee(scratchA, a),
    ...local.tee(scratchB, b),
    ...i32Cmp(0x49, local.get(scratchA), local.get(scratchB)),
    0x1b, // select: a if a < b, else b
  ],
  load: (address: Code, offset = 0): Code => [...address, 0x28, ...memarg(2, offset)],
  store: (address: Code, value: Code, offset = 0): Code => [...address, ...value, 0x36, ...memarg(2, offset)],
  atomicLoad: (address: Code, offset = 0): Code => [...address, ...atomic(0x10), ...memarg(2, offset)],
  atomicStore: (address: Code, value: Code, offset = 0): Code => [
    ...address,
    ...value,
    ...atomic(0x17),
    ...memarg(2, offset),
  ],
  /** Atomically adds `value` at `address` and returns the old value. */
  atomicAdd: (address: Code, value: Code, offset = 0): Code => [...address, ...value, ...atomic(0x1e), ...memarg(2, offset)],
};

function i32Cmp(opcode: number, a: Code, b: Code): Code {
  return [...a, ...b, opcode];
}

export const f32 = {
  const: (value: number): Code => {
    const bytes = new Uint8Array(new Float32Array([value]).buffer);
    return [0x43, ...bytes];
  },
  load: (address: Code, offset = 0): Code => [...address, 0x2a, ...memarg(2, offset)],
  store: (address: Code, value: Code, offset = 0): Code => [...address, ...value, 0x38, ...memarg(2, offset)],
  add: (a: Code, b: Code): Code => [...a, ...b, 0x92],
  sub: (a: Code, b: Code): Code => [...a, ...b, 0x93],
  mul: (a: Code, b: Code): Code => [...a, ...b, 0x94],
  /** IEEE maximum: NaN if either operand is NaN. */
  max: (a: Code, b: Code): Code => [...a, ...b, 0x97],
  eq: (a: Code, b: Code): Code => [...a, ...b, 0x5b],
  /** Rounds a float64 to the nearest float32. */
  demoteF64: (a: Code): Code => [...a, 0xb6],
};

export const f64 = {
  const: (value: number): Code => {
    const bytes = new Uint8Array(new Float64Array([value]).buffer);
    return [0x44, ...bytes];
  },
  load: (address: Code, offset = 0): Code => [...address, 0x2b, ...memarg(3, offset)],
  store: (address: Code, value: Code, offset = 0): Code => [...address, ...value, 0x39, ...memarg(3, offset)],
  add: (a: Code, b: Code): Code => [...a, ...b, 0xa0],
  /** Widens a float32 exactly. */
  promoteF32: (a: Code): Code => [...a, 0xbb],
};

/** `select`: `ifNonZero` when `condition` (an i32) is not 0, else `ifZero`; both operands are evaluated. */
export function select(ifNonZero: Code, ifZero: Code, condition: Code): Code {
  return [...ifNonZero, ...ifZero, ...condition, 0x1b];
}

export const v128 = {
  /** Loads 16 bytes; the alignment hint is 4 bytes because packed panels are only float-aligned. */
  load: (address: Code, offset = 0): Code => [...address, ...simd(0x00), ...memarg(2, offset)],
  store: (address: Code, value: Code, offset = 0): Code => [...address, ...value, ...simd(0x0b), ...memarg(2, offset)],
  /** Loads one float and copies it into all four lanes. */
  load32Splat: (address: Code, offset = 0): Code => [...address, ...simd(0x09), ...memarg(2, offset)],
  zero: (): Code => [...simd(0x0c), ...new Array<number>(16).fill(0)],
  /**
   * Picks four 32-bit lanes from the eight of `a` (lanes 0-3) and `b` (lanes 4-7), encoded as the
   * byte shuffle i8x16.shuffle.
   */
  shuffle32: (a: Code, b: Code, lanes: readonly [number, number, number, number]): Code => [
    ...a,
    ...b,
    ...simd(0x0d),
    ...lanes.flatMap((lane) => [4 * lane, 4 * lane + 1, 4 * lane + 2, 4 * lane + 3]),
  ],
  and: (a: Code, b: Code): Code => [...a, ...b, ...simd(0x4e)],
  /** `a & ~b`. */
  andNot: (a: Code, b: Code): Code => [...a, ...b, ...simd(0x4f)],
  or: (a: Code, b: Code): Code => [...a, ...b, ...simd(0x50)],
  /** Takes each bit from `a` where `mask` has a 1, else from `b`. */
  bitselect: (a: Code, b: Code, mask: Code): Code => [...a, ...b, ...mask, ...simd(0x52)],
};

export const f32x4 = {
  add: (a: Code, b: Code): Code => [...a, ...b, ...simd(0xe4)],
  sub: (a: Code, b: Code): Code => [...a, ...b, ...simd(0xe5)],
  mul: (a: Code, b: Code): Code => [...a, ...b, ...simd(0xe6)],
  div: (a: Code, b: Code): Code => [...a, ...b, ...simd(0xe7)],
  /** IEEE minimum per lane: NaN if either lane is NaN; -0 is below +0. */
  min: (a: Code, b: Code): Code => [...a, ...b, ...simd(0xe8)],
  /** IEEE maximum per lane: NaN if either lane is NaN; +0 is above -0. */
  max: (a: Code, b: Code): Code => [...a, ...b, ...simd(0xe9)],
  /** Pseudo-minimum `b < a ? b : a` per lane: one instruction on x64, and a NaN in `a` passes through. */
  pmin: (a: Code, b: Code): Code => [...a, ...b, ...simd(0xea)],
  /** Pseudo-maximum `a < b ? b : a` per lane: one instruction on x64, and a NaN in `a` passes through. */
  pmax: (a: Code, b: Code): Code => [...a, ...b, ...simd(0xeb)],
  /** Rounds each lane to the nearest integer, ties to even. */
  nearest: (a: Code): Code => [...a, ...simd(0x6a)],
  /** Lane masks: all ones where the comparison holds, else zero (false for NaN lanes). */
  eq: (a: Code, b: Code): Code => [...a, ...b, ...simd(0x41)],
  lt: (a: Code, b: Code): Code => [...a, ...b, ...simd(0x43)],
  gt: (a: Code, b: Code): Code => [...a, ...b, ...simd(0x44)],
  /** Converts signed 32-bit integer lanes to floats. */
  convertI32x4S: (a: Code): Code => [...a, ...simd(0xfa)],
  /** Rounds the two float64 lanes to float32 lanes 0-1 and zeroes lanes 2-3. */
  demoteF64x2Zero: (a: Code): Code => [...a, ...simd(0x5e)],
  extractLane: (a: Code, lane: number): Code => [...a, ...simd(0x1f), lane],
  splat: (a: Code): Code => [...a, ...simd(0x13)],
  /** `a * b + c` from the relaxed-SIMD proposal; the rounding may be fused or not. */
  relaxedMadd: (a: Code, b: Code, c: Code): Code => [...a, ...b, ...c, ...simd(0x105)],
};

export const i32x4 = {
  splat: (a: Code): Code => [...a, ...simd(0x11)],
  add: (a: Code, b: Code): Code => [...a, ...b, ...simd(0xae)],
  sub: (a: Code, b: Code): Code => [...a, ...b, ...simd(0xb1)],
  /** Shifts each lane left by `bits` (taken modulo 32). */
  shl: (a: Code, bits: Code): Code => [...a, ...bits, ...simd(0xab)],
  /** Arithmetic right shift of each lane by `bits` (taken modulo 32). */
  shrS: (a: Code, bits: Code): Code => [...a, ...bits, ...simd(0xac)],
  /** Truncates float lanes toward zero; NaN gives 0 and out-of-range lanes saturate. */
  truncSatF32x4S: (a: Code): Code => [...a, ...simd(0xf8)],
};

export const f64x2 = {
  splat: (a: Code): Code => [...a, ...simd(0x14)],
  add: (a: Code, b: Code): Code => [...a, ...b, ...simd(0xf0)],
  mul: (a: Code, b: Code): Code => [...a, ...b, ...simd(0xf2)],
  /** Widens float32 lanes 0-1 exactly. */
  promoteLowF32x4: (a: Code): Code => [...a, ...simd(0x5f)],
  extractLane: (a: Code, lane: number): Code => [...a, ...simd(0x21), lane],
};

export const memory = {
  /** Blocks while the i32 at `address` equals `expected`; the timeout is in ns, -1 for none. */
  atomicWait32: (address: Code, expected: Code, timeoutNs: Code): Code => [
    ...address,
    ...expected,
    ...timeoutNs,
    ...atomic(0x01),
    ...memarg(2, 0),
  ],
  /** Wakes up to `count` waiters at `address` and returns how many woke. */
  atomicNotify: (address: Code, count: Code): Code => [...address, ...count, ...atomic(0x00), ...memarg(2, 0)],
};

export const i64 = {
  const: (value: number): Code => [0x42, ...sleb128(value)],
};

export const control = {
  drop: (value: Code): Code => [...value, 0x1a],
  return: (): Code => [0x0f],
  call: (functionIndex: number, ...args: Code[]): Code => [...args.flat(), 0x10, ...uleb128(functionIndex)],
  if: (condition: Code, then: Code, otherwise?: Code): Code => [
    ...condition,
    0x04,
    BLOCK_TYPE_EMPTY,
    ...then,
    ...(otherwise !== undefined ? [0x05, ...otherwise] : []),
    0x0b,
  ],
  block: (body: Code): Code => [0x02, BLOCK_TYPE_EMPTY, ...body, 0x0b],
  loop: (body: Code): Code => [0x03, BLOCK_TYPE_EMPTY, ...body, 0x0b],
  br: (depth: number): Code => [0x0c, ...uleb128(depth)],
  brIf: (depth: number, condition: Code): Code => [...condition, 0x0d, ...uleb128(depth)],
};

/**
 * Builds one function: hands out parameter and local indices and offers the structured loops the
 * kernels use. Branch depths inside `body` callbacks are relative to the loop they sit in.
 */
export class FunctionBuilder {
  readonly params: ValType[];
  readonly locals: ValType[] = [];

  constructor(params: ValType[]) {
    this.params = params;
  }

  /** Index of parameter `position`. */
  param(position: number): number {
    if (position < 0 || position >= this.params.length) {
      throw new Error(`FunctionBuilder.param: position ${position} is outside the ${this.params.length} parameters`);
    }
    return position;
  }

  /** Declares a new local of `type` and returns its index. */
  local(type: ValType): number {
    this.locals.push(type);
    return this.params.length + this.locals.length - 1;
  }

  /**
   * `for (i = start; i < end; i += step) body` with unsigned comparison. `end` is evaluated on
   * every iteration, so pass a local or a constant.
   */
  forRange(i: number, start: Code, end: Code, step: number, body: Code): Code {
    return seq(
      local.set(i, start),
      control.block(
        control.loop(
          seq(
            control.brIf(1, i32.geU(local.get(i), end)),
            body,
            local.set(i, i32.add(local.get(i), i32.const(step))),
            control.br(0),
          ),
        ),
      ),
    );
  }

  /** `do { body } while (--counter != 0)`; the counter must start above zero. */
  countDown(counter: number, body: Code): Code {
    return control.loop(
      seq(body, control.brIf(0, local.tee(counter, i32.sub(local.get(counter), i32.const(1))))),
    );
  }
}

export { ValType };
