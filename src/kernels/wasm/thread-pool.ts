// Worker threads that share the GEMM module's memory. The caller stays synchronous: it wakes the
// workers through the generation counter in shared memory, runs tasks itself, then blocks in
// Atomics.wait (allowed on Node's main thread) until every task is done.
import { Worker } from 'node:worker_threads';
import type { WasmMemory, WasmModule } from './wasm-api.js';
import { CONTROL_ACTIVE_THREADS, CONTROL_ERROR, CONTROL_GENERATION, CONTROL_READY, Job, JOB_ADDRESS } from './gemm-layout.js';

const WORKER_URL = new URL('./matmul-worker.js', import.meta.url);

export class WorkerPool {
  private readonly workers: Worker[] = [];
  private readonly control: Int32Array;

  constructor(
    private readonly module: WasmModule,
    private readonly memory: WasmMemory,
  ) {
    // The control block sits at byte 0 and never moves when the memory grows.
    this.control = new Int32Array(memory.buffer, 0, 16);
  }

  /** Workers started so far; thread ids 1..started run in them (id 0 is the caller). */
  get started(): number {
    return this.workers.length;
  }

  /** Workers that have instantiated the module and wait for jobs. */
  get ready(): number {
    return Atomics.load(this.control, CONTROL_READY);
  }

  /** Id of a worker that trapped, or 0 when none did. */
  get failedWorker(): number {
    return Atomics.load(this.control, CONTROL_ERROR);
  }

  /**
   * Starts workers until `count` exist, then blocks up to `readyTimeoutMs` for them to be ready.
   * A worker that is not ready in time joins later jobs; the caller's job runs without it.
   */
  grow(count: number, readyTimeoutMs: number): void {
    while (this.workers.length < count) {
      const tid = this.workers.length + 1;
      const worker = new Worker(WORKER_URL, {
        workerData: {
          module: this.module,
          memory: this.memory,
          tid,
          jobAddress: JOB_ADDRESS,
          computeDoneSlot: Job.computeDone,
        },
        // The worker is plain JavaScript: skip loaders such as tsx that the parent may carry.
        execArgv: [],
        name: `rwkvify-matmul-${tid}`,
      });
      // Idle workers must not keep the process alive.
      worker.unref();
      worker.on('error', (error: Error) => {
        console.error(`rwkvify matmul worker ${tid} failed: ${error.stack ?? error.message}`);
      });
      this.workers.push(worker);
    }

    const deadline = performance.now() + readyTimeoutMs;
    for (;;) {
      const ready = this.ready;
      const left = deadline - performance.now();
      if (ready >= this.workers.length || left <= 0) return;
      Atomics.wait(this.control, CONTROL_READY, ready, left);
    }
  }

  /** Wakes the workers for the job just written; those with an id below `threads` join it. */
  wake(threads: number): void {
    Atomics.store(this.control, CONTROL_ACTIVE_THREADS, threads);
    Atomics.add(this.control, CONTROL_GENERATION, 1);
    Atomics.notify(this.control, CONTROL_GENERATION);
  }
}
