// Reverse-mode automatic differentiation over a recorded graph ("tape").
//
// Every op that produces a tensor from inputs that require gradients attaches a GraphNode to its
// output: the op name, the input tensors and a closure that maps the output gradient to one
// gradient per input. `backward` walks the nodes in reverse topological order.
//
// Gradient rules (documented behaviour, tested in test/autograd.test.ts):
// - Leaf tensors (requiresGrad = true, no node) accumulate into `.grad` across backward calls, as
//   PyTorch does; call zeroGrad() between steps.
// - Interior gradients live only inside one backward pass, so calling backward twice on the same
//   graph adds the same leaf contribution twice and never re-sends stale interior gradients.
// - A tensor used by several ops receives the sum of all contributions.
import type { FloatArray } from '../tensor/dtype.js';
import type { Tensor } from '../tensor/tensor.js';
import type { OpName } from '../tensor/ops/names.js';

/**
 * Maps the gradient of an op's output to the gradients of its inputs, in input order. `needs[i]`
 * is false when input i needs no gradient; the rule may then return null for it and skip the work.
 */
export type BackwardFn = (gradOut: FloatArray, needs: readonly boolean[]) => readonly (FloatArray | null)[];

export interface GraphNode {
  op: OpName;
  inputs: readonly Tensor[];
  backward: BackwardFn;
}

let gradEnabled = true;

/** Returns whether ops currently record the graph. */
export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs `fn` without recording any graph (inference, teacher forward passes, optimiser updates). */
export function noGrad<T>(fn: () => T): T {
  const previous = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = previous;
  }
}

/**
 * Connects an op's output to its inputs when recording is on and some input requires a gradient.
 * Returns `out` so ops can end with `return record(...)`.
 */
export function record(op: OpName, out: Tensor, inputs: readonly Tensor[], backward: BackwardFn): Tensor {
  if (!gradEnabled) return out;
  if (!inputs.some((t) => t.requiresGrad)) return out;
  out.requiresGrad = true;
  out.node = { op, inputs, backward };
  return out;
}

/** Returns the graph's tensors that require gradients, each after all of its inputs. */
function topologicalOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const visited = new Set<Tensor>();
  // Iterative depth-first search: a GPT-2 graph has tens of thousands of nodes, too deep for
  // recursion.
  const stack: Array<{ tensor: Tensor; expanded: boolean }> = [{ tensor: root, expanded: false }];
  while (stack.length > 0) {
    const top = stack.pop()!;
    if (top.expanded) {
      order.push(top.tensor);
      continue;
    }
    if (visited.has(top.tensor)) continue;
    visited.add(top.tensor);
    stack.push({ tensor: top.tensor, expanded: true });
    for (const input of top.tensor.node?.inputs ?? []) {
      if (input.requiresGrad && !visited.has(input)) stack.push({ tensor: input, expanded: false });
    }
  }
  return order;
}

/**
 * Back-propagates from `root`. Without `gradOut` the root must hold one element and is seeded
 * with 1, as for a scalar loss.
 */
export function backward(root: Tensor, gradOut?: FloatArray): void {
  if (!root.requiresGrad) {
    throw new Error(
      'backward: the tensor does not require a gradient; no input of the computation had requiresGrad = true, ' +
        'or it was computed inside noGrad()',
    );
  }
  let seed: FloatArray;
  if (gradOut === undefined) {
    if (root.size !== 1) {
      throw new Error(`backward: an implicit gradient needs a single-element output, got shape [${root.shape.join(',')}]; pass gradOut`);
    }
    seed = root.dtype === 'float64' ? new Float64Array(1).fill(1) : new Float32Array(1).fill(1);
  } else {
    if (gradOut.length !== root.size) {
      throw new Error(`backward: gradOut has ${gradOut.length} elements but the output has ${root.size}`);
    }
    seed = gradOut;
  }

  const grads = new Map<Tensor, FloatArray>();
  grads.set(root, seed);
  const order = topologicalOrder(root);

  for (let i = order.length - 1; i >= 0; i--) {
    const tensor = order[i];
    const grad = grads.get(tensor);
    if (grad === undefined) continue;
    grads.delete(tensor);

    if (tensor.node === null) {
      tensor.accumulateGrad(grad);
      continue;
    }
    const { inputs } = tensor.node;
    const needs = inputs.map((t) => t.requiresGrad);
    const inputGrads = tensor.node.backward(grad, needs);
    for (let j = 0; j < inputs.length; j++) {
      const g = inputGrads[j];
      if (!needs[j] || g === null || g === undefined) continue;
      const input = inputs[j];
      const existing = grads.get(input);
      if (existing === undefined) {
        // The rule may return an array it also uses elsewhere (reshape passes its gradient
        // through), so copy before the first accumulation could write into it.
        grads.set(input, g === grad ? g.slice() : g);
      } else {
        for (let k = 0; k < existing.length; k++) existing[k] += g[k];
      }
    }
  }
}
