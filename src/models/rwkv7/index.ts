// RWKV-7 ("x070"): configuration, time and channel mixing, the language model and its files.
export * from './config.js';
export { orthogonal } from './init.js';
export * from './time-mix.js';
export * from './channel-mix.js';
export * from './model.js';
export * from './io.js';
