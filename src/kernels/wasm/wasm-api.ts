// Types for the part of the WebAssembly JS API that the matmul uses. The project compiles against
// lib ES2022 without DOM, which has no WebAssembly declarations, and declaring the global
// namespace here would clash with the DOM lib or other packages' declarations (@types/emscripten
// already adds a partial one). So the API is read from globalThis under these local types.

/** A compiled module; it can be sent to worker threads. */
export interface WasmModule {
  readonly __wasmModule: unique symbol;
}

export interface WasmMemory {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  /** Grows by `pages` 64 KiB pages and returns the previous size in pages. */
  grow(pages: number): number;
}

export interface WasmInstance {
  readonly exports: Record<string, unknown>;
}

interface WasmNamespace {
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (module: WasmModule, imports: Record<string, Record<string, unknown>>) => WasmInstance;
  Memory: new (descriptor: { initial: number; maximum: number; shared: boolean }) => WasmMemory;
  validate(bytes: Uint8Array): boolean;
}

export const wasm = (globalThis as unknown as { WebAssembly: WasmNamespace }).WebAssembly;
