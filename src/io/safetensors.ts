// Reader and writer for the safetensors container (Hugging Face), checked as strictly as the
// reference Rust library `safetensors` and a little more.
//
// Layout of a file:
//   bytes [0, 8)        n, the header length, an unsigned 64-bit little-endian integer
//   bytes [8, 8 + n)    the header: a UTF-8 JSON object. Each key is a tensor name mapped to
//                       {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]};
//                       the optional key "__metadata__" maps to a string→string object.
//   bytes [8 + n, EOF)  the data region. `begin`/`end` are relative to its first byte, `end` is one
//                       past the last byte, and elements are little-endian, row-major (C order).
//
// Rules the reader enforces, each failing with a SafetensorsError that names the file and tensor:
// - n ≤ 100,000,000 (the reference library's cap) and 8 + n ≤ file size;
// - the header is valid UTF-8 and a JSON object with no duplicate keys;
// - every tensor entry has exactly the fields dtype, shape and data_offsets, a known dtype, and
//   non-negative integers (at most 2^53 − 1, written without fraction or exponent);
// - begin ≤ end and end − begin = product(shape) × element size;
// - sorted by offset, the byte ranges tile the data region from 0 to its last byte with no hole and
//   no overlap (so a file cannot hide extra bytes);
// - "__metadata__", when present and not null, maps strings to strings, and never names a tensor.
// NaN and Inf values are not checked, as in the reference library.

import { readFileSync } from 'node:fs';

import { writeFileAtomic } from './atomic.js';
import { encodeBFloat16, encodeFloat16, float16DecodeTable, decodeBFloat16 } from './half.js';
import { scanJson } from './json-scan.js';

// ---------------------------------------------------------------------------------------------------
// Dtypes

/**
 * Element size in bits of every dtype in the reference library's `Dtype` enum (recent versions;
 * older ones lack F4, F6_E2M3, F6_E3M2, F8_E8M0 and C64).
 */
const DTYPE_BITS = {
  BOOL: 8,
  F4: 4,
  F6_E2M3: 6,
  F6_E3M2: 6,
  U8: 8,
  I8: 8,
  F8_E5M2: 8,
  F8_E4M3: 8,
  F8_E8M0: 8,
  I16: 16,
  U16: 16,
  F16: 16,
  BF16: 16,
  I32: 32,
  U32: 32,
  F32: 32,
  C64: 64,
  F64: 64,
  I64: 64,
  U64: 64,
} as const;

/** A dtype name accepted in a safetensors header. */
export type SafetensorsDtype = keyof typeof DTYPE_BITS;

/** Dtypes that `readTensor` converts to float32 or float64. */
export type DecodableDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'U64' | 'I32' | 'U32' | 'I16' | 'U16' | 'I8' | 'U8' | 'BOOL';

/** Dtypes that `serializeSafetensors` writes. */
export type WritableDtype = 'F64' | 'F32' | 'F16' | 'BF16';

const DECODABLE_DTYPES: ReadonlySet<string> = new Set<DecodableDtype>([
  'F64', 'F32', 'F16', 'BF16', 'I64', 'U64', 'I32', 'U32', 'I16', 'U16', 'I8', 'U8', 'BOOL',
]);

const WRITABLE_DTYPES: ReadonlySet<string> = new Set<WritableDtype>(['F64', 'F32', 'F16', 'BF16']);

function isDecodable(dtype: SafetensorsDtype): dtype is DecodableDtype {
  return DECODABLE_DTYPES.has(dtype);
}

function isSafetensorsDtype(name: string): name is SafetensorsDtype {
  return Object.prototype.hasOwnProperty.call(DTYPE_BITS, name);
}

/** Size in bytes of one element, for dtypes of 8 bits or more. */
function bytesPerElement(dtype: DecodableDtype | WritableDtype): number {
  return DTYPE_BITS[dtype] / 8;
}

// ---------------------------------------------------------------------------------------------------
// Public types

/** Key of the optional string→string map in the header. It never names a tensor. */
export const METADATA_KEY = '__metadata__';

/** The reference library rejects headers longer than this many bytes. */
export const MAX_HEADER_BYTES = 100_000_000;

/** One tensor entry of a parsed file. */
export interface SafetensorsTensor {
  readonly name: string;
  readonly dtype: SafetensorsDtype;
  /** Row-major shape; [] is a scalar, and a 0 anywhere means an empty tensor with no bytes. */
  readonly shape: readonly number[];
  /** Offset of the tensor's first byte from the start of the file (not of the data region). */
  readonly byteOffset: number;
  readonly byteLength: number;
}

/** A parsed safetensors file. Tensor data stays in `bytes` until `readTensor` copies it out. */
export interface SafetensorsFile {
  /** File path or label used in error messages. */
  readonly source: string;
  /** The whole file. */
  readonly bytes: Uint8Array;
  /** Header length n in bytes; the data region starts at byte 8 + n. */
  readonly headerLength: number;
  /** Contents of "__metadata__", or an empty object when the key is absent or null. */
  readonly metadata: Readonly<Record<string, string>>;
  /** Tensors in the order of their data in the file (which need not be the header's key order). */
  readonly tensors: ReadonlyMap<string, SafetensorsTensor>;
}

/** A tensor to write with `serializeSafetensors`. */
export interface SafetensorsInput {
  name: string;
  dtype: WritableDtype;
  shape: readonly number[];
  /** Row-major values; the length must equal product(shape). */
  data: Float32Array | Float64Array;
}

/** Error for every invalid file, tensor name or write request. The message names the file and tensor. */
export class SafetensorsError extends Error {
  override readonly name = 'SafetensorsError';
  readonly source: string;
  readonly tensor?: string;

  constructor(source: string, problem: string, tensor?: string) {
    const where = tensor === undefined ? '' : ` tensor ${preview(tensor)}:`;
    super(`safetensors: ${source}:${where} ${problem}`);
    this.source = source;
    this.tensor = tensor;
  }
}

// ---------------------------------------------------------------------------------------------------
// Parsing: header length and text

const LENGTH_PREFIX_BYTES = 8;
const IN_MEMORY_SOURCE = 'in-memory buffer';

/**
 * Parses and validates a whole safetensors file. Throws a SafetensorsError for anything the rules
 * at the top of this file forbid. `source` (a path, usually) only labels error messages.
 */
export function parseSafetensors(bytes: Uint8Array, source: string = IN_MEMORY_SOURCE): SafetensorsFile {
  const headerLength = readHeaderLength(bytes, source);
  const headerText = decodeHeaderText(bytes, headerLength, source);
  const header = parseHeaderObject(headerText, source);
  const nonIntegerLiterals = scanHeaderJson(headerText, source);

  const metadata = readMetadata(header, source);
  const dataOffset = LENGTH_PREFIX_BYTES + headerLength;
  const dataLength = bytes.length - dataOffset;
  const entries = readTensorEntries(header, nonIntegerLiterals, source);
  const tensors = layOutTensors(entries, dataOffset, dataLength, source);

  return { source, bytes, headerLength, metadata, tensors };
}

/** Reads n from the 8-byte little-endian prefix, checking it before anything is allocated from it. */
function readHeaderLength(bytes: Uint8Array, source: string): number {
  if (bytes.length < LENGTH_PREFIX_BYTES) {
    throw new SafetensorsError(
      source,
      `file is ${bytes.length} bytes, shorter than the 8-byte header length prefix; the file is truncated or not safetensors`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, LENGTH_PREFIX_BYTES);
  const declared = view.getBigUint64(0, true);

  if (declared > BigInt(MAX_HEADER_BYTES)) {
    throw new SafetensorsError(
      source,
      `header length ${declared} exceeds the limit of ${MAX_HEADER_BYTES} bytes; the file is corrupt or not safetensors`,
    );
  }
  const available = bytes.length - LENGTH_PREFIX_BYTES;
  if (declared > BigInt(available)) {
    throw new SafetensorsError(
      source,
      `header length ${declared} exceeds the ${available} bytes after the length prefix; the file is truncated or corrupt`,
    );
  }
  return Number(declared);
}

const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function decodeHeaderText(bytes: Uint8Array, headerLength: number, source: string): string {
  if (headerLength === 0) {
    throw new SafetensorsError(source, 'header length is 0, but the header must be a JSON object such as {}');
  }
  const headerBytes = bytes.subarray(LENGTH_PREFIX_BYTES, LENGTH_PREFIX_BYTES + headerLength);
  try {
    return utf8Decoder.decode(headerBytes);
  } catch {
    throw new SafetensorsError(source, `header (${headerLength} bytes) is not valid UTF-8`);
  }
}

function parseHeaderObject(headerText: string, source: string): Record<string, unknown> {
  let header: unknown;
  try {
    header = JSON.parse(headerText);
  } catch (error) {
    // SyntaxError for malformed JSON. An engine with a recursive parser may throw a RangeError on
    // deep nesting instead (V8 in Node 20 parses iteratively), and that is reported the same way.
    const reason = error instanceof Error ? error.message : String(error);
    throw new SafetensorsError(source, `header is not valid JSON (${reason})`);
  }
  if (!isPlainObject(header)) {
    throw new SafetensorsError(source, `header must be a JSON object, got ${describeJsonType(header)}`);
  }
  return header;
}

/**
 * Rejects duplicate keys, which JSON.parse would silently merge, and returns the first integer
 * literal written with a fraction, exponent or minus sign under each top-level key.
 */
function scanHeaderJson(headerText: string, source: string): Map<string, string> {
  const scan = scanJson(headerText);
  const duplicate = scan.duplicate;
  if (duplicate !== undefined) {
    if (duplicate.path.length === 0 && duplicate.key === METADATA_KEY) {
      throw new SafetensorsError(source, `header lists "${METADATA_KEY}" more than once`);
    }
    if (duplicate.path.length === 0) {
      throw new SafetensorsError(source, 'header lists this key more than once; each tensor name must be unique', duplicate.key);
    }
    const owner = duplicate.path[0];
    const field = [...duplicate.path.slice(1), duplicate.key].join('.');
    if (owner === METADATA_KEY) {
      throw new SafetensorsError(source, `"${METADATA_KEY}" lists key ${preview(field)} more than once`);
    }
    throw new SafetensorsError(source, `field ${preview(field)} appears more than once in its header entry`, owner);
  }
  return scan.nonIntegerLiterals;
}

// ---------------------------------------------------------------------------------------------------
// Parsing: header entries

interface TensorEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  begin: number;
  end: number;
}

const ENTRY_FIELDS = ['dtype', 'shape', 'data_offsets'];

function readMetadata(header: Record<string, unknown>, source: string): Record<string, string> {
  const metadata: Record<string, string> = {};
  if (!Object.prototype.hasOwnProperty.call(header, METADATA_KEY)) return metadata;

  const value = header[METADATA_KEY];
  // The reference library reads the field as Option<HashMap<String, String>>, so null means absent.
  if (value === null) return metadata;
  if (!isPlainObject(value)) {
    throw new SafetensorsError(
      source,
      `"${METADATA_KEY}" must be an object mapping strings to strings, got ${describeJsonType(value)}`,
    );
  }
  for (const [key, item] of Object.entries(value)) {
    if (typeof item !== 'string') {
      throw new SafetensorsError(
        source,
        `"${METADATA_KEY}" value of key ${preview(key)} must be a string, got ${describeJsonType(item)} ${preview(item)}`,
      );
    }
    assertWellFormed(key, `"${METADATA_KEY}" key`, source);
    assertWellFormed(item, `"${METADATA_KEY}" value of key ${preview(key)}`, source);
    Object.defineProperty(metadata, key, { value: item, enumerable: true, writable: true, configurable: true });
  }
  return metadata;
}

function readTensorEntries(
  header: Record<string, unknown>,
  nonIntegerLiterals: Map<string, string>,
  source: string,
): TensorEntry[] {
  const entries: TensorEntry[] = [];
  for (const [name, value] of Object.entries(header)) {
    if (name === METADATA_KEY) continue;
    assertWellFormed(name, 'tensor name', source);
    entries.push(readTensorEntry(name, value, nonIntegerLiterals.get(name), source));
  }
  return entries;
}

function readTensorEntry(name: string, value: unknown, nonIntegerLiteral: string | undefined, source: string): TensorEntry {
  if (!isPlainObject(value)) {
    throw new SafetensorsError(
      source,
      `entry must be an object {"dtype", "shape", "data_offsets"}, got ${describeJsonType(value)}`,
      name,
    );
  }
  for (const field of Object.keys(value)) {
    if (!ENTRY_FIELDS.includes(field)) {
      throw new SafetensorsError(source, `unknown field ${preview(field)}; expected only dtype, shape and data_offsets`, name);
    }
  }
  for (const field of ENTRY_FIELDS) {
    if (!Object.prototype.hasOwnProperty.call(value, field)) {
      throw new SafetensorsError(source, `missing field "${field}"`, name);
    }
  }

  const dtype = readDtype(name, value.dtype, source);
  const shape = readIntegerList(name, 'shape', value.shape, source);
  const offsets = readIntegerList(name, 'data_offsets', value.data_offsets, source);
  if (offsets.length !== 2) {
    throw new SafetensorsError(source, `data_offsets must be [begin, end], got ${preview(offsets)}`, name);
  }
  // JSON.parse reads "2.0", "1e3" and "-0" as integers, but a strict reader rejects them. The only
  // numbers left in a valid entry are in shape and data_offsets.
  if (nonIntegerLiteral !== undefined) {
    throw new SafetensorsError(
      source,
      `number ${nonIntegerLiteral.slice(0, 40)} in shape or data_offsets must be a non-negative integer written with digits only`,
      name,
    );
  }
  return { name, dtype, shape, begin: offsets[0], end: offsets[1] };
}

function readDtype(name: string, value: unknown, source: string): SafetensorsDtype {
  if (typeof value !== 'string') {
    throw new SafetensorsError(source, `dtype must be a string such as "F32", got ${describeJsonType(value)}`, name);
  }
  if (!isSafetensorsDtype(value)) {
    const known = Object.keys(DTYPE_BITS).join(', ');
    throw new SafetensorsError(source, `unknown dtype ${preview(value)}; expected one of ${known}`, name);
  }
  return value;
}

function readIntegerList(name: string, field: string, value: unknown, source: string): number[] {
  if (!Array.isArray(value)) {
    throw new SafetensorsError(source, `${field} must be an array of integers, got ${describeJsonType(value)}`, name);
  }
  const list: number[] = [];
  for (const item of value as unknown[]) {
    if (typeof item !== 'number' || !Number.isSafeInteger(item) || item < 0) {
      throw new SafetensorsError(
        source,
        `${field} ${preview(value)} must contain only integers from 0 to 2^53 - 1, got ${preview(item)}`,
        name,
      );
    }
    list.push(item);
  }
  return list;
}

// ---------------------------------------------------------------------------------------------------
// Parsing: byte ranges

/**
 * Checks each entry's byte count against shape × dtype, then checks that the ranges, sorted by
 * (begin, end) like the reference library does, tile [0, dataLength) exactly.
 */
function layOutTensors(
  entries: TensorEntry[],
  dataOffset: number,
  dataLength: number,
  source: string,
): Map<string, SafetensorsTensor> {
  for (const entry of entries) checkEntryByteRange(entry, dataLength, source);

  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  const tensors = new Map<string, SafetensorsTensor>();
  let expectedBegin = 0;
  let previous: TensorEntry | undefined;

  for (const entry of sorted) {
    if (entry.begin > expectedBegin) {
      const after = previous === undefined ? 'the start of the data region' : `tensor ${preview(previous.name)}`;
      throw new SafetensorsError(
        source,
        `data_offsets [${entry.begin}, ${entry.end}] leave a hole of ${entry.begin - expectedBegin} bytes ` +
          `after ${after} (expected begin ${expectedBegin}); tensor data must be contiguous`,
        entry.name,
      );
    }
    if (entry.begin < expectedBegin) {
      throw new SafetensorsError(
        source,
        `data_offsets [${entry.begin}, ${entry.end}] overlap tensor ${preview(previous?.name ?? '')}, which ends at ${expectedBegin}`,
        entry.name,
      );
    }
    tensors.set(entry.name, {
      name: entry.name,
      dtype: entry.dtype,
      shape: entry.shape,
      byteOffset: dataOffset + entry.begin,
      byteLength: entry.end - entry.begin,
    });
    expectedBegin = entry.end;
    previous = entry;
  }

  if (expectedBegin !== dataLength) {
    const covered = previous === undefined ? 'the header lists no tensor data' : `the last tensor ${preview(previous.name)} ends at ${expectedBegin}`;
    throw new SafetensorsError(
      source,
      `data region is ${dataLength} bytes but ${covered}; ` +
        `the ${dataLength - expectedBegin} trailing bytes belong to no tensor`,
    );
  }
  return tensors;
}

function checkEntryByteRange(entry: TensorEntry, dataLength: number, source: string): void {
  const { name, begin, end, dtype, shape } = entry;
  const shapeText = `[${shape.join(',')}]`;

  if (end < begin) {
    throw new SafetensorsError(source, `data_offsets [${begin}, ${end}] are reversed; begin must be ≤ end`, name);
  }

  // BigInt, because product(shape) × bits can pass 2^53 even when every dimension is a safe integer.
  let elements = 1n;
  for (const dim of shape) elements *= BigInt(dim);
  const bits = elements * BigInt(DTYPE_BITS[dtype]);
  if (bits % 8n !== 0n) {
    throw new SafetensorsError(
      source,
      `shape ${shapeText} ${dtype} holds ${bits} bits, which is not a whole number of bytes`,
      name,
    );
  }
  const needed = bits / 8n;
  const covered = end - begin;
  if (BigInt(covered) !== needed) {
    throw new SafetensorsError(
      source,
      `data_offsets [${begin}, ${end}] cover ${covered} bytes but shape ${shapeText} ${dtype} needs ${needed}`,
      name,
    );
  }
  if (end > dataLength) {
    throw new SafetensorsError(
      source,
      `data_offsets [${begin}, ${end}] run past the end of the ${dataLength}-byte data region; the file is truncated`,
      name,
    );
  }
}

// ---------------------------------------------------------------------------------------------------
// Reading tensor data

/**
 * Decodes a tensor into a fresh, aligned typed array (float32 by default). F64, F32, F16 and BF16
 * convert with round-to-nearest-even where float64 narrows to float32; integer and BOOL dtypes
 * convert to their numeric value (BOOL: any non-zero byte is 1).
 */
export function readTensor(file: SafetensorsFile, name: string): Float32Array;
export function readTensor(file: SafetensorsFile, name: string, as: 'float32'): Float32Array;
export function readTensor(file: SafetensorsFile, name: string, as: 'float64'): Float64Array;
export function readTensor(file: SafetensorsFile, name: string, as?: 'float32' | 'float64'): Float32Array | Float64Array;
export function readTensor(
  file: SafetensorsFile,
  name: string,
  as: 'float32' | 'float64' = 'float32',
): Float32Array | Float64Array {
  const tensor = file.tensors.get(name);
  if (tensor === undefined) throw tensorNotFound(file, name);
  if (as !== 'float32' && as !== 'float64') {
    throw new SafetensorsError(file.source, `readTensor: output type must be "float32" or "float64", got ${preview(as)}`, name);
  }
  const dtype = tensor.dtype;
  if (!isDecodable(dtype)) {
    throw new SafetensorsError(
      file.source,
      `readTensor: cannot decode dtype ${dtype}; supported are ${[...DECODABLE_DTYPES].join(', ')}`,
      name,
    );
  }

  const count = tensor.byteLength / bytesPerElement(dtype);
  const out = as === 'float32' ? new Float32Array(count) : new Float64Array(count);
  // A DataView has no alignment requirement, so misaligned tensors need no special path.
  const view = new DataView(file.bytes.buffer, file.bytes.byteOffset + tensor.byteOffset, tensor.byteLength);
  decodeElements(view, dtype, out);
  return out;
}

function tensorNotFound(file: SafetensorsFile, name: string): SafetensorsError {
  const names = [...file.tensors.keys()];
  const listedNames = names.slice(0, 10).map((n) => preview(n)).join(', ');
  const more = names.length > 10 ? ` and ${names.length - 10} more` : '';
  const available = names.length === 0 ? 'the file has no tensors' : `available: ${listedNames}${more}`;
  return new SafetensorsError(file.source, `readTensor: no tensor with this name; ${available}`, name);
}

/** Decodes the little-endian elements of `dtype` in `view` into `out`, one element per slot. */
function decodeElements(view: DataView, dtype: DecodableDtype, out: Float32Array | Float64Array): void {
  const n = out.length;
  switch (dtype) {
    case 'F64':
      for (let i = 0; i < n; i++) out[i] = view.getFloat64(8 * i, true);
      return;
    case 'F32':
      for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true);
      return;
    case 'F16': {
      const table = float16DecodeTable();
      for (let i = 0; i < n; i++) out[i] = table[view.getUint16(2 * i, true)];
      return;
    }
    case 'BF16':
      for (let i = 0; i < n; i++) out[i] = decodeBFloat16(view.getUint16(2 * i, true));
      return;
    case 'I64':
      // NOTE: values beyond ±2^53 lose precision in the conversion to a JS number.
      for (let i = 0; i < n; i++) out[i] = Number(view.getBigInt64(8 * i, true));
      return;
    case 'U64':
      for (let i = 0; i < n; i++) out[i] = Number(view.getBigUint64(8 * i, true));
      return;
    case 'I32':
      for (let i = 0; i < n; i++) out[i] = view.getInt32(4 * i, true);
      return;
    case 'U32':
      for (let i = 0; i < n; i++) out[i] = view.getUint32(4 * i, true);
      return;
    case 'I16':
      for (let i = 0; i < n; i++) out[i] = view.getInt16(2 * i, true);
      return;
    case 'U16':
      for (let i = 0; i < n; i++) out[i] = view.getUint16(2 * i, true);
      return;
    case 'I8':
      for (let i = 0; i < n; i++) out[i] = view.getInt8(i);
      return;
    case 'U8':
      for (let i = 0; i < n; i++) out[i] = view.getUint8(i);
      return;
    case 'BOOL':
      for (let i = 0; i < n; i++) out[i] = view.getUint8(i) === 0 ? 0 : 1;
      return;
  }
}

// ---------------------------------------------------------------------------------------------------
// Writing

interface PlannedTensor {
  input: SafetensorsInput;
  begin: number;
  end: number;
}

/**
 * Serializes tensors, in the given order, into safetensors bytes. The header is compact JSON with
 * "__metadata__" first (only when `metadata` is given), padded with spaces to a multiple of 8
 * bytes like the reference writer, so the data region starts 8-byte aligned. F16 and BF16 round to
 * nearest even; F32 from a Float64Array rounds the same way.
 */
export function serializeSafetensors(
  tensors: readonly SafetensorsInput[],
  metadata?: Readonly<Record<string, string>>,
): Uint8Array {
  const source = 'serializeSafetensors';
  const planned = planLayout(tensors, source);
  const headerBytes = encodeHeader(planned, metadata, source);

  const dataLength = planned.length === 0 ? 0 : planned[planned.length - 1].end;
  const dataOffset = LENGTH_PREFIX_BYTES + headerBytes.length;
  const bytes = new Uint8Array(dataOffset + dataLength);
  const view = new DataView(bytes.buffer);

  view.setBigUint64(0, BigInt(headerBytes.length), true);
  bytes.set(headerBytes, LENGTH_PREFIX_BYTES);
  for (const { input, begin } of planned) encodeElements(input, view, dataOffset + begin);
  return bytes;
}

function planLayout(tensors: readonly SafetensorsInput[], source: string): PlannedTensor[] {
  const seen = new Set<string>();
  const planned: PlannedTensor[] = [];
  let offset = 0;

  for (const input of tensors) {
    const { name, dtype, shape, data } = input;
    if (typeof name !== 'string') {
      throw new SafetensorsError(source, `tensor name must be a string, got ${describeJsonType(name)}`);
    }
    if (name === METADATA_KEY) {
      throw new SafetensorsError(source, `"${METADATA_KEY}" is reserved for the metadata map and cannot name a tensor`, name);
    }
    if (seen.has(name)) throw new SafetensorsError(source, 'duplicate tensor name; each name must be unique', name);
    seen.add(name);
    assertWellFormed(name, 'tensor name', source);

    if (!WRITABLE_DTYPES.has(dtype)) {
      throw new SafetensorsError(source, `cannot write dtype ${preview(dtype)}; expected F64, F32, F16 or BF16`, name);
    }
    if (!(data instanceof Float32Array || data instanceof Float64Array)) {
      throw new SafetensorsError(source, 'data must be a Float32Array or Float64Array', name);
    }
    const elements = countElements(name, shape, source);
    if (data.length !== elements) {
      throw new SafetensorsError(
        source,
        `data has ${data.length} elements but shape [${shape.join(',')}] needs ${elements}`,
        name,
      );
    }

    const end = offset + elements * bytesPerElement(dtype);
    planned.push({ input, begin: offset, end });
    offset = end;
  }
  return planned;
}

function countElements(name: string, shape: readonly number[], source: string): number {
  if (!Array.isArray(shape)) {
    throw new SafetensorsError(source, `shape must be an array of integers, got ${describeJsonType(shape)}`, name);
  }
  let elements = 1;
  for (const dim of shape) {
    if (!Number.isSafeInteger(dim) || dim < 0) {
      throw new SafetensorsError(source, `shape [${shape.join(',')}] must contain only non-negative integers`, name);
    }
    elements *= dim;
  }
  return elements;
}

const utf8Encoder = new TextEncoder();

function encodeHeader(
  planned: PlannedTensor[],
  metadata: Readonly<Record<string, string>> | undefined,
  source: string,
): Uint8Array {
  // Written by hand rather than with JSON.stringify(object), because a JS object would move
  // integer-like tensor names ("0", "1") ahead of the others.
  const fields: string[] = [];
  if (metadata !== undefined) fields.push(`${JSON.stringify(METADATA_KEY)}:${encodeMetadata(metadata, source)}`);
  for (const { input, begin, end } of planned) {
    const entry = `{"dtype":"${input.dtype}","shape":[${input.shape.join(',')}],"data_offsets":[${begin},${end}]}`;
    fields.push(`${JSON.stringify(input.name)}:${entry}`);
  }
  const json = utf8Encoder.encode(`{${fields.join(',')}}`);

  const padding = (8 - (json.length % 8)) % 8;
  const header = new Uint8Array(json.length + padding).fill(0x20); // 0x20 = space
  header.set(json);
  if (header.length > MAX_HEADER_BYTES) {
    throw new SafetensorsError(
      source,
      `header would be ${header.length} bytes, over the ${MAX_HEADER_BYTES}-byte limit readers enforce; use shorter names or less metadata`,
    );
  }
  return header;
}

function encodeMetadata(metadata: Readonly<Record<string, string>>, source: string): string {
  const pairs: string[] = [];
  for (const [key, value] of Object.entries(metadata)) {
    if (typeof value !== 'string') {
      throw new SafetensorsError(
        source,
        `metadata value of key ${preview(key)} must be a string, got ${describeJsonType(value)}; convert it with String() or JSON.stringify()`,
      );
    }
    assertWellFormed(key, 'metadata key', source);
    assertWellFormed(value, `metadata value of key ${preview(key)}`, source);
    pairs.push(`${JSON.stringify(key)}:${JSON.stringify(value)}`);
  }
  return `{${pairs.join(',')}}`;
}

/** Writes `input.data` as little-endian elements of `input.dtype` at byte `offset` of `view`. */
function encodeElements(input: SafetensorsInput, view: DataView, offset: number): void {
  const { data, dtype } = input;
  const n = data.length;
  switch (dtype) {
    case 'F64':
      for (let i = 0; i < n; i++) view.setFloat64(offset + 8 * i, data[i], true);
      return;
    case 'F32':
      for (let i = 0; i < n; i++) view.setFloat32(offset + 4 * i, data[i], true);
      return;
    case 'F16':
      for (let i = 0; i < n; i++) view.setUint16(offset + 2 * i, encodeFloat16(data[i]), true);
      return;
    case 'BF16':
      for (let i = 0; i < n; i++) view.setUint16(offset + 2 * i, encodeBFloat16(data[i]), true);
      return;
  }
}

// ---------------------------------------------------------------------------------------------------
// Files

/** Reads and parses a safetensors file; errors name the path. */
export function readSafetensorsFile(path: string): SafetensorsFile {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`readSafetensorsFile: cannot read "${path}": ${reason}`, { cause: error });
  }
  return parseSafetensors(bytes, path);
}

/**
 * Serializes tensors and writes them to `path` atomically (temporary file, fsync, rename), so a
 * crash or full disk never leaves a half-written checkpoint at `path`. The whole file is built
 * in memory first.
 */
export function writeSafetensorsFile(
  path: string,
  tensors: readonly SafetensorsInput[],
  metadata?: Readonly<Record<string, string>>,
): void {
  writeFileAtomic(path, serializeSafetensors(tensors, metadata));
}

// ---------------------------------------------------------------------------------------------------
// Helpers

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describeJsonType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

const PREVIEW_CHARS = 80;

/**
 * JSON-like text of a value for error messages: strings cut to 80 characters, arrays to 8 items
 * and 2 levels, objects shown as {...}. Never recurses deeply, unlike JSON.stringify, which throws
 * a RangeError on a header value nested a million levels.
 */
function preview(value: unknown, depth = 0): string {
  if (Array.isArray(value)) {
    if (depth >= 2) return '[...]';
    const items = value.slice(0, 8).map((item: unknown) => preview(item, depth + 1));
    if (value.length > 8) items.push('...');
    return `[${items.join(',')}]`;
  }
  if (isPlainObject(value)) return '{...}';
  if (typeof value === 'string') {
    const clipped = value.length > PREVIEW_CHARS ? `${value.slice(0, PREVIEW_CHARS)}...` : value;
    return JSON.stringify(clipped);
  }
  return String(value);
}

/** Rejects strings with unpaired UTF-16 surrogates, which have no UTF-8 encoding. */
function assertWellFormed(text: string, label: string, source: string): void {
  if (/[\uD800-\uDFFF]/u.test(text)) {
    throw new SafetensorsError(source, `${label} ${preview(text)} contains an unpaired UTF-16 surrogate, which is not valid Unicode`);
  }
}
