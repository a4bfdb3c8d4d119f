// Planning of one GEMM job: where its buffers go in the shared memory and how its work splits into
// packing tasks (one contiguous range of a raw operand each) and compute tasks (one tile of C each).
import type { MatmulGeometry } from '../types.js';
import { DATA_START, MAX_THREADS, type GemmConfig } from './gemm-layout.js';

const ALIGN_BYTES = 64;

/** Cache blocking and task sizes, in elements. */
export interface GemmBlocking {
  /** K block: how many k steps a micro-kernel call covers. */
  kc: number;
  /** Rows of C per compute task (rounded up to whole strips). */
  tileRows: number;
  /** Columns of C per compute task (rounded up to whole strips). */
  tileCols: number;
  /** Packed floats per packing task. */
  packTaskFloats: number;
  /** Minimum compute tasks per thread: tiles shrink until a job has this many. */
  minTasksPerThread: number;
}

/** Packing plan of one operand, op(A) or op(B). */
export interface OperandPlan {
  /** Distinct matrices in the job: 1 when the operand is broadcast (stride 0). */
  count: number;
  /** Batch stride in elements. */
  stride: number;
  /** Elements of one stored matrix. */
  size: number;
  /** Lanes per strip: MR for A, NR for B. */
  width: number;
  /** Lanes in all: M for A, N for B. */
  lanes: number;
  strips: number;
  K: number;
  /**
   * True when a lane's k steps are adjacent in storage (A not transposed, B transposed). Packing
   * tasks then take runs of strips over all k, otherwise runs of k over all strips, so each task
   * reads one contiguous range of the stored matrix.
   */
  kContiguous: boolean;
  stripsPerTask: number;
  kChunks: number;
  kPerTask: number;
  tasksPerMatrix: number;
  /** Bytes of one packed matrix: strips * width * K floats. */
  packedBytes: number;
}

/** Byte addresses of one job's buffers in the shared memory; `end` is the size they need. */
export interface JobLayout {
  scratch: number;
  rawA: number;
  rawB: number;
  out: number;
  packA: number;
  packB: number;
  end: number;
}

export interface JobPlan {
  a: OperandPlan;
  b: OperandPlan;
  packTasks: number;
  tileStripsM: number;
  tileStripsN: number;
  tilesM: number;
  tilesN: number;
  computeTasks: number;
  layout: JobLayout;
}

function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}

/** Elements a batch of `count` matrices spans when each has `size` elements and they start `stride` apart. */
export function batchSpan(count: number, stride: number, size: number): number {
  return (count - 1) * stride + size;
}

function planOperand(
  lanes: number,
  K: number,
  width: number,
  kContiguous: boolean,
  stride: number,
  batchEntries: number,
  packTaskFloats: number,
): OperandPlan {
  const strips = Math.ceil(lanes / width);
  let stripsPerTask = strips;
  let kPerTask = K;
  if (kContiguous) {
    stripsPerTask = Math.max(1, Math.floor(packTaskFloats / (width * K)));
  } else {
    kPerTask = Math.max(1, Math.floor(packTaskFloats / (strips * width)));
  }
  const kChunks = Math.ceil(K / kPerTask);
  return {
    count: stride === 0 ? 1 : batchEntries,
    stride,
    size: lanes * K,
    width,
    lanes,
    strips,
    K,
    kContiguous,
    stripsPerTask,
    kChunks,
    kPerTask,
    tasksPerMatrix: Math.ceil(strips / stripsPerTask) * kChunks,
    packedBytes: strips * width * K * 4,
  };
}

/**
 * Returns the element range [start, end) of the stored operand that packing task `task` (counted
 * within this operand) reads, relative to the operand's first stored element in the job.
 */
export function rawRange(op: OperandPlan, task: number): [number, number] {
  const matrix = Math.floor(task / op.tasksPerMatrix);
  const chunk = task % op.tasksPerMatrix;
  const base = matrix * op.stride;
  if (op.kContiguous) {
    // Stored rows are lanes of K elements.
    const firstStrip = Math.floor(chunk / op.kChunks) * op.stripsPerTask;
    const endStrip = Math.min(firstStrip + op.stripsPerTask, op.strips);
    return [base + firstStrip * op.width * op.K, base + Math.min(endStrip * op.width, op.lanes) * op.K];
  }
  // Stored rows are k steps of `lanes` elements.
  const k0 = (chunk % op.kChunks) * op.kPerTask;
  const k1 = Math.min(k0 + op.kPerTask, op.K);
  return [base + k0 * op.lanes, base + k1 * op.lanes];
}

function layoutJob(g: MatmulGeometry, count: number, config: GemmConfig, a: OperandPlan, b: OperandPlan): JobLayout {
  const scratch = DATA_START;
  const rawA = alignUp(scratch + MAX_THREADS * config.mr * config.nr * 4, ALIGN_BYTES);
  const rawB = alignUp(rawA + batchSpan(a.count, a.stride, a.size) * 4, ALIGN_BYTES);
  const out = alignUp(rawB + batchSpan(b.count, b.stride, b.size) * 4, ALIGN_BYTES);
  const packA = alignUp(out + count * g.M * g.N * 4, ALIGN_BYTES);
  const packB = alignUp(packA + a.count * a.packedBytes, ALIGN_BYTES);
  const end = packB + b.count * b.packedBytes;
  return { scratch, rawA, rawB, out, packA, packB, end };
}

/** Tile size in strips, shrunk until the job has at least `minTasks` tiles. */
function tileStrips(count: number, a: OperandPlan, b: OperandPlan, blocking: GemmBlocking, minTasks: number): [number, number] {
  let tileM = Math.min(a.strips, Math.ceil(blocking.tileRows / a.width));
  let tileN = Math.min(b.strips, Math.ceil(blocking.tileCols / b.width));
  while (count * Math.ceil(a.strips / tileM) * Math.ceil(b.strips / tileN) < minTasks && (tileM > 1 || tileN > 1)) {
    // Halve the longer side of the tile, in elements.
    if ((tileM * a.width >= tileN * b.width && tileM > 1) || tileN === 1) tileM = Math.ceil(tileM / 2);
    else tileN = Math.ceil(tileN / 2);
  }
  return [tileM, tileN];
}

/** Plans `count` batch entries of `g` as one job for `threads` threads. */
export function planJob(
  g: MatmulGeometry,
  count: number,
  config: GemmConfig,
  blocking: GemmBlocking,
  threads: number,
): JobPlan {
  const a = planOperand(g.M, g.K, config.mr, !g.transA, g.strideA, count, blocking.packTaskFloats);
  const b = planOperand(g.N, g.K, config.nr, g.transB, g.strideB, count, blocking.packTaskFloats);
  const [tileStripsM, tileStripsN] = tileStrips(count, a, b, blocking, blocking.minTasksPerThread * threads);
  const tilesM = Math.ceil(a.strips / tileStripsM);
  const tilesN = Math.ceil(b.strips / tileStripsN);
  return {
    a,
    b,
    packTasks: a.count * a.tasksPerMatrix + b.count * b.tasksPerMatrix,
    tileStripsM,
    tileStripsN,
    tilesM,
    tilesN,
    computeTasks: count * tilesM * tilesN,
    layout: layoutJob(g, count, config, a, b),
  };
}
