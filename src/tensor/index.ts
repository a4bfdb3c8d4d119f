export { Tensor } from './tensor.js';
export { tensor, zeros, ones, full, randn, rand, arange, type NestedArray } from './create.js';
export { Rng } from './random.js';
export { ShapeError, sizeOf, type Shape } from './shape.js';
export type { DType, FloatArray } from './dtype.js';
export * from './ops/index.js';
