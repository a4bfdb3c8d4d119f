// The loss of each distillation stage, packaged as a TrainableModel so the generic trainer
// (AdamW, clipping, schedules, checkpoints, resumption) runs every stage. `namedParameters`
// lists only the parameters the stage trains. The others are frozen (requiresGrad false), so no
// graph is built for them and the optimizer never touches them.
//
// Dims: B = batch, T = time steps, C = channels, V = vocabulary.
import { noGrad } from '../autograd/index.js';
import type { BlockCapture, Gpt2Model } from '../models/gpt2/index.js';
import type { StudentModel } from '../models/student/index.js';
import type { Tensor } from '../tensor/tensor.js';
import type { TrainableModel } from '../train/trainer.js';
import { layerAveragedAlignment, logitDistillationLoss, type LogitLossOptions } from './losses.js';

/** A stage objective: a trainable loss over (ids, targets) batches. */
export interface StageObjective extends TrainableModel {
  /** The parameters this stage trains, with the student's names. */
  readonly trainable: ReadonlyArray<[string, Tensor]>;
}

/** Freezes every student parameter, then unfreezes those `isTrainable` accepts; returns them. */
function selectTrainable(student: StudentModel, isTrainable: (name: string) => boolean): Array<[string, Tensor]> {
  const trainable: Array<[string, Tensor]> = [];
  for (const [name, p] of student.namedParameters()) {
    const flag = isTrainable(name);
    p.requireGrad(flag);
    if (flag) trainable.push([name, p]);
  }
  return trainable;
}

/** Runs the frozen teacher without a graph; its parameters must not require gradients. */
function teacherForward(teacher: Gpt2Model, ids: ArrayLike<number>, B: number, T: number): Tensor {
  return noGrad(() => teacher.forward(ids, B, T)); // (B, T, V)
}

/**
 * Stage 1: teacher-forced attention alignment. Every student time mix reads the teacher's ln_1
 * output of its layer, and the loss is the layer-averaged per-token RMS difference between the
 * teacher's attention output and the time mix's output. v_first comes from the student's layer 0
 * on the teacher's layer-0 input, and its gradient flows back into layer 0.
 */
export class AlignmentObjective implements StageObjective {
  readonly trainable: Array<[string, Tensor]>;

  constructor(
    private readonly teacher: Gpt2Model,
    private readonly student: StudentModel,
  ) {
    this.trainable = selectTrainable(student, (name) => name.includes('.att.'));
  }

  loss(ids: ArrayLike<number>, _targets: ArrayLike<number>, B: number, T: number): Tensor {
    const capture: BlockCapture = { attentionInputs: [], attentionOutputs: [] };
    noGrad(() => this.teacher.forwardBlocks(ids, B, T, { capture })); // (B, T, C), read through capture
    let vFirst: Tensor | null = null;
    const studentOutputs = this.student.blocks.map((block, layer) => {
      const result = block.att.forward(capture.attentionInputs[layer], vFirst); // out (B, T, C)
      vFirst = result.vFirst;
      return result.out;
    });
    return layerAveragedAlignment(capture.attentionOutputs, studentOutputs); // ()
  }

  parameters(): Tensor[] {
    return this.trainable.map(([, p]) => p);
  }

  namedParameters(): Array<[string, Tensor]> {
    return [...this.trainable];
  }
}

export interface LogitObjectiveOptions extends LogitLossOptions {
  /** Keeps the MLP weights (h.N.mlp.*) frozen. */
  freezeMlp: boolean;
  /** Keeps the token and position tables (wte, which is also the head, and wpe) frozen. */
  freezeEmbeddings: boolean;
}

const EMBEDDING_NAMES = new Set(['wte.weight', 'wpe.weight']);

/**
 * Stages 2 and 3: the student runs on its own (no teacher forcing) and is trained on
 * klWeight·KL(teacher ‖ student) + ceWeight·CE over the full vocabulary. Every student parameter
 * trains unless `freezeMlp` keeps the MLPs or `freezeEmbeddings` the embedding tables fixed. The
 * head stays tied to wte.
 */
export class LogitObjective implements StageObjective {
  readonly trainable: Array<[string, Tensor]>;
  /** KL and cross-entropy of the last loss() call, for logs and tests. */
  lastParts: { kl: number; ce: number | null } = { kl: Number.NaN, ce: null };

  constructor(
    private readonly teacher: Gpt2Model,
    private readonly student: StudentModel,
    private readonly options: LogitObjectiveOptions,
  ) {
    this.trainable = selectTrainable(student, (name) => {
      if (options.freezeMlp && name.includes('.mlp.')) return false;
      return !(options.freezeEmbeddings && EMBEDDING_NAMES.has(name));
    });
  }

  loss(ids: ArrayLike<number>, targets: ArrayLike<number>, B: number, T: number): Tensor {
    const teacherLogits = teacherForward(this.teacher, ids, B, T); // (B, T, V)
    const { logits } = this.student.forward(ids, B, T); // (B, T, V)
    const result = logitDistillationLoss(teacherLogits, logits, targets, this.options);
    this.lastParts = { kl: result.kl, ce: result.ce };
    return result.loss; // ()
  }

  parameters(): Tensor[] {
    return this.trainable.map(([, p]) => p);
  }

  namedParameters(): Array<[string, Tensor]> {
    return [...this.trainable];
  }
}
