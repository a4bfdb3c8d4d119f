// Builders of random float64 test tensors for gradient checks.
import { Rng, Tensor } from '../../src/index.js';

export function randomTensor(rng: Rng, shape: readonly number[], options: { low?: number; high?: number; awayFromZero?: number } = {}): Tensor {
  const size = shape.reduce((a, b) => a * b, 1);
  const data = new Float64Array(size);
  const low = options.low ?? -1;
  const high = options.high ?? 1;
  for (let i = 0; i < size; i++) {
    let v = low + (high - low) * rng.uniform();
    // Keep samples away from kinks (relu and abs at 0), where central differences are meaningless.
    if (options.awayFromZero !== undefined && Math.abs(v) < options.awayFromZero) v = v < 0 ? v - options.awayFromZero : v + options.awayFromZero;
    data[i] = v;
  }
  return new Tensor(data, shape).requireGrad();
}

/** Random values whose pairwise gaps exceed `gap`, so maxima never tie within a finite difference. */
export function distinctTensor(rng: Rng, shape: readonly number[], gap = 1e-3): Tensor {
  const size = shape.reduce((a, b) => a * b, 1);
  const order = Array.from({ length: size }, (_, i) => i);
  for (let i = size - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  const data = new Float64Array(size);
  for (let i = 0; i < size; i++) data[i] = (order[i] - size / 2) * (gap * 10) + rng.uniform() * gap;
  return new Tensor(data, shape).requireGrad();
}

/** A shape that broadcasts against `shape`: some leading axes dropped, some axes set to 1. */
export function broadcastPartner(rng: Rng, shape: readonly number[]): number[] {
  const drop = rng.int(shape.length + 1);
  return shape.slice(drop).map((d) => (rng.uniform() < 0.4 ? 1 : d));
}
