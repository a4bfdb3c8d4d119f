// UTF-8 helpers for showing token bytes. A GPT-2 token is a byte string, not a character string:
// a CJK character or an emoji is often split over two or three tokens, so a single token can hold
// an incomplete UTF-8 sequence.

/**
 * Returns the length of the well-formed UTF-8 sequence starting at `bytes[start]`, or 0 when the
 * bytes there are invalid or cut off. Well-formed excludes overlong forms, UTF-16 surrogates and
 * code points above U+10FFFF.
 */
export function utf8SequenceLength(bytes: Uint8Array, start: number): number {
  const lead = bytes[start];
  if (lead <= 0x7f) return 1;

  let length: number;
  let secondMin = 0x80;
  let secondMax = 0xbf;
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    if (lead === 0xe0) secondMin = 0xa0;
    if (lead === 0xed) secondMax = 0x9f;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    if (lead === 0xf0) secondMin = 0x90;
    if (lead === 0xf4) secondMax = 0x8f;
  } else {
    return 0;
  }

  if (start + length > bytes.length) return 0;
  const second = bytes[start + 1];
  if (second < secondMin || second > secondMax) return 0;
  for (let i = start + 2; i < start + length; i++) {
    if (bytes[i] < 0x80 || bytes[i] > 0xbf) return 0;
  }
  return length;
}

function hexEscape(byte: number): string {
  return '\\x' + byte.toString(16).toUpperCase().padStart(2, '0');
}

const NAMED_ESCAPES: ReadonlyMap<number, string> = new Map([
  [0x09, '\\t'],
  [0x0a, '\\n'],
  [0x0d, '\\r'],
  [0x5c, '\\\\'],
]);

/**
 * Formats bytes as readable text. Well-formed characters appear as themselves, and tab, newline,
 * carriage return and backslash as `\t`, `\n`, `\r`, `\\`. Other ASCII controls and every byte
 * outside a well-formed sequence appear as `\xHH` (upper-case hex): [0x20, 0xE5, 0x9C] -> " \xE5\x9C".
 */
export function escapeBytes(bytes: Uint8Array): string {
  const decoder = new TextDecoder('utf-8', { ignoreBOM: true });
  let out = '';
  let i = 0;
  while (i < bytes.length) {
    const byte = bytes[i];
    const length = utf8SequenceLength(bytes, i);
    if (length === 0) {
      out += hexEscape(byte);
      i += 1;
    } else if (length === 1) {
      out += NAMED_ESCAPES.get(byte) ?? (byte < 0x20 || byte === 0x7f ? hexEscape(byte) : String.fromCharCode(byte));
      i += 1;
    } else {
      out += decoder.decode(bytes.subarray(i, i + length));
      i += length;
    }
  }
  return out;
}
