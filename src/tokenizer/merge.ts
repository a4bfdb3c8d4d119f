// Byte-pair merging inside one pre-token. Symbols are token ids, not strings: every merge result of
// a valid merges file is itself a vocabulary entry, so a pair of ids maps to one rank and one merged
// id, and the loop never builds or hashes strings.
//
// Rule (as in the original GPT-2 encoder): repeatedly take the adjacent pair with the lowest merge
// rank and merge all its non-overlapping occurrences from left to right, until no adjacent pair has a
// rank. Two implementations follow that rule: a plain rescan for the short pieces that make up almost
// all text, and a linked list with a priority queue for long pieces, where a rescan per merge would
// cost O(n^2).

import type { BpeVocabulary } from './vocab-files.js';

/** Pieces longer than this many bytes use the priority-queue merge. Both paths give the same ids. */
export const LONG_PIECE_BYTES = 64;

/** Merge ranks of a vocabulary: rank r is the r-th line of merges.txt (0-based, header excluded). */
export class MergeTable {
  private readonly rankByPair = new Map<number, number>();
  private readonly mergedIdByRank: Int32Array;
  /** Whether `mergeByQueue` gives the same ids as `mergeByRescan` for this table (see there). */
  readonly queueMergeIsExact: boolean;

  /**
   * @param vocabSize number of token ids; pair keys are `left * vocabSize + right`.
   * @param pairs for each rank, the left id, right id and id of their concatenation.
   */
  constructor(
    private readonly vocabSize: number,
    pairs: ReadonlyArray<readonly [left: number, right: number, merged: number]>,
  ) {
    this.mergedIdByRank = new Int32Array(pairs.length);
    pairs.forEach(([left, right, merged], rank) => {
      const key = left * vocabSize + right;
      if (this.rankByPair.has(key)) {
        throw new Error(
          `MergeTable: merge rank ${rank} repeats the pair (${left}, ${right}) of rank ${this.rankByPair.get(key)}; ` +
            'each pair must appear once in merges.txt',
        );
      }
      this.rankByPair.set(key, rank);
      this.mergedIdByRank[rank] = merged;
    });
    this.queueMergeIsExact = rulesUseOnlyEarlierResults(vocabSize, pairs);
  }

  /** Number of merge rules. */
  get size(): number {
    return this.mergedIdByRank.length;
  }

  /** Returns the rank of merging `left` then `right`, or -1 when the pair is not a merge rule. */
  rankOf(left: number, right: number): number {
    return this.rankByPair.get(left * this.vocabSize + right) ?? -1;
  }

  /** Returns the id produced by the merge of rank `rank`. */
  mergedId(rank: number): number {
    return this.mergedIdByRank[rank];
  }

  /** Merges a piece given as its single-byte token ids and returns the final token ids. */
  merge(ids: number[]): number[] {
    const useQueue = ids.length > LONG_PIECE_BYTES && this.queueMergeIsExact;
    return useQueue ? this.mergeByQueue(ids) : this.mergeByRescan(ids);
  }

  /** Merges by scanning all adjacent pairs once per merge step: O(n^2) but fast for short pieces. */
  mergeByRescan(initialIds: readonly number[]): number[] {
    let ids = initialIds.slice();
    while (ids.length > 1) {
      const { rank, index } = this.lowestRankedPair(ids);
      if (rank < 0) break;
      ids = this.mergeEveryOccurrence(ids, index, this.mergedId(rank));
    }
    return ids;
  }

  private lowestRankedPair(ids: readonly number[]): { rank: number; index: number } {
    let bestRank = -1;
    let bestIndex = -1;
    for (let i = 0; i + 1 < ids.length; i++) {
      const rank = this.rankOf(ids[i], ids[i + 1]);
      if (rank >= 0 && (bestRank < 0 || rank < bestRank)) {
        bestRank = rank;
        bestIndex = i;
      }
    }
    return { rank: bestRank, index: bestIndex };
  }

  /** Replaces each non-overlapping (ids[first], ids[first + 1]) from `first` on by `merged`. */
  private mergeEveryOccurrence(ids: readonly number[], first: number, merged: number): number[] {
    const left = ids[first];
    const right = ids[first + 1];
    const out = ids.slice(0, first);
    let i = first;
    while (i < ids.length) {
      if (i + 1 < ids.length && ids[i] === left && ids[i + 1] === right) {
        out.push(merged);
        i += 2;
      } else {
        out.push(ids[i]);
        i += 1;
      }
    }
    return out;
  }

  /**
   * Merges with a doubly linked list of symbols and a min-queue of candidate pairs keyed by
   * (rank, position): O(n log n). Equal ranks pop in position order, which is the left-to-right pass
   * of the rescan. When `queueMergeIsExact` holds, a merge of rank r only creates pairs whose rules
   * come after r, so all occurrences of r are done before any new pair comes up, as in the rescan.
   * Queue entries left behind by an earlier merge are skipped when the pair at their position no
   * longer has their rank.
   */
  mergeByQueue(initialIds: readonly number[]): number[] {
    const n = initialIds.length;
    const ids = Int32Array.from(initialIds);
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }

    // Key = rank * n + position, exact in a double for any rank count and piece length in practice.
    const queue = new MinQueue();
    const pushPair = (position: number): void => {
      const after = next[position];
      if (position < 0 || after < 0) return;
      const rank = this.rankOf(ids[position], ids[after]);
      if (rank >= 0) queue.push(rank * n + position);
    };
    for (let i = 0; i + 1 < n; i++) pushPair(i);

    while (queue.length > 0) {
      const key = queue.pop();
      const position = key % n;
      const rank = (key - position) / n;
      const after = next[position];
      // A merged-away node has after = -2, so it never passes this check.
      if (after < 0 || this.rankOf(ids[position], ids[after]) !== rank) continue;

      ids[position] = this.mergedId(rank);
      const afterAfter = next[after];
      next[position] = afterAfter;
      if (afterAfter >= 0) prev[afterAfter] = position;
      next[after] = -2;

      pushPair(prev[position]);
      pushPair(position);
    }

    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]) out.push(ids[i]);
    return out;
  }
}

/**
 * Checks that every token is produced by at most one rule and that each rule only uses tokens made
 * by earlier rules (or never made by any). BPE training writes merges in this order, and the GPT-2
 * file satisfies it (checked in the tokenizer tests).
 */
function rulesUseOnlyEarlierResults(
  vocabSize: number,
  pairs: ReadonlyArray<readonly [left: number, right: number, merged: number]>,
): boolean {
  const producerRank = new Int32Array(vocabSize).fill(-1);
  for (let rank = 0; rank < pairs.length; rank++) {
    const merged = pairs[rank][2];
    if (producerRank[merged] >= 0) return false;
    producerRank[merged] = rank;
  }
  return pairs.every(([left, right], rank) => producerRank[left] < rank && producerRank[right] < rank);
}

/** Binary min-heap of numbers. */
class MinQueue {
  private readonly heap: number[] = [];

  get length(): number {
    return this.heap.length;
  }

  push(value: number): void {
    const heap = this.heap;
    let i = heap.length;
    heap.push(value);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent] <= value) break;
      heap[i] = heap[parent];
      i = parent;
    }
    heap[i] = value;
  }

  /** Removes and returns the smallest value; call only when `length > 0`. */
  pop(): number {
    const heap = this.heap;
    const top = heap[0];
    const last = heap.pop() as number;
    if (heap.length === 0) return top;

    let i = 0;
    const size = heap.length;
    for (;;) {
      const leftChild = 2 * i + 1;
      if (leftChild >= size) break;
      const rightChild = leftChild + 1;
      const child = rightChild < size && heap[rightChild] < heap[leftChild] ? rightChild : leftChild;
      if (heap[child] >= last) break;
      heap[i] = heap[child];
      i = child;
    }
    heap[i] = last;
    return top;
  }
}

/** Resolves each merge rule to (left id, right id, merged id). All three must be vocabulary tokens. */
export function buildMergeTable(vocabulary: BpeVocabulary, vocabSize: number, source: string): MergeTable {
  const pairs = vocabulary.merges.map(([left, right], rank): [number, number, number] => {
    const tokens = [left, right, left + right];
    const [leftId, rightId, mergedId] = tokens.map((token) => vocabulary.vocab.get(token));
    if (leftId === undefined || rightId === undefined || mergedId === undefined) {
      const missing = tokens.filter((token) => !vocabulary.vocab.has(token)).map((token) => JSON.stringify(token));
      throw new Error(
        `buildMergeTable: ${source} merge rule ${rank} "${left} ${right}" needs tokens missing from the vocabulary: ${missing.join(', ')}`,
      );
    }
    return [leftId, rightId, mergedId];
  });
  return new MergeTable(vocabSize, pairs);
}
