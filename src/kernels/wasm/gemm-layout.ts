// Byte layout shared by the generated GEMM module (gemm-module.ts), the JS driver (matmul-wasm.ts)
// and the worker (matmul-worker.js, which repeats the CONTROL_* numbers because it is plain JS).

/** Micro-tile and blocking sizes the module is generated for. */
export interface GemmConfig {
  /** Rows of C per micro-tile: one broadcast of A per row and k. */
  mr: number;
  /** Columns of C per micro-tile, a multiple of 4 because one v128 contains 4 floats. */
  nr: number;
  /**
   * K steps per iteration of the micro-kernel loop. Above 1, TurboFan hoists the loads of all
   * steps ahead of the arithmetic and spills registers, so 1 is fastest on Node 20.
   */
  kUnroll: number;
  /**
   * Multiply-add with relaxed-SIMD f32x4.relaxed_madd, which V8 fuses on CPUs with FMA (one
   * rounding instead of two). Needs a runtime that accepts relaxed SIMD.
   */
  fusedMultiplyAdd?: boolean;
}

/**
 * Control block at byte 0 of the shared memory, as i32 slots. Workers sleep on GENERATION and
 * read ACTIVE_THREADS to decide whether to join; READY counts started workers.
 */
export const CONTROL_GENERATION = 0;
export const CONTROL_ACTIVE_THREADS = 1;
export const CONTROL_READY = 2;
/** Non-zero after a worker trapped: the id of that worker. */
export const CONTROL_ERROR = 3;
/** Byte address of the job descriptor, after the control block. */
export const JOB_ADDRESS = 64;
/** Tasks each thread claimed, one i32 per thread id, after the job descriptor. */
export const STATS_ADDRESS = 512;
export const MAX_THREADS = 64;
/** First byte free for data; everything before it is control, job and statistics. */
export const DATA_START = 1024;

/**
 * Job descriptor fields, as i32 slot indices from JOB_ADDRESS. Addresses and strides are in
 * bytes and are read as unsigned, so buffers may lie anywhere below 4 GiB.
 */
export const Job = {
  /** Claim word: the job sequence number above bit TASK_INDEX_BITS, the next task index below. */
  claim: 0,
  /**
   * Finished packing tasks, plus 1 once the caller has copied C in. Compute tasks wait until it
   * reaches packTasks + 1.
   */
  packDone: 1,
  computeDone: 2,
  packTasks: 3,
  computeTasks: 4,
  /** Sequence number of the job these fields describe, to detect claims of a finished job. */
  sequence: 5,
  /** Packing tasks whose raw operand data has been copied in; task t waits until it exceeds t. */
  rawReady: 6,
  M: 8,
  N: 9,
  K: 10,
  transA: 11,
  transB: 12,
  /** 1 when C is overwritten, 0 when the product is added to it. */
  overwrite: 13,
  out: 14,
  batch: 15,
  tileStripsM: 16,
  tileStripsN: 17,
  tilesM: 18,
  tilesN: 19,
  kc: 20,
  scratch: 21,
  outMatrixBytes: 22,
  // Operand A: raw copy, batch stride, distinct matrices (1 when broadcast), packed panels and
  // the packing task grid (strip chunks x K chunks per matrix).
  rawA: 24,
  strideA: 25,
  countA: 26,
  packA: 27,
  packedABytes: 28,
  stripsA: 29,
  tasksPerMatrixA: 30,
  stripsPerTaskA: 31,
  kChunksA: 32,
  kPerTaskA: 33,
  // Operand B, the same fields.
  rawB: 40,
  strideB: 41,
  countB: 42,
  packB: 43,
  packedBBytes: 44,
  stripsB: 45,
  tasksPerMatrixB: 46,
  stripsPerTaskB: 47,
  kChunksB: 48,
  kPerTaskB: 49,
} as const;
/** Offset from an A field to the same field of B. */
export const OPERAND_B_OFFSET = Job.rawB - Job.rawA;
export const JOB_SLOTS = 56;

/** The claim word splits into a job sequence number and a task index. */
export const TASK_INDEX_BITS = 22;
export const MAX_TASKS_PER_JOB = (1 << TASK_INDEX_BITS) - MAX_THREADS - 1;
export const SEQUENCE_MODULUS = 1 << (32 - TASK_INDEX_BITS);
