import { describe, expect, it } from 'vitest';

import {
  decodeBFloat16,
  decodeBFloat16Array,
  decodeFloat16,
  decodeFloat16Array,
  encodeBFloat16,
  encodeBFloat16Array,
  encodeFloat16,
  encodeFloat16Array,
} from '../src/io/half.js';

/** float32 value of a bfloat16 pattern via a big-endian DataView, independent of typed-array aliasing. */
function bfloat16Reference(bits: number): number {
  const view = new DataView(new ArrayBuffer(4));
  view.setUint16(0, bits);
  view.setUint16(2, 0);
  return view.getFloat32(0);
}

/** Returns whichever of two adjacent bit patterns has an even mantissa (last bit 0). */
function evenOf(a: number, b: number): number {
  return a % 2 === 0 ? a : b;
}

describe('float16 decode', () => {
  it('decodes the reference bit patterns', () => {
    expect(decodeFloat16(0x3c00)).toBe(1);
    expect(decodeFloat16(0x7bff)).toBe(65504);
    expect(decodeFloat16(0x0001)).toBe(2 ** -24); // smallest subnormal, 5.96e-8
    expect(decodeFloat16(0x03ff)).toBe(1023 * 2 ** -24); // largest subnormal
    expect(decodeFloat16(0x0400)).toBe(2 ** -14); // smallest normal
    expect(decodeFloat16(0xfc00)).toBe(-Infinity);
    expect(decodeFloat16(0x7c00)).toBe(Infinity);
    expect(decodeFloat16(0x7e00)).toBeNaN();
    expect(decodeFloat16(0xfc01)).toBeNaN();
    expect(decodeFloat16(0xc000)).toBe(-2);
    expect(Object.is(decodeFloat16(0x8000), -0)).toBe(true);
  });

  it('increases strictly over all positive finite patterns', () => {
    for (let bits = 0; bits < 0x7c00; bits++) {
      if (!(decodeFloat16(bits) < decodeFloat16(bits + 1))) {
        throw new Error(`decodeFloat16(0x${bits.toString(16)}) is not below the next pattern`);
      }
    }
  });

  it('mirrors negative patterns', () => {
    for (let bits = 0; bits < 0x7c00; bits++) {
      if (decodeFloat16(bits | 0x8000) !== -decodeFloat16(bits)) {
        throw new Error(`decodeFloat16(0x${(bits | 0x8000).toString(16)}) is not the negative of 0x${bits.toString(16)}`);
      }
    }
  });
});

describe('float16 encode', () => {
  it('round-trips every non-NaN pattern', () => {
    for (let bits = 0; bits < 0x10000; bits++) {
      const value = decodeFloat16(bits);
      if (Number.isNaN(value)) continue;
      const back = encodeFloat16(value);
      if (back !== bits) throw new Error(`encodeFloat16(decodeFloat16(0x${bits.toString(16)})) gave 0x${back.toString(16)}`);
    }
  });

  it('rounds every midpoint to the even neighbour', () => {
    for (let bits = 0; bits < 0x7bff; bits++) {
      const low = decodeFloat16(bits);
      const high = decodeFloat16(bits + 1);
      const mid = (low + high) / 2; // exact in float64
      const below = low + (mid - low) * (1 - 2 ** -20);
      const above = mid + (high - mid) * 2 ** -20;
      const even = evenOf(bits, bits + 1);
      const results = [encodeFloat16(mid), encodeFloat16(below), encodeFloat16(above), encodeFloat16(-mid)];
      const expected = [even, bits, bits + 1, even | 0x8000];
      if (results.some((r, i) => r !== expected[i])) {
        throw new Error(`midpoint of 0x${bits.toString(16)}: got ${results.map((r) => r.toString(16))}, expected ${expected.map((r) => r.toString(16))}`);
      }
    }
  });

  it('overflows to infinity from 65520', () => {
    expect(encodeFloat16(65519.99)).toBe(0x7bff);
    expect(encodeFloat16(65520)).toBe(0x7c00); // halfway to 2^16, where the even neighbour is the infinity pattern
    expect(encodeFloat16(1e6)).toBe(0x7c00);
    expect(encodeFloat16(-1e6)).toBe(0xfc00);
    expect(encodeFloat16(Number.MAX_VALUE)).toBe(0x7c00);
    expect(encodeFloat16(-Infinity)).toBe(0xfc00);
  });

  it('keeps NaN, signed zero and tiny values', () => {
    expect(encodeFloat16(NaN)).toBe(0x7e00);
    expect(encodeFloat16(0)).toBe(0x0000);
    expect(encodeFloat16(-0)).toBe(0x8000);
    expect(encodeFloat16(2 ** -25)).toBe(0x0000); // tie between 0 and 2^-24 goes to even 0
    expect(encodeFloat16(3 * 2 ** -25)).toBe(0x0002); // tie between 1 and 2 goes to even 2
    expect(encodeFloat16(Number.MIN_VALUE)).toBe(0x0000); // float64 subnormal input
    expect(encodeFloat16(-Number.MIN_VALUE)).toBe(0x8000);
  });

  // Expected patterns from numpy 1.24: np.array(v, dtype=np.float64).astype(np.float16).
  const numpyCases: Array<[number, number]> = [
    [1 + 2 ** -11 + 2 ** -40, 0x3c01], // just above a tie; rounding to float32 first would give 0x3c00
    [1 + 2 ** -11, 0x3c00],
    [1 + 3 * 2 ** -11, 0x3c02],
    [2 ** -25 + 2 ** -50, 0x0001], // float32 first would give 0x0000
    [2 ** -14 - 2 ** -25, 0x0400],
    [0.1, 0x2e66],
    [-0.1, 0xae66],
    [3.14159265358979, 0x4248],
    [1e-8, 0x0000],
    [6.1e-5, 0x03ff],
    [-2.5e-7, 0x8004],
    [1234.5678, 0x64d3],
  ];

  it.each(numpyCases)('encodes %d like numpy', (value, bits) => {
    expect(encodeFloat16(value)).toBe(bits);
  });
});

describe('bfloat16 decode', () => {
  it('decodes the reference bit patterns', () => {
    expect(decodeBFloat16(0x3f80)).toBe(1);
    expect(decodeBFloat16(0xc049)).toBe(-3.140625);
    expect(decodeBFloat16(0x7f80)).toBe(Infinity);
    expect(decodeBFloat16(0xff80)).toBe(-Infinity);
    expect(decodeBFloat16(0x7fc0)).toBeNaN();
    expect(decodeBFloat16(0x0001)).toBe(2 ** -133);
  });

  it('equals bits << 16 read as float32 for every pattern', () => {
    for (let bits = 0; bits < 0x10000; bits++) {
      const got = decodeBFloat16(bits);
      const expected = bfloat16Reference(bits);
      if (!Object.is(got, expected)) throw new Error(`decodeBFloat16(0x${bits.toString(16)}) = ${got}, expected ${expected}`);
    }
  });
});

describe('bfloat16 encode', () => {
  it('rounds to nearest even, not by truncation', () => {
    expect(encodeBFloat16(1.013671875)).toBe(0x3f82); // truncation would give 0x3f81
    expect(encodeBFloat16(1.00390625)).toBe(0x3f80); // tie, even is 0x3f80
    expect(encodeBFloat16(1.01171875)).toBe(0x3f82); // tie, even is 0x3f82
    expect(decodeBFloat16(0x3f82)).toBe(1.015625);
  });

  it('keeps NaN NaN and overflows to infinity', () => {
    expect(encodeBFloat16(NaN)).toBe(0x7fc0);
    expect(Number.isNaN(decodeBFloat16(encodeBFloat16(NaN)))).toBe(true);
    expect(encodeBFloat16(Infinity)).toBe(0x7f80);
    expect(encodeBFloat16(-Infinity)).toBe(0xff80);
    expect(encodeBFloat16(1e39)).toBe(0x7f80);
    expect(encodeBFloat16(-0)).toBe(0x8000);
    expect(encodeBFloat16(2 ** -134)).toBe(0x0000); // tie between 0 and the smallest subnormal
    expect(encodeBFloat16(3 * 2 ** -134)).toBe(0x0002);
  });

  it('round-trips every non-NaN pattern', () => {
    for (let bits = 0; bits < 0x10000; bits++) {
      const value = decodeBFloat16(bits);
      if (Number.isNaN(value)) continue;
      const back = encodeBFloat16(value);
      if (back !== bits) throw new Error(`encodeBFloat16(decodeBFloat16(0x${bits.toString(16)})) gave 0x${back.toString(16)}`);
    }
  });

  it('rounds every midpoint to the even neighbour', () => {
    for (let bits = 0; bits < 0x7f80; bits++) {
      const low = decodeBFloat16(bits);
      const high = decodeBFloat16(bits + 1); // 0x7f80 is +Infinity, so the last midpoint is (2 - 2^-8) · 2^127
      const mid = high === Infinity ? (2 - 2 ** -8) * 2 ** 127 : (low + high) / 2;
      const below = high === Infinity ? mid * (1 - 2 ** -30) : low + (mid - low) * (1 - 2 ** -20);
      const even = evenOf(bits, bits + 1);
      const results = [encodeBFloat16(mid), encodeBFloat16(below), encodeBFloat16(-mid)];
      const expected = [even, bits, even | 0x8000];
      if (results.some((r, i) => r !== expected[i])) {
        throw new Error(`midpoint of 0x${bits.toString(16)}: got ${results.map((r) => r.toString(16))}, expected ${expected.map((r) => r.toString(16))}`);
      }
    }
  });

  it('rounds a float32 value like the bit-twiddling formula', () => {
    // For float32 inputs, round-to-nearest-even is (bits + 0x7fff + ((bits >> 16) & 1)) >> 16.
    const view = new DataView(new ArrayBuffer(4));
    let seed = 12345;
    for (let i = 0; i < 200_000; i++) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      const bits = seed;
      view.setUint32(0, bits);
      const value = view.getFloat32(0);
      if (Number.isNaN(value)) continue;
      const expected = Math.floor((bits + 0x7fff + ((bits >>> 16) & 1)) / 0x10000) & 0xffff;
      const got = encodeBFloat16(value);
      if (got !== expected) throw new Error(`encodeBFloat16(float32 bits 0x${bits.toString(16)}) = 0x${got.toString(16)}, expected 0x${expected.toString(16)}`);
    }
  });
});

describe('array helpers', () => {
  it('encode and decode whole arrays', () => {
    const values = new Float32Array([0, -1.5, 65504, 2 ** -24, -Infinity, 1.013671875]);

    expect(Array.from(encodeFloat16Array(values))).toEqual(Array.from(values, (v) => encodeFloat16(v)));
    expect(Array.from(decodeFloat16Array(encodeFloat16Array(values)))).toEqual([0, -1.5, 65504, 2 ** -24, -Infinity, 1.013671875]);

    const bfloat = encodeBFloat16Array(values);
    expect(Array.from(bfloat)).toEqual(Array.from(values, (v) => encodeBFloat16(v)));
    expect(Array.from(decodeBFloat16Array(bfloat))).toEqual(Array.from(bfloat, (b) => decodeBFloat16(b)));
  });

  it('keeps bfloat16 NaN payloads bit for bit', () => {
    const decoded = decodeBFloat16Array(new Uint16Array([0x7fc1, 0xffa0]));
    const bits = new Uint32Array(decoded.buffer);
    expect(bits[0]).toBe(0x7fc10000);
    expect(bits[1]).toBe(0xffa00000);
  });
});
