// GPT-2: config, model, checkpoint folders and generation.
export * from './config.js';
export { Block, BlockList, CausalSelfAttention, Conv1D, EmbeddingTable, Mlp, GPT2_INIT_STD, type BlockCapture, type Gpt2Init, type LayerCache } from './blocks.js';
export { Gpt2Model, type Gpt2Cache, type Gpt2ForwardOptions } from './model.js';
export { loadGpt2Folder, saveGpt2Folder, CONFIG_FILE, WEIGHTS_FILE, type SaveGpt2Options } from './io.js';
export { generateGpt2, gpt2NextLogits } from './generate.js';
