// Numerical gradient checking: compares the analytic gradients of the tape with central
// differences. Runs in float64 only, because float32 central differences carry rounding errors of
// 1e-4 and more even for smooth functions (d/dx x³ at 1.5 with eps 1e-4 is off by 8e-4).
import { Rng } from '../tensor/random.js';
import { Tensor } from '../tensor/tensor.js';
import { noGrad } from './tape.js';

export interface GradcheckOptions {
  /** Step of the central difference. */
  eps?: number;
  /** Relative tolerance on |analytic − numeric| / max(|analytic|, |numeric|). */
  rtol?: number;
  /** Absolute tolerance, for gradients near zero. */
  atol?: number;
  /** Seed of the random upstream gradient. */
  seed?: number;
}

export interface GradcheckMismatch {
  input: number;
  index: number;
  analytic: number;
  numeric: number;
  tolerance: number;
}

export interface GradcheckResult {
  ok: boolean;
  /** The element with the largest error relative to its tolerance. */
  worst: GradcheckMismatch | null;
  checked: number;
}

/**
 * Checks ∂L/∂input for every element of every input that requires a gradient, where
 * L = Σ fn(inputs) ⊙ dout with a random upstream gradient dout. A random dout (rather than
 * L = Σ out) makes transposition and indexing mistakes visible, because every output element
 * gets a different weight.
 */
export function gradcheck(fn: (...inputs: Tensor[]) => Tensor, inputs: Tensor[], options: GradcheckOptions = {}): GradcheckResult {
  const eps = options.eps ?? 1e-6;
  const rtol = options.rtol ?? 1e-5;
  const atol = options.atol ?? 1e-8;
  validateInputs(inputs);

  // Analytic gradients.
  for (const x of inputs) x.zeroGrad();
  const out = fn(...inputs);
  if (out.dtype !== 'float64') throw new TypeError(`gradcheck: the function returned a ${out.dtype} tensor; compute in float64`);
  const rng = new Rng(options.seed ?? 1234);
  const dout = new Float64Array(out.size);
  for (let i = 0; i < dout.length; i++) dout[i] = rng.normal();
  if (!out.requiresGrad) throw new Error('gradcheck: the output does not depend on any input with requiresGrad = true');
  out.backward(dout);

  const weighted = (): number =>
    noGrad(() => {
      const y = fn(...inputs).data;
      let s = 0;
      for (let i = 0; i < y.length; i++) s += y[i] * dout[i];
      return s;
    });

  let worst: GradcheckMismatch | null = null;
  let worstRatio = -1;
  let checked = 0;
  inputs.forEach((x, inputIndex) => {
    if (!x.requiresGrad) return;
    const analytic = x.grad?.data ?? new Float64Array(x.size);
    for (let i = 0; i < x.size; i++) {
      const original = x.data[i];
      x.data[i] = original + eps;
      const plus = weighted();
      x.data[i] = original - eps;
      const minus = weighted();
      x.data[i] = original;
      const numeric = (plus - minus) / (2 * eps);
      const a = analytic[i];
      const tolerance = atol + rtol * Math.max(Math.abs(a), Math.abs(numeric));
      const ratio = Number.isNaN(a) || Number.isNaN(numeric) ? Infinity : Math.abs(a - numeric) / tolerance;
      if (ratio > worstRatio) {
        worstRatio = ratio;
        worst = { input: inputIndex, index: i, analytic: a, numeric, tolerance };
      }
      checked++;
    }
  });
  return { ok: worstRatio <= 1, worst, checked };
}

/** Runs gradcheck and throws an error that describes the worst element when it fails. */
export function assertGradients(fn: (...inputs: Tensor[]) => Tensor, inputs: Tensor[], options: GradcheckOptions = {}): void {
  const result = gradcheck(fn, inputs, options);
  if (!result.ok && result.worst !== null) {
    const w = result.worst;
    const shape = inputs[w.input].shape.join(',');
    throw new Error(
      `gradcheck: input ${w.input} [${shape}] element ${w.index}: analytic ${w.analytic} vs numeric ${w.numeric}, ` +
        `|diff| ${Math.abs(w.analytic - w.numeric).toExponential(3)} > tolerance ${w.tolerance.toExponential(3)}`,
    );
  }
}

function validateInputs(inputs: Tensor[]): void {
  inputs.forEach((x, i) => {
    if (!(x instanceof Tensor)) throw new TypeError(`gradcheck: input ${i} is not a Tensor`);
    if (x.dtype !== 'float64') {
      throw new TypeError(`gradcheck: input ${i} is ${x.dtype}; gradient checks need float64 inputs (use .to('float64'))`);
    }
    for (let k = 0; k < x.size; k++) {
      if (!Number.isFinite(x.data[k])) {
        throw new RangeError(`gradcheck: input ${i} element ${k} is ${x.data[k]}; finite differences need finite inputs`);
      }
    }
  });
}
