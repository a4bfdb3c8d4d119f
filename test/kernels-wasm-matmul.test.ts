import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { matmulReference } from '../src/kernels/matmul-reference.js';
import type { MatmulGeometry } from '../src/kernels/types.js';
import {
  DEFAULT_GEMM_BLOCKING,
  DEFAULT_GEMM_CONFIG,
  DEFAULT_PARALLEL_THRESHOLD_FLOPS,
  matmulWasm,
  setWasmParallelThreshold,
  setWasmThreads,
  WasmGemmEngine,
  wasmInfo,
} from '../src/kernels/wasm/index.js';
import { sleb128, uleb128 } from '../src/kernels/wasm/wasm-binary.js';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));

/** Deterministic floats in [-1, 1) (mulberry32), so a failing case can be replayed from its seed. */
function randomFloats(length: number, seed: number): Float32Array {
  let state = seed >>> 0;
  const values = new Float32Array(length);
  for (let i = 0; i < length; i++) {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    values[i] = ((t ^ (t >>> 14)) >>> 0) / 2 ** 31 - 1;
  }
  return values;
}

interface Case {
  g: MatmulGeometry;
  seed: number;
}

/** Geometry with contiguous matrices; `gap` extra elements between batch entries, or broadcast. */
function geometry(
  batch: number,
  M: number,
  N: number,
  K: number,
  options: Partial<Pick<MatmulGeometry, 'transA' | 'transB' | 'accumulate'>> & {
    broadcastA?: boolean;
    broadcastB?: boolean;
    gap?: number;
  } = {},
): MatmulGeometry {
  const gap = options.gap ?? 0;
  return {
    batch,
    M,
    N,
    K,
    transA: options.transA ?? false,
    transB: options.transB ?? false,
    strideA: options.broadcastA ? 0 : M * K + gap,
    strideB: options.broadcastB ? 0 : K * N + gap,
    strideOut: M * N + gap,
    accumulate: options.accumulate ?? false,
  };
}

function span(batch: number, stride: number, size: number): number {
  return (batch - 1) * stride + size;
}

/**
 * Runs the wasm kernel and the reference on the same inputs and returns the first element outside
 * atol 1e-5·K + rtol 1e-5·|expected|, or undefined when all agree.
 */
function compareWithReference({ g, seed }: Case, matmul: typeof matmulWasm = matmulWasm): string | undefined {
  const a = randomFloats(span(g.batch, g.strideA, g.M * g.K), seed);
  const b = randomFloats(span(g.batch, g.strideB, g.K * g.N), seed + 1);
  const initial = randomFloats(span(g.batch, g.strideOut, g.M * g.N), seed + 2);
  const expected = initial.slice();
  const actual = initial.slice();
  matmulReference(a, b, expected, g);
  matmul(a, b, actual, g);

  const atol = 1e-5 * Math.max(1, g.K);
  for (let i = 0; i < expected.length; i++) {
    const difference = Math.abs(actual[i] - expected[i]);
    if (!(difference <= atol + 1e-5 * Math.abs(expected[i]))) {
      return `element ${i}: wasm ${actual[i]} vs reference ${expected[i]} (|diff| ${difference}) for ${JSON.stringify(g)}`;
    }
  }
  return undefined;
}

function expectMatchesReference(testCase: Case): void {
  expect(compareWithReference(testCase)).toBeUndefined();
}

const smallCase: fc.Arbitrary<Case> = fc
  .record({
    batch: fc.integer({ min: 1, max: 3 }),
    M: fc.integer({ min: 1, max: 70 }),
    N: fc.integer({ min: 1, max: 70 }),
    K: fc.integer({ min: 1, max: 70 }),
    transA: fc.boolean(),
    transB: fc.boolean(),
    accumulate: fc.boolean(),
    broadcastA: fc.boolean(),
    broadcastB: fc.boolean(),
    gap: fc.constantFrom(0, 0, 3),
    seed: fc.integer({ min: 0, max: 2 ** 30 }),
  })
  .map((r) => ({ g: geometry(r.batch, r.M, r.N, r.K, r), seed: r.seed }));

describe('wasm binary encoding', () => {
  it('encodes unsigned LEB128', () => {
    expect(uleb128(0)).toEqual([0x00]);
    expect(uleb128(127)).toEqual([0x7f]);
    expect(uleb128(128)).toEqual([0x80, 0x01]);
    expect(uleb128(624485)).toEqual([0xe5, 0x8e, 0x26]);
    expect(uleb128(0xffffffff)).toEqual([0xff, 0xff, 0xff, 0xff, 0x0f]);
  });

  it('encodes signed LEB128', () => {
    expect(sleb128(0)).toEqual([0x00]);
    expect(sleb128(-1)).toEqual([0x7f]);
    expect(sleb128(63)).toEqual([0x3f]);
    expect(sleb128(64)).toEqual([0xc0, 0x00]);
    expect(sleb128(-64)).toEqual([0x40]);
    expect(sleb128(-65)).toEqual([0xbf, 0x7f]);
    expect(sleb128(-123456)).toEqual([0xc0, 0xbb, 0x78]);
  });

  it('rejects values outside 32 bits', () => {
    expect(() => uleb128(2 ** 32)).toThrow(/uleb128/);
    expect(() => sleb128(2 ** 31)).toThrow(/sleb128/);
  });
});

describe('matmulWasm on one thread', () => {
  beforeAll(() => setWasmThreads(1));

  it('matches the reference on random geometries', () => {
    fc.assert(
      fc.property(smallCase, (testCase) => expectMatchesReference(testCase)),
      { numRuns: 300 },
    );
  });

  it('matches the reference on edge-tile shapes', () => {
    for (const [M, N, K] of [
      [1, 1, 1],
      [1, 1, 300],
      [1, 513, 1],
      [257, 1, 2],
      [257, 513, 129],
      [129, 257, 513],
    ]) {
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          expectMatchesReference({ g: geometry(1, M, N, K, { transA, transB, accumulate: transA }), seed: M + N + K });
        }
      }
    }
  });

  it('matches the reference on a broadcast batch', () => {
    expectMatchesReference({ g: geometry(3, 65, 130, 300, { broadcastB: true, accumulate: true }), seed: 7 });
    expectMatchesReference({ g: geometry(3, 130, 65, 300, { broadcastA: true, transB: true }), seed: 8 });
  });

  it('runs overlapping outputs in batch order', () => {
    // strideOut 0: with accumulate every entry adds to the same matrix; without it the last wins.
    for (const accumulate of [true, false]) {
      const g: MatmulGeometry = { ...geometry(3, 5, 6, 7, { accumulate }), strideOut: 0 };
      expectMatchesReference({ g, seed: 11 });
    }
    const overlapping: MatmulGeometry = { ...geometry(3, 5, 6, 7, { accumulate: true }), strideOut: 10 };
    expectMatchesReference({ g: overlapping, seed: 12 });
  });

  it('handles empty dimensions', () => {
    const out = new Float32Array([1, 2, 3, 4]);
    matmulWasm(new Float32Array(0), new Float32Array(0), out, geometry(1, 2, 2, 0, { accumulate: true }));
    expect(Array.from(out)).toEqual([1, 2, 3, 4]);
    matmulWasm(new Float32Array(0), new Float32Array(0), out, geometry(1, 2, 2, 0));
    expect(Array.from(out)).toEqual([0, 0, 0, 0]);
    out.fill(5);
    matmulWasm(new Float32Array(0), new Float32Array(6), out, geometry(1, 0, 2, 3));
    matmulWasm(new Float32Array(6), new Float32Array(0), out, geometry(1, 2, 0, 3));
    matmulWasm(new Float32Array(6), new Float32Array(6), out, geometry(0, 2, 2, 3));
    expect(Array.from(out)).toEqual([5, 5, 5, 5]);
  });

  it('rejects arrays shorter than the geometry', () => {
    const g = geometry(2, 3, 4, 5);
    expect(() => matmulWasm(new Float32Array(29), new Float32Array(40), new Float32Array(24), g)).toThrow(
      /matmulWasm: a has 29 elements but batch=2 M=3 N=4 K=5 .* reads 30/,
    );
    expect(() => matmulWasm(new Float32Array(30), new Float32Array(40), new Float32Array(23), g)).toThrow(
      /matmulWasm: out has 23 elements/,
    );
    expect(() => matmulWasm(new Float32Array(30), new Float32Array(40), new Float32Array(24), { ...g, K: 1.5 })).toThrow(
      /matmulWasm: K must be a non-negative integer, got 1.5/,
    );
  });
});

describe('matmulWasm on two threads', () => {
  beforeAll(() => {
    setWasmThreads(2);
    setWasmParallelThreshold(0); // small shapes too, so the worker path runs here
  });
  afterAll(() => {
    setWasmThreads(1);
    setWasmParallelThreshold(DEFAULT_PARALLEL_THRESHOLD_FLOPS);
  });

  it('matches the reference on random geometries', () => {
    const threadedBefore = wasmInfo().threadedJobs;
    fc.assert(
      fc.property(smallCase, (testCase) => expectMatchesReference(testCase)),
      { numRuns: 150 },
    );
    expect(wasmInfo().threadedJobs).toBeGreaterThan(threadedBefore);
    expect(wasmInfo().workersReady).toBe(1);
  });

  it('lets the worker run tasks', () => {
    // Which thread claims which task depends on timing. A 256³ product has dozens of tasks and the
    // worker wakes within microseconds, so a few attempts suffice even on a busy machine.
    const workerTasks = (): number => wasmInfo().tasksPerThread[1] ?? 0;
    const before = workerTasks();
    for (let attempt = 0; attempt < 20 && workerTasks() === before; attempt++) {
      expectMatchesReference({ g: geometry(1, 256, 256, 256, { transB: attempt % 2 === 1 }), seed: attempt });
    }
    expect(workerTasks()).toBeGreaterThan(before);
  });

  it('matches the reference on overlapping input strides', () => {
    // Batch entries that share elements (a sliding window) are copied in whole, not in stages.
    for (const transA of [false, true]) {
      const g: MatmulGeometry = { ...geometry(3, 20, 30, 40, { transA, transB: !transA }), strideA: 40, strideB: 7 };
      expectMatchesReference({ g, seed: 41 });
    }
  });

  it('matches the reference on a large batched product', () => {
    expectMatchesReference({ g: geometry(2, 257, 513, 129, { transA: true, accumulate: true, broadcastB: true }), seed: 3 });
  });
});

describe('matmulWasm on the GPT-2 head shape', () => {
  it('matches sampled logits of [64, 768] x wte^T', () => {
    setWasmThreads(2);
    const [T, C, V] = [64, 768, 50257];
    const x = randomFloats(T * C, 21); // (T, C)
    const wte = randomFloats(V * C, 22); // (V, C), the tied embedding used as the head
    const logits = new Float32Array(T * V); // (T, V)
    matmulWasm(x, wte, logits, geometry(1, T, V, C, { transB: true }));

    // The reference over all 50257 columns takes seconds, so check 600 columns through the
    // reference on a gathered weight: the last 40, which include the partial last strip, and a
    // random sample.
    const lastColumns = Array.from({ length: 40 }, (_, i) => V - 1 - i);
    const sampledColumns = Array.from(randomFloats(560, 23), (r) => Math.floor(((r + 1) / 2) * V));
    const columns = [...lastColumns, ...sampledColumns];
    const gathered = new Float32Array(columns.length * C); // (columns, C)
    columns.forEach((column, j) => gathered.set(wte.subarray(column * C, (column + 1) * C), j * C));
    const expected = new Float32Array(T * columns.length); // (T, columns)
    matmulReference(x, gathered, expected, geometry(1, T, columns.length, C, { transB: true }));

    let worst = 0;
    for (let t = 0; t < T; t++) {
      columns.forEach((column, j) => {
        worst = Math.max(worst, Math.abs(logits[t * V + column] - expected[t * columns.length + j]));
      });
    }
    expect(worst).toBeLessThan(1e-5 * C);
    setWasmThreads(1);
  });
});

describe('WasmGemmEngine memory limits', () => {
  const options = {
    config: DEFAULT_GEMM_CONFIG,
    blocking: DEFAULT_GEMM_BLOCKING,
    threads: 1,
    parallelThresholdFlops: 0,
  };

  it('splits a batch that exceeds the job target', () => {
    const engine = new WasmGemmEngine({ ...options, jobBytesTarget: 1 });
    const testCase = { g: geometry(3, 20, 30, 40, { broadcastA: true, accumulate: true }), seed: 31 };
    expect(compareWithReference(testCase, (a, b, out, g) => engine.matmul(a, b, out, g))).toBeUndefined();
    expect(engine.info().jobs).toBe(3);
  });

  it('runs a fitting batch as one job', () => {
    const engine = new WasmGemmEngine(options);
    const testCase = { g: geometry(3, 20, 30, 40, { broadcastA: true, accumulate: true }), seed: 31 };
    expect(compareWithReference(testCase, (a, b, out, g) => engine.matmul(a, b, out, g))).toBeUndefined();
    expect(engine.info().jobs).toBe(1);
  });

  it('rejects a product larger than the memory', () => {
    const engine = new WasmGemmEngine({ ...options, maxMemoryBytes: 1 << 20 });
    const n = 300;
    const g = geometry(1, n, n, n);
    expect(() => engine.matmul(new Float32Array(n * n), new Float32Array(n * n), new Float32Array(n * n), g)).toThrow(
      /matmulWasm: batch=1 M=300 N=300 K=300 .* needs \d+ bytes .* memory stops at 1048576/,
    );
  });
});

describe('matmulWasm with relaxed SIMD', () => {
  it('matches the reference with fused multiply-add', () => {
    // Node 20 accepts relaxed SIMD only behind a flag, so the fused kernel runs in a child process.
    const script = [
      "import { matmulReference } from './src/kernels/matmul-reference.ts';",
      "import { matmulWasm, setWasmParallelThreshold, setWasmThreads, wasmInfo } from './src/kernels/wasm/index.ts';",
      'setWasmParallelThreshold(0);',
      'let failures = 0;',
      'let seed = 1;',
      'const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1;',
      'for (const [M, N, K, transA, transB, threads] of [[1, 1, 1, false, false, 1], [37, 45, 300, true, false, 1], [70, 9, 65, false, true, 2], [257, 513, 129, true, true, 2]]) {',
      '  setWasmThreads(threads);',
      '  const g = { batch: 1, M, N, K, transA, transB, strideA: M * K, strideB: K * N, strideOut: M * N, accumulate: true };',
      '  const a = Float32Array.from({ length: M * K }, random);',
      '  const b = Float32Array.from({ length: K * N }, random);',
      '  const expected = Float32Array.from({ length: M * N }, random);',
      '  const actual = expected.slice();',
      '  matmulReference(a, b, expected, g);',
      '  matmulWasm(a, b, actual, g);',
      '  for (let i = 0; i < expected.length; i++) {',
      '    if (!(Math.abs(actual[i] - expected[i]) <= 1e-5 * K + 1e-5 * Math.abs(expected[i]))) failures++;',
      '  }',
      '}',
      'console.log(JSON.stringify({ fused: wasmInfo().config.fusedMultiplyAdd, failures }));',
    ].join('\n');
    const child = spawnSync(
      process.execPath,
      ['--experimental-wasm-relaxed-simd', '--import', 'tsx', '--input-type=module', '-e', script],
      { cwd: repoRoot, encoding: 'utf8', timeout: 60_000 },
    );
    expect(child.stderr).toBe('');
    expect(child.status).toBe(0);
    expect(JSON.parse(child.stdout)).toEqual({ fused: true, failures: 0 });
  });
});

describe('matmulWasm worker lifecycle', () => {
  it('exits with idle workers under RWKVIFY_THREADS', () => {
    const script = [
      "import { matmulWasm, wasmInfo } from './src/kernels/wasm/index.ts';",
      'const n = 300;',
      'const g = { batch: 1, M: n, N: n, K: n, transA: false, transB: false, strideA: 0, strideB: 0, strideOut: n * n, accumulate: false };',
      'matmulWasm(new Float32Array(n * n).fill(1), new Float32Array(n * n).fill(2), new Float32Array(n * n), g);',
      'const info = wasmInfo();',
      'console.log(JSON.stringify({ threads: info.threads, workers: info.workersStarted, threaded: info.threadedJobs }));',
    ].join('\n');
    const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: repoRoot,
      env: { ...process.env, RWKVIFY_THREADS: '3' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(child.error).toBeUndefined(); // a timeout here means an idle worker kept the process alive
    expect(child.stderr).toBe('');
    expect(child.status).toBe(0);
    expect(JSON.parse(child.stdout)).toEqual({ threads: 3, workers: 2, threaded: 1 });
  });

  it('rejects an invalid RWKVIFY_THREADS', () => {
    const child = spawnSync(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', "import { wasmInfo } from './src/kernels/wasm/index.ts'; wasmInfo();"],
      { cwd: repoRoot, env: { ...process.env, RWKVIFY_THREADS: 'two' }, encoding: 'utf8', timeout: 30_000 },
    );
    expect(child.status).not.toBe(0);
    expect(child.stderr).toContain('RWKVIFY_THREADS must be an integer in [1, 64], got "two"');
  });
});
