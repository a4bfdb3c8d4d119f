// The op table. Typed as Record<OpName, …>, so adding a name to OP_NAMES without an
// implementation is a compile error, and every implementation records its gradient through
// `record(name, out, inputs, backward)`, whose backward argument is required.
import { abs, add, addScalar, clamp, div, exp, gelu, log, maximum, mul, mulScalar, neg, powScalar, relu, sigmoid, softplus, sqrt, square, sub, tanh } from './elementwise.js';
import { crossEntropy, klDivergence } from './losses.js';
import { matmul } from './matmul.js';
import type { OpName } from './names.js';
import { groupNorm, l2Normalize, layerNorm, logSoftmax, softmax } from './nn.js';
import { max, mean, sum } from './reduce.js';
import { cast, concat, gather, permute, reshape, slice, where } from './shape-ops.js';
import { wkv7 } from './wkv7.js';

export { abs, add, addScalar, clamp, div, exp, gelu, geluScalar, log, maximum, mul, mulScalar, neg, powScalar, relu, sigmoid, sigmoidScalar, softplus, sqrt, square, sub, tanh } from './elementwise.js';
export { crossEntropy, klDivergence, type KlOptions } from './losses.js';
export { matmul, type MatmulOptions } from './matmul.js';
export { OP_NAMES, type OpName } from './names.js';
export { groupNorm, l2Normalize, layerNorm, logSoftmax, softmax } from './nn.js';
export { max, mean, sum } from './reduce.js';
export { cast, concat, gather, maskedFill, permute, reshape, slice, split, transpose, where } from './shape-ops.js';
export { wkv7, type Wkv7Result } from './wkv7.js';

type AnyOp = (...args: never[]) => unknown;

/** Every differentiable op, by name. */
export const OPS: Record<OpName, AnyOp> = {
  add,
  sub,
  mul,
  div,
  maximum,
  neg,
  exp,
  log,
  sqrt,
  tanh,
  sigmoid,
  relu,
  gelu,
  softplus,
  square,
  abs,
  powScalar,
  mulScalar,
  addScalar,
  clamp,
  sum,
  mean,
  max,
  matmul,
  reshape,
  permute,
  slice,
  concat,
  gather,
  where,
  cast,
  softmax,
  logSoftmax,
  layerNorm,
  groupNorm,
  l2Normalize,
  crossEntropy,
  klDivergence,
  wkv7,
};
