// Worker thread of the WebAssembly matmul. Plain JavaScript so that it starts without a
// TypeScript loader, whether the parent runs under tsx, vitest or plain node.
//
// It instantiates the GEMM module on the shared memory, reports itself ready, then sleeps on the
// generation counter. Each new generation is a new job: the worker calls `run(tid)`, which claims
// tasks until none are left, and sleeps again. The slot numbers repeat CONTROL_* from
// gemm-layout.ts.
import { workerData } from 'node:worker_threads';

const CONTROL_GENERATION = 0;
const CONTROL_ACTIVE_THREADS = 1;
const CONTROL_READY = 2;
const CONTROL_ERROR = 3;

const { module, memory, tid, jobAddress, computeDoneSlot } = workerData;
const instance = new WebAssembly.Instance(module, { env: { memory } });
const run = instance.exports.run;
// The control block sits at byte 0, so this view stays valid when the memory grows.
const control = new Int32Array(memory.buffer, 0, 16);

Atomics.add(control, CONTROL_READY, 1);
Atomics.notify(control, CONTROL_READY);

let seenGeneration = Atomics.load(control, CONTROL_GENERATION);
for (;;) {
  Atomics.wait(control, CONTROL_GENERATION, seenGeneration);
  seenGeneration = Atomics.load(control, CONTROL_GENERATION);
  if (tid >= Atomics.load(control, CONTROL_ACTIVE_THREADS)) continue;
  try {
    run(tid);
  } catch (error) {
    // The caller blocks until every task reports done; a trap here would leave it waiting forever,
    // so flag the failure and wake it. It then throws and stops using the workers.
    Atomics.store(control, CONTROL_ERROR, tid);
    const job = new Int32Array(memory.buffer, jobAddress, 16);
    Atomics.notify(job, computeDoneSlot);
    console.error(`rwkvify matmul worker ${tid}: ${error instanceof Error ? error.stack : String(error)}`);
    break;
  }
}
