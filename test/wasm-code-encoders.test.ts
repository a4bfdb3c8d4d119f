// Runs each instruction encoder that the softmax-row kernels added to wasm-code.ts on a few lanes,
// so a wrong opcode fails here by name instead of deep inside a kernel.
import { describe, expect, it } from 'vitest';

import { type WasmMemory, wasm } from '../src/kernels/wasm/wasm-api.js';
import { encodeModule } from '../src/kernels/wasm/wasm-binary.js';
import { f32, f32x4, f64, f64x2, FunctionBuilder, i32, i32x4, select, v128, type Code } from '../src/kernels/wasm/wasm-code.js';

/** Byte addresses of the operands and the result in the test memory. */
const A = 0;
const B = 16;
const C = 32;
const OUT = 48;

/**
 * Instantiates a module whose exported `run` executes `body`, writes the three operand vectors
 * (16 bytes each) and returns the 16 result bytes after one call.
 */
function run(body: Code, operands: ArrayBufferView[]): DataView {
  const fb = new FunctionBuilder([]);
  const probe = { name: 'run', params: fb.params, results: [], locals: fb.locals, body, exported: true };
  const memory: WasmMemory = new wasm.Memory({ initial: 1, maximum: 1, shared: false });
  const instance = new wasm.Instance(new wasm.Module(encodeModule({ initialPages: 1, maximumPages: 1, shared: false }, [probe])), {
    env: { memory },
  });
  const bytes = new Uint8Array(memory.buffer);
  operands.forEach((operand, i) => bytes.set(new Uint8Array(operand.buffer, operand.byteOffset, 16), 16 * i));
  (instance.exports.run as () => void)();
  return new DataView(memory.buffer, OUT, 16);
}

const load = (address: number): Code => v128.load(i32.const(address));
const storeVector = (value: Code): Code => v128.store(i32.const(OUT), value);

function f32Lanes(view: DataView): number[] {
  return [0, 1, 2, 3].map((i) => view.getFloat32(4 * i, true));
}

function i32Lanes(view: DataView): number[] {
  return [0, 1, 2, 3].map((i) => view.getInt32(4 * i, true));
}

function f64Lanes(view: DataView): number[] {
  return [0, 1].map((i) => view.getFloat64(8 * i, true));
}

/** Result lanes of a binary f32x4 op on lanes `a` and `b`. */
function binaryF32(op: (a: Code, b: Code) => Code, a: number[], b: number[]): DataView {
  return run(storeVector(op(load(A), load(B))), [new Float32Array(a), new Float32Array(b)]);
}

describe('f32x4 encoders', () => {
  const a = [1.5, -2, NaN, 0];
  const b = [0.5, 3, 1, -0];

  it('sub, div', () => {
    expect(f32Lanes(binaryF32(f32x4.sub, a, b))).toEqual([1, -5, NaN, 0]);
    expect(f32Lanes(binaryF32(f32x4.div, [3, 1, 6, -1], [2, 4, 3, 0]))).toEqual([1.5, 0.25, 2, -Infinity]);
  });

  it('min and max propagate NaN and order zeros', () => {
    expect(f32Lanes(binaryF32(f32x4.min, a, b))).toEqual([0.5, -2, NaN, -0]);
    expect(f32Lanes(binaryF32(f32x4.max, a, b))).toEqual([1.5, 3, NaN, 0]);
  });

  it('pmin and pmax keep a NaN first operand', () => {
    expect(f32Lanes(binaryF32(f32x4.pmin, a, b))).toEqual([0.5, -2, NaN, 0]);
    expect(f32Lanes(binaryF32(f32x4.pmax, a, b))).toEqual([1.5, 3, NaN, 0]);
    expect(f32Lanes(binaryF32(f32x4.pmax, b, a))).toEqual([1.5, 3, 1, -0]);
  });

  it('comparisons give lane masks', () => {
    expect(i32Lanes(binaryF32(f32x4.eq, a, b))).toEqual([0, 0, 0, -1]);
    expect(i32Lanes(binaryF32(f32x4.lt, a, b))).toEqual([0, -1, 0, 0]);
    expect(i32Lanes(binaryF32(f32x4.gt, a, b))).toEqual([-1, 0, 0, 0]);
  });

  it('nearest rounds ties to even', () => {
    const view = run(storeVector(f32x4.nearest(load(A))), [new Float32Array([2.5, -1.5, 0.49, 7.51])]);
    expect(f32Lanes(view)).toEqual([2, -2, 0, 8]);
  });

  it('convertI32x4S and demoteF64x2Zero', () => {
    const converted = run(storeVector(f32x4.convertI32x4S(load(A))), [new Int32Array([-3, 0, 7, 2 ** 24 + 1])]);
    expect(f32Lanes(converted)).toEqual([-3, 0, 7, 2 ** 24]);
    const demoted = run(storeVector(f32x4.demoteF64x2Zero(load(A))), [new Float64Array([0.1, -1e300])]);
    expect(f32Lanes(demoted)).toEqual([Math.fround(0.1), -Infinity, 0, 0]);
  });

  it('extractLane', () => {
    const body = f32.store(i32.const(OUT), f32x4.extractLane(load(A), 2));
    expect(run(body, [new Float32Array([1, 2, 3, 4])]).getFloat32(0, true)).toBe(3);
  });
});

describe('i32x4 encoders', () => {
  it('splat, add, sub', () => {
    expect(i32Lanes(run(storeVector(i32x4.splat(i32.const(-7))), []))).toEqual([-7, -7, -7, -7]);
    const operands = [new Int32Array([1, -2, 2 ** 31 - 1, 5]), new Int32Array([10, 20, 1, 5])];
    expect(i32Lanes(run(storeVector(i32x4.add(load(A), load(B))), operands))).toEqual([11, 18, -(2 ** 31), 10]);
    expect(i32Lanes(run(storeVector(i32x4.sub(load(A), load(B))), operands))).toEqual([-9, -22, 2 ** 31 - 2, 0]);
  });

  it('shl and shrS', () => {
    const operands = [new Int32Array([1, -8, 3, 0x40000000])];
    expect(i32Lanes(run(storeVector(i32x4.shl(load(A), i32.const(2))), operands))).toEqual([4, -32, 12, 0]);
    expect(i32Lanes(run(storeVector(i32x4.shrS(load(A), i32.const(1))), operands))).toEqual([0, -4, 1, 0x20000000]);
  });

  it('truncSatF32x4S saturates and maps NaN to 0', () => {
    const view = run(storeVector(i32x4.truncSatF32x4S(load(A))), [new Float32Array([-2.7, NaN, 3e9, -3e9])]);
    expect(i32Lanes(view)).toEqual([-2, 0, 2 ** 31 - 1, -(2 ** 31)]);
  });
});

describe('f64x2 and v128 encoders', () => {
  it('splat, add, mul, promoteLowF32x4, extractLane', () => {
    expect(f64Lanes(run(storeVector(f64x2.splat(f64.const(0.1))), []))).toEqual([0.1, 0.1]);
    const operands = [new Float64Array([1.5, -2]), new Float64Array([0.25, 4])];
    expect(f64Lanes(run(storeVector(f64x2.add(load(A), load(B))), operands))).toEqual([1.75, 2]);
    expect(f64Lanes(run(storeVector(f64x2.mul(load(A), load(B))), operands))).toEqual([0.375, -8]);
    const promoted = run(storeVector(f64x2.promoteLowF32x4(load(A))), [new Float32Array([0.1, -3, 9, 9])]);
    expect(f64Lanes(promoted)).toEqual([Math.fround(0.1), -3]);
    const lane = f64.store(i32.const(OUT), f64x2.extractLane(load(A), 1));
    expect(run(lane, operands).getFloat64(0, true)).toBe(-2);
  });

  it('and, andNot, or, bitselect', () => {
    const operands = [new Int32Array([0b1100, -1, 0, 5]), new Int32Array([0b1010, 0, -1, 3]), new Int32Array([0b0110, -1, 0, 1])];
    expect(i32Lanes(run(storeVector(v128.and(load(A), load(B))), operands))).toEqual([0b1000, 0, 0, 1]);
    expect(i32Lanes(run(storeVector(v128.andNot(load(A), load(B))), operands))).toEqual([0b0100, -1, 0, 4]);
    expect(i32Lanes(run(storeVector(v128.or(load(A), load(B))), operands))).toEqual([0b1110, -1, -1, 7]);
    const selected = run(storeVector(v128.bitselect(load(A), load(B), load(C))), operands);
    expect(i32Lanes(selected)).toEqual([0b1100, -1, -1, 3]);
  });
});

describe('scalar encoders', () => {
  /** Stores an f32 result at OUT. */
  const storeF32 = (value: Code): Code => f32.store(i32.const(OUT), value);

  it('f32 sub, max, eq, demoteF64', () => {
    expect(run(storeF32(f32.sub(f32.const(1.5), f32.const(4))), []).getFloat32(0, true)).toBe(-2.5);
    expect(run(storeF32(f32.max(f32.const(1), f32.const(NaN))), []).getFloat32(0, true)).toBeNaN();
    expect(run(storeF32(f32.max(f32.const(-1), f32.const(2))), []).getFloat32(0, true)).toBe(2);
    expect(run(storeF32(f32.demoteF64(f64.const(0.1))), []).getFloat32(0, true)).toBe(Math.fround(0.1));
    const equal = i32.store(i32.const(OUT), f32.eq(f32.const(-Infinity), f32.const(-Infinity)));
    expect(run(equal, []).getInt32(0, true)).toBe(1);
  });

  it('f64 const, load, store, add, promoteF32', () => {
    const sum = f64.store(i32.const(OUT), f64.add(f64.load(i32.const(A)), f64.promoteF32(f32.const(0.1))));
    expect(run(sum, [new Float64Array([2.5, 0])]).getFloat64(0, true)).toBe(2.5 + Math.fround(0.1));
  });

  it('select picks by condition', () => {
    const pick = (condition: number): number =>
      run(i32.store(i32.const(OUT), select(i32.const(11), i32.const(22), i32.const(condition))), []).getInt32(0, true);
    expect(pick(1)).toBe(11);
    expect(pick(0)).toBe(22);
  });
});
