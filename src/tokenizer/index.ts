// Public entry of the tokenizer: GPT-2 byte-level BPE.
export { END_OF_TEXT, Gpt2Tokenizer, StreamingDecoder } from './bpe.js';
export type { EncodeOptions, SpecialTokenMode } from './bpe.js';
export { preTokenize, GPT2_SPLIT_PATTERN_SOURCE } from './pretokenize.js';
export type { BpeVocabulary } from './vocab-files.js';
