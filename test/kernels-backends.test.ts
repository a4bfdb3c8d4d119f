// One suite for every kernel backend. Each backend that starts on this machine runs matmul and
// WKV-7 against the float64 reference, and one that cannot start is skipped with its reason printed.
import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { GPU } from 'gpu.js';
import {
  BACKEND_NAMES,
  BackendUnavailableError,
  backendChoice,
  describeBackendChoice,
  logBackendChoice,
  matmulKernels,
  resetBackends,
  setBackend,
  startAsyncKernels,
  startSyncKernels,
  wkv7Kernels,
  type AsyncKernels,
  type BackendName,
} from '../src/kernels/backend.js';
import { matmul, wkv7Backward, wkv7Forward } from '../src/kernels/index.js';
import { matmulReference } from '../src/kernels/matmul-reference.js';
import { planMatmulTiles, matmulGpuJs } from '../src/kernels/gpujs/matmul.js';
import { GpuJsRuntime } from '../src/kernels/gpujs/runtime.js';
import { wkv7BackwardReference, wkv7ForwardReference } from '../src/kernels/wkv7-reference.js';
import type { Wkv7Dims, Wkv7Gradients, Wkv7Inputs } from '../src/kernels/wkv7-types.js';
import type { FloatArray, MatmulGeometry } from '../src/kernels/types.js';

// ---------------------------------------------------------------------------------------------
// Helpers

function makeRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 4294967296;
  };
}

function randomFloat32(length: number, seed: number): Float32Array {
  const random = makeRandom(seed);
  return Float32Array.from({ length }, () => random() * 2 - 1);
}

function geometry(batch: number, M: number, N: number, K: number, transA: boolean, transB: boolean, bBatched: boolean, accumulate: boolean): MatmulGeometry {
  return { batch, M, N, K, transA, transB, strideA: M * K, strideB: bBatched ? N * K : 0, strideOut: M * N, accumulate };
}

/** Largest |actual − expected| / (atol + rtol·|expected|) with its index; ≤ 1 means close. */
function expectClose(name: string, actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number, atol: number): void {
  expect(actual.length, `${name} length`).toBe(expected.length);
  let worst = 0;
  let index = -1;
  for (let i = 0; i < expected.length; i++) {
    const diff = Math.abs(actual[i] - expected[i]);
    const ratio = diff === 0 ? 0 : diff / (atol + rtol * Math.abs(expected[i]));
    if (!(ratio <= worst)) {
      worst = ratio;
      index = i;
    }
  }
  const detail = index < 0 ? '' : `at [${index}]: got ${actual[index]}, expected ${expected[index]}`;
  expect(worst, `${name} ${detail}`).toBeLessThanOrEqual(1);
}

/** Runs one matmul case on `run` and compares with the float64 reference. */
async function checkMatmul(
  run: (a: FloatArray, b: FloatArray, out: FloatArray, g: MatmulGeometry) => void | Promise<void>,
  g: MatmulGeometry,
  seed: number,
): Promise<void> {
  const a = randomFloat32(g.batch * g.M * g.K, seed);
  const b = randomFloat32((g.strideB === 0 ? 1 : g.batch) * g.N * g.K, seed + 1);
  const initial = randomFloat32(g.batch * g.M * g.N, seed + 2);
  const expected = Float64Array.from(initial);
  matmulReference(Float64Array.from(a), Float64Array.from(b), expected, g);

  const out = Float32Array.from(initial);
  await run(a, b, out, g);
  // float32 sums of K products of values in [-1, 1]: the rounding error grows with K.
  expectClose(`matmul ${JSON.stringify(g)}`, out, expected, 1e-5, 1e-6 + 4e-7 * g.K);
}

function randomWkvInputs(d: Wkv7Dims, seed: number, withState: boolean): Wkv7Inputs {
  const random = makeRandom(seed);
  const length = d.B * d.T * d.H * d.N;
  const fill = (f: () => number) => Float32Array.from({ length }, f);
  return {
    r: fill(() => random() - 0.5),
    w: fill(() => Math.exp(-Math.exp(-0.5) * random())),
    k: fill(() => (random() - 0.5) * 0.6),
    v: fill(() => random() - 0.5),
    a: fill(() => (random() - 0.5) * 0.4),
    b: fill(() => (random() - 0.5) * 0.4),
    s0: withState ? Float32Array.from({ length: d.B * d.H * d.N * d.N }, () => random() - 0.5) : null,
  };
}

function toFloat64(x: Wkv7Inputs): Wkv7Inputs {
  const f = (a: FloatArray) => Float64Array.from(a);
  return { r: f(x.r), w: f(x.w), k: f(x.k), v: f(x.v), a: f(x.a), b: f(x.b), s0: x.s0 === null ? null : f(x.s0) };
}

interface WkvRunner {
  forward(x: Wkv7Inputs, d: Wkv7Dims): ReturnType<typeof wkv7ForwardReference> | Promise<ReturnType<typeof wkv7ForwardReference>>;
  backward(...args: Parameters<typeof wkv7BackwardReference>): Wkv7Gradients | Promise<Wkv7Gradients>;
}

/** Forward and backward of one case against the float64 reference (float32 tolerances). */
async function checkWkv(runner: WkvRunner, d: Wkv7Dims, seed: number, withState: boolean, withDsT: boolean): Promise<void> {
  const x = randomWkvInputs(d, seed, withState);
  const dy = randomFloat32(d.B * d.T * d.H * d.N, seed + 1);
  const dsT = withDsT ? randomFloat32(d.B * d.H * d.N * d.N, seed + 2) : null;
  const x64 = toFloat64(x);
  const ref = wkv7ForwardReference(x64, d);
  const refGrads = wkv7BackwardReference(x64, d, ref.saved, Float64Array.from(dy), dsT === null ? null : Float64Array.from(dsT));

  const out = await runner.forward(x, d);
  const label = `B=${d.B} T=${d.T} H=${d.H} N=${d.N}`;
  expectClose(`y ${label}`, out.y, ref.y, 1e-4, 1e-5);
  expectClose(`sT ${label}`, out.sT, ref.sT, 1e-4, 1e-5);

  const grads = await runner.backward(x, d, out.saved, dy, dsT);
  for (const name of ['dr', 'dw', 'dk', 'dv', 'da', 'db', 'ds0'] as const) {
    expectClose(`${name} ${label}`, grads[name], refGrads[name], 1e-4, 1e-5);
  }
}

// ---------------------------------------------------------------------------------------------
// Which backends start here

const SYNC_NAMES = BACKEND_NAMES.filter((name) => name !== 'webgpu');

function tryStartSync(name: BackendName): string | null {
  try {
    startSyncKernels(name);
    return null;
  } catch (error) {
    if (error instanceof BackendUnavailableError) return error.message;
    throw error;
  }
}

const syncUnavailable = new Map<BackendName, string>();
for (const name of SYNC_NAMES) {
  const reason = tryStartSync(name);
  if (reason !== null) {
    syncUnavailable.set(name, reason);
    console.warn(`kernels-backends: skipping ${name}: ${reason}`);
  }
}

let webgpu: AsyncKernels | null = null;
let webgpuReason = '';
try {
  webgpu = await startAsyncKernels('webgpu');
} catch (error) {
  if (!(error instanceof BackendUnavailableError)) throw error;
  webgpuReason = error.message;
  console.warn(`kernels-backends: skipping webgpu: ${webgpuReason}`);
}

// ---------------------------------------------------------------------------------------------
// Per-backend correctness

const GPUJS_NAMES = new Set<BackendName>(['cpu', 'webasm', 'headlessgl', 'webgpu']);

interface BackendUnderTest {
  name: BackendName;
  matmul(a: FloatArray, b: FloatArray, out: FloatArray, g: MatmulGeometry): void | Promise<void>;
  wkv: WkvRunner;
}

const backends: { name: BackendName; reason: string | null; get: () => BackendUnderTest }[] = [
  ...SYNC_NAMES.map((name) => ({
    name,
    reason: syncUnavailable.get(name) ?? null,
    get: (): BackendUnderTest => {
      const kernels = startSyncKernels(name);
      return {
        name,
        matmul: (a, b, out, g) => kernels.matmul(a, b, out, g),
        wkv: { forward: (x, d) => kernels.wkv7Forward(x, d), backward: (...args) => kernels.wkv7Backward(...args) },
      };
    },
  })),
  {
    name: 'webgpu' as const,
    reason: webgpu === null ? webgpuReason : null,
    get: (): BackendUnderTest => {
      const kernels = webgpu as AsyncKernels;
      return {
        name: 'webgpu',
        matmul: (a, b, out, g) => kernels.matmul(a, b, out, g),
        wkv: { forward: (x, d) => kernels.wkv7Forward(x, d), backward: (...args) => kernels.wkv7Backward(...args) },
      };
    },
  },
];

for (const backend of backends) {
  if (backend.reason !== null) {
    describe(`backend ${backend.name}`, () => {
      it.skip(`cannot start here: ${backend.reason}`, () => undefined);
    });
    continue;
  }

  describe(`backend ${backend.name}`, () => {
    const isGpuJs = GPUJS_NAMES.has(backend.name);

    it('matmul on random shapes', async () => {
      const b = backend.get();
      await fc.assert(
        fc.asyncProperty(
          fc.record({
            batch: fc.integer({ min: 1, max: 3 }),
            M: fc.integer({ min: 1, max: 19 }),
            N: fc.integer({ min: 1, max: 23 }),
            K: fc.integer({ min: 1, max: 37 }),
            transA: fc.boolean(),
            transB: fc.boolean(),
            bBatched: fc.boolean(),
            accumulate: fc.boolean(),
            seed: fc.integer({ min: 0, max: 100_000 }),
          }),
          async (c) => {
            const g = geometry(c.batch, c.M, c.N, c.K, c.transA, c.transB, c.bBatched, c.accumulate);
            await checkMatmul(b.matmul, g, c.seed);
          },
        ),
        // gpu.js compiles one kernel per shape (15-40 ms each), so fewer cases there.
        { numRuns: isGpuJs ? 15 : 60, seed: 4242 },
      );
    });

    it('matmul with K = 3072 and a wide output', async () => {
      const b = backend.get();
      await checkMatmul(b.matmul, geometry(1, 3, 5, 3072, false, true, true, false), 7);
      await checkMatmul(b.matmul, geometry(1, 2, 2000, 64, false, false, true, false), 8);
      await checkMatmul(b.matmul, geometry(1, 1, 1, 1, true, true, true, true), 9);
    });

    it('matmul of the GPT-2 head shape', async () => {
      // [2, 768] × [50257, 768]ᵀ: the weight alone is 154 MB, beyond one WebGPU buffer, and tiles
      // of it pass 2^24 elements, where float32 index arithmetic in generated shaders rounds.
      const b = backend.get();
      await checkMatmul(b.matmul, geometry(1, 2, 50257, 768, false, true, false, false), 10);
    });

    it('matmul keeps float64 exact', async () => {
      const b = backend.get();
      const g = geometry(2, 3, 4, 5, false, true, false, false);
      const a = Float64Array.from(randomFloat32(2 * 3 * 5, 1), (v) => v / 3);
      const bm = Float64Array.from(randomFloat32(4 * 5, 2), (v) => v / 7);
      const expected = new Float64Array(2 * 3 * 4);
      matmulReference(a, bm, expected, g);
      const out = new Float64Array(2 * 3 * 4);
      await b.matmul(a, bm, out, g);
      expect(Array.from(out)).toEqual(Array.from(expected));
    });

    it('wkv7 forward and backward on random dims', async () => {
      const b = backend.get();
      await fc.assert(
        fc.asyncProperty(
          fc.record({
            B: fc.integer({ min: 1, max: 2 }),
            T: fc.integer({ min: 1, max: 12 }),
            H: fc.integer({ min: 1, max: 2 }),
            N: fc.integer({ min: 1, max: 8 }),
            withState: fc.boolean(),
            withDsT: fc.boolean(),
            seed: fc.integer({ min: 0, max: 100_000 }),
          }),
          async (c) => checkWkv(b.wkv, { B: c.B, T: c.T, H: c.H, N: c.N }, c.seed, c.withState, c.withDsT),
        ),
        { numRuns: isGpuJs ? 6 : 25, seed: 777 },
      );
    });

    it('wkv7 at N = 64 and T = 1100', async () => {
      const b = backend.get();
      await checkWkv(b.wkv, { B: 1, T: 3, H: 2, N: 64 }, 51, true, true);

      // Past gpu.js's default loopMaxIterations of 1000: the last position must still match.
      const d = { B: 1, T: 1100, H: 1, N: 4 };
      const x = randomWkvInputs(d, 52, true);
      const ref = wkv7ForwardReference(toFloat64(x), d);
      const out = await b.wkv.forward(x, d);
      const last = (y: FloatArray) => Array.from(y.subarray((d.T - 1) * d.N, d.T * d.N));
      expectClose('y[1099]', last(out.y), last(ref.y), 1e-4, 1e-5);
      expectClose('sT', out.sT, ref.sT, 1e-4, 1e-5);
    });

    it('wkv7 backward reads saved state of the js forward', async () => {
      const b = backend.get();
      const d = { B: 2, T: 9, H: 1, N: 5 };
      const x = randomWkvInputs(d, 61, true);
      const dy = randomFloat32(d.B * d.T * d.H * d.N, 62);
      const js = startSyncKernels('js');
      const forward = js.wkv7Forward(x, d);
      const expected = js.wkv7Backward(x, d, forward.saved, dy, null);
      const grads = await b.wkv.backward(x, d, forward.saved, dy, null);
      for (const name of ['dr', 'dw', 'dk', 'dv', 'da', 'db', 'ds0'] as const) {
        expectClose(name, grads[name], expected[name], 1e-4, 1e-5);
      }
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Tiling for device limits

describe('gpujs matmul tiling', () => {
  it('plans logits [1024, 50257] within headlessgl and webgpu limits', () => {
    const g = geometry(1, 1024, 50257, 768, false, true, true, false);
    const gl = planMatmulTiles(g, { maxArrayElements: 2 ** 24, maxOutputSide: 16384 });
    expect(gl.cols).toBeLessThanOrEqual(16384);
    expect(gl.rows).toBeLessThanOrEqual(16384);
    expect(gl.cols * 768).toBeLessThanOrEqual(2 ** 24);
    expect(gl.rows * gl.cols * gl.batches).toBeLessThanOrEqual(2 ** 24);

    const webgpuLimit = 134217728 / 4;
    const gpu = planMatmulTiles(g, { maxArrayElements: webgpuLimit, maxOutputSide: Infinity });
    expect(gpu.cols * 768).toBeLessThanOrEqual(webgpuLimit);
    expect(gpu.rows * 768 * gpu.batches).toBeLessThanOrEqual(webgpuLimit);
    expect(gpu.rows * gpu.cols * gpu.batches).toBeLessThanOrEqual(webgpuLimit);
  });

  it('rejects K above the array limit', () => {
    const g = geometry(1, 1, 1, 2000, false, false, true, false);
    expect(() => planMatmulTiles(g, { maxArrayElements: 1000, maxOutputSide: 10 })).toThrow(
      'gpujs matmul: K = 2000 exceeds the 1000-element limit of one array on this backend',
    );
  });

  it('tiles every dimension under tiny limits', () => {
    // A cpu runtime with artificial limits forces tiles along batch, rows and columns.
    const rt = new GpuJsRuntime('cpu', new GPU({ mode: 'cpu' }), { maxArrayElements: 120, maxOutputSide: 7 });
    try {
      for (const [i, g] of [
        geometry(5, 17, 19, 6, false, true, true, false),
        geometry(4, 9, 30, 11, true, false, false, true),
        geometry(3, 2, 3, 4, false, false, true, false),
      ].entries()) {
        const plan = planMatmulTiles(g, rt.limits);
        expect(plan.rows * g.K).toBeLessThanOrEqual(120);
        const a = randomFloat32(g.batch * g.M * g.K, i);
        const b = randomFloat32((g.strideB === 0 ? 1 : g.batch) * g.N * g.K, i + 10);
        const expected = new Float64Array(g.batch * g.M * g.N);
        const out = new Float32Array(g.batch * g.M * g.N);
        matmulReference(Float64Array.from(a), Float64Array.from(b), expected, g);
        matmulGpuJs(rt, a, b, out, g);
        expectClose(`tiled ${JSON.stringify(g)}`, out, expected, 1e-5, 1e-5);
      }
    } finally {
      rt.destroy();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Selection

describe('backend selection', () => {
  const savedEnv = process.env.RWKVIFY_BACKEND;
  afterEach(() => {
    if (savedEnv === undefined) delete process.env.RWKVIFY_BACKEND;
    else process.env.RWKVIFY_BACKEND = savedEnv;
    resetBackends();
  });

  it('rejects an unknown name listing the valid ones', () => {
    expect(() => setBackend('cuda')).toThrow(
      'backend: unknown backend "cuda" (from setBackend); valid names: reference, js, wasm, cpu, webasm, headlessgl, webgpu, auto',
    );
  });

  it('reads RWKVIFY_BACKEND and lets setBackend override it', () => {
    delete process.env.RWKVIFY_BACKEND;
    expect(backendChoice()).toBe('auto');
    process.env.RWKVIFY_BACKEND = 'reference';
    expect(backendChoice()).toBe('reference');
    expect(wkv7Kernels().name).toBe('reference');
    setBackend('js');
    expect(backendChoice()).toBe('js');
    expect(matmulKernels(geometry(1, 2, 2, 2, false, false, true, false)).name).toBe('js');
  });

  it('rejects an invalid RWKVIFY_BACKEND at first use', () => {
    process.env.RWKVIFY_BACKEND = 'gpu';
    expect(() => wkv7Kernels()).toThrow('backend: unknown backend "gpu" (from RWKVIFY_BACKEND)');
  });

  it('explains why webgpu cannot serve the synchronous path', () => {
    expect(() => setBackend('webgpu')).toThrow(/webgpu kernels return Promises .* startAsyncKernels\("webgpu"\)/);
  });

  it('reports a backend that cannot start with what to install', () => {
    const reason = syncUnavailable.get('headlessgl');
    if (reason === undefined) {
      console.warn('kernels-backends: headlessgl starts here, so its missing-package message is not checked');
      return;
    }
    // Collection started headlessgl before anything else, so its reason is the missing package or display.
    // Without gl the advice is to install it; with gl but no display, to run under xvfb-run.
    if (/does not load/.test(reason)) expect(reason).toMatch(/^backend: headlessgl cannot start: .*Install: .*gl@8\.1\.6.*xvfb-run -a npx rwkvify bench kernels/);
    else expect(reason).toMatch(/^backend: headlessgl cannot start: gl loaded but created no WebGL context .*Run under an X display, e\.g\. xvfb-run -a npx rwkvify bench kernels/);
    expect(() => setBackend('headlessgl')).toThrow(/^backend: headlessgl cannot start: /);
  });

  it('auto picks js for wkv7 and tiny matmuls, wasm for larger ones', () => {
    delete process.env.RWKVIFY_BACKEND;
    const wasmStarts = !syncUnavailable.has('wasm');
    const glStarts = !syncUnavailable.has('headlessgl');
    expect(matmulKernels(geometry(1, 4, 4, 4, false, false, true, false)).name).toBe('js');
    if (!glStarts) {
      expect(wkv7Kernels().name).toBe('js');
      expect(matmulKernels(geometry(1, 64, 64, 64, false, false, true, false)).name).toBe(wasmStarts ? 'wasm' : 'js');
    }
  });

  it('dispatches through index.ts on the chosen backend', () => {
    setBackend('reference');
    const g = geometry(1, 2, 3, 4, false, false, true, false);
    const a = randomFloat32(8, 1);
    const b = randomFloat32(12, 2);
    const out = new Float32Array(6);
    const expected = new Float32Array(6);
    matmul(a, b, out, g);
    matmulReference(a, b, expected, g);
    expect(Array.from(out)).toEqual(Array.from(expected));

    const d = { B: 1, T: 4, H: 1, N: 3 };
    const x = randomWkvInputs(d, 3, false);
    const forward = wkv7Forward(x, d);
    expect(forward.saved.interval).toBe(1); // the reference keeps every state
    const grads = wkv7Backward(x, d, forward.saved, randomFloat32(12, 4), null);
    expect(grads.dr).toBeInstanceOf(Float32Array);
  });

  it('logs one line naming the choice', () => {
    setBackend('js');
    const lines: string[] = [];
    const stream = { write: (text: string) => lines.push(text) } as unknown as NodeJS.WritableStream;
    expect(logBackendChoice(stream)).toBe('backend: js');
    expect(lines).toEqual(['backend: js\n']);
    resetBackends();
    delete process.env.RWKVIFY_BACKEND;
    expect(describeBackendChoice()).toMatch(/^backend: auto \(matmul < 512 MACs: js, larger: \w+; wkv7: \w+\)/);
  });
});
