// Library entry point: tensors and ops, autograd, layers and optimisers.
export * from './tensor/index.js';
export * from './autograd/index.js';
export * from './nn/index.js';
export * from './optim/index.js';
