// Driver of the WebAssembly GEMM: checks the geometry, lays the operands out in the shared memory,
// writes the job descriptor, runs the tasks on the caller's thread and on the workers, and copies
// the result back into the caller's array.
import type { MatmulGeometry } from '../types.js';
import { buildGemmModule, relaxedSimdSupported } from './gemm-module.js';
import {
  CONTROL_ERROR,
  Job,
  JOB_ADDRESS,
  JOB_SLOTS,
  MAX_TASKS_PER_JOB,
  MAX_THREADS,
  OPERAND_B_OFFSET,
  SEQUENCE_MODULUS,
  STATS_ADDRESS,
  TASK_INDEX_BITS,
  type GemmConfig,
} from './gemm-layout.js';
import { batchSpan, planJob, rawRange, type GemmBlocking, type JobPlan, type OperandPlan } from './job-plan.js';
import { WorkerPool } from './thread-pool.js';
import { wasm, type WasmMemory, type WasmModule } from './wasm-api.js';

const PAGE_BYTES = 65536;
/** wasm32 addresses stop at 4 GiB. */
const MAX_PAGES = 65536;
const DEFAULT_JOB_BYTES_TARGET = 512 * 1024 * 1024;

/** Settings of one engine. */
export type { GemmBlocking } from './job-plan.js';

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
  /** Whether the runtime accepts relaxed-SIMD fused multiply-add; config.fusedMultiplyAdd shows whether the kernel uses it. */
  relaxedSimdAvailable: boolean;
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

function describeShape(g: MatmulGeometry): string {
  return (
    `batch=${g.batch} M=${g.M} N=${g.N} K=${g.K} transA=${g.transA} transB=${g.transB} ` +
    `strides A=${g.strideA} B=${g.strideB} out=${g.strideOut}`
  );
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
  /** Set after a thread trapped inside a job; the engine then rejects every call. */
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

  /** True after a thread trapped inside a job: create a new engine to continue. */
  get failed(): boolean {
    return this.failure !== undefined;
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
      relaxedSimdAvailable: relaxedSimdSupported(),
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
      throw new Error(`${this.failure}; this engine is unusable, so create a new one`);
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

  /** Batch entries per job: as many as fit in jobBytesTarget, and at least one. */
  private batchChunk(g: MatmulGeometry): number {
    const maxBytes = this.maxPages * PAGE_BYTES;
    const plan = (count: number): JobPlan => planJob(g, count, this.config, this.blocking, this.threads);
    const oneEntry = plan(1).layout.end;
    if (oneEntry > maxBytes) {
      throw new Error(
        `matmulWasm: ${describeShape(g)} needs ${oneEntry} bytes of WebAssembly memory for one batch entry ` +
          `(operands, output and packed panels) but the engine's memory stops at ${maxBytes}; ` +
          'split the product into smaller matmuls or use the reference kernel',
      );
    }
    const target = Math.max(this.jobBytesTarget, oneEntry);
    const fits = (count: number): boolean => {
      const candidate = plan(count);
      return candidate.layout.end <= target && candidate.packTasks + candidate.computeTasks <= MAX_TASKS_PER_JOB;
    };
    let low = 1;
    let high = g.batch;
    while (low < high) {
      const mid = Math.ceil((low + high) / 2);
      if (fits(mid)) low = mid;
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

  /** Runs batch entries [first, first + count) as one job. */
  private runChunk(a: Float32Array, b: Float32Array, out: Float32Array, g: MatmulGeometry, first: number, count: number): void {
    const { M, N, K } = g;
    const started = performance.now();
    const flops = 2 * M * N * K * count;
    const threaded = this.threads > 1 && flops >= this.parallelThresholdFlops;
    if (threaded) this.startWorkers();
    const plan = planJob(g, count, this.config, this.blocking, threaded ? this.threads : 1);
    this.ensureMemory(plan.layout.end);

    this.writeJob(g, count, plan);
    // With workers awake, they pack each range as soon as it is copied in.
    if (threaded && this.pool !== undefined) {
      this.pool.wake(this.threads);
      this.threadedJobs++;
    }
    this.jobs++;
    this.copyInputs(a, b, out, g, first, count, plan, threaded);
    const copiedIn = performance.now();

    try {
      this.run(0);
    } catch (error) {
      // Workers may still be inside this job, so its buffers cannot be reused safely.
      this.failure = `matmulWasm: the kernel trapped during ${describeShape(g)}: ${String(error)}`;
      throw new Error(`${this.failure}; please report the shape`, { cause: error });
    }
    const ran = performance.now();
    this.waitForJob(plan.computeTasks, g);
    const waited = performance.now();

    const size = M * N;
    for (let i = 0; i < count; i++) {
      const from = plan.layout.out / 4 + i * size;
      out.set(this.heap.subarray(from, from + size), (first + i) * g.strideOut);
    }

    this.timings.copyInMs += copiedIn - started;
    this.timings.runMs += ran - copiedIn;
    this.timings.waitMs += waited - ran;
    this.timings.copyOutMs += performance.now() - waited;
  }

  /**
   * Copies A and B (and C when accumulating) into the memory and publishes them to the packing
   * tasks. With `inStages`, A and B go in one packing task's range at a time, so workers pack
   * while the caller copies. The caller then adds 1 to packDone, which opens the compute tasks.
   */
  private copyInputs(
    a: Float32Array,
    b: Float32Array,
    out: Float32Array,
    g: MatmulGeometry,
    first: number,
    count: number,
    plan: JobPlan,
    inStages: boolean,
  ): void {
    const { layout } = plan;
    const operands: [Float32Array, OperandPlan, number, number][] = [
      [a, plan.a, first * g.strideA, layout.rawA / 4],
      [b, plan.b, first * g.strideB, layout.rawB / 4],
    ];
    // Overlapping batch entries (0 < stride < size) would copy shared ranges twice, once while a
    // worker may read them, so they go in whole.
    const overlapping = operands.some(([, op]) => op.count > 1 && op.stride < op.size);

    if (inStages && !overlapping) {
      let task = 0;
      for (const [source, op, sourceStart, target] of operands) {
        const tasks = op.count * op.tasksPerMatrix;
        for (let i = 0; i < tasks; i++) {
          const [start, end] = rawRange(op, i);
          this.heap.set(source.subarray(sourceStart + start, sourceStart + end), target + start);
          task++;
          Atomics.store(this.job, Job.rawReady, task);
          Atomics.notify(this.job, Job.rawReady);
        }
      }
    } else {
      for (const [source, op, sourceStart, target] of operands) {
        const span = batchSpan(op.count, op.stride, op.size);
        this.heap.set(source.subarray(sourceStart, sourceStart + span), target);
      }
      Atomics.store(this.job, Job.rawReady, plan.packTasks);
      Atomics.notify(this.job, Job.rawReady);
    }

    if (g.accumulate) {
      const size = g.M * g.N;
      for (let i = 0; i < count; i++) {
        const from = (first + i) * g.strideOut;
        this.heap.set(out.subarray(from, from + size), layout.out / 4 + i * size);
      }
    }
    if (Atomics.add(this.job, Job.packDone, 1) + 1 === plan.packTasks + 1) {
      Atomics.notify(this.job, Job.packDone);
    }
  }

  /** Writes the job descriptor and opens it for claims. */
  private writeJob(g: MatmulGeometry, count: number, plan: JobPlan): void {
    const { M, N, K } = g;
    const { layout } = plan;
    const job = this.job;

    // The new sequence number goes first and the task counts next: a thread that claims from the
    // previous job compares sequences after reading the counts (see the run loop in gemm-module.ts).
    this.sequence = (this.sequence + 1) % SEQUENCE_MODULUS;
    Atomics.store(job, Job.sequence, this.sequence);
    Atomics.store(job, Job.packTasks, plan.packTasks);
    Atomics.store(job, Job.computeTasks, plan.computeTasks);

    job[Job.M] = M;
    job[Job.N] = N;
    job[Job.K] = K;
    job[Job.transA] = g.transA ? 1 : 0;
    job[Job.transB] = g.transB ? 1 : 0;
    job[Job.overwrite] = g.accumulate ? 0 : 1;
    job[Job.out] = layout.out;
    job[Job.batch] = count;
    job[Job.tileStripsM] = plan.tileStripsM;
    job[Job.tileStripsN] = plan.tileStripsN;
    job[Job.tilesM] = plan.tilesM;
    job[Job.tilesN] = plan.tilesN;
    job[Job.kc] = this.blocking.kc;
    job[Job.scratch] = layout.scratch;
    job[Job.outMatrixBytes] = M * N * 4;
    this.writeOperand(plan.a, layout.rawA, layout.packA, 0);
    this.writeOperand(plan.b, layout.rawB, layout.packB, OPERAND_B_OFFSET);

    Atomics.store(job, Job.rawReady, 0);
    Atomics.store(job, Job.packDone, 0);
    Atomics.store(job, Job.computeDone, 0);
    Atomics.store(job, Job.claim, this.sequence << TASK_INDEX_BITS);
  }

  /** Writes one operand's fields; `offset` is 0 for A and OPERAND_B_OFFSET for B. */
  private writeOperand(op: OperandPlan, raw: number, packed: number, offset: number): void {
    const job = this.job;
    job[Job.rawA + offset] = raw;
    job[Job.strideA + offset] = op.stride * 4;
    job[Job.countA + offset] = op.count;
    job[Job.packA + offset] = packed;
    job[Job.packedABytes + offset] = op.packedBytes;
    job[Job.stripsA + offset] = op.strips;
    job[Job.tasksPerMatrixA + offset] = op.tasksPerMatrix;
    job[Job.stripsPerTaskA + offset] = op.stripsPerTask;
    job[Job.kChunksA + offset] = op.kChunks;
    job[Job.kPerTaskA + offset] = op.kPerTask;
  }

  /** Blocks until every compute task of the job has finished, or a worker reports a trap. */
  private waitForJob(computeTasks: number, g: MatmulGeometry): void {
    for (;;) {
      const done = Atomics.load(this.job, Job.computeDone);
      if (done >= computeTasks) return;
      const failed = Atomics.load(this.control, CONTROL_ERROR);
      if (failed !== 0) {
        // Other threads may still be inside this job, so its buffers cannot be reused safely.
        // NOTE: no test makes a worker trap, so this branch has only been reasoned about.
        this.failure = `matmulWasm: worker ${failed} trapped during ${describeShape(g)} (the error is on stderr)`;
        throw new Error(`${this.failure}; please report the shape`);
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
