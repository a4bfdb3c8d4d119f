import type { FloatArray, MatmulGeometry } from './types.js';

/**
 * Plain TypeScript batched matmul: the oracle for every faster kernel and the fallback for shapes
 * no other backend takes. Accumulates in a JS number (float64) per output element and rounds once
 * on store, so a float32 result is as exact as float32 storage allows.
 */
export function matmulReference(a: FloatArray, b: FloatArray, out: FloatArray, g: MatmulGeometry): void {
  const { batch, M, N, K, transA, transB } = g;

  for (let bi = 0; bi < batch; bi++) {
    const aBase = bi * g.strideA;
    const bBase = bi * g.strideB;
    const oBase = bi * g.strideOut;

    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let sum = 0;
        for (let k = 0; k < K; k++) {
          const av = transA ? a[aBase + k * M + m] : a[aBase + m * K + k];
          const bv = transB ? b[bBase + n * K + k] : b[bBase + k * N + n];
          sum += av * bv;
        }
        const o = oBase + m * N + n;
        out[o] = g.accumulate ? out[o] + sum : sum;
      }
    }
  }
}
