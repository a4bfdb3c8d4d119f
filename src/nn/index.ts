export { Module } from './module.js';
export { Linear, Embedding, LayerNorm, type InitOptions } from './layers.js';
