// Batched matmul on gpu.js, tiled so that no input or output exceeds the backend's limits: a
// headlessgl texture side of 16384 and a 128 MiB WebGPU storage buffer, which logits [B·T, 50257]
// both exceed.
//
// Every tile is packed on the host into A [batches, rows, K] and Bᵀ [batches or 1, cols, K], both
// contiguous along K, so one kernel serves all four transpose combinations and reads both operands
// with unit stride. Packing costs O((rows + cols)·K) per tile against O(rows·cols·K) of compute.
import type { FloatArray, MatmulGeometry } from '../types.js';
import { type GpuJsLimits, type GpuJsRuntime, type Task, launch, readInto, runAsync, runSync } from './runtime.js';

/**
 * One output cell per thread: thread.x = output column n, thread.y = output row m, thread.z =
 * batch entry inside the tile. K is a constant, so the loop bound is a literal in the compiled
 * kernel and never meets gpu.js's loopMaxIterations cap (default 1000, applied silently to
 * bounds read from arguments).
 */
const MATMUL_TILE_SOURCE = `function (a, bt) {
  const aRow = (this.thread.z * this.constants.rows + this.thread.y) * this.constants.K;
  const bRow = (this.thread.z * this.constants.bBatched * this.constants.cols + this.thread.x) * this.constants.K;
  let sum = 0;
  for (let k = 0; k < this.constants.K; k++) {
    sum += a[aRow + k] * bt[bRow + k];
  }
  return sum;
}`;

/** Tile sizes of one matmul: batch entries, output rows and output columns per kernel call. */
export interface MatmulTilePlan {
  batches: number;
  rows: number;
  cols: number;
}

/**
 * Picks the largest tiles that fit the limits: each packed operand and the output stay within
 * maxArrayElements, and a 2-D output (one batch entry) within maxOutputSide per side. A 3-D output
 * is packed into a near-square texture on GL, so it only has to satisfy the element bound.
 */
export function planMatmulTiles(g: MatmulGeometry, limits: GpuJsLimits): MatmulTilePlan {
  const { K } = g;
  const maxElements = limits.maxArrayElements;
  if (K > maxElements) {
    throw new Error(`gpujs matmul: K = ${K} exceeds the ${maxElements}-element limit of one array on this backend`);
  }
  const perOperand = Math.floor(maxElements / K); // rows (or cols) of K values per array
  const side = limits.maxOutputSide;

  const cols = Math.max(1, Math.min(g.N, side, perOperand, maxElements));
  const rows = Math.max(1, Math.min(g.M, side, perOperand, Math.floor(maxElements / cols)));
  const bBatched = g.strideB !== 0;
  const batchLimits = [
    g.batch,
    Math.floor(perOperand / rows),
    Math.floor(maxElements / (rows * cols)),
    bBatched ? Math.floor(perOperand / cols) : g.batch,
  ];
  const batches = Math.max(1, Math.min(...batchLimits));
  return { batches, rows, cols };
}

/** Copies rows [m0, m0+rows) of op(A[b]) for batches [b0, b0+batches) into a [batches, rows, K] array. */
function packA(a: FloatArray, g: MatmulGeometry, b0: number, batches: number, m0: number, rows: number): Float32Array {
  const { M, K } = g;
  const packed = new Float32Array(batches * rows * K); // (batches, rows, K)
  for (let bi = 0; bi < batches; bi++) {
    const base = (b0 + bi) * g.strideA;
    for (let m = 0; m < rows; m++) {
      const dst = (bi * rows + m) * K;
      for (let k = 0; k < K; k++) {
        packed[dst + k] = g.transA ? a[base + k * M + m0 + m] : a[base + (m0 + m) * K + k];
      }
    }
  }
  return packed;
}

/** Copies columns [n0, n0+cols) of op(B[b]) as rows of Bᵀ into a [batches, cols, K] array. */
function packBt(b: FloatArray, g: MatmulGeometry, b0: number, batches: number, n0: number, cols: number): Float32Array {
  const { N, K } = g;
  const packed = new Float32Array(batches * cols * K); // (batches, cols, K)
  for (let bi = 0; bi < batches; bi++) {
    const base = (b0 + bi) * g.strideB;
    for (let n = 0; n < cols; n++) {
      const dst = (bi * cols + n) * K;
      for (let k = 0; k < K; k++) {
        packed[dst + k] = g.transB ? b[base + (n0 + n) * K + k] : b[base + k * N + n0 + n];
      }
    }
  }
  return packed;
}

function* matmulTask(rt: GpuJsRuntime, a: FloatArray, b: FloatArray, out: FloatArray, g: MatmulGeometry): Task<void> {
  if (g.batch === 0 || g.M === 0 || g.N === 0) return;
  if (g.K === 0) {
    if (!g.accumulate) zeroOutput(out, g);
    return;
  }
  const plan = planMatmulTiles(g, rt.limits);
  const bBatched = g.strideB !== 0 ? 1 : 0;

  for (let b0 = 0; b0 < g.batch; b0 += plan.batches) {
    const batches = Math.min(plan.batches, g.batch - b0);
    for (let m0 = 0; m0 < g.M; m0 += plan.rows) {
      const rows = Math.min(plan.rows, g.M - m0);
      const aTile = packA(a, g, b0, batches, m0, rows);

      for (let n0 = 0; n0 < g.N; n0 += plan.cols) {
        const cols = Math.min(plan.cols, g.N - n0);
        const btTile = packBt(b, g, bBatched ? b0 : 0, bBatched ? batches : 1, n0, cols);
        const key = `matmul K=${g.K} rows=${rows} cols=${cols} batches=${batches} bBatched=${bBatched}`;
        const kernel = rt.kernel(key, MATMUL_TILE_SOURCE, {
          output: [cols, rows, batches],
          constants: { K: g.K, rows, cols, bBatched },
        });

        const result = yield* launch(kernel, aTile, btTile);
        const tile = new Float32Array(batches * rows * cols); // (batches, rows, cols)
        yield* readInto(result, tile, 0);
        scatterTile(tile, out, g, b0, batches, m0, rows, n0, cols);
      }
    }
  }
}

function zeroOutput(out: FloatArray, g: MatmulGeometry): void {
  for (let bi = 0; bi < g.batch; bi++) out.fill(0, bi * g.strideOut, bi * g.strideOut + g.M * g.N);
}

/** Writes (or adds, when g.accumulate) a [batches, rows, cols] tile into out. */
function scatterTile(
  tile: Float32Array,
  out: FloatArray,
  g: MatmulGeometry,
  b0: number,
  batches: number,
  m0: number,
  rows: number,
  n0: number,
  cols: number,
): void {
  for (let bi = 0; bi < batches; bi++) {
    const base = (b0 + bi) * g.strideOut;
    for (let m = 0; m < rows; m++) {
      const src = (bi * rows + m) * cols;
      const dst = base + (m0 + m) * g.N + n0;
      for (let n = 0; n < cols; n++) {
        out[dst + n] = g.accumulate ? out[dst + n] + tile[src + n] : tile[src + n];
      }
    }
  }
}

/** Matmul on a synchronous gpu.js backend (cpu, webasm, headlessgl); float32 arithmetic. */
export function matmulGpuJs(rt: GpuJsRuntime, a: FloatArray, b: FloatArray, out: FloatArray, g: MatmulGeometry): void {
  runSync(matmulTask(rt, a, b, out, g));
}

/** Matmul on any gpu.js backend, webgpu included. */
export function matmulGpuJsAsync(
  rt: GpuJsRuntime,
  a: FloatArray,
  b: FloatArray,
  out: FloatArray,
  g: MatmulGeometry,
): Promise<void> {
  return runAsync(matmulTask(rt, a, b, out, g));
}
