export { AdamW, type AdamWOptions, type AdamWState, type ParamGroup } from './adamw.js';
export { clipGradNorm } from './clip.js';
export { learningRate, warmupFactor, type Schedule, type ScheduleKind } from './schedule.js';
