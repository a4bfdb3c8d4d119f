// Modules: named parameters in a tree, so that names equal checkpoint keys
// (`h.0.attn.c_attn.weight`) and loading a checkpoint is a name-for-name copy.
import type { Tensor } from '../tensor/tensor.js';

export abstract class Module {
  private readonly ownParameters = new Map<string, Tensor>();
  private readonly children = new Map<string, Module>();
  /** False in evaluation mode (no dropout); models read it during forward. */
  training = true;

  /** Registers a trainable tensor under `name` and returns it. */
  protected parameter(name: string, t: Tensor): Tensor {
    if (name.includes('.')) throw new Error(`Module.parameter: name "${name}" must not contain "."`);
    t.requireGrad(true);
    t.name = name;
    this.ownParameters.set(name, t);
    return t;
  }

  /** Registers a child module under `name` (a list index such as "0" is fine) and returns it. */
  protected module<M extends Module>(name: string, m: M): M {
    this.children.set(name, m);
    return m;
  }

  /** All parameters with their dotted names, depth-first in registration order. */
  namedParameters(prefix = ''): Array<[string, Tensor]> {
    const out: Array<[string, Tensor]> = [];
    for (const [name, t] of this.ownParameters) out.push([prefix + name, t]);
    for (const [name, child] of this.children) out.push(...child.namedParameters(`${prefix}${name}.`));
    return out;
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  /** Sets training or evaluation mode on this module and every child. */
  train(flag = true): this {
    this.training = flag;
    for (const child of this.children.values()) child.train(flag);
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  zeroGrad(): void {
    for (const p of this.parameters()) p.zeroGrad();
  }

  /** Number of scalar parameters. */
  parameterCount(): number {
    return this.parameters().reduce((n, p) => n + p.size, 0);
  }
}
