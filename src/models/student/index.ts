// The converted student (GPT-2 with RWKV-7 time mixes): configuration, model, conversion, files, generation.
export * from './config.js';
export * from './model.js';
export { convertTeacher, teacherFingerprint } from './convert.js';
export * from './io.js';
export { generateStudent, studentNextLogits } from './generate.js';
