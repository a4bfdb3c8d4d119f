// Driver of the WebAssembly GEMM: checks the geometry, lays the operands out in the shared memory,
// writes the job descriptor, runs the tasks on the caller's thread and on the workers, and copies
// the result back into the caller's array.
import type { MatmulGeometry } from '../types.js';
import { buildGemmModule } from './gemm-module.js';
import {
  CONTROL_ERROR,
  DATA_START,
  Job,
  JOB_ADDRESS,
  JOB_SLOTS,
  MAX_TASKS_PER_JOB,
  MAX_THREADS,
  SEQUENCE_MODULUS,
  STATS_ADDRESS,
  TASK_INDEX_BITS,
  type GemmConfig,
} from './gemm-layout.js';
import { WorkerPool } from './thread-pool.js';
import { wasm, type WasmMemory, type WasmModule } from './wasm-api.js';

const PAGE_BYTES = 65536;
/** wasm32 addresses stop at 4 GiB. */
const MAX_PAGES = 65536;
const ALIGN_BYTES = 64;
const DEFAULT_JOB_BYTES_TARGET = 512 * 1024 * 1024;

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

/** Settings of one engine. */
export interface WasmEngineOptions {
  config: GemmConfig;
  blocking: GemmBlocking;
  /** Threads (the caller plus workers) for products above the threshold. */
  threads: number;
  /** Products with fewer flops (2·M·N·K·batch) than this stay on the calling thread. */
  parallelThresholdFlops: number;
  /** Upper bound of the memory, in bytes; wasm32 allows at most 4 GiB. */
  maxMemoryBytes?: number;
  /**
   * Memory one job may use when the batch allows splitting it (at least one batch entry always
   * runs). The memory never shrinks, so this caps its growth on long batches.
   */
  jobBytesTarget?: number;
}

/** Byte addresses of one job's buffers in the shared memory. */
interface JobLayout {
  scratch: number;
  rawA: number;
  rawB: number;
  out: number;
  packA: number;
  packB: number;
  end: number;
}

/** Wall time the calling thread spent in each phase of all jobs so far, in milliseconds. */
export interface WasmEngineTimings {
  /** Growing the memory and copying A, B (and C when accumulating) into it. */
  copyInMs: number;
  /** Packing and computing on the calling thread, workers alongside. */
  runMs: number;
  /** Waiting for workers to finish their last tasks. */
  waitMs: number;
  /** Copying C back into the caller's array. */
  copyOutMs: number;
}

/** Statistics and settings reported by `wasmInfo()`. */
export interface WasmEngineInfo {
  simd: true;
  /** Relaxed SIMD (fused multiply-add) needs `--experimental-wasm-relaxed-simd` on Node 20, so the module does not use it. */
  relaxedSimd: false;
  threads: number;
  workersStarted: number;
  workersReady: number;
  /** Jobs with at least this many flops (2·M·N·K·batch) use the workers. */
  parallelThresholdFlops: number;
  memoryBytes: number;
  config: GemmConfig;
  blocking: GemmBlocking;
  /** Tasks each thread id ran since the engine was created; index 0 is the calling thread. */
  tasksPerThread: number[];
  jobs: number;
  threadedJobs: number;
  timings: WasmEngineTimings;
}

function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}

function describeShape(g: MatmulGeometry): string {
  return (
    `batch=${g.batch} M=${g.M} N=${g.N} K=${g.K} transA=${g.transA} transB=${g.transB} ` +
    `strides A=${g.strideA} B=${g.strideB} out=${g.strideOut}`
  );
}

/** Elements a batch of `count` matrices spans when each has `size` elements and they start `stride` apart. */
function batchSpan(count: number, stride: number, size: number): number {
  return (count - 1) * stride + size;
}

/** Throws unless `g` is a valid geometry whose matrices all lie inside the given arrays. */
export function checkGeometry(a: Float32Array, b: Float32Array, out: Float32Array, g: MatmulGeometry): void {
  for (const key of ['batch', 'M', 'N', 'K', 'strideA', 'strideB', 'strideOut'] as const) {
    const value = g[key];
    if (!Number.isInteger(value) || value < 0) {
      throw new Error(`matmulWasm: ${key} must be a non-negative integer, got ${value} (${describeShape(g)})`);
    }
  }
  if (g.batch === 0 || g.M === 0 || g.N === 0) return;
  const needs: [string, Float32Array, number][] = [
    ['a', a, batchSpan(g.batch, g.strideA, g.M * g.K)],
    ['b', b, batchSpan(g.batch, g.strideB, g.K * g.N)],
    ['out', out, batchSpan(g.batch, g.strideOut, g.M * g.N)],
  ];
  for (const [name, array, span] of needs) {
    if (array.length < span) {
      throw new Error(
        `matmulWasm: ${name} has ${array.length} elements but ${describeShape(g)} reads ${span}; ` +
          'pass a larger array or fix the geometry',
      );
    }
  }
}

export class WasmGemmEngine {
  readonly config: GemmConfig;
  readonly blocking: GemmBlocking;
  private readonly memory: WasmMemory;
  private readonly module: WasmModule;
  private readonly run: (tid: number) => void;
  private readonly job: Int32Array;
  private readonly control: Int32Array;
  private heap: Float32Array;
  private pool: WorkerPool | undefined;
  private threads = 1;
  private parallelThresholdFlops = 0;
  private sequence = 0;
  private jobs = 0;
  private threadedJobs = 0;
  private readonly timings: WasmEngineTimings = { copyInMs: 0, runMs: 0, waitMs: 0, copyOutMs: 0 };
  private readonly maxPages: number;
  private readonly jobBytesTarget: number;
  /** Set after the calling thread trapped inside a job. */
  private failure: string | undefined;

  constructor(options: WasmEngineOptions) {
    this.config = options.config;
    this.blocking = options.blocking;
    this.setThreads(options.threads);
    this.setParallelThreshold(options.parallelThresholdFlops);
    const maxBytes = options.maxMemoryBytes ?? MAX_PAGES * PAGE_BYTES;
    this.maxPages = Math.floor(maxBytes / PAGE_BYTES);
    if (!(this.maxPages >= 1 && this.maxPages <= MAX_PAGES)) {
      throw new Error(`WasmGemmEngine: maxMemoryBytes must be between 64 KiB and 4 GiB, got ${options.maxMemoryBytes}`);
    }
    this.jobBytesTarget = options.jobBytesTarget ?? DEFAULT_JOB_BYTES_TARGET;
    this.memory = new wasm.Memory({ initial: 1, maximum: this.maxPages, shared: true });
    this.module = new wasm.Module(buildGemmModule(this.config, this.maxPages));
    const instance = new wasm.Instance(this.module, { env: { memory: this.memory } });
    this.run = instance.exports.run as (tid: number) => void;
    this.job = new Int32Array(this.memory.buffer, JOB_ADDRESS, JOB_SLOTS);
    this.control = new Int32Array(this.memory.buffer, 0, 16);
    this.heap = new Float32Array(this.memory.buffer);
  }

  setThreads(threads: number): void {
    if (!Number.isInteger(threads) || threads < 1 || threads > MAX_THREADS) {
      throw new Error(`setWasmThreads: thread count must be an integer in [1, ${MAX_THREADS}], got ${threads}`);
    }
    this.threads = threads;
  }

  setParallelThreshold(flops: number): void {
    if (!(flops >= 0)) {
      throw new Error(`setWasmParallelThreshold: threshold must be a number of flops >= 0, got ${flops}`);
    }
    this.parallelThresholdFlops = flops;
  }

  info(): WasmEngineInfo {
    const stats = new Int32Array(this.memory.buffer, STATS_ADDRESS, MAX_THREADS);
    const used = Math.max(this.threads, (this.pool?.started ?? 0) + 1);
    return {
      simd: true,
      relaxedSimd: false,
      threads: this.threads,
      workersStarted: this.pool?.started ?? 0,
      workersReady: this.pool?.ready ?? 0,
      parallelThresholdFlops: this.parallelThresholdFlops,
      memoryBytes: this.memory.buffer.byteLength,
      config: { ...this.config },
      blocking: { ...this.blocking },
      tasksPerThread: Array.from(stats.subarray(0, used)),
      jobs: this.jobs,
      threadedJobs: this.threadedJobs,
      timings: { ...this.timings },
    };
  }

  /** Computes `out[b] (+)= op(A[b]) · op(B[b])` for every batch entry; see MatmulGeometry. */
  matmul(a: Float32Array, b: Float32Array, out: Float32Array, g: MatmulGeometry): void {
    if (this.failure !== undefined) {
      throw new Error(`${this.failure}; this engine is unusable, create a new one`);
    }
    checkGeometry(a, b, out, g);
    const { batch, M, N, K } = g;
    if (batch === 0 || M === 0 || N === 0) return;

    if (K === 0) {
      // An empty sum: the product is all zeros.
      if (!g.accumulate) {
        for (let bi = 0; bi < batch; bi++) out.fill(0, bi * g.strideOut, bi * g.strideOut + M * N);
      }
      return;
    }

    if (batch > 1 && g.strideOut < M * N) {
      // Output matrices overlap (a stride of 0 sums or overwrites one matrix): run the entries
      // one after another, in order, as the reference does.
      for (let bi = 0; bi < batch; bi++) {
        const single = { ...g, batch: 1 };
        this.matmul(a.subarray(bi * g.strideA), b.subarray(bi * g.strideB), out.subarray(bi * g.strideOut), single);
      }
      return;
    }

    const chunk = this.batchChunk(g);
    for (let first = 0; first < batch; first += chunk) {
      this.runChunk(a, b, out, g, first, Math.min(chunk, batch - first));
    }
  }

  /** Bytes the shared memory needs for `count` batch entries of `g`. */
  private layoutFor(g: MatmulGeometry, count: number): JobLayout {
    const { M, N, K } = g;
    const { mr, nr } = this.config;
    const countA = g.strideA === 0 ? 1 : count;
    const countB = g.strideB === 0 ? 1 : count;
    const packedA = Math.ceil(M / mr) * mr * K * 4;
    const packedB = Math.ceil(N / nr) * nr * K * 4;

    const scratch = DATA_START;
    const rawA = alignUp(scratch + MAX_THREADS * mr * nr * 4, ALIGN_BYTES);
    const rawB = alignUp(rawA + batchSpan(countA, g.strideA, M * K) * 4, ALIGN_BYTES);
    const out = alignUp(rawB + batchSpan(countB, g.strideB, K * N) * 4, ALIGN_BYTES);
    const packA = alignUp(out + count * M * N * 4, ALIGN_BYTES);
    const packB = alignUp(packA + countA * packedA, ALIGN_BYTES);
    const end = packB + countB * packedB;
    return { scratch, rawA, rawB, out, packA, packB, end };
  }

  /** Batch entries per job: as many as fit in jobBytesTarget, and at least one. */
  private batchChunk(g: MatmulGeometry): number {
    const maxBytes = this.maxPages * PAGE_BYTES;
    const oneEntry = this.layoutFor(g, 1).end;
    if (oneEntry > maxBytes) {
      throw new Error(
        `matmulWasm: ${describeShape(g)} needs ${oneEntry} bytes of WebAssembly memory for one batch entry ` +
          `(operands, output and packed panels) but the engine's memory stops at ${maxBytes}; ` +
          'split the product into smaller matmuls or use the reference kernel',
      );
    }
    const target = Math.max(this.jobBytesTarget, oneEntry);
    const maxTasks = (count: number): number => this.computeTaskCount(g, count) + this.packTaskCount(g, count);
    let low = 1;
    let high = g.batch;
    while (low < high) {
      const mid = Math.ceil((low + high) / 2);
      if (this.layoutFor(g, mid).end <= target && maxTasks(mid) <= MAX_TASKS_PER_JOB) low = mid;
      else high = mid - 1;
    }
    return low;
  }

  private ensureMemory(bytes: number): void {
    const pages = Math.ceil(bytes / PAGE_BYTES);
    const current = this.memory.buffer.byteLength / PAGE_BYTES;
    if (pages > current) this.memory.grow(pages - current);
    if (this.heap.buffer.byteLength !== this.memory.buffer.byteLength) {
      this.heap = new Float32Array(this.memory.buffer);
    }
  }

  private stripsPerPackTask(width: number, K: number): number {
    return Math.max(1, Math.floor(this.blocking.packTaskFloats / (width * K)));
  }

  private packTaskCount(g: MatmulGeometry, count: number): number {
    const { mr, nr } = this.config;
    const countA = g.strideA === 0 ? 1 : count;
    const countB = g.strideB === 0 ? 1 : count;
    const aTasks = Math.ceil(Math.ceil(g.M / mr) / this.stripsPerPackTask(mr, g.K));
    const bTasks = Math.ceil(Math.ceil(g.N / nr) / this.stripsPerPackTask(nr, g.K));
    return countA * aTasks + countB * bTasks;
  }

  /** Tile size in strips, shrunk until the job has enough tasks for each of `threads`. */
  private tileStrips(g: MatmulGeometry, count: number, threads: number): [number, number] {
    const { mr, nr } = this.config;
    const stripsM = Math.ceil(g.M / mr);
    const stripsN = Math.ceil(g.N / nr);
    let tileM = Math.min(stripsM, Math.ceil(this.blocking.tileRows / mr));
    let tileN = Math.min(stripsN, Math.ceil(this.blocking.tileCols / nr));
    const minTasks = this.blocking.minTasksPerThread * threads;
    while (count * Math.ceil(stripsM / tileM) * Math.ceil(stripsN / tileN) < minTasks && (tileM > 1 || tileN > 1)) {
      if (tileM * mr >= tileN * nr && tileM > 1) tileM = Math.ceil(tileM / 2);
      else if (tileN > 1) tileN = Math.ceil(tileN / 2);
      else tileM = Math.ceil(tileM / 2);
    }
    return [tileM, tileN];
  }

  private computeTaskCount(g: MatmulGeometry, count: number): number {
    const [tileM, tileN] = this.tileStrips(g, count, this.threads);
    return count * Math.ceil(Math.ceil(g.M / this.config.mr) / tileM) * Math.ceil(Math.ceil(g.N / this.config.nr) / tileN);
  }

  /** Runs batch entries [first, first + count) as one job. */
  private runChunk(a: Float32Array, b: Float32Array, out: Float32Array, g: MatmulGeometry, first: number, count: number): void {
    const { M, N, K } = g;
    const started = performance.now();
    const layout = this.layoutFor(g, count);
    this.ensureMemory(layout.end);
    this.copyInputs(a, b, out, g, first, count, layout);
    const copiedIn = performance.now();

    const flops = 2 * M * N * K * count;
    const threaded = this.threads > 1 && flops >= this.parallelThresholdFlops;
    if (threaded) this.startWorkers();

    const computeTasks = this.writeJob(g, count, layout, threaded ? this.threads : 1);
    if (threaded && this.pool !== undefined) {
      this.pool.wake(this.threads);
      this.threadedJobs++;
    }
    this.jobs++;
    try {
      this.run(0);
    } catch (error) {
      // Workers may still be inside this job, so its buffers cannot be reused safely.
      this.failure = `matmulWasm: the kernel trapped during ${describeShape(g)}: ${String(error)}`;
      throw new Error(`${this.failure}; please report the shape`, { cause: error });
    }
    const ran = performance.now();
    this.waitForJob(computeTasks, g);
    const waited = performance.now();

    const size = M * N;
    for (let i = 0; i < count; i++) {
      const from = layout.out / 4 + i * size;
      out.set(this.heap.subarray(from, from + size), (first + i) * g.strideOut);
    }

    this.timings.copyInMs += copiedIn - started;
    this.timings.runMs += ran - copiedIn;
    this.timings.waitMs += waited - ran;
    this.timings.copyOutMs += performance.now() - waited;
  }

  private copyInputs(
    a: Float32Array,
    b: Float32Array,
    out: Float32Array,
    g: MatmulGeometry,
    first: number,
    count: number,
    layout: JobLayout,
  ): void {
    const { M, N, K } = g;
    const spanA = g.strideA === 0 ? M * K : batchSpan(count, g.strideA, M * K);
    const spanB = g.strideB === 0 ? K * N : batchSpan(count, g.strideB, K * N);
    const startA = first * g.strideA;
    const startB = first * g.strideB;
    this.heap.set(a.subarray(startA, startA + spanA), layout.rawA / 4);
    this.heap.set(b.subarray(startB, startB + spanB), layout.rawB / 4);
    if (g.accumulate) {
      const size = M * N;
      for (let i = 0; i < count; i++) {
        const from = (first + i) * g.strideOut;
        this.heap.set(out.subarray(from, from + size), layout.out / 4 + i * size);
      }
    }
  }

  /** Writes the job descriptor and opens it for claims; returns the number of compute tasks. */
  private writeJob(g: MatmulGeometry, count: number, layout: JobLayout, threads: number): number {
    const { M, N, K } = g;
    const { mr, nr } = this.config;
    const job = this.job;
    const countA = g.strideA === 0 ? 1 : count;
    const countB = g.strideB === 0 ? 1 : count;
    const stripsM = Math.ceil(M / mr);
    const stripsN = Math.ceil(N / nr);
    const stripsPerATask = this.stripsPerPackTask(mr, K);
    const stripsPerBTask = this.stripsPerPackTask(nr, K);
    const aTasksPerMatrix = Math.ceil(stripsM / stripsPerATask);
    const bTasksPerMatrix = Math.ceil(stripsN / stripsPerBTask);
    const [tileStripsM, tileStripsN] = this.tileStrips(g, count, threads);
    const tilesM = Math.ceil(stripsM / tileStripsM);
    const tilesN = Math.ceil(stripsN / tileStripsN);
    const packTasks = countA * aTasksPerMatrix + countB * bTasksPerMatrix;
    const computeTasks = count * tilesM * tilesN;

    // The new sequence number goes first and the task counts next: a thread that claims from the
    // previous job compares sequences after reading the counts (see the run loop in gemm-module.ts).
    this.sequence = (this.sequence + 1) % SEQUENCE_MODULUS;
    Atomics.store(job, Job.sequence, this.sequence);
    Atomics.store(job, Job.packTasks, packTasks);
    Atomics.store(job, Job.computeTasks, computeTasks);

    job[Job.M] = M;
    job[Job.N] = N;
    job[Job.K] = K;
    job[Job.transA] = g.transA ? 1 : 0;
    job[Job.transB] = g.transB ? 1 : 0;
    job[Job.overwrite] = g.accumulate ? 0 : 1;
    job[Job.rawA] = layout.rawA;
    job[Job.strideA] = g.strideA * 4;
    job[Job.countA] = countA;
    job[Job.rawB] = layout.rawB;
    job[Job.strideB] = g.strideB * 4;
    job[Job.countB] = countB;
    job[Job.packA] = layout.packA;
    job[Job.packB] = layout.packB;
    job[Job.out] = layout.out;
    job[Job.batch] = count;
    job[Job.stripsM] = stripsM;
    job[Job.stripsN] = stripsN;
    job[Job.aTasksPerMatrix] = aTasksPerMatrix;
    job[Job.stripsPerATask] = stripsPerATask;
    job[Job.bTasksPerMatrix] = bTasksPerMatrix;
    job[Job.stripsPerBTask] = stripsPerBTask;
    job[Job.tileStripsM] = tileStripsM;
    job[Job.tileStripsN] = tileStripsN;
    job[Job.tilesM] = tilesM;
    job[Job.tilesN] = tilesN;
    job[Job.kc] = this.blocking.kc;
    job[Job.scratch] = layout.scratch;
    job[Job.packedABytes] = stripsM * mr * K * 4;
    job[Job.packedBBytes] = stripsN * nr * K * 4;
    job[Job.outMatrixBytes] = M * N * 4;

    Atomics.store(job, Job.packDone, 0);
    Atomics.store(job, Job.computeDone, 0);
    Atomics.store(job, Job.claim, this.sequence << TASK_INDEX_BITS);
    return computeTasks;
  }

  /** Blocks until every compute task of the job has finished, or a worker reports a trap. */
  private waitForJob(computeTasks: number, g: MatmulGeometry): void {
    for (;;) {
      const done = Atomics.load(this.job, Job.computeDone);
      if (done >= computeTasks) return;
      const failed = Atomics.load(this.control, CONTROL_ERROR);
      if (failed !== 0) {
        this.threads = 1;
        throw new Error(
          `matmulWasm: worker ${failed} trapped during ${describeShape(g)}; the error is on stderr. ` +
            'The engine now runs single-threaded; please report the shape',
        );
      }
      Atomics.wait(this.job, Job.computeDone, done, 1000);
    }
  }

  private startWorkers(): void {
    this.pool ??= new WorkerPool(this.module, this.memory);
    if (this.pool.started < this.threads - 1) {
      // Wait for new workers once (tens of ms) so the first large product already uses them.
      this.pool.grow(this.threads - 1, 2000);
    }
  }
}
