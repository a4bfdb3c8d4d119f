// Distillation losses. Logit losses (KL, cross-entropy) are the engine's ops; this file adds the
// attention-alignment loss of stage 1 and the weighted stage-3 objective.
//
// Dims: B = batch, T = time steps, C = channels, V = vocabulary.
import { add, addScalar, crossEntropy, klDivergence, mean, mulScalar, reshape, sqrt, square, sub } from '../tensor/ops/index.js';
import { ShapeError } from '../tensor/shape.js';
import type { Tensor } from '../tensor/tensor.js';

/**
 * Added to the mean squared difference under the square root, so the gradient of the per-token
 * RMS exists where teacher and student agree exactly (d(√u)/du is infinite at u = 0). A token
 * that matches exactly then costs √eps = 1e-6 instead of 0.
 */
export const ALIGNMENT_EPS = 1e-12;

/**
 * Stage-1 loss of one layer: the mean over tokens of ‖A_teacher − A_student‖₂ / √C, the
 * per-token root-mean-square difference (not squared), computed as √(mean_c d² + eps).
 * Both tensors are (B, T, C) or (rows, C).
 */
export function alignmentLoss(teacher: Tensor, student: Tensor, eps = ALIGNMENT_EPS): Tensor {
  if (teacher.shape.join(',') !== student.shape.join(',')) {
    throw new ShapeError(`alignmentLoss: teacher output [${teacher.shape.join(', ')}] and student output [${student.shape.join(', ')}] must have the same shape`);
  }
  const difference = sub(teacher, student); // (..., C)
  const meanSquare = mean(square(difference), -1); // (...)
  const perToken = sqrt(addScalar(meanSquare, eps)); // (...)
  return mean(perToken); // ()
}

/** Mean of the per-layer alignment losses, so every layer weighs the same. */
export function layerAveragedAlignment(teacherOutputs: readonly Tensor[], studentOutputs: readonly Tensor[]): Tensor {
  if (teacherOutputs.length !== studentOutputs.length || teacherOutputs.length === 0) {
    throw new ShapeError(`layerAveragedAlignment: got ${teacherOutputs.length} teacher and ${studentOutputs.length} student layers; both must be equal and non-zero`);
  }
  const perLayer = teacherOutputs.map((teacher, layer) => alignmentLoss(teacher, studentOutputs[layer])); // () each
  const total = perLayer.reduce((sum, loss) => add(sum, loss)); // ()
  return mulScalar(total, 1 / teacherOutputs.length); // ()
}

export interface LogitLossOptions {
  /** Softmax temperature of the KL term (the KL is multiplied by T²). */
  temperature: number;
  /** Weight of KL(teacher ‖ student). */
  klWeight: number;
  /** Weight of the next-token cross-entropy against the data. */
  ceWeight: number;
}

export interface LogitLossResult {
  loss: Tensor; // ()
  kl: number;
  ce: number | null;
}

/**
 * Computes klWeight·KL(teacher ‖ student) + ceWeight·CE(student, targets) over logits (B, T, V). Targets
 * equal to −100 are left out of the cross-entropy; the KL covers every row.
 */
export function logitDistillationLoss(teacherLogits: Tensor, studentLogits: Tensor, targets: ArrayLike<number>, options: LogitLossOptions): LogitLossResult {
  const V = studentLogits.shape[studentLogits.rank - 1];
  const rows = studentLogits.size / V;
  const teacher = reshape(teacherLogits, [rows, V]); // (B·T, V)
  const student = reshape(studentLogits, [rows, V]); // (B·T, V)
  const kl = klDivergence(teacher, student, { temperature: options.temperature }); // ()
  let loss = options.klWeight === 1 ? kl : mulScalar(kl, options.klWeight); // ()
  let ce: number | null = null;
  if (options.ceWeight > 0) {
    const crossEntropyLoss = crossEntropy(student, targets); // ()
    ce = crossEntropyLoss.item();
    loss = add(loss, mulScalar(crossEntropyLoss, options.ceWeight)); // ()
  }
  return { loss, kl: kl.item(), ce };
}
