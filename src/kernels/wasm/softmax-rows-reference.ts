// Plain TypeScript row kernels: the reference for the WebAssembly ones and the path for float64
// logits. Everything is computed in float64 with Math.exp, one exp per logit and pass.
import type { FloatArray } from '../types.js';
import type { KlGradientParams, KlRowSums, RowExpSums, SoftmaxRowKernels } from './softmax-rows.js';

/** Max of x[base, base + cols), or 0 when it is −∞ (the shift of a row without finite logits). */
function rowShift(x: FloatArray, base: number, cols: number): number {
  let max = -Infinity;
  for (let c = 0; c < cols; c++) {
    const value = x[base + c];
    if (value > max) max = value;
  }
  return max === -Infinity ? 0 : max;
}

/** Σ_c exp(a·(x_c − shift)) over one row. */
function rowExpSum(x: FloatArray, base: number, cols: number, a: number, shift: number): number {
  let sum = 0;
  for (let c = 0; c < cols; c++) sum += Math.exp(a * (x[base + c] - shift));
  return sum;
}

function expSums(x: FloatArray, cols: number, rows: Int32Array, a: number, out: RowExpSums): void {
  for (const r of rows) {
    const base = r * cols;
    const shift = rowShift(x, base, cols);
    out.shift[r] = shift;
    out.sum[r] = rowExpSum(x, base, cols, a, shift);
  }
}

function scaledExp(
  x: FloatArray,
  cols: number,
  rows: Int32Array,
  a: number,
  shift: Float64Array,
  scale: Float64Array,
  out: FloatArray,
): void {
  for (const r of rows) {
    const base = r * cols;
    const rowShiftValue = shift[r];
    const rowScale = scale[r];
    for (let c = 0; c < cols; c++) out[base + c] = rowScale * Math.exp(a * (x[base + c] - rowShiftValue));
  }
}

function klSums(teacher: FloatArray, student: FloatArray, cols: number, rows: Int32Array, a: number, out: KlRowSums): void {
  for (const r of rows) {
    const base = r * cols;
    const shiftT = rowShift(teacher, base, cols);
    const shiftS = rowShift(student, base, cols);
    let sumT = 0;
    let sumS = 0;
    let weighted = 0;
    for (let c = 0; c < cols; c++) {
      const zt = a * (teacher[base + c] - shiftT);
      const zs = a * (student[base + c] - shiftS);
      const et = Math.exp(zt);
      sumT += et;
      sumS += Math.exp(zs);
      // p_t = 0 contributes exactly 0, also where zt − zs is NaN (−∞ on both sides).
      if (et !== 0) weighted += et * (zt - zs);
    }
    out.teacher.shift[r] = shiftT;
    out.teacher.sum[r] = sumT;
    out.student.shift[r] = shiftS;
    out.student.sum[r] = sumS;
    out.weighted[r] = weighted;
  }
}

function klGradients(
  teacher: FloatArray,
  student: FloatArray,
  cols: number,
  rows: Int32Array,
  a: number,
  params: KlGradientParams,
  gt: FloatArray | null,
  gs: FloatArray | null,
): void {
  for (const r of rows) {
    const base = r * cols;
    const shiftT = params.shiftT[r];
    const shiftS = params.shiftS[r];
    const scaleT = params.scaleT[r];
    const scaleS = params.scaleS[r];
    const offset = params.offset[r];
    for (let c = 0; c < cols; c++) {
      const zt = a * (teacher[base + c] - shiftT);
      const zs = a * (student[base + c] - shiftS);
      const qt = scaleT * Math.exp(zt);
      if (gs !== null) gs[base + c] = scaleS * Math.exp(zs) - qt;
      if (gt !== null) gt[base + c] = qt === 0 ? 0 : qt * (zt - zs + offset);
    }
  }
}

/** The float64 TypeScript row kernels. */
export const softmaxRowsReference: SoftmaxRowKernels = {
  name: 'js',
  expSums,
  scaledExp,
  klSums,
  klGradients,
};
