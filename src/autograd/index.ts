export { backward, noGrad, isGradEnabled, record, type BackwardFn, type GraphNode } from './tape.js';
export { gradcheck, assertGradients, type GradcheckOptions, type GradcheckResult, type GradcheckMismatch } from './gradcheck.js';
