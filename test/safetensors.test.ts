import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { decodeBFloat16, decodeFloat16, encodeBFloat16, encodeFloat16 } from '../src/io/half.js';
import {
  parseSafetensors,
  readSafetensorsFile,
  readTensor,
  SafetensorsError,
  serializeSafetensors,
  writeSafetensorsFile,
  type SafetensorsFile,
  type SafetensorsInput,
  type WritableDtype,
} from '../src/io/safetensors.js';

// ---------------------------------------------------------------------------------------------------
// Helpers

const encoder = new TextEncoder();

/** Builds file bytes by hand: 8-byte little-endian length (n by default), header text, data. */
function buildFile(header: string | object, data: Uint8Array | number = 0, declaredLength?: bigint): Uint8Array {
  const text = typeof header === 'string' ? header : JSON.stringify(header);
  const headerBytes = encoder.encode(text);
  const dataBytes = typeof data === 'number' ? new Uint8Array(data) : data;
  const bytes = new Uint8Array(8 + headerBytes.length + dataBytes.length);
  new DataView(bytes.buffer).setBigUint64(0, declaredLength ?? BigInt(headerBytes.length), true);
  bytes.set(headerBytes, 8);
  bytes.set(dataBytes, 8 + headerBytes.length);
  return bytes;
}

/** Little-endian bytes written by `write` into a DataView of `length` bytes. */
function littleEndianBytes(length: number, write: (view: DataView) => void): Uint8Array {
  const bytes = new Uint8Array(length);
  write(new DataView(bytes.buffer));
  return bytes;
}

/** Asserts that `run` throws a SafetensorsError whose message contains every fragment. */
function expectRejected(run: () => unknown, ...fragments: string[]): SafetensorsError {
  let caught: unknown;
  try {
    run();
  } catch (error) {
    caught = error;
  }
  expect(caught, 'expected a SafetensorsError, but nothing was thrown').toBeInstanceOf(SafetensorsError);
  const error = caught as SafetensorsError;
  for (const fragment of fragments) expect(error.message).toContain(fragment);
  return error;
}

function product(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

const F32_ENTRY = (begin: number, end: number, shape: number[] = [(end - begin) / 4]): object => ({
  dtype: 'F32',
  shape,
  data_offsets: [begin, end],
});

// ---------------------------------------------------------------------------------------------------
// Round trips

describe('safetensors round trip', () => {
  const values = [0, 1, -2.5, 3.140625, -0.0078125, 65504];

  it.each<WritableDtype>(['F64', 'F32', 'F16', 'BF16'])('round-trips exactly representable %s values', (dtype) => {
    const exact = dtype === 'BF16' ? values.slice(0, 5) : values; // 65504 needs 11 significant bits
    const bytes = serializeSafetensors([{ name: 'w', dtype, shape: [exact.length], data: new Float64Array(exact) }]);
    const file = parseSafetensors(bytes);

    expect(file.tensors.get('w')).toMatchObject({ dtype, shape: [exact.length] });
    expect(Array.from(readTensor(file, 'w'))).toEqual(exact);
    expect(Array.from(readTensor(file, 'w', 'float64'))).toEqual(exact);
  });

  it('rounds F16 and BF16 to nearest even on write', () => {
    const data = new Float64Array([1.013671875, 1.00390625, 1.01171875, 1 + 2 ** -11 + 2 ** -40, NaN, 1e6]);
    const bytes = serializeSafetensors([
      { name: 'half', dtype: 'F16', shape: [6], data },
      { name: 'brain', dtype: 'BF16', shape: [6], data },
    ]);
    const file = parseSafetensors(bytes);

    expect(Array.from(readTensor(file, 'half', 'float64'))).toEqual(Array.from(data, (v) => decodeFloat16(encodeFloat16(v))));
    expect(Array.from(readTensor(file, 'brain', 'float64'))).toEqual(Array.from(data, (v) => decodeBFloat16(encodeBFloat16(v))));
    expect(readTensor(file, 'brain')[0]).toBe(1.015625);
    expect(readTensor(file, 'half')[5]).toBe(Infinity);
  });

  it('narrows float64 to F32 and widens float32 to F64', () => {
    const wide = new Float64Array([0.1, 1 / 3, 1e-40, 1e39]);
    const narrow = new Float32Array([0.1, 1 / 3]);
    const file = parseSafetensors(
      serializeSafetensors([
        { name: 'a', dtype: 'F32', shape: [4], data: wide },
        { name: 'b', dtype: 'F64', shape: [2], data: narrow },
      ]),
    );

    expect(Array.from(readTensor(file, 'a', 'float64'))).toEqual(Array.from(wide, (v) => Math.fround(v)));
    expect(Array.from(readTensor(file, 'b', 'float64'))).toEqual(Array.from(narrow));
  });

  it('reads scalars and empty tensors', () => {
    const file = parseSafetensors(
      serializeSafetensors([
        { name: 'scalar', dtype: 'F32', shape: [], data: new Float32Array([7.5]) },
        { name: 'empty', dtype: 'F16', shape: [0], data: new Float32Array(0) },
        { name: 'empty3d', dtype: 'F64', shape: [3, 0, 2], data: new Float64Array(0) },
        { name: 'last', dtype: 'BF16', shape: [1], data: new Float32Array([2]) },
      ]),
    );

    expect(file.tensors.get('scalar')).toMatchObject({ shape: [], byteLength: 4 });
    expect(Array.from(readTensor(file, 'scalar'))).toEqual([7.5]);
    expect(readTensor(file, 'empty').length).toBe(0);
    expect(readTensor(file, 'empty3d', 'float64').length).toBe(0);
    expect(file.tensors.get('empty3d')).toMatchObject({ shape: [3, 0, 2], byteLength: 0 });
    expect(Array.from(readTensor(file, 'last'))).toEqual([2]);
  });

  it('reads an F32 tensor at a misaligned offset', () => {
    const bytes = serializeSafetensors([
      { name: 'h', dtype: 'F16', shape: [3], data: new Float32Array([1, 2, 3]) },
      { name: 'w', dtype: 'F32', shape: [2, 2], data: new Float32Array([0.5, -1, 1e-3, 42]) },
    ]);
    const file = parseSafetensors(bytes);
    const w = file.tensors.get('w');

    expect(w?.byteOffset).toBeDefined();
    expect((w?.byteOffset ?? 0) % 4).not.toBe(0);
    const values = readTensor(file, 'w');
    expect(values.byteOffset).toBe(0);
    expect(Array.from(values)).toEqual(Array.from(new Float32Array([0.5, -1, 1e-3, 42])));
  });

  it('parses a view at an odd offset of a larger buffer', () => {
    const bytes = serializeSafetensors([{ name: 'w', dtype: 'F64', shape: [2], data: new Float64Array([Math.PI, -Math.E]) }]);
    const larger = new Uint8Array(bytes.length + 3);
    larger.set(bytes, 3);
    const file = parseSafetensors(larger.subarray(3));

    expect(Array.from(readTensor(file, 'w', 'float64'))).toEqual([Math.PI, -Math.E]);
  });

  it('keeps the given tensor order, also for integer-like names', () => {
    const bytes = serializeSafetensors([
      { name: 'b', dtype: 'F32', shape: [1], data: new Float32Array([1]) },
      { name: '1', dtype: 'F32', shape: [1], data: new Float32Array([2]) },
      { name: '0', dtype: 'F32', shape: [1], data: new Float32Array([3]) },
    ]);
    const file = parseSafetensors(bytes);
    const header = new TextDecoder().decode(bytes.subarray(8, 8 + file.headerLength));

    expect(header.indexOf('"b"')).toBeLessThan(header.indexOf('"1"'));
    expect(header.indexOf('"1"')).toBeLessThan(header.indexOf('"0"'));
    expect([...file.tensors.keys()]).toEqual(['b', '1', '0']);
    expect(Array.from(readTensor(file, '0'))).toEqual([3]);
  });

  it('lists tensors in data order, not header order', () => {
    const header = { second: F32_ENTRY(4, 8), first: F32_ENTRY(0, 4) };
    const data = littleEndianBytes(8, (v) => {
      v.setFloat32(0, 1, true);
      v.setFloat32(4, 2, true);
    });
    const file = parseSafetensors(buildFile(header, data));

    expect([...file.tensors.keys()]).toEqual(['first', 'second']);
    expect(Array.from(readTensor(file, 'second'))).toEqual([2]);
  });

  it('round-trips metadata, including a "__proto__" key', () => {
    const metadata = JSON.parse('{"format":"pt","__proto__":"odd but legal","empty":""}') as Record<string, string>;
    const file = parseSafetensors(serializeSafetensors([], metadata));

    expect(Object.keys(file.metadata).sort()).toEqual(['__proto__', 'empty', 'format']);
    expect(file.metadata.format).toBe('pt');
    expect(Object.getOwnPropertyDescriptor(file.metadata, '__proto__')?.value).toBe('odd but legal');
    expect(file.tensors.size).toBe(0);
  });

  it('pads the header like the reference writer', () => {
    const data = new Float32Array([0, 1, 2, 3, 4, 5]);
    const exact = serializeSafetensors([{ name: 'attn.0', dtype: 'F32', shape: [1, 2, 3], data }]);
    const padded = serializeSafetensors([{ name: 'attn0', dtype: 'F32', shape: [1, 1, 2, 3], data }]);
    const empty = serializeSafetensors([]);
    const metadataOnly = serializeSafetensors([], { framework: 'pt' });

    const text = (bytes: Uint8Array): string => new TextDecoder().decode(bytes.subarray(8, 8 + Number(new DataView(bytes.buffer).getBigUint64(0, true))));
    expect(text(exact)).toBe('{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}'); // 64 bytes
    expect(text(padded)).toBe('{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}       ');
    expect(text(empty)).toBe('{}      ');
    expect(text(metadataOnly)).toBe('{"__metadata__":{"framework":"pt"}}     ');
    expect(Array.from(empty)).toEqual([8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]);
    expect(exact.length).toBe(8 + 64 + 24);
    expect(padded.length).toBe(8 + 72 + 24);
  });

  it('decodes integer and BOOL dtypes to float', () => {
    const data = littleEndianBytes(8 + 8 + 4 + 4 + 2 + 2 + 1 + 1 + 2, (v) => {
      v.setBigInt64(0, -5n, true);
      v.setBigUint64(8, 2n ** 53n, true);
      v.setInt32(16, -70000, true);
      v.setUint32(20, 4_000_000_000, true);
      v.setInt16(24, -300, true);
      v.setUint16(26, 65535, true);
      v.setInt8(28, -128);
      v.setUint8(29, 255);
      v.setUint8(30, 0);
      v.setUint8(31, 7);
    });
    const header = {
      i64: { dtype: 'I64', shape: [1], data_offsets: [0, 8] },
      u64: { dtype: 'U64', shape: [1], data_offsets: [8, 16] },
      i32: { dtype: 'I32', shape: [1], data_offsets: [16, 20] },
      u32: { dtype: 'U32', shape: [1], data_offsets: [20, 24] },
      i16: { dtype: 'I16', shape: [1], data_offsets: [24, 26] },
      u16: { dtype: 'U16', shape: [1], data_offsets: [26, 28] },
      i8: { dtype: 'I8', shape: [1], data_offsets: [28, 29] },
      u8: { dtype: 'U8', shape: [1], data_offsets: [29, 30] },
      flags: { dtype: 'BOOL', shape: [2], data_offsets: [30, 32] },
    };
    const file = parseSafetensors(buildFile(header, data));
    const read = (name: string): number[] => Array.from(readTensor(file, name, 'float64'));

    expect(read('i64')).toEqual([-5]);
    expect(read('u64')).toEqual([2 ** 53]);
    expect(read('i32')).toEqual([-70000]);
    expect(read('u32')).toEqual([4_000_000_000]);
    expect(read('i16')).toEqual([-300]);
    expect(read('u16')).toEqual([65535]);
    expect(read('i8')).toEqual([-128]);
    expect(read('u8')).toEqual([255]);
    expect(read('flags')).toEqual([0, 1]);
  });

  it('writes and reads a file atomically', () => {
    const folder = mkdtempSync(join(tmpdir(), 'rwkvify-safetensors-'));
    try {
      const path = join(folder, 'model.safetensors');
      const tensors: SafetensorsInput[] = [{ name: 'w', dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) }];
      writeSafetensorsFile(path, tensors, { step: '10' });
      writeSafetensorsFile(path, [{ ...tensors[0], data: new Float32Array([3, 4]) }], { step: '20' });

      const file = readSafetensorsFile(path);
      expect(file.source).toBe(path);
      expect(file.metadata).toEqual({ step: '20' });
      expect(Array.from(readTensor(file, 'w'))).toEqual([3, 4]);
      expect(readdirSync(folder)).toEqual(['model.safetensors']);
      expect(readFileSync(path).length).toBe(file.bytes.length);
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });

  it('names the path when a file cannot be read', () => {
    expect(() => readSafetensorsFile('/nonexistent/rwkvify/model.safetensors')).toThrow(
      /readSafetensorsFile: cannot read "\/nonexistent\/rwkvify\/model.safetensors": ENOENT/,
    );
  });
});

// ---------------------------------------------------------------------------------------------------
// readTensor errors

describe('readTensor', () => {
  const file = parseSafetensors(
    buildFile({ fp8: { dtype: 'F8_E4M3', shape: [2], data_offsets: [0, 2] }, w: F32_ENTRY(2, 6) }, 6),
    'model.safetensors',
  );

  it('rejects an unknown tensor name and lists the names', () => {
    const error = expectRejected(() => readTensor(file, 'missing'), 'model.safetensors', '"missing"', 'available: "fp8", "w"');
    expect(error.tensor).toBe('missing');
  });

  it('rejects dtypes it cannot decode instead of reinterpreting them', () => {
    expect(file.tensors.get('fp8')).toMatchObject({ dtype: 'F8_E4M3', byteLength: 2 });
    const error = expectRejected(() => readTensor(file, 'fp8'), 'cannot decode dtype F8_E4M3');
    expect(error.tensor).toBe('fp8');
  });

  it('rejects an unknown output type', () => {
    expectRejected(() => readTensor(file, 'w', 'float16' as 'float32'), 'output type must be "float32" or "float64"');
  });
});

// ---------------------------------------------------------------------------------------------------
// Writer checks

describe('serializeSafetensors rejects', () => {
  const oneTensor = (overrides: Partial<SafetensorsInput>): SafetensorsInput[] => [
    { name: 'w', dtype: 'F32', shape: [2], data: new Float32Array(2), ...overrides },
  ];

  it('the reserved name "__metadata__"', () => {
    expectRejected(() => serializeSafetensors(oneTensor({ name: '__metadata__' })), 'reserved');
  });

  it('duplicate names', () => {
    expectRejected(() => serializeSafetensors([...oneTensor({}), ...oneTensor({})]), 'tensor "w"', 'duplicate');
  });

  it('data whose length does not match the shape', () => {
    expectRejected(() => serializeSafetensors(oneTensor({ shape: [3] })), 'data has 2 elements but shape [3] needs 3');
  });

  it('dtypes it cannot write', () => {
    expectRejected(() => serializeSafetensors(oneTensor({ dtype: 'I32' as WritableDtype })), 'cannot write dtype "I32"');
  });

  it('negative or fractional dimensions', () => {
    expectRejected(() => serializeSafetensors(oneTensor({ shape: [-1, -2] })), 'non-negative integers');
    expectRejected(() => serializeSafetensors(oneTensor({ shape: [0.5, 4] })), 'non-negative integers');
  });

  it('non-string metadata values and unpaired surrogates', () => {
    expectRejected(() => serializeSafetensors([], { n: 0 as unknown as string }), 'must be a string');
    expectRejected(() => serializeSafetensors(oneTensor({ name: 'bad\uD800' })), 'unpaired UTF-16 surrogate');
  });
});

// ---------------------------------------------------------------------------------------------------
// Hostile files

describe('byte range shorter than shape × dtype', () => {
  it('rejects 4 bytes declared as a 1000×1000 F32 tensor', () => {
    const bytes = buildFile({ 'h.0.w': { dtype: 'F32', shape: [1000, 1000], data_offsets: [0, 4] } }, 4);
    const error = expectRejected(
      () => parseSafetensors(bytes, 'bad.safetensors'),
      'bad.safetensors',
      'tensor "h.0.w"',
      'data_offsets [0, 4] cover 4 bytes but shape [1000,1000] F32 needs 4000000',
    );
    expect(error.tensor).toBe('h.0.w');
  });

  it('rejects offsets past the end of the data region', () => {
    expectRejected(() => parseSafetensors(buildFile({ w: F32_ENTRY(0, 8) }, 4)), 'run past the end of the 4-byte data region');
  });

  it('rejects a shape product that overflows 64 bits', () => {
    const huge = 2 ** 53 - 1;
    expectRejected(
      () => parseSafetensors(buildFile({ w: { dtype: 'F32', shape: [huge, huge], data_offsets: [0, 8] } }, 8)),
      'cover 8 bytes but shape',
      'needs 324518553658426654725561982648324', // (2^53 - 1)^2 × 4, computed exactly
    );
  });

  it('accepts a zero dimension next to huge ones', () => {
    const huge = 2 ** 53 - 1;
    const file = parseSafetensors(buildFile({ w: { dtype: 'F32', shape: [0, huge, huge], data_offsets: [0, 0] } }));
    expect(readTensor(file, 'w').length).toBe(0);
  });
});

describe('negative, reversed and overlapping offsets', () => {
  it('rejects a negative begin', () => {
    expectRejected(() => parseSafetensors(buildFile({ w: F32_ENTRY(-4, 0, [1]) }, 4)), 'tensor "w"', 'data_offsets', 'got -4');
  });

  it('rejects reversed offsets', () => {
    expectRejected(() => parseSafetensors(buildFile({ w: F32_ENTRY(8, 4, [1]) }, 8)), 'data_offsets [8, 4] are reversed');
  });

  it('rejects overlapping ranges', () => {
    const header = { a: F32_ENTRY(0, 8), b: F32_ENTRY(4, 12) };
    expectRejected(() => parseSafetensors(buildFile(header, 12)), 'tensor "b"', 'overlap tensor "a"');
  });

  it('rejects a hole between ranges', () => {
    const header = { a: F32_ENTRY(0, 4), b: F32_ENTRY(8, 12) };
    expectRejected(() => parseSafetensors(buildFile(header, 12)), 'tensor "b"', 'hole of 4 bytes after tensor "a"');
  });

  it('rejects a hole at the start', () => {
    expectRejected(() => parseSafetensors(buildFile({ a: F32_ENTRY(4, 8) }, 8)), 'hole of 4 bytes after the start of the data region');
  });

  it('rejects trailing bytes after the last tensor', () => {
    expectRejected(() => parseSafetensors(buildFile({ a: F32_ENTRY(0, 4) }, 6)), 'data region is 6 bytes', '2 trailing bytes');
  });

  it('rejects an empty tensor placed inside another one', () => {
    const header = { a: F32_ENTRY(0, 8), e: { dtype: 'F32', shape: [0], data_offsets: [4, 4] } };
    expectRejected(() => parseSafetensors(buildFile(header, 8)), 'tensor "e"', 'overlap tensor "a"');
  });

  const badOffsets: Array<[string, string]> = [
    ['[0, 4.5]', 'got 4.5'],
    ['["0", "4"]', 'got "0"'],
    ['[0, 4.0]', 'number 4.0'],
    ['[0, 4e0]', 'number 4e0'],
    ['[-0, 4]', 'number -0'],
    ['[0, 9007199254740993]', 'got 9007199254740992'],
    ['[0, 4, 8]', 'must be [begin, end]'],
    ['[0]', 'must be [begin, end]'],
    ['{"begin": 0, "end": 4}', 'must be an array'],
    ['null', 'must be an array'],
  ];

  it.each(badOffsets)('rejects data_offsets %s', (offsets, fragment) => {
    const header = `{"w":{"dtype":"F32","shape":[1],"data_offsets":${offsets}}}`;
    const error = expectRejected(() => parseSafetensors(buildFile(header, 4)), fragment);
    expect(error.tensor).toBe('w');
  });

  const badShapes: Array<[string, string]> = [
    ['[-1]', 'got -1'],
    ['[1.5]', 'got 1.5'],
    ['[1.0]', 'number 1.0'],
    ['["1"]', 'got "1"'],
    ['[[1]]', 'got [1]'],
    ['1', 'must be an array'],
  ];

  it.each(badShapes)('rejects shape %s', (shape, fragment) => {
    const header = `{"w":{"dtype":"F32","shape":${shape},"data_offsets":[0,4]}}`;
    expectRejected(() => parseSafetensors(buildFile(header, 4)), 'tensor "w"', fragment);
  });
});

describe('header length attacks', () => {
  it.each([0, 1, 7])('rejects a %d-byte file', (size) => {
    expectRejected(() => parseSafetensors(new Uint8Array(size), 'tiny.safetensors'), 'tiny.safetensors', `file is ${size} bytes`);
  });

  it('rejects a length of 2^64 - 1', () => {
    const bytes = buildFile('{}', 0, 2n ** 64n - 1n);
    expectRejected(() => parseSafetensors(bytes), 'header length 18446744073709551615 exceeds the limit of 100000000 bytes');
  });

  it('rejects a 132 MB header length first', () => {
    // The 100 MB limit is checked before the file size, like the reference library does.
    const bytes = new Uint8Array([0x40, 0x9d, 0xdf, 0x07, 0, 0, 0, 0, 0x7b, 0x7d]);
    expectRejected(() => parseSafetensors(bytes), 'header length 132095296 exceeds the limit of 100000000 bytes');
  });

  it('rejects a length larger than the file', () => {
    expectRejected(() => parseSafetensors(buildFile('{}', 0, 3n)), 'header length 3 exceeds the 2 bytes after the length prefix');
  });

  it('rejects a zero length', () => {
    expectRejected(() => parseSafetensors(buildFile('{}', 0, 0n)), 'header length is 0');
  });

  it('rejects invalid UTF-8', () => {
    const bytes = buildFile('{"a":1}');
    bytes[10] = 0xff;
    expectRejected(() => parseSafetensors(bytes), 'not valid UTF-8');
  });

  it('rejects a byte-order mark', () => {
    expectRejected(() => parseSafetensors(buildFile('\uFEFF{}')), 'not valid JSON');
  });

  it.each([['[]', 'array'], ['"x"', 'string'], ['1', 'number'], ['null', 'null'], ['true', 'boolean']])(
    'rejects the non-object header %s',
    (header, type) => {
      expectRejected(() => parseSafetensors(buildFile(header)), `header must be a JSON object, got ${type}`);
    },
  );

  it.each(['{', '{} x', '{}\u0000', '{"a":}', "{'a':1}", ''])('rejects the malformed header %j', (header) => {
    expectRejected(() => parseSafetensors(buildFile(header)));
  });

  // 100,000 levels is far past the depth where a recursive JSON.stringify overflows the stack.
  const depth = 100_000;
  const deepArray = `${'['.repeat(depth)}${']'.repeat(depth)}`;
  const deepObject = `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
  it.each([
    ['entry', `{"w":${deepArray}}`, 'got array'],
    ['shape', `{"w":{"dtype":"F32","shape":${deepArray},"data_offsets":[0,4]}}`, 'got [[[...]]]'],
    ['data_offsets', `{"w":{"dtype":"F32","shape":[1],"data_offsets":${deepArray}}}`, 'got [[[...]]]'],
    ['dtype', `{"w":{"dtype":${deepArray},"shape":[1],"data_offsets":[0,4]}}`, 'got array'],
    ['metadata value', `{"__metadata__":{"k":${deepArray}}}`, 'got array [[[...]]]'],
    ['object chain', `{"w":${deepObject}}`, 'unknown field "a"'],
  ])('rejects a deeply nested %s without a stack overflow', (_, header, fragment) => {
    expectRejected(() => parseSafetensors(buildFile(header, 4)), fragment);
  });
});

describe('__metadata__ edge cases', () => {
  const tensor = { w: F32_ENTRY(0, 4) };

  it.each([
    ['{}', {}],
    ['{"format":"pt"}', { format: 'pt' }],
    ['null', {}],
  ])('accepts __metadata__ = %s', (metadata, expected) => {
    const header = `{"__metadata__":${metadata},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`;
    const file = parseSafetensors(buildFile(header, 4));

    expect(file.metadata).toEqual(expected);
    expect([...file.tensors.keys()]).toEqual(['w']);
  });

  it('accepts a missing __metadata__', () => {
    const file = parseSafetensors(buildFile(tensor, 4));
    expect(file.metadata).toEqual({});
  });

  it('accepts a file with metadata and no tensors', () => {
    const file = parseSafetensors(buildFile({ __metadata__: { format: 'pt' } }));
    expect(file.tensors.size).toBe(0);
    expect(file.metadata).toEqual({ format: 'pt' });
  });

  it('rejects a metadata-only file with data bytes', () => {
    expectRejected(() => parseSafetensors(buildFile({ __metadata__: {} }, 4)), 'the header lists no tensor data', '4 trailing bytes');
  });

  it.each([
    ['{"n":0}', 'value of key "n" must be a string, got number 0'],
    ['{"n":null}', 'got null'],
    ['{"n":{"x":"y"}}', 'got object'],
    ['[]', 'got array'],
    ['"pt"', 'got string'],
  ])('rejects __metadata__ = %s', (metadata, fragment) => {
    const header = `{"__metadata__":${metadata},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`;
    expectRejected(() => parseSafetensors(buildFile(header, 4)), '"__metadata__"', fragment);
  });

  it('rejects a tensor entry named __metadata__', () => {
    const header = { __metadata__: F32_ENTRY(0, 4) };
    expectRejected(() => parseSafetensors(buildFile(header, 4)), '"__metadata__" value of key "shape" must be a string');
  });

  it('rejects a repeated __metadata__ key', () => {
    const header = '{"__metadata__":{"a":"1"},"__metadata__":{"b":"2"}}';
    expectRejected(() => parseSafetensors(buildFile(header)), 'header lists "__metadata__" more than once');
  });

  it('rejects a duplicate metadata key', () => {
    const header = '{"__metadata__":{"a":"1","a":"2"}}';
    expectRejected(() => parseSafetensors(buildFile(header)), '"__metadata__" lists key "a" more than once');
  });
});

describe('header entries', () => {
  it('rejects a duplicate tensor name, which JSON.parse would merge', () => {
    const header = '{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}';
    const error = expectRejected(() => parseSafetensors(buildFile(header, 8)), 'tensor "w"', 'more than once');
    expect(error.tensor).toBe('w');
  });

  it('rejects a duplicate field inside an entry', () => {
    const header = '{"w":{"dtype":"F32","dtype":"F16","shape":[1],"data_offsets":[0,4]}}';
    expectRejected(() => parseSafetensors(buildFile(header, 4)), 'tensor "w"', 'field "dtype" appears more than once');
  });

  it('treats escaped and plain spellings of one key as duplicates', () => {
    const header = '{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"\\u0077":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}';
    expectRejected(() => parseSafetensors(buildFile(header, 8)), 'more than once');
  });

  it('rejects missing and unknown fields', () => {
    expectRejected(() => parseSafetensors(buildFile({ w: { dtype: 'F32', shape: [1] } }, 4)), 'missing field "data_offsets"');
    expectRejected(
      () => parseSafetensors(buildFile({ w: { ...F32_ENTRY(0, 4), offsets: [0, 4] } }, 4)),
      'unknown field "offsets"',
    );
  });

  it('rejects entries that are not objects', () => {
    expectRejected(() => parseSafetensors(buildFile({ w: [0, 4] }, 4)), 'tensor "w"', 'got array');
    expectRejected(() => parseSafetensors(buildFile({ w: 'F32' })), 'tensor "w"', 'got string');
  });

  it.each(['F8', 'f32', 'toString', 'FLOAT'])('rejects the unknown dtype %s', (dtype) => {
    const header = { w: { dtype, shape: [1], data_offsets: [0, 4] } };
    expectRejected(() => parseSafetensors(buildFile(header, 4)), `unknown dtype "${dtype}"`, 'expected one of BOOL');
  });

  it('rejects a non-string dtype', () => {
    expectRejected(() => parseSafetensors(buildFile({ w: { dtype: 4, shape: [1], data_offsets: [0, 4] } }, 4)), 'dtype must be a string');
  });

  it('sizes sub-byte dtypes in bits', () => {
    const ok = parseSafetensors(buildFile({ w: { dtype: 'F4', shape: [2], data_offsets: [0, 1] } }, 1));
    expect(ok.tensors.get('w')?.byteLength).toBe(1);
    expectRejected(
      () => parseSafetensors(buildFile({ w: { dtype: 'F4', shape: [3], data_offsets: [0, 2] } }, 2)),
      'holds 12 bits, which is not a whole number of bytes',
    );
  });

  it('rejects a name with an escaped unpaired surrogate', () => {
    const header = '{"\\ud800":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}';
    expectRejected(() => parseSafetensors(buildFile(header, 4)), 'unpaired UTF-16 surrogate');
  });
});

describe('empty tensors and metadata-only files', () => {
  it('loads an empty tensor with offsets [x, x] in the middle and at the end', () => {
    const header = {
      a: F32_ENTRY(0, 4),
      e1: { dtype: 'F16', shape: [0], data_offsets: [4, 4] },
      e2: { dtype: 'F32', shape: [2, 0], data_offsets: [4, 4] },
      b: F32_ENTRY(4, 8),
      tail: { dtype: 'BF16', shape: [0, 5], data_offsets: [8, 8] },
    };
    const file = parseSafetensors(buildFile(header, 8));

    expect(file.tensors.size).toBe(5);
    for (const name of ['e1', 'e2', 'tail']) expect(readTensor(file, name).length).toBe(0);
  });

  it('loads a file with no tensors and no metadata', () => {
    const file = parseSafetensors(buildFile('{}'));
    expect(file.tensors.size).toBe(0);
    expect(file.metadata).toEqual({});
  });
});

// ---------------------------------------------------------------------------------------------------
// Fuzzing

/**
 * Parses `bytes` and checks the outcome: either a SafetensorsError, or a file whose tensors tile
 * the data region and decode to product(shape) elements. Any other error fails the test.
 */
function checkParseOutcome(bytes: Uint8Array): 'parsed' | 'rejected' {
  let file: SafetensorsFile;
  try {
    file = parseSafetensors(bytes);
  } catch (error) {
    if (error instanceof SafetensorsError) return 'rejected';
    throw error;
  }

  const dataOffset = 8 + file.headerLength;
  let covered = 0;
  for (const tensor of file.tensors.values()) {
    if (tensor.byteOffset < dataOffset || tensor.byteOffset + tensor.byteLength > bytes.length) {
      throw new Error(`tensor "${tensor.name}" range [${tensor.byteOffset}, +${tensor.byteLength}) is outside the data region`);
    }
    covered += tensor.byteLength;
    if (['F8_E5M2', 'F8_E4M3', 'F8_E8M0', 'F4', 'F6_E2M3', 'F6_E3M2', 'C64'].includes(tensor.dtype)) continue;
    const values = readTensor(file, tensor.name);
    if (values.length !== product(tensor.shape)) {
      throw new Error(`tensor "${tensor.name}" decoded to ${values.length} values, shape ${JSON.stringify(tensor.shape)}`);
    }
  }
  if (covered !== bytes.length - dataOffset) throw new Error(`tensors cover ${covered} of ${bytes.length - dataOffset} data bytes`);
  return 'parsed';
}

const writableDtype = fc.constantFrom<WritableDtype>('F64', 'F32', 'F16', 'BF16');

const validInputs = fc.array(
  fc.record({
    name: fc.string({ maxLength: 8 }),
    dtype: writableDtype,
    shape: fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 3 }),
  }),
  { maxLength: 4 },
).map((specs) => {
  const seen = new Set<string>();
  const inputs: SafetensorsInput[] = [];
  for (const spec of specs) {
    if (spec.name === '__metadata__' || seen.has(spec.name) || /[\uD800-\uDFFF]/u.test(spec.name)) continue;
    seen.add(spec.name);
    const data = new Float32Array(product(spec.shape)).map((_, i) => i - 1.5);
    inputs.push({ ...spec, data });
  }
  return inputs;
});

const validFile = fc
  .tuple(validInputs, fc.option(fc.dictionary(fc.string({ maxLength: 4 }), fc.string({ maxLength: 4 }), { maxKeys: 2 }), { nil: undefined }))
  .map(([inputs, metadata]) => serializeSafetensors(inputs, metadata));

const hostileNumber = fc.oneof(
  fc.integer({ min: -16, max: 64 }),
  fc.constantFrom(-1, 2 ** 53, 2 ** 53 - 1, 2 ** 64, 1e300, 0.5, -0, 4.0000001),
  fc.constantFrom('4', null, true, [4] as unknown as number),
);

const hostileEntry = fc.record({
  dtype: fc.oneof(fc.constantFrom('F32', 'F16', 'BF16', 'F64', 'I8', 'BOOL', 'F4', 'F8_E4M3', 'C64', 'U64'), fc.constantFrom('F8', 'f32', '', 7 as unknown as string)),
  shape: fc.oneof(fc.array(hostileNumber, { maxLength: 3 }), fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 3 })),
  data_offsets: fc.oneof(
    fc.tuple(hostileNumber, hostileNumber),
    fc.tuple(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 40 })),
    fc.array(hostileNumber, { maxLength: 3 }),
  ),
});

const hostileHeader = fc.record(
  {
    entries: fc.dictionary(fc.constantFrom('a', 'b', 'c', 'd', '__metadata__', '__proto__', '0'), fc.oneof(hostileEntry, hostileEntry, fc.constant({}), fc.constant('x'))),
    metadata: fc.option(fc.oneof(fc.dictionary(fc.string({ maxLength: 3 }), fc.oneof(fc.string({ maxLength: 3 }), fc.integer())), fc.constant(null), fc.constant([])), { nil: undefined }),
    dataLength: fc.integer({ min: 0, max: 48 }),
    lengthDelta: fc.oneof(fc.constant(0n), fc.constant(0n), fc.bigInt({ min: -16n, max: 16n }), fc.constantFrom(2n ** 64n - 1n, 100_000_001n)),
  },
  { requiredKeys: ['entries', 'dataLength', 'lengthDelta'] },
);

const dtypeBytes: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I8: 1, BOOL: 1, U64: 8 };

/**
 * Consistent entries laid out back to back, then damaged by at most one mutation, so about half of
 * the generated files are valid and the success path is fuzzed too.
 */
const nearlyValidFile = fc
  .record({
    specs: fc.array(
      fc.record({
        name: fc.constantFrom('a', 'b', 'c', 'd', 'e', '0', '__proto__', 'h.0.w'),
        dtype: fc.constantFrom(...Object.keys(dtypeBytes)),
        shape: fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 3 }),
      }),
      { maxLength: 5 },
    ),
    mutation: fc.oneof(
      fc.constant({ kind: 'none' as const }),
      fc.constant({ kind: 'none' as const }),
      fc.record({
        kind: fc.constantFrom('shift-begin', 'shift-end', 'swap', 'dim', 'data-length', 'header-length'),
        index: fc.nat(),
        delta: fc.integer({ min: -9, max: 9 }),
      }),
    ),
  })
  .map(({ specs, mutation }) => {
    const header: Record<string, { dtype: string; shape: number[]; data_offsets: number[] }> = {};
    let offset = 0;
    for (const spec of specs) {
      const end = offset + product(spec.shape) * dtypeBytes[spec.dtype];
      header[spec.name] = { dtype: spec.dtype, shape: spec.shape, data_offsets: [offset, end] };
      offset = end;
    }
    let dataLength = offset;
    let lengthDelta = 0n;
    const entries = Object.values(header);
    const target = entries.length > 0 && mutation.kind !== 'none' ? entries[mutation.index % entries.length] : undefined;
    if (mutation.kind === 'data-length') dataLength = Math.max(0, dataLength + mutation.delta);
    else if (mutation.kind === 'header-length') lengthDelta = BigInt(mutation.delta);
    else if (target !== undefined && mutation.kind === 'shift-begin') target.data_offsets[0] += mutation.delta;
    else if (target !== undefined && mutation.kind === 'shift-end') target.data_offsets[1] += mutation.delta;
    else if (target !== undefined && mutation.kind === 'swap') target.data_offsets.reverse();
    else if (target !== undefined && mutation.kind === 'dim') target.shape.push(Math.abs(mutation.delta));
    const text = JSON.stringify(header);
    const declared = BigInt(encoder.encode(text).length) + lengthDelta;
    return buildFile(text, dataLength, declared < 0n ? 0n : declared);
  });

/** JSON-ish fragments, so random concatenations sometimes form valid but odd headers. */
const headerToken = fc.constantFrom(
  '{', '}', '[', ']', ':', ',', ' ', '"w"', '"dtype"', '"shape"', '"data_offsets"', '"F32"', '"F16"', '"__metadata__"',
  '0', '4', '8', '-4', '1.5', '2.0', '1e3', 'null', 'true', '"\\u0000"', '"\\ud800"', '\uFEFF', '\u00e9', '"',
);

describe('parser fuzzing', () => {
  // 2,500 cases in each of four properties: 10,000 in total.
  const runs = 2500;
  // A passing property takes about 1 s. Shrinking a failure can take minutes (tens of thousands of
  // steps), so stop after 15 s and report the failure found so far.
  const boundedShrinking = { interruptAfterTimeLimit: 15_000, markInterruptAsFailure: true };

  it('rejects every truncated valid file', { timeout: 20_000 }, () => {
    fc.assert(
      fc.property(validFile, fc.nat(), (bytes, cut) => {
        expect(checkParseOutcome(bytes)).toBe('parsed');
        const truncated = bytes.subarray(0, cut % bytes.length);
        expect(checkParseOutcome(truncated)).toBe('rejected');
      }),
      { numRuns: runs, seed: 20240601, ...boundedShrinking },
    );
  });

  it('parses or rejects valid files with flipped bits', { timeout: 20_000 }, () => {
    fc.assert(
      fc.property(validFile, fc.array(fc.nat(), { minLength: 1, maxLength: 8 }), (bytes, flips) => {
        const damaged = bytes.slice();
        for (const flip of flips) damaged[flip % damaged.length] ^= 1 << (flip % 8);
        checkParseOutcome(damaged);
      }),
      { numRuns: runs, seed: 20240602, ...boundedShrinking },
    );
  });

  it('parses or rejects hand-crafted hostile headers', { timeout: 20_000 }, () => {
    const hostileFile = hostileHeader.map(({ entries, metadata, dataLength, lengthDelta }) => {
      const header: Record<string, unknown> = { ...entries };
      if (metadata !== undefined) header.__metadata__ = metadata;
      const text = JSON.stringify(header);
      const declared = BigInt(encoder.encode(text).length) + lengthDelta;
      return buildFile(text, dataLength, declared < 0n ? 0n : declared);
    });
    const outcomes = { parsed: 0, rejected: 0 };
    fc.assert(
      fc.property(fc.oneof(hostileFile, nearlyValidFile), (bytes) => {
        outcomes[checkParseOutcome(bytes)]++;
      }),
      { numRuns: runs, seed: 20240603, ...boundedShrinking },
    );
    // Both paths must be exercised, or the property checks only one of them.
    expect(outcomes.parsed).toBeGreaterThan(runs / 10);
    expect(outcomes.rejected).toBeGreaterThan(runs / 10);
  });

  it('parses or rejects random token soup and raw bytes', { timeout: 20_000 }, () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.array(headerToken, { maxLength: 40 }).map((tokens) => buildFile(tokens.join(''), tokens.length % 9)),
          fc.uint8Array({ maxLength: 64 }),
          fc.uint8Array({ minLength: 8, maxLength: 64 }).map((bytes) => {
            new DataView(bytes.buffer).setBigUint64(0, BigInt(bytes.length - 8 - ((bytes[8] ?? 0) % 4)), true);
            return bytes;
          }),
        ),
        (bytes) => {
          checkParseOutcome(bytes);
        },
      ),
      { numRuns: runs, seed: 20240604, ...boundedShrinking },
    );
  });
});
