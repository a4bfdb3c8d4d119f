// A minimal WebAssembly binary writer: LEB128 numbers, the sections a compute module needs (type,
// import of one memory, function, export, code) and the module header. Instruction encoding lives
// in wasm-code.ts, so this file writes only the container format.
// Format reference: the WebAssembly Core Specification 2.0, chapter 5 "Binary Format".

/** Value types by their binary encoding. */
export const ValType = {
  i32: 0x7f,
  i64: 0x7e,
  f32: 0x7d,
  f64: 0x7c,
  v128: 0x7b,
} as const;
export type ValType = (typeof ValType)[keyof typeof ValType];

const SECTION_TYPE = 1;
const SECTION_IMPORT = 2;
const SECTION_FUNCTION = 3;
const SECTION_EXPORT = 7;
const SECTION_CODE = 10;

const FUNC_TYPE_TAG = 0x60;
const IMPORT_KIND_MEMORY = 0x02;
const EXPORT_KIND_FUNC = 0x00;
const LIMITS_SHARED_MIN_MAX = 0x03;
const LIMITS_MIN_MAX = 0x01;

/** Encodes an unsigned integer as unsigned LEB128. */
export function uleb128(value: number): number[] {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new Error(`uleb128: value must be an integer in [0, 2^32), got ${value}`);
  }
  const bytes: number[] = [];
  let rest = value;
  do {
    let byte = rest & 0x7f;
    rest = Math.floor(rest / 128);
    if (rest !== 0) byte |= 0x80;
    bytes.push(byte);
  } while (rest !== 0);
  return bytes;
}

/** Encodes a 32-bit signed integer as signed LEB128. */
export function sleb128(value: number): number[] {
  if (!Number.isInteger(value) || value < -0x80000000 || value > 0x7fffffff) {
    throw new Error(`sleb128: value must be an integer in [-2^31, 2^31), got ${value}`);
  }
  const bytes: number[] = [];
  let rest = value;
  for (;;) {
    const byte = rest & 0x7f;
    rest >>= 7;
    const signBitClear = (byte & 0x40) === 0;
    if ((rest === 0 && signBitClear) || (rest === -1 && !signBitClear)) {
      bytes.push(byte);
      return bytes;
    }
    bytes.push(byte | 0x80);
  }
}

/** Encodes a UTF-8 name with its byte length in front. */
function encodeName(name: string): number[] {
  const utf8 = Array.from(new TextEncoder().encode(name));
  return [...uleb128(utf8.length), ...utf8];
}

/** Encodes a vector: element count, then the concatenated elements. */
function encodeVector(items: number[][]): number[] {
  return [...uleb128(items.length), ...items.flat()];
}

function encodeSection(id: number, payload: number[]): number[] {
  return [id, ...uleb128(payload.length), ...payload];
}

/** One function of a module under construction. */
export interface FunctionDefinition {
  name: string;
  params: ValType[];
  results: ValType[];
  /** Types of the locals after the parameters, in index order. */
  locals: ValType[];
  /** The instruction bytes of the body, without the final `end`. */
  body: readonly number[];
  exported: boolean;
}

/** Memory imported as `env.memory`, sizes in 64 KiB pages. */
export interface MemoryImport {
  initialPages: number;
  maximumPages: number;
  shared: boolean;
}

/** Groups consecutive locals of equal type, as the code section requires. */
function encodeLocals(locals: ValType[]): number[] {
  const groups: number[][] = [];
  let i = 0;
  while (i < locals.length) {
    let j = i;
    while (j < locals.length && locals[j] === locals[i]) j++;
    groups.push([...uleb128(j - i), locals[i]]);
    i = j;
  }
  return encodeVector(groups);
}

function encodeFunctionType(fn: FunctionDefinition): number[] {
  return [FUNC_TYPE_TAG, ...uleb128(fn.params.length), ...fn.params, ...uleb128(fn.results.length), ...fn.results];
}

function encodeMemoryImport(memory: MemoryImport): number[] {
  const flags = memory.shared ? LIMITS_SHARED_MIN_MAX : LIMITS_MIN_MAX;
  return [
    ...encodeName('env'),
    ...encodeName('memory'),
    IMPORT_KIND_MEMORY,
    flags,
    ...uleb128(memory.initialPages),
    ...uleb128(memory.maximumPages),
  ];
}

/**
 * Assembles a module that imports one memory and defines `functions`. Function i gets index i, so
 * a `call` instruction refers to a function by its position in the list. Each function gets its
 * own type entry, because duplicates are allowed and keep the writer simple.
 */
export function encodeModule(memory: MemoryImport, functions: FunctionDefinition[]): Uint8Array {
  const header = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]; // "\0asm", version 1

  const types = encodeVector(functions.map(encodeFunctionType));
  const imports = encodeVector([encodeMemoryImport(memory)]);
  const functionTypes = encodeVector(functions.map((_, index) => uleb128(index)));
  const exports = encodeVector(
    functions.flatMap((fn, index) => (fn.exported ? [[...encodeName(fn.name), EXPORT_KIND_FUNC, ...uleb128(index)]] : [])),
  );
  const bodies = encodeVector(
    functions.map((fn) => {
      const body = [...encodeLocals(fn.locals), ...fn.body, 0x0b]; // 0x0b = end
      return [...uleb128(body.length), ...body];
    }),
  );

  return new Uint8Array([
    ...header,
    ...encodeSection(SECTION_TYPE, types),
    ...encodeSection(SECTION_IMPORT, imports),
    ...encodeSection(SECTION_FUNCTION, functionTypes),
    ...encodeSection(SECTION_EXPORT, exports),
    ...encodeSection(SECTION_CODE, bodies),
  ]);
}
