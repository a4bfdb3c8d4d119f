// GPT-2 pre-tokenization: the text is cut into pieces by one regular expression, and BPE then runs
// inside each piece on its own, so no token ever spans two pieces. The alternatives, tried in order:
//
//   's|'t|'re|'ve|'m|'ll|'d      English contractions, lower case only ("WE'LL" -> "WE", "'", "LL")
//    ?\p{L}+                     a run of letters with at most one leading space
//    ?\p{N}+                     a run of digits/numerals with at most one leading space
//    ?[^\s\p{L}\p{N}]+           a run of other symbols with at most one leading space
//   \s+(?!\S)                    whitespace, minus the last space when a word follows it
//   \s+                          any remaining whitespace
//
// `\s` is written as `\p{White_Space}` (the Unicode property): JavaScript's `\s` also matches U+FEFF
// and misses U+0085, while the regex engines behind the reference tokenizers (Python `regex`, Rust
// `fancy-regex` in tiktoken) use the Unicode property. Checked against @dqbd/tiktoken 1.0.22: "a \u0085b"
// -> [64, 220, 126, 227, 65], "x \uFEFF y" -> [87, 27332, 119, 123, 331].

/** Source of the GPT-2 split pattern, for the `u` flag. */
export const GPT2_SPLIT_PATTERN_SOURCE =
  "'s|'t|'re|'ve|'m|'ll|'d" +
  '| ?\\p{L}+' +
  '| ?\\p{N}+' +
  '| ?[^\\p{White_Space}\\p{L}\\p{N}]+' +
  '|\\p{White_Space}+(?!\\P{White_Space})' +
  '|\\p{White_Space}+';

/** Creates a fresh global matcher (a `g` regex carries `lastIndex` state, so callers own one each). */
export function createSplitRegex(): RegExp {
  return new RegExp(GPT2_SPLIT_PATTERN_SOURCE, 'gu');
}

/**
 * Splits text into GPT-2 pre-tokens. The pieces concatenate back to the input: every character is
 * matched by one of the alternatives, since the last two cover whitespace and the others cover the rest.
 */
export function preTokenize(text: string): string[] {
  return Array.from(text.matchAll(createSplitRegex()), (match) => match[0]);
}
