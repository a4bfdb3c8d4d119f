// Conversions between JS numbers and the 16-bit float formats stored in checkpoints, working on the
// raw uint16 bit patterns.
//
// - float16 (IEEE 754 binary16): 1 sign bit, 5 exponent bits (bias 15), 10 mantissa bits.
//   Largest finite value 65504, smallest normal 2^-14, smallest subnormal 2^-24.
// - bfloat16: the upper 16 bits of a float32, so 1 sign bit, 8 exponent bits (bias 127) and 7
//   mantissa bits. Decoding is `bits << 16` reinterpreted as a float32.
//
// Encoding rounds the exact input value once, to nearest with ties to even. A float64 input is not
// rounded to float32 first, because that double rounding can move a value that lies just above a
// halfway point onto the halfway point and then to the wrong neighbour.

// ---------------------------------------------------------------------------------------------------
// Exact powers of two and exponent extraction

const POWER_OF_TWO_MIN_EXPONENT = -150;
const POWER_OF_TWO_MAX_EXPONENT = 150;

/** 2^k for k in [-150, 150], built by repeated doubling and halving so every entry is exact. */
const POWERS_OF_TWO = buildPowersOfTwo();

function buildPowersOfTwo(): Float64Array {
  const table = new Float64Array(POWER_OF_TWO_MAX_EXPONENT - POWER_OF_TWO_MIN_EXPONENT + 1);
  const zeroIndex = -POWER_OF_TWO_MIN_EXPONENT;
  table[zeroIndex] = 1;
  for (let k = 1; k <= POWER_OF_TWO_MAX_EXPONENT; k++) table[zeroIndex + k] = table[zeroIndex + k - 1] * 2;
  for (let k = -1; k >= POWER_OF_TWO_MIN_EXPONENT; k--) table[zeroIndex + k] = table[zeroIndex + k + 1] / 2;
  return table;
}

function powerOfTwo(exponent: number): number {
  return POWERS_OF_TWO[exponent - POWER_OF_TWO_MIN_EXPONENT];
}

const float64Scratch = new DataView(new ArrayBuffer(8));

/** floor(log2(a)) for a positive, finite, normal float64, read from its exponent bits. */
function exponentOf(a: number): number {
  float64Scratch.setFloat64(0, a);
  return ((float64Scratch.getUint16(0) >> 4) & 0x7ff) - 1023;
}

/**
 * Rounds a non-negative value to an integer, ties to even. Callers pass values below 2^12, where
 * `v - floor(v)` is exact in float64, so the tie test is exact too.
 */
function roundHalfToEven(v: number): number {
  const floor = Math.floor(v);
  const fraction = v - floor;
  if (fraction > 0.5) return floor + 1;
  if (fraction < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

function isNegative(value: number): boolean {
  return value < 0 || Object.is(value, -0);
}

// ---------------------------------------------------------------------------------------------------
// float16

const FLOAT16_SIGN = 0x8000;
const FLOAT16_INFINITY = 0x7c00;
const FLOAT16_QUIET_NAN = 0x7e00;
/** Smallest normal float16, 2^-14. */
const FLOAT16_MIN_NORMAL = 2 ** -14;

/** Decodes one float16 bit pattern (0..0xffff) to its exact value. */
export function decodeFloat16(bits: number): number {
  const sign = bits & FLOAT16_SIGN ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const mantissa = bits & 0x3ff;

  if (exponent === 0) return sign * mantissa * powerOfTwo(-24); // zero or subnormal
  if (exponent === 0x1f) return mantissa === 0 ? sign * Infinity : NaN;
  return sign * (1024 + mantissa) * powerOfTwo(exponent - 25);
}

/**
 * Encodes a number as a float16 bit pattern, rounding to nearest with ties to even. Values of
 * magnitude 65520 and above (halfway between 65504 and 2^16) become ±Infinity, and every NaN
 * becomes the quiet NaN 0x7e00.
 */
export function encodeFloat16(value: number): number {
  if (Number.isNaN(value)) return FLOAT16_QUIET_NAN;

  const sign = isNegative(value) ? FLOAT16_SIGN : 0;
  const magnitude = Math.abs(value);
  if (magnitude === Infinity) return sign | FLOAT16_INFINITY;

  // Subnormal range: the value is a multiple of 2^-24, and a rounded count of 1024 is exactly the
  // bit pattern of the smallest normal, so the carry needs no special case.
  if (magnitude < FLOAT16_MIN_NORMAL) return sign | roundHalfToEven(magnitude * powerOfTwo(24));

  const exponent = exponentOf(magnitude);
  if (exponent > 15) return sign | FLOAT16_INFINITY;

  // The significand is in [1024, 2048], and 2048 carries into the exponent field through the addition.
  const significand = roundHalfToEven(magnitude * powerOfTwo(10 - exponent));
  const bits = ((exponent + 15) << 10) + (significand - 1024);
  return sign | Math.min(bits, FLOAT16_INFINITY);
}

let float16Table: Float32Array | undefined;

/**
 * Returns the value of every float16 bit pattern, indexed by the pattern. Built on first use
 * (65536 entries, 256 KiB) and shared by every caller, so callers must not write to it. Every
 * float16 value is exact in float32.
 */
export function float16DecodeTable(): Float32Array {
  if (float16Table === undefined) {
    const table = new Float32Array(65536);
    for (let bits = 0; bits < 65536; bits++) table[bits] = decodeFloat16(bits);
    float16Table = table;
  }
  return float16Table;
}

// ---------------------------------------------------------------------------------------------------
// bfloat16

const BFLOAT16_SIGN = 0x8000;
const BFLOAT16_INFINITY = 0x7f80;
const BFLOAT16_QUIET_NAN = 0x7fc0;
/** Smallest normal bfloat16 (and float32), 2^-126. */
const BFLOAT16_MIN_NORMAL = 2 ** -126;

// Aliased views over one buffer share the host byte order, so this reinterpretation is the same on
// little- and big-endian hosts.
const bfloat16ScratchBits = new Uint32Array(1);
const bfloat16ScratchValue = new Float32Array(bfloat16ScratchBits.buffer);

/** Decodes one bfloat16 bit pattern (0..0xffff): the pattern shifted left by 16 bits, read as float32. */
export function decodeBFloat16(bits: number): number {
  bfloat16ScratchBits[0] = (bits & 0xffff) << 16;
  return bfloat16ScratchValue[0];
}

/**
 * Encodes a number as a bfloat16 bit pattern, rounding to nearest with ties to even. Magnitudes
 * from (2 - 2^-8) · 2^127 up become ±Infinity, and every NaN becomes the quiet NaN 0x7fc0.
 */
export function encodeBFloat16(value: number): number {
  if (Number.isNaN(value)) return BFLOAT16_QUIET_NAN;

  const sign = isNegative(value) ? BFLOAT16_SIGN : 0;
  const magnitude = Math.abs(value);
  if (magnitude === Infinity) return sign | BFLOAT16_INFINITY;

  // Subnormal range: the value is a multiple of 2^-133, and a count of 128 is the smallest
  // normal's bit pattern.
  if (magnitude < BFLOAT16_MIN_NORMAL) return sign | roundHalfToEven(magnitude * powerOfTwo(133));

  const exponent = exponentOf(magnitude);
  if (exponent > 127) return sign | BFLOAT16_INFINITY;

  // The significand is in [128, 256], and 256 carries into the exponent field through the addition.
  const significand = roundHalfToEven(magnitude * powerOfTwo(7 - exponent));
  const bits = ((exponent + 127) << 7) + (significand - 128);
  return sign | Math.min(bits, BFLOAT16_INFINITY);
}

// ---------------------------------------------------------------------------------------------------
// Whole arrays

/** Encodes every element as float16 (see `encodeFloat16`). */
export function encodeFloat16Array(values: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = encodeFloat16(values[i]);
  return out;
}

/** Encodes every element as bfloat16 (see `encodeBFloat16`). */
export function encodeBFloat16Array(values: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = encodeBFloat16(values[i]);
  return out;
}

/** Decodes float16 bit patterns into a new Float32Array. */
export function decodeFloat16Array(bits: Uint16Array): Float32Array {
  const table = float16DecodeTable();
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = table[bits[i]];
  return out;
}

/** Decodes bfloat16 bit patterns into a new Float32Array, keeping NaN payloads bit for bit. */
export function decodeBFloat16Array(bits: Uint16Array): Float32Array {
  const wide = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) wide[i] = bits[i] << 16;
  return new Float32Array(wide.buffer);
}
