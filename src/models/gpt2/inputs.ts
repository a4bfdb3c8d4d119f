// Checks and derived inputs of a GPT-2 forward pass: token ids, position ids and the attention
// mask. All are plain arrays built before any table lookup, so bad input fails with a clear
// message instead of reading outside wpe or wte.
//
// Dims: B = batch, T = new tokens in this call, P = tokens already in the cache, Tk = P + T keys.
import { Tensor } from '../../tensor/tensor.js';

/** Throws unless P + T tokens fit the position table (T = n_positions itself is allowed). */
export function checkSequenceLength(T: number, P: number, nPositions: number): void {
  if (!Number.isInteger(T) || T < 1) {
    throw new RangeError(`Gpt2Model.forward: T must be a positive integer, got ${T}`);
  }
  if (P + T <= nPositions) return;
  const length = P === 0 ? `sequence length T=${T}` : `cached ${P} + new ${T} = ${P + T} tokens`;
  throw new RangeError(
    `Gpt2Model.forward: ${length} exceeds n_positions=${nPositions}, the number of rows of the position table wpe; ` +
      `crop the input to the last ${nPositions} tokens or use a shorter --seq-len`,
  );
}

/** Throws unless `ids` contains B·T integers in [0, V). */
export function checkTokenIds(ids: ArrayLike<number>, B: number, T: number, V: number): void {
  if (!Number.isInteger(B) || B < 1) throw new RangeError(`Gpt2Model.forward: B must be a positive integer, got ${B}`);
  if (ids.length !== B * T) {
    throw new RangeError(`Gpt2Model.forward: got ${ids.length} token ids for B=${B} × T=${T} = ${B * T}`);
  }
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (!Number.isInteger(id) || id < 0 || id >= V) {
      throw new RangeError(
        `Gpt2Model.forward: token id ${id} at batch ${Math.floor(i / T)} position ${i % T} is outside the vocabulary [0, ${V})`,
      );
    }
  }
}

/**
 * Throws unless `mask` is B·Tk values of 0 (padding) or 1 (real token), the Hugging Face
 * attention_mask convention.
 */
export function checkAttentionMask(mask: ArrayLike<number>, B: number, Tk: number): void {
  if (mask.length !== B * Tk) {
    throw new RangeError(
      `Gpt2Model.forward: attentionMask has ${mask.length} entries but must cover every key, B=${B} × (cached + new)=${Tk} = ${B * Tk}`,
    );
  }
  for (let i = 0; i < mask.length; i++) {
    if (mask[i] !== 0 && mask[i] !== 1) {
      throw new RangeError(`Gpt2Model.forward: attentionMask entry ${i} is ${mask[i]}; use 1 for real tokens and 0 for padding`);
    }
  }
}

/**
 * Position ids of the T new tokens of each row. Explicit ids are checked against the table size.
 * Without them, a padding mask gives each real token the count of real tokens before it, so a
 * left-padded row gets the same positions as the unpadded sequence (padding gets 0 and is masked
 * as a key anyway). Without a mask, positions are P, P + 1, ….
 */
export function resolvePositionIds(
  B: number,
  T: number,
  P: number,
  nPositions: number,
  positionIds: ArrayLike<number> | undefined,
  attentionMask: ArrayLike<number> | undefined,
): Int32Array {
  const positions = new Int32Array(B * T);
  if (positionIds !== undefined) {
    if (positionIds.length !== B * T) {
      throw new RangeError(`Gpt2Model.forward: got ${positionIds.length} position ids for B=${B} × T=${T} = ${B * T}`);
    }
    for (let i = 0; i < positions.length; i++) {
      const p = positionIds[i];
      if (!Number.isInteger(p) || p < 0 || p >= nPositions) {
        throw new RangeError(`Gpt2Model.forward: position id ${p} at index ${i} is outside the position table [0, ${nPositions})`);
      }
      positions[i] = p;
    }
    return positions;
  }

  const Tk = P + T;
  for (let b = 0; b < B; b++) {
    let realBefore = 0;
    for (let u = 0; u < Tk; u++) {
      const isReal = attentionMask === undefined || attentionMask[b * Tk + u] === 1;
      const position = isReal ? realBefore : 0;
      if (isReal) realBefore++;
      if (u >= P) positions[b * T + (u - P)] = position;
    }
  }
  return positions;
}

/**
 * Builds the attention mask tensor, nonzero where query t (absolute index P + t) may not attend
 * to key u: u is in its future, or u is padding. Shape (1, 1, T, Tk) without padding, else
 * (B, 1, T, Tk). The select in attention reads only zero versus nonzero, so float32 serves every
 * model dtype.
 */
export function buildAttentionMask(B: number, T: number, P: number, attentionMask: ArrayLike<number> | undefined): Tensor {
  const Tk = P + T;
  const rows = attentionMask === undefined ? 1 : B;
  const data = new Float32Array(rows * T * Tk);
  for (let b = 0; b < rows; b++) {
    for (let t = 0; t < T; t++) {
      for (let u = 0; u < Tk; u++) {
        const future = u > P + t;
        const padding = attentionMask !== undefined && attentionMask[b * Tk + u] === 0;
        data[(b * T + t) * Tk + u] = future || padding ? 1 : 0;
      }
    }
  }
  return new Tensor(data, [rows, 1, T, Tk]); // (B or 1, 1, T, Tk)
}
