// Byte layout shared by the generated GEMM module (gemm-module.ts), the JS driver (matmul-wasm.ts)
// and the worker (matmul-worker.js, which repeats the CONTROL_* numbers because it is plain JS).

/** Micro-tile and blocking sizes the module is generated for. */
export interface GemmConfig {
  /** Rows of C per micro-tile: one broadcast of A per row and k. */
  mr: number;
  /** Columns of C per micro-tile, a multiple of 4 because one v128 contains 4 floats. */
  nr: number;
  /** How many k steps one iteration of the micro-kernel loop does. */
  kUnroll: number;
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
  packDone: 1,
  computeDone: 2,
  packTasks: 3,
  computeTasks: 4,
  /** Sequence number of the job these fields describe, to detect claims of a finished job. */
  sequence: 5,
  M: 6,
  N: 7,
  K: 8,
  transA: 9,
  transB: 10,
  /** 1 when C is overwritten, 0 when the product is added to it. */
  overwrite: 11,
  rawA: 12,
  strideA: 13,
  countA: 14,
  rawB: 15,
  strideB: 16,
  countB: 17,
  packA: 18,
  packB: 19,
  out: 20,
  batch: 21,
  stripsM: 22,
  stripsN: 23,
  aTasksPerMatrix: 24,
  stripsPerATask: 25,
  bTasksPerMatrix: 26,
  stripsPerBTask: 27,
  tileStripsM: 28,
  tileStripsN: 29,
  tilesM: 30,
  tilesN: 31,
  kc: 32,
  scratch: 33,
  packedABytes: 34,
  packedBBytes: 35,
  outMatrixBytes: 36,
} as const;
export const JOB_SLOTS = 40;

/** The claim word splits into a job sequence number and a task index. */
export const TASK_INDEX_BITS = 22;
export const MAX_TASKS_PER_JOB = (1 << TASK_INDEX_BITS) - MAX_THREADS - 1;
export const SEQUENCE_MODULUS = 1 << (32 - TASK_INDEX_BITS);
