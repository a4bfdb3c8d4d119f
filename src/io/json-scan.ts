// A second pass over JSON text that `JSON.parse` has already accepted, finding what JSON.parse
// hides: duplicate object keys (it silently keeps the last one) and integers written as "2.0",
// "1e3" or "-0" (it returns them as plain integers). Strict readers such as serde_json, which the
// reference safetensors library uses, reject both.
//
// The scan is iterative with an explicit stack, so deeply nested input cannot overflow the call
// stack, and it runs in time linear in the text length.

/** A key that occurs twice in one JSON object. */
export interface DuplicateJsonKey {
  key: string;
  /** Keys of the enclosing objects, outermost first. Empty for a key of the root object. */
  path: string[];
}

/** Findings of `scanJson`. */
export interface JsonScanResult {
  /** The first duplicate key in text order, if any. */
  duplicate?: DuplicateJsonKey;
  /**
   * For each key of the root object whose value contains a number literal that is not a plain
   * non-negative integer (digits only), the first such literal as written.
   */
  nonIntegerLiterals: Map<string, string>;
}

interface Frame {
  isObject: boolean;
  /** Keys seen so far in this object, or null for an array. */
  keys: Set<string> | null;
  /** True right after `{` or `,` inside an object, where the next string is a key. */
  expectingKey: boolean;
  /** The key whose value is being scanned. */
  currentKey: string | undefined;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * Scans JSON text for duplicate keys and non-integer number literals. The input must be text that
 * `JSON.parse` accepted. On other input the result is unspecified, but the scan still terminates.
 */
export function scanJson(text: string): JsonScanResult {
  const result: JsonScanResult = { nonIntegerLiterals: new Map() };
  const stack: Frame[] = [];
  let i = 0;

  while (i < text.length) {
    const c = text[i];
    const top = stack.length > 0 ? stack[stack.length - 1] : undefined;

    if (c === '{' || c === '[') {
      const isObject = c === '{';
      stack.push({ isObject, keys: isObject ? new Set() : null, expectingKey: isObject, currentKey: undefined });
      i++;
    } else if (c === '}' || c === ']') {
      stack.pop();
      i++;
    } else if (c === ',') {
      if (top !== undefined && top.isObject) top.expectingKey = true;
      i++;
    } else if (c === '"') {
      const end = findStringEnd(text, i);
      if (top !== undefined && top.expectingKey) {
        const key = JSON.parse(text.slice(i, end)) as string;
        recordKey(result, stack, top, key);
      }
      i = end;
    } else if (c === '-' || (c >= '0' && c <= '9')) {
      const end = findNumberEnd(text, i);
      recordNumber(result, stack, text.slice(i, end));
      i = end;
    } else {
      // Whitespace, ':' and the letters of true / false / null.
      i++;
    }
  }
  return result;
}

function recordKey(result: JsonScanResult, stack: Frame[], top: Frame, key: string): void {
  top.expectingKey = false;
  top.currentKey = key;
  if (top.keys === null) return;

  if (top.keys.has(key) && result.duplicate === undefined) {
    const path = stack.slice(0, -1).map((frame) => frame.currentKey ?? '');
    result.duplicate = { key, path };
  }
  top.keys.add(key);
}

function recordNumber(result: JsonScanResult, stack: Frame[], literal: string): void {
  if (/^[0-9]+$/.test(literal)) return;

  const root = stack[0];
  if (root === undefined || !root.isObject || root.currentKey === undefined) return;
  if (!result.nonIntegerLiterals.has(root.currentKey)) result.nonIntegerLiterals.set(root.currentKey, literal);
}

/** Index just past the closing quote of the string literal that starts at `start`. */
function findStringEnd(text: string, start: number): number {
  let i = start + 1;
  while (i < text.length) {
    const code = text.charCodeAt(i);
    if (code === BACKSLASH) i += 2;
    else if (code === QUOTE) return i + 1;
    else i++;
  }
  return text.length;
}

/** Index just past the number literal that starts at `start`. */
function findNumberEnd(text: string, start: number): number {
  let i = start;
  while (i < text.length && /[-+.eE0-9]/.test(text[i])) i++;
  return i;
}
