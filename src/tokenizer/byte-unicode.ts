// GPT-2's reversible byte <-> character table. BPE works on strings of characters, and every token
// in vocab.json / encoder.json is written in this alphabet, so that a byte such as 0x20 (space)
// or 0x0A (newline) has a visible, non-whitespace stand-in ("Ġ" = U+0120, "Ċ" = U+010A).
//
// The 188 printable Latin-1 bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') map to the character with the same
// code point. The other 68 bytes (controls, space, 0x7F..0xA0, 0xAD) map, in increasing byte order,
// to U+0100 + n for n = 0..67.

/** Number of distinct byte values; every one of them is a token of its own in the GPT-2 vocabulary. */
export const BYTE_COUNT = 256;

function isPrintableLatin1(byte: number): boolean {
  return (byte >= 0x21 && byte <= 0x7e) || (byte >= 0xa1 && byte <= 0xac) || (byte >= 0xae && byte <= 0xff);
}

/** Builds the byte -> character table (index = byte value). */
function buildByteToChar(): string[] {
  const table: string[] = new Array<string>(BYTE_COUNT);
  let shifted = 0;
  for (let byte = 0; byte < BYTE_COUNT; byte++) {
    const codePoint = isPrintableLatin1(byte) ? byte : BYTE_COUNT + shifted++;
    table[byte] = String.fromCharCode(codePoint);
  }
  return table;
}

/** Character standing for each byte value, as used in the vocabulary and merges files. */
export const BYTE_TO_CHAR: readonly string[] = buildByteToChar();

/** Inverse of `BYTE_TO_CHAR`: character (one UTF-16 unit, all are below U+0144) -> byte value. */
export const CHAR_TO_BYTE: ReadonlyMap<string, number> = new Map(BYTE_TO_CHAR.map((char, byte) => [char, byte]));

/**
 * Converts a vocabulary string back to the bytes it stands for, or returns undefined when some
 * character is outside the byte alphabet (an added token such as a special token may be).
 */
export function charsToBytes(token: string): Uint8Array | undefined {
  const bytes = new Uint8Array(token.length);
  for (let i = 0; i < token.length; i++) {
    const byte = CHAR_TO_BYTE.get(token[i]);
    if (byte === undefined) return undefined;
    bytes[i] = byte;
  }
  return bytes;
}
