// Driver of the WebAssembly softmax row kernels. It copies the listed rows chunk by chunk into the
// module's own memory, padded with −∞ to a stride that is a multiple of 16 floats. Then it runs one
// kernel call per chunk and copies the results back. Chunks hold about CHUNK_FLOATS floats per array, so
// the memory stays near 1 MiB whatever the number of rows. A single row wider than that gets a
// chunk of its own, for example 4 arrays of 50,272 floats (0.8 MiB) for GPT-2's vocabulary.
import type { FloatArray } from '../types.js';
import { buildSoftmaxRowsModule, ROW_STRIDE_MULTIPLE, KlMode, KlParam, KlStat } from './softmax-rows-module.js';
import type { KlGradientParams, KlRowSums, RowExpSums, SoftmaxRowKernels } from './softmax-rows.js';
import { wasm, type WasmMemory } from './wasm-api.js';
import { encodeModule, ValType } from './wasm-binary.js';
import { f32x4, FunctionBuilder, local, v128 } from './wasm-code.js';

const PAGE_BYTES = 65536;
/** wasm32 addresses stop at 4 GiB. */
const MAX_PAGES = 65536;
/**
 * Target floats per array and chunk (128 KiB), so the four arrays of klGradients stay within a
 * 512 KiB L2 cache while a chunk runs. Rows wider than this get one chunk each. Not tuned.
 */
const CHUNK_FLOATS = 32768;
/**
 * Rows narrower than this are copied element by element: subarray().set() costs about 90 ns per
 * call, and the loop was faster below 12-16 floats on Node 20.
 */
const ELEMENTWISE_COPY_COLS = 16;

type ExpSumsFn = (x: number, rows: number, stride: number, a: number, shiftOut: number, sumOut: number) => void;
type ScaledExpFn = (x: number, rows: number, stride: number, a: number, shiftIn: number, scaleIn: number, out: number) => void;
type KlSumsFn = (t: number, s: number, rows: number, stride: number, a: number, statsOut: number) => void;
type KlGradientsFn = (
  t: number,
  s: number,
  rows: number,
  stride: number,
  a: number,
  paramsIn: number,
  gt: number,
  gs: number,
  mode: number,
) => void;

/** Byte offsets of one chunk's arrays in the memory, and its row geometry. */
interface ChunkLayout {
  /** Floats between row starts: cols rounded up to ROW_STRIDE_MULTIPLE. */
  stride: number;
  rowsPerChunk: number;
  /** Byte offsets of the float32 arrays, each rowsPerChunk × stride floats. */
  arrays: number[];
  /** Byte offset of the per-row f64 records. */
  records: number;
}

function roundUp(value: number, multiple: number): number {
  return Math.ceil(value / multiple) * multiple;
}

/** Lays out `arrays` float32 row arrays, then the per-row records, for rows of `cols` floats. */
function planChunk(cols: number, arrays: number): ChunkLayout {
  const stride = roundUp(cols, ROW_STRIDE_MULTIPLE);
  const rowsPerChunk = Math.max(1, Math.floor(CHUNK_FLOATS / stride));
  const arrayBytes = rowsPerChunk * stride * 4;
  return {
    stride,
    rowsPerChunk,
    arrays: Array.from({ length: arrays }, (_, i) => i * arrayBytes),
    records: arrays * arrayBytes,
  };
}

function chunkBytes(layout: ChunkLayout, recordSlots: number): number {
  return layout.records + layout.rowsPerChunk * recordSlots * 8;
}

class WasmSoftmaxRows implements SoftmaxRowKernels {
  readonly name = 'wasm' as const;
  private readonly memory: WasmMemory;
  private readonly expSumsFn: ExpSumsFn;
  private readonly scaledExpFn: ScaledExpFn;
  private readonly klSumsFn: KlSumsFn;
  private readonly klGradientsFn: KlGradientsFn;
  private heap32: Float32Array;
  private heap64: Float64Array;

  constructor() {
    this.memory = new wasm.Memory({ initial: 16, maximum: MAX_PAGES, shared: false });
    const module = new wasm.Module(buildSoftmaxRowsModule(MAX_PAGES));
    const { exports } = new wasm.Instance(module, { env: { memory: this.memory } });
    this.expSumsFn = exports.expSums as ExpSumsFn;
    this.scaledExpFn = exports.scaledExp as ScaledExpFn;
    this.klSumsFn = exports.klSums as KlSumsFn;
    this.klGradientsFn = exports.klGradients as KlGradientsFn;
    this.heap32 = new Float32Array(this.memory.buffer);
    this.heap64 = new Float64Array(this.memory.buffer);
  }

  /** Current size of the module's memory in bytes. */
  get memoryBytes(): number {
    return this.memory.buffer.byteLength;
  }

  /** Grows the memory to at least `bytes`; growing detaches the old views, so they are rebuilt. */
  private reserve(bytes: number): void {
    const have = this.memory.buffer.byteLength;
    if (bytes <= have) return;
    const pages = Math.ceil((bytes - have) / PAGE_BYTES);
    if (have / PAGE_BYTES + pages > MAX_PAGES) {
      throw new RangeError(`softmax rows (wasm): a chunk needs ${bytes} bytes, above the 4 GiB of wasm32 memory; rows are too wide`);
    }
    this.memory.grow(pages);
    this.heap32 = new Float32Array(this.memory.buffer);
    this.heap64 = new Float64Array(this.memory.buffer);
  }

  /** Copies rows[first, first + count) of `src` into the array at `byteOffset`, padding with −∞. */
  private copyIn(src: FloatArray, cols: number, rows: Int32Array, first: number, count: number, byteOffset: number, stride: number): void {
    const heap = this.heap32;
    for (let k = 0; k < count; k++) {
      const from = rows[first + k] * cols;
      const to = byteOffset / 4 + k * stride;
      if (cols < ELEMENTWISE_COPY_COLS) {
        for (let col = 0; col < cols; col++) heap[to + col] = src[from + col];
      } else {
        heap.set(src.subarray(from, from + cols), to);
      }
      for (let col = cols; col < stride; col++) heap[to + col] = -Infinity;
    }
  }

  /** Copies the first `cols` floats of each chunk row at `byteOffset` back to rows of `dst`. */
  private copyOut(dst: FloatArray, cols: number, rows: Int32Array, first: number, count: number, byteOffset: number, stride: number): void {
    const heap = this.heap32;
    for (let k = 0; k < count; k++) {
      const from = byteOffset / 4 + k * stride;
      const to = rows[first + k] * cols;
      if (cols < ELEMENTWISE_COPY_COLS) {
        for (let col = 0; col < cols; col++) dst[to + col] = heap[from + col];
      } else {
        dst.set(heap.subarray(from, from + cols), to);
      }
    }
  }

  /** Plans the chunks, reserves memory for one, and calls `run(first, count)` for each chunk. */
  private forEachChunk(
    cols: number,
    rows: Int32Array,
    arrays: number,
    recordSlots: number,
    run: (layout: ChunkLayout, first: number, count: number) => void,
  ): void {
    if (rows.length === 0 || cols === 0) return;
    const layout = planChunk(cols, arrays);
    this.reserve(chunkBytes(layout, recordSlots));
    for (let first = 0; first < rows.length; first += layout.rowsPerChunk) {
      run(layout, first, Math.min(layout.rowsPerChunk, rows.length - first));
    }
  }

  expSums(x: FloatArray, cols: number, rows: Int32Array, a: number, out: RowExpSums): void {
    this.forEachChunk(cols, rows, 1, 2, (layout, first, count) => {
      const { stride, records } = layout;
      const sums = records + count * 8;
      this.copyIn(x, cols, rows, first, count, layout.arrays[0], stride);
      this.expSumsFn(layout.arrays[0], count, stride, a, records, sums);
      for (let k = 0; k < count; k++) {
        const r = rows[first + k];
        out.shift[r] = this.heap64[records / 8 + k];
        out.sum[r] = this.heap64[sums / 8 + k];
      }
    });
  }

  scaledExp(
    x: FloatArray,
    cols: number,
    rows: Int32Array,
    a: number,
    shift: Float64Array,
    scale: Float64Array,
    out: FloatArray,
  ): void {
    this.forEachChunk(cols, rows, 2, 2, (layout, first, count) => {
      const { stride, records } = layout;
      const scales = records + count * 8;
      this.copyIn(x, cols, rows, first, count, layout.arrays[0], stride);
      for (let k = 0; k < count; k++) {
        const r = rows[first + k];
        this.heap64[records / 8 + k] = shift[r];
        this.heap64[scales / 8 + k] = scale[r];
      }
      this.scaledExpFn(layout.arrays[0], count, stride, a, records, scales, layout.arrays[1]);
      this.copyOut(out, cols, rows, first, count, layout.arrays[1], stride);
    });
  }

  klSums(teacher: FloatArray, student: FloatArray, cols: number, rows: Int32Array, a: number, out: KlRowSums): void {
    this.forEachChunk(cols, rows, 2, KlStat.count, (layout, first, count) => {
      const { stride, records } = layout;
      this.copyIn(teacher, cols, rows, first, count, layout.arrays[0], stride);
      this.copyIn(student, cols, rows, first, count, layout.arrays[1], stride);
      this.klSumsFn(layout.arrays[0], layout.arrays[1], count, stride, a, records);
      for (let k = 0; k < count; k++) {
        const r = rows[first + k];
        const at = records / 8 + k * KlStat.count;
        out.teacher.shift[r] = this.heap64[at + KlStat.shiftT];
        out.teacher.sum[r] = this.heap64[at + KlStat.sumT];
        out.student.shift[r] = this.heap64[at + KlStat.shiftS];
        out.student.sum[r] = this.heap64[at + KlStat.sumS];
        out.weighted[r] = this.heap64[at + KlStat.weighted];
      }
    });
  }

  klGradients(
    teacher: FloatArray,
    student: FloatArray,
    cols: number,
    rows: Int32Array,
    a: number,
    params: KlGradientParams,
    gt: FloatArray | null,
    gs: FloatArray | null,
  ): void {
    const mode = (gt !== null ? KlMode.teacher : 0) | (gs !== null ? KlMode.student : 0);
    if (mode === 0) return;
    this.forEachChunk(cols, rows, 4, KlParam.count, (layout, first, count) => {
      const { stride, records } = layout;
      const [tAt, sAt, gtAt, gsAt] = layout.arrays;
      this.copyIn(teacher, cols, rows, first, count, tAt, stride);
      this.copyIn(student, cols, rows, first, count, sAt, stride);
      for (let k = 0; k < count; k++) {
        const r = rows[first + k];
        const at = records / 8 + k * KlParam.count;
        this.heap64[at + KlParam.shiftT] = params.shiftT[r];
        this.heap64[at + KlParam.shiftS] = params.shiftS[r];
        this.heap64[at + KlParam.scaleT] = params.scaleT[r];
        this.heap64[at + KlParam.scaleS] = params.scaleS[r];
        this.heap64[at + KlParam.offset] = params.offset[r];
      }
      this.klGradientsFn(tAt, sAt, count, stride, a, records, gtAt, gsAt, mode);
      if (gt !== null) this.copyOut(gt, cols, rows, first, count, gtAt, stride);
      if (gs !== null) this.copyOut(gs, cols, rows, first, count, gsAt, stride);
    });
  }
}

/** Returns whether this runtime has WebAssembly with the fixed-width SIMD instructions. */
export function wasmSimdSupported(): boolean {
  if (typeof wasm !== 'object' || wasm === null) return false;
  const fb = new FunctionBuilder([ValType.i32]);
  const address = local.get(fb.param(0));
  const body = v128.store(address, f32x4.add(v128.load(address), v128.load(address)));
  const probe = { name: 'probe', params: fb.params, results: [], locals: fb.locals, body, exported: false };
  return wasm.validate(encodeModule({ initialPages: 1, maximumPages: 1, shared: false }, [probe]));
}

/**
 * Builds the WebAssembly kernels, or returns null when the runtime lacks WebAssembly SIMD. Any
 * other failure is a bug in the generated module and is thrown.
 */
export function createWasmSoftmaxRows(): (SoftmaxRowKernels & { readonly memoryBytes: number }) | null {
  return wasmSimdSupported() ? new WasmSoftmaxRows() : null;
}
