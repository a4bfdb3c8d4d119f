/**
 * Every differentiable op of the engine. The op table in ./index.ts is typed as
 * `Record<OpName, …>`, and every op records its result with `record`, whose backward rule is a
 * required argument, so an op without a gradient does not compile. test/gradcheck-ops.test.ts
 * enumerates this list and fails when an op has no gradient property test.
 */
export const OP_NAMES = [
  // elementwise binary, NumPy broadcasting
  'add',
  'sub',
  'mul',
  'div',
  'maximum',
  // elementwise unary
  'neg',
  'exp',
  'log',
  'sqrt',
  'tanh',
  'sigmoid',
  'relu',
  'gelu',
  'softplus',
  'square',
  'abs',
  'powScalar',
  'mulScalar',
  'addScalar',
  'clamp',
  // reductions
  'sum',
  'mean',
  'max',
  // linear algebra
  'matmul',
  // shape and indexing
  'reshape',
  'permute',
  'slice',
  'concat',
  'gather',
  'where',
  'cast',
  // composite ops with fused, numerically stable rules
  'softmax',
  'logSoftmax',
  'layerNorm',
  'groupNorm',
  'l2Normalize',
  'crossEntropy',
  'klDivergence',
  // recurrences
  'wkv7',
] as const;

export type OpName = (typeof OP_NAMES)[number];
