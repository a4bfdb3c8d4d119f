// Parsers for option values. Each rejects a bad value with the valid range, through commander's
// InvalidArgumentError, so the message reads `error: option '--steps <n>' argument 'x' is invalid.
// ...` and the command exits with code 2.

import { InvalidArgumentError } from 'commander';

import { MAX_SEED } from '../train/settings.js';

/** Parses an integer ≥ `min`. */
export function integerAtLeast(min: number): (value: string) => number {
  return (value) => {
    const parsed = Number(value);
    if (value.trim() === '' || !Number.isInteger(parsed) || parsed < min) {
      throw new InvalidArgumentError(`expected an integer ≥ ${min}, got "${value}".`);
    }
    return parsed;
  };
}

/**
 * Parses a seed: an integer in [0, 2^32 − 1]. The random generators take 32-bit seeds, so a
 * larger value would silently act as another seed (2^32 as 0).
 */
export function seedValue(value: string): number {
  const parsed = Number(value);
  if (value.trim() === '' || !Number.isInteger(parsed) || parsed < 0 || parsed > MAX_SEED) {
    throw new InvalidArgumentError(`expected an integer seed in [0, ${MAX_SEED}], got "${value}".`);
  }
  return parsed;
}

/** Parses a finite number in [min, max] (or [min, max) when `maxExclusive`). */
export function numberInRange(min: number, max: number, maxExclusive = false): (value: string) => number {
  return (value) => {
    const parsed = Number(value);
    const belowMax = maxExclusive ? parsed < max : parsed <= max;
    if (value.trim() === '' || !Number.isFinite(parsed) || parsed < min || !belowMax) {
      const upper = max === Infinity ? '∞)' : `${max}${maxExclusive ? ')' : ']'}`;
      throw new InvalidArgumentError(`expected a number in [${min}, ${upper}, got "${value}".`);
    }
    return parsed;
  };
}

/** Parses a number in (0, max]. */
export function positiveNumberUpTo(max: number): (value: string) => number {
  return (value) => {
    const parsed = Number(value);
    if (value.trim() === '' || !Number.isFinite(parsed) || parsed <= 0 || parsed > max) {
      throw new InvalidArgumentError(`expected a number in (0, ${max}], got "${value}".`);
    }
    return parsed;
  };
}

/** Parses a comma-separated list of integer token ids, such as "15496,995". */
export function tokenIdList(value: string): number[] {
  const parts = value.split(',').map((part) => part.trim());
  const ids = parts.map(Number);
  const bad = parts.findIndex((part, i) => part === '' || !Number.isInteger(ids[i]) || ids[i] < 0);
  if (bad !== -1) {
    throw new InvalidArgumentError(`expected comma-separated integer token ids ≥ 0 such as "15496,995", but item ${bad + 1} is "${parts[bad]}".`);
  }
  return ids;
}

/** Parses a comma-separated list of file extensions, adding the leading dot where missing. */
export function extensionList(value: string): string[] {
  const extensions = value
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part.length > 0)
    .map((part) => (part.startsWith('.') ? part : `.${part}`));
  if (extensions.length === 0) throw new InvalidArgumentError(`expected extensions such as ".txt,.md", got "${value}".`);
  return extensions;
}
