// WKV-7 forward + backward time per token per head at the GPT-2 head size (N = 64), on every
// backend that starts here, against the float64 reference. Backends are interleaved rep by rep so
// machine load hits them alike; the table reports the median rep.
// Usage: node --import tsx bench/wkv7.bench.ts
import { pathToFileURL } from 'node:url';

import { BackendUnavailableError, startAsyncKernels, type AsyncKernels } from '../src/kernels/backend.js';
import { wkv7ForwardReference } from '../src/kernels/wkv7-reference.js';
import type { Wkv7Dims, Wkv7Inputs } from '../src/kernels/wkv7-types.js';

const DIMS: Wkv7Dims = { B: 1, T: 256, H: 4, N: 64 };
const REPS = 5;
/** A backend whose reps have used this much wall time gets no further reps. */
const BUDGET_MS = 20_000;
/** wasm runs WKV-7 on the js kernel, so it is not listed separately. */
const BACKENDS = ['reference', 'js', 'cpu', 'webasm', 'headlessgl', 'webgpu'] as const;

function makeRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 4294967296;
  };
}

/** Model-like inputs: unit removal key κ̂ per head, a = −κ̂, b = κ̂·α, decays in (0.55, 1). */
function benchInputs(d: Wkv7Dims): { x: Wkv7Inputs; dy: Float32Array } {
  const random = makeRandom(1);
  const length = d.B * d.T * d.H * d.N;
  const fill = (f: () => number) => Float32Array.from({ length }, f);
  const kappa = fill(() => random() - 0.5);
  for (let o = 0; o < length; o += d.N) {
    let norm = 0;
    for (let j = 0; j < d.N; j++) norm += kappa[o + j] ** 2;
    for (let j = 0; j < d.N; j++) kappa[o + j] /= Math.sqrt(norm);
  }
  const x: Wkv7Inputs = {
    r: fill(() => random() - 0.5),
    w: fill(() => Math.exp(-Math.exp(-0.5) * random())),
    k: fill(() => (random() - 0.5) * 0.2),
    v: fill(() => random() - 0.5),
    a: kappa.map((z) => -z),
    b: kappa.map((z) => z * random()),
    s0: null,
  };
  return { x, dy: fill(() => random() - 0.5) };
}

interface Timing {
  forward: number[];
  backward: number[];
  spent: number;
  maxError: number;
}

function median(values: number[]): number {
  const sorted = [...values].sort((p, q) => p - q);
  return sorted[Math.floor(sorted.length / 2)];
}

async function startAll(): Promise<{ started: AsyncKernels[]; skipped: string[] }> {
  const started: AsyncKernels[] = [];
  const skipped: string[] = [];
  for (const name of BACKENDS) {
    try {
      started.push(await startAsyncKernels(name));
    } catch (error) {
      if (!(error instanceof BackendUnavailableError)) throw error;
      skipped.push(`${name}: ${error.reason}`);
    }
  }
  return { started, skipped };
}

/** Runs the benchmark and returns a markdown section. */
export async function runWkvBench(): Promise<string> {
  const d = DIMS;
  const { x, dy } = benchInputs(d);
  const x64: Wkv7Inputs = {
    r: Float64Array.from(x.r), w: Float64Array.from(x.w), k: Float64Array.from(x.k),
    v: Float64Array.from(x.v), a: Float64Array.from(x.a), b: Float64Array.from(x.b), s0: null,
  };
  const expectedY = wkv7ForwardReference(x64, d).y;
  const { started, skipped } = await startAll();
  const timings = new Map<string, Timing>(started.map((k) => [k.name, { forward: [], backward: [], spent: 0, maxError: 0 }]));

  // Rep 0 warms up (JIT, kernel compilation) and is not counted.
  for (let rep = 0; rep <= REPS; rep++) {
    for (const kernels of started) {
      const timing = timings.get(kernels.name) as Timing;
      if (timing.spent > BUDGET_MS) continue;
      const t0 = performance.now();
      const forward = await kernels.wkv7Forward(x, d);
      const t1 = performance.now();
      await kernels.wkv7Backward(x, d, forward.saved, dy, null);
      const t2 = performance.now();
      timing.spent += t2 - t0;
      if (rep === 0) {
        for (let i = 0; i < expectedY.length; i++) {
          timing.maxError = Math.max(timing.maxError, Math.abs(forward.y[i] - expectedY[i]));
        }
        continue;
      }
      timing.forward.push(t1 - t0);
      timing.backward.push(t2 - t1);
    }
  }
  for (const kernels of started) kernels.destroy();

  const perTokenHead = 1000 / (d.B * d.T * d.H); // ms per call → µs per token per head
  const js = timings.get('js');
  const jsTotal = js === undefined ? NaN : median(js.forward) + median(js.backward);
  const rows = started.map((kernels) => {
    const t = timings.get(kernels.name) as Timing;
    if (t.forward.length === 0) return `| ${kernels.name} | over budget | | | | |`;
    const fwd = median(t.forward);
    const bwd = median(t.backward);
    const total = fwd + bwd;
    return (
      `| ${kernels.name} | ${(fwd * perTokenHead).toFixed(1)} | ${(bwd * perTokenHead).toFixed(1)} | ` +
      `${(total * perTokenHead).toFixed(1)} | ${(total / jsTotal).toFixed(2)} | ${t.maxError.toExponential(1)} | ${t.forward.length} |`
    );
  });

  return [
    `WKV-7 forward + backward, float32 inputs, B=${d.B} T=${d.T} H=${d.H} N=${d.N}, median of up to ${REPS} ` +
      `reps after one warm-up, backends interleaved; µs per token per head.`,
    '',
    '| backend | forward µs | backward µs | total µs | × js | max abs err of y vs float64 | reps |',
    '|---|---|---|---|---|---|---|',
    ...rows,
    '',
    skipped.length > 0 ? `Not measured (cannot start here): ${skipped.join('; ')}.` : 'Every backend started.',
  ].join('\n');
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.stdout.write(`${await runWkvBench()}\n`);
}
