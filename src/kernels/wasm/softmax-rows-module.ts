// Generates the WebAssembly module of the softmax row kernels (see softmax-rows.ts for what each
// computes). The driver copies rows into the module's memory at a stride that is a multiple of 16
// floats and fills the padding with −∞. Every loop therefore handles 16 or 8 floats per step with
// no tail, and the padding adds exactly 0 to every sum.
//
// Functions, with byte addresses for pointers and f64 per-row arrays indexed by row in the chunk:
//   expSums(x, rows, stride, a, shiftOut, sumOut)
//   scaledExp(x, rows, stride, a, shiftIn, scaleIn, out)
//   klSums(t, s, rows, stride, a, statsOut)          statsOut: 5 f64 per row, see KlStat
//   klGradients(t, s, rows, stride, a, paramsIn, gt, gs, mode)
//                                                    paramsIn: 5 f64 per row, see KlParam
//                                                    mode: bit 0 = write gt, bit 1 = write gs
import { ValType, type FunctionDefinition, encodeModule } from './wasm-binary.js';
import {
  control,
  f32,
  f32x4,
  f64,
  f64x2,
  FunctionBuilder,
  i32,
  i32x4,
  local,
  select,
  seq,
  v128,
  type Code,
} from './wasm-code.js';

const { i32: I32, f32: F32, f64: F64, v128: V128 } = ValType;
const get = local.get;
const c = i32.const;

/** Row strides are multiples of this many floats: one step of the summing loops (four v128). */
export const ROW_STRIDE_MULTIPLE = 16;

/** Slots of klSums' per-row output (f64 each). */
export const KlStat = { shiftT: 0, sumT: 1, shiftS: 2, sumS: 3, weighted: 4, count: 5 } as const;

/** Slots of klGradients' per-row input (f64 each). */
export const KlParam = { shiftT: 0, shiftS: 1, scaleT: 2, scaleS: 3, offset: 4, count: 5 } as const;

/** klGradients mode bits. */
export const KlMode = { teacher: 1, student: 2 } as const;

// exp(x) for float32 lanes:
//   n = round(x·log2 e) with the 1.5·2^23 trick: adding it rounds to an integer and leaves n in the
//       low mantissa bits, so 2^(n−1) is built from those bits with one add and one shift;
//   r = x − n·ln2 in two steps (Cody-Waite), ln2 = LN2_HI + LN2_LO, LN2_HI exact in 9 bits so n·LN2_HI
//       is exact for |n| ≤ 2^14;
//   exp(x) = 2^(n−1) · 2·exp(r), |r| ≤ ln2/2, with 2·exp(r) a degree-6 polynomial.
// Building 2^(n−1) instead of 2^n keeps n = 128 (x up to ln FLT_MAX ≈ 88.72) finite. Exponent field
// n + 126 must be at least 1, so n ≥ −125: inputs below EXP_UNDERFLOW give 0 (their true values
// are below 1.8e-38 and would need subnormals, which can take microcode assists on x64 cores).
// Inputs above EXP_OVERFLOW are clamped to it, where the result already rounds to +∞.
// NaN passes through every step (pmin keeps a NaN first operand, the underflow test is false).
// Against Math.exp on every float32 in [EXP_UNDERFLOW, 88.72] the max relative error was 9.9e-8
// (one exhaustive run on Node 20, x64); test/softmax-rows.test.ts checks 2e-7 on a grid.
const LOG2E = 1.4426950408889634;
const LN2_HI = 0.693359375;
const LN2_LO = -2.12194440054690583e-4;
const ROUNDING_MAGIC = 12582912; // 1.5·2^23
/** Integer bits of ROUNDING_MAGIC, as an f32. */
const ROUNDING_MAGIC_BITS = 0x4b400000;
/** exp returns 0 for inputs below this. */
export const EXP_UNDERFLOW = -86.9;
const EXP_OVERFLOW = 89;
/**
 * Coefficients k2..k6 of exp(r) ≈ 1 + r + Σ k_i r^i, fitted for minimax relative error on
 * [−ln2/2, ln2/2] (Lawson's iteratively reweighted least squares, then rounded to float32): 3.6e-9
 * before float32 rounding of the evaluation. The kernel uses them doubled, which is exact.
 */
const EXP_COEFFICIENTS = [0.4999999403953552, 0.1666652113199234, 0.04166838899254799, 0.00836874544620514, 0.0013814540579915047];

/** v128 locals holding the splatted constants of `emitExp`. */
interface ExpConstants {
  overflow: number;
  underflow: number;
  log2e: number;
  magic: number;
  ln2Hi: number;
  ln2Lo: number;
  two: number;
  /** Doubled coefficients k6, k5, ..., k2: Horner order. */
  doubled: number[];
  /** 126 − ROUNDING_MAGIC_BITS: turns the bits of n + ROUNDING_MAGIC into the exponent field of 2^(n−1). */
  exponentBias: number;
}

/** Scratch locals of one exp evaluation. */
interface ExpScratch {
  x: number;
  k: number;
  n: number;
  r: number;
}

/** Declares the constant locals; the returned code fills them and must run before any exp. */
function declareExpConstants(fb: FunctionBuilder): { constants: ExpConstants; init: Code } {
  const splat = (value: number): [number, Code] => {
    const index = fb.local(V128);
    return [index, local.set(index, f32x4.splat(f32.const(value)))];
  };
  const entries = {
    overflow: splat(EXP_OVERFLOW),
    underflow: splat(EXP_UNDERFLOW),
    log2e: splat(LOG2E),
    magic: splat(ROUNDING_MAGIC),
    ln2Hi: splat(LN2_HI),
    ln2Lo: splat(LN2_LO),
    two: splat(2),
  };
  const doubled = [...EXP_COEFFICIENTS].reverse().map((k) => splat(2 * k));
  const exponentBias = fb.local(V128);
  const constants: ExpConstants = {
    overflow: entries.overflow[0],
    underflow: entries.underflow[0],
    log2e: entries.log2e[0],
    magic: entries.magic[0],
    ln2Hi: entries.ln2Hi[0],
    ln2Lo: entries.ln2Lo[0],
    two: entries.two[0],
    doubled: doubled.map(([index]) => index),
    exponentBias,
  };
  const init = seq(
    ...Object.values(entries).map(([, code]) => code),
    ...doubled.map(([, code]) => code),
    local.set(exponentBias, i32x4.splat(c(126 - ROUNDING_MAGIC_BITS))),
  );
  return { constants, init };
}

function declareExpScratch(fb: FunctionBuilder): ExpScratch {
  return { x: fb.local(V128), k: fb.local(V128), n: fb.local(V128), r: fb.local(V128) };
}

/** Code that leaves exp(argument) of four float32 lanes on the stack; see the comment above. */
function emitExp(k: ExpConstants, s: ExpScratch, argument: Code): Code {
  let poly: Code = get(k.doubled[0]);
  for (const coefficient of [...k.doubled.slice(1), k.two, k.two]) {
    poly = f32x4.add(f32x4.mul(poly, get(s.r)), get(coefficient));
  }
  const twoToNMinus1 = i32x4.shl(i32x4.add(get(s.k), get(k.exponentBias)), c(23));
  return seq(
    // The clamped x is below EXP_UNDERFLOW exactly when x is, so the underflow test can use it.
    local.set(s.x, f32x4.pmin(argument, get(k.overflow))),
    local.set(s.k, f32x4.add(f32x4.mul(get(s.x), get(k.log2e)), get(k.magic))),
    local.set(s.n, f32x4.sub(get(s.k), get(k.magic))),
    local.set(s.r, f32x4.sub(f32x4.sub(get(s.x), f32x4.mul(get(s.n), get(k.ln2Hi))), f32x4.mul(get(s.n), get(k.ln2Lo)))),
    v128.andNot(f32x4.mul(poly, twoToNMinus1), f32x4.lt(get(s.x), get(k.underflow))),
  );
}

/**
 * Adds the four lanes of `value` to the two float64 lanes of `accumulator` (a local). The halves are
 * added first so the accumulator, which V8 keeps on the stack, waits on one add per step.
 */
function accumulateF64(accumulator: number, value: number): Code {
  const low = f64x2.promoteLowF32x4(get(value));
  const high = f64x2.promoteLowF32x4(v128.shuffle32(get(value), get(value), [2, 3, 2, 3]));
  return local.set(accumulator, f64x2.add(get(accumulator), f64x2.add(low, high)));
}

/**
 * Code that sets `into` to the float32 sum of four vectors, as (v0 + v1) + (v2 + v3): at most two
 * roundings (1.2e-7 relative) per term before the float64 sum.
 */
function sumOfFour(into: number, vectors: readonly number[]): Code {
  const [v0, v1, v2, v3] = vectors.map((v) => get(v));
  return local.set(into, f32x4.add(f32x4.add(v0, v1), f32x4.add(v2, v3)));
}

function sumLanesF64(accumulator: number): Code {
  return f64.add(f64x2.extractLane(get(accumulator), 0), f64x2.extractLane(get(accumulator), 1));
}

function maxLanes(vector: number): Code {
  const lane = (i: number): Code => f32x4.extractLane(get(vector), i);
  return f32.max(f32.max(lane(0), lane(1)), f32.max(lane(2), lane(3)));
}

/** Row shift: the max, or 0 when the max is −∞ (a row of −∞ only, or the padding alone). */
function shiftOf(max: number): Code {
  return select(f32.const(0), get(max), f32.eq(get(max), f32.const(-Infinity)));
}

/**
 * `do { body } while ((p += stepBytes) != end)` over one row. Rows have at least one step because
 * their stride is a positive multiple of ROW_STRIDE_MULTIPLE floats, and stepBytes divides it.
 */
function forEachStep(p: number, end: number, stepBytes: number, body: Code): Code {
  return control.loop(seq(body, local.set(p, i32.add(get(p), c(stepBytes))), control.brIf(0, i32.ne(get(p), get(end)))));
}

/** Loop over `rows` rows: `body` runs with `row` = 0, 1, ...; does nothing for 0 rows. */
function forEachRow(fb: FunctionBuilder, row: number, rows: number, body: Code): Code {
  return fb.forRange(row, c(0), get(rows), 1, body);
}

/** Code that sets `max` to the largest lane over one row at `rowStart` (NaN lanes are skipped). */
function rowMax(p: number, end: number, rowStart: Code, rowBytes: number, acc0: number, acc1: number, max: number): Code {
  return seq(
    local.set(p, rowStart),
    local.set(end, i32.add(get(p), get(rowBytes))),
    local.set(acc0, f32x4.splat(f32.const(-Infinity))),
    local.set(acc1, get(acc0)),
    forEachStep(
      p,
      end,
      32,
      seq(
        // pmax(acc, x) keeps acc when x is NaN; the NaN then surfaces in the exp pass.
        local.set(acc0, f32x4.pmax(get(acc0), v128.load(get(p)))),
        local.set(acc1, f32x4.pmax(get(acc1), v128.load(get(p), 16))),
      ),
    ),
    local.set(max, maxLanes(acc0)),
    local.set(max, f32.max(get(max), maxLanes(acc1))),
  );
}

/** Common locals of the row kernels. */
interface RowLocals {
  row: number;
  rowBytes: number;
  p: number;
  end: number;
}

function declareRowLocals(fb: FunctionBuilder, stride: number): { locals: RowLocals; init: Code } {
  const locals = { row: fb.local(I32), rowBytes: fb.local(I32), p: fb.local(I32), end: fb.local(I32) };
  return { locals, init: local.set(locals.rowBytes, i32.mul(get(stride), c(4))) };
}

/** Byte address of row `row` of the array at `base`. */
function rowAddress(base: number, locals: RowLocals): Code {
  return i32.add(get(base), i32.mul(get(locals.row), get(locals.rowBytes)));
}

/** Reads f64 slot `slot` of a per-row record of `slots` f64 at `base` and rounds it to an f32. */
function rowParam(base: number, row: number, slots: number, slot: number): Code {
  return f32.demoteF64(f64.load(i32.add(get(base), i32.mul(get(row), c(8 * slots))), 8 * slot));
}

function buildExpSums(): FunctionDefinition {
  const fb = new FunctionBuilder([I32, I32, I32, F32, I32, I32]);
  const [x, rows, stride, a, shiftOut, sumOut] = [0, 1, 2, 3, 4, 5].map((i) => fb.param(i));
  const { locals, init } = declareRowLocals(fb, stride);
  const { constants, init: initConstants } = declareExpConstants(fb);
  const scratch = declareExpScratch(fb);
  const [acc0, acc1, scale, shiftVector, sum] = Array.from({ length: 5 }, () => fb.local(V128));
  const e = Array.from({ length: 4 }, () => fb.local(V128));
  const max = fb.local(F32);
  const { p, end, row } = locals;

  const z = (offset: number): Code => f32x4.mul(get(scale), f32x4.sub(v128.load(get(p), offset), get(shiftVector)));
  const body = seq(
    rowMax(p, end, rowAddress(x, locals), locals.rowBytes, acc0, acc1, max),
    local.set(shiftVector, f32x4.splat(shiftOf(max))),
    local.set(sum, v128.zero()),
    local.set(p, rowAddress(x, locals)),
    forEachStep(
      p,
      end,
      64,
      seq(
        ...e.map((ei, i) => local.set(ei, emitExp(constants, scratch, z(16 * i)))),
        sumOfFour(e[0], e),
        accumulateF64(sum, e[0]),
      ),
    ),
    f64.store(i32.add(get(shiftOut), i32.mul(get(row), c(8))), f64.promoteF32(f32x4.extractLane(get(shiftVector), 0))),
    f64.store(i32.add(get(sumOut), i32.mul(get(row), c(8))), sumLanesF64(sum)),
  );
  return {
    name: 'expSums',
    params: fb.params,
    results: [],
    locals: fb.locals,
    body: seq(init, initConstants, local.set(scale, f32x4.splat(get(a))), forEachRow(fb, row, rows, body)),
    exported: true,
  };
}

function buildScaledExp(): FunctionDefinition {
  const fb = new FunctionBuilder([I32, I32, I32, F32, I32, I32, I32]);
  const [x, rows, stride, a, shiftIn, scaleIn, out] = [0, 1, 2, 3, 4, 5, 6].map((i) => fb.param(i));
  const { locals, init } = declareRowLocals(fb, stride);
  const { constants, init: initConstants } = declareExpConstants(fb);
  const scratch = declareExpScratch(fb);
  const [scale, shiftVector, rowScale] = Array.from({ length: 3 }, () => fb.local(V128));
  const q = fb.local(I32);
  const { p, end, row } = locals;

  const z = (offset: number): Code => f32x4.mul(get(scale), f32x4.sub(v128.load(get(p), offset), get(shiftVector)));
  const store = (offset: number): Code =>
    v128.store(get(q), f32x4.mul(get(rowScale), emitExp(constants, scratch, z(offset))), offset);
  const body = seq(
    local.set(shiftVector, f32x4.splat(f32.demoteF64(f64.load(i32.add(get(shiftIn), i32.mul(get(row), c(8))))))),
    local.set(rowScale, f32x4.splat(f32.demoteF64(f64.load(i32.add(get(scaleIn), i32.mul(get(row), c(8))))))),
    local.set(p, rowAddress(x, locals)),
    local.set(q, rowAddress(out, locals)),
    local.set(end, i32.add(get(p), get(locals.rowBytes))),
    forEachStep(p, end, 32, seq(store(0), store(16), local.set(q, i32.add(get(q), c(32))))),
  );
  return {
    name: 'scaledExp',
    params: fb.params,
    results: [],
    locals: fb.locals,
    body: seq(init, initConstants, local.set(scale, f32x4.splat(get(a))), forEachRow(fb, row, rows, body)),
    exported: true,
  };
}

function buildKlSums(): FunctionDefinition {
  const fb = new FunctionBuilder([I32, I32, I32, I32, F32, I32]);
  const [t, s, rows, stride, a, statsOut] = [0, 1, 2, 3, 4, 5].map((i) => fb.param(i));
  const { locals, init } = declareRowLocals(fb, stride);
  const { constants, init: initConstants } = declareExpConstants(fb);
  const scratch = declareExpScratch(fb);
  const [acc0, acc1, scale, shiftT, shiftS, zt, zs, sumT, sumS, weighted] = Array.from({ length: 10 }, () => fb.local(V128));
  const et = Array.from({ length: 4 }, () => fb.local(V128));
  const es = Array.from({ length: 4 }, () => fb.local(V128));
  const terms = Array.from({ length: 4 }, () => fb.local(V128));
  const [maxT, maxS] = [fb.local(F32), fb.local(F32)];
  const ps = fb.local(I32);
  const { p, end, row } = locals;

  const z = (pointer: number, offset: number, shift: number): Code =>
    f32x4.mul(get(scale), f32x4.sub(v128.load(get(pointer), offset), get(shift)));
  // e_t·(z_t − z_s), or exactly 0 where e_t = 0 (z_t − z_s may be NaN there).
  const weightedTerm = (i: number): Code =>
    v128.andNot(f32x4.mul(get(et[i]), f32x4.sub(get(zt), get(zs))), f32x4.eq(get(et[i]), v128.zero()));
  const vector = (i: number): Code =>
    seq(
      local.set(zt, z(p, 16 * i, shiftT)),
      local.set(zs, z(ps, 16 * i, shiftS)),
      local.set(et[i], emitExp(constants, scratch, get(zt))),
      local.set(es[i], emitExp(constants, scratch, get(zs))),
      local.set(terms[i], weightedTerm(i)),
    );
  const stat = (slot: number, value: Code): Code =>
    f64.store(i32.add(get(statsOut), i32.mul(get(row), c(8 * KlStat.count))), value, 8 * slot);

  const body = seq(
    rowMax(p, end, rowAddress(t, locals), locals.rowBytes, acc0, acc1, maxT),
    rowMax(p, end, rowAddress(s, locals), locals.rowBytes, acc0, acc1, maxS),
    local.set(shiftT, f32x4.splat(shiftOf(maxT))),
    local.set(shiftS, f32x4.splat(shiftOf(maxS))),
    local.set(sumT, v128.zero()),
    local.set(sumS, v128.zero()),
    local.set(weighted, v128.zero()),
    local.set(p, rowAddress(t, locals)),
    local.set(ps, rowAddress(s, locals)),
    local.set(end, i32.add(get(p), get(locals.rowBytes))),
    forEachStep(
      p,
      end,
      64,
      seq(
        ...[0, 1, 2, 3].map(vector),
        sumOfFour(et[0], et),
        accumulateF64(sumT, et[0]),
        sumOfFour(es[0], es),
        accumulateF64(sumS, es[0]),
        sumOfFour(terms[0], terms),
        accumulateF64(weighted, terms[0]),
        local.set(ps, i32.add(get(ps), c(64))),
      ),
    ),
    stat(KlStat.shiftT, f64.promoteF32(f32x4.extractLane(get(shiftT), 0))),
    stat(KlStat.sumT, sumLanesF64(sumT)),
    stat(KlStat.shiftS, f64.promoteF32(f32x4.extractLane(get(shiftS), 0))),
    stat(KlStat.sumS, sumLanesF64(sumS)),
    stat(KlStat.weighted, sumLanesF64(weighted)),
  );
  return {
    name: 'klSums',
    params: fb.params,
    results: [],
    locals: fb.locals,
    body: seq(init, initConstants, local.set(scale, f32x4.splat(get(a))), forEachRow(fb, row, rows, body)),
    exported: true,
  };
}

function buildKlGradients(): FunctionDefinition {
  const fb = new FunctionBuilder([I32, I32, I32, I32, F32, I32, I32, I32, I32]);
  const [t, s, rows, stride, a, paramsIn, gt, gs, mode] = [0, 1, 2, 3, 4, 5, 6, 7, 8].map((i) => fb.param(i));
  const { locals, init } = declareRowLocals(fb, stride);
  const { constants, init: initConstants } = declareExpConstants(fb);
  const scratch = declareExpScratch(fb);
  const [scale, shiftT, shiftS, scaleT, scaleS, offset, zt, zs, qt] = Array.from({ length: 9 }, () => fb.local(V128));
  const [ps, pgt, pgs] = [fb.local(I32), fb.local(I32), fb.local(I32)];
  const { p, end, row } = locals;

  const param = (slot: number): Code => f32x4.splat(rowParam(paramsIn, row, KlParam.count, slot));
  const z = (pointer: number, offset: number, shift: number): Code =>
    f32x4.mul(get(scale), f32x4.sub(v128.load(get(pointer), offset), get(shift)));
  // g·p_t·(z_t − z_s + offset), or exactly 0 where g·p_t = 0 (z_t − z_s may be NaN there).
  const teacherGradient = (): Code =>
    v128.andNot(
      f32x4.mul(get(qt), f32x4.add(f32x4.sub(get(zt), get(zs)), get(offset))),
      f32x4.eq(get(qt), v128.zero()),
    );
  const step = (offset: number, writeTeacher: boolean, writeStudent: boolean): Code =>
    seq(
      local.set(zt, z(p, offset, shiftT)),
      local.set(zs, z(ps, offset, shiftS)),
      local.set(qt, f32x4.mul(get(scaleT), emitExp(constants, scratch, get(zt)))),
      writeStudent
        ? v128.store(get(pgs), f32x4.sub(f32x4.mul(get(scaleS), emitExp(constants, scratch, get(zs))), get(qt)), offset)
        : [],
      writeTeacher ? v128.store(get(pgt), teacherGradient(), offset) : [],
    );
  const loop = (writeTeacher: boolean, writeStudent: boolean): Code =>
    forEachStep(
      p,
      end,
      32,
      seq(
        step(0, writeTeacher, writeStudent),
        step(16, writeTeacher, writeStudent),
        local.set(ps, i32.add(get(ps), c(32))),
        local.set(pgt, i32.add(get(pgt), c(32))),
        local.set(pgs, i32.add(get(pgs), c(32))),
      ),
    );

  const body = seq(
    local.set(shiftT, param(KlParam.shiftT)),
    local.set(shiftS, param(KlParam.shiftS)),
    local.set(scaleT, param(KlParam.scaleT)),
    local.set(scaleS, param(KlParam.scaleS)),
    local.set(offset, param(KlParam.offset)),
    local.set(p, rowAddress(t, locals)),
    local.set(ps, rowAddress(s, locals)),
    local.set(pgt, rowAddress(gt, locals)),
    local.set(pgs, rowAddress(gs, locals)),
    local.set(end, i32.add(get(p), get(locals.rowBytes))),
    control.if(
      i32.eq(get(mode), c(KlMode.teacher | KlMode.student)),
      loop(true, true),
      control.if(i32.eq(get(mode), c(KlMode.teacher)), loop(true, false), loop(false, true)),
    ),
  );
  return {
    name: 'klGradients',
    params: fb.params,
    results: [],
    locals: fb.locals,
    body: seq(init, initConstants, local.set(scale, f32x4.splat(get(a))), forEachRow(fb, row, rows, body)),
    exported: true,
  };
}

/** Builds the module bytes; it imports an unshared memory as `env.memory`. */
export function buildSoftmaxRowsModule(maximumPages: number): Uint8Array {
  return encodeModule({ initialPages: 1, maximumPages, shared: false }, [
    buildExpSums(),
    buildScaledExp(),
    buildKlSums(),
    buildKlGradients(),
  ]);
}
