// gpu.js runtime: starts one GPU instance per mode, caches compiled kernels by their full shape
// signature, and runs kernel sequences written once for both calling contracts.
//
// Kernel sequences are generator functions that `yield` every kernel result and every readback.
// `runSync` feeds each yielded value straight back (cpu, webasm, headlessgl return values), and
// `runAsync` awaits it first (webgpu returns Promises), so the orchestration code exists once.
import { createRequire } from 'node:module';
import type { GPU, IKernelRunShortcut, IGPUKernelSettings, Input } from 'gpu.js';
import type { FloatArray } from '../types.js';

type GpuJsModule = typeof import('gpu.js');
let gpuJsModule: GpuJsModule | null = null;

/**
 * Loads gpu.js on first use. Importing it costs 0.2-0.5 s (it also tries to load the native `gl`
 * addon), which every program that only uses the CPU kernels would otherwise pay at start-up.
 */
function gpuJs(): GpuJsModule {
  gpuJsModule ??= createRequire(import.meta.url)('gpu.js') as GpuJsModule;
  return gpuJsModule;
}

export type GpuJsMode = 'cpu' | 'webasm' | 'headlessgl' | 'webgpu';

export const GPUJS_MODES: readonly GpuJsMode[] = ['cpu', 'webasm', 'headlessgl', 'webgpu'];

/** Size limits of one kernel call; kernels are tiled so that no array or output exceeds them. */
export interface GpuJsLimits {
  /** Largest element count of one input array or one output. */
  maxArrayElements: number;
  /** Largest width or height of a 2-D output (GL texture side); Infinity where no such limit exists. */
  maxOutputSide: number;
}

/** gpu.js kernel class that each mode must run on; auto modes fall back silently otherwise. */
const KERNEL_CLASS: Record<GpuJsMode, string> = {
  cpu: 'CPUKernel',
  webasm: 'WebAssemblyKernel',
  headlessgl: 'HeadlessGLKernel',
  webgpu: 'WebGPUKernel',
};

/**
 * Largest exact float32 integer, 2^24. The GL backend addresses texels with float arithmetic, so
 * larger indices would be rounded. On cpu and webasm, which return nested arrays, the same bound
 * caps the memory of one call's result.
 */
const FLOAT_EXACT_INDEX_LIMIT = 2 ** 24;

/** A started gpu.js backend with its kernel cache. */
export class GpuJsRuntime {
  private readonly kernels = new Map<string, IKernelRunShortcut>();

  constructor(
    readonly mode: GpuJsMode,
    readonly gpu: GPU,
    readonly limits: GpuJsLimits,
  ) {}

  /** True when kernel calls return Promises (webgpu), so only runAsync can drive them. */
  get isAsync(): boolean {
    return this.mode === 'webgpu';
  }

  /**
   * Returns the kernel cached under `key`, compiling it on first use. The key must contain every
   * constant and output size, because gpu.js bakes them into the compiled kernel.
   */
  kernel(key: string, source: string, settings: IGPUKernelSettings): IKernelRunShortcut {
    let kernel = this.kernels.get(key);
    if (kernel === undefined) {
      kernel = this.gpu.createKernel(source, { tactic: 'precision', precision: 'single', ...settings });
      this.kernels.set(key, kernel);
    }
    return kernel;
  }

  /** Number of compiled kernels, for tests of the cache. */
  get kernelCount(): number {
    return this.kernels.size;
  }

  destroy(): void {
    for (const kernel of this.kernels.values()) kernel.destroy();
    this.kernels.clear();
    this.gpu.destroy();
  }
}

// ---------------------------------------------------------------------------------------------
// Start-up

/** Failure to start a mode here, with the reason and what to install. */
export class GpuJsUnavailableError extends Error {
  constructor(
    readonly mode: GpuJsMode,
    readonly reason: string,
    readonly install: string,
  ) {
    super(`gpujs: ${mode} cannot start: ${reason}${install === '' ? '' : `. ${install}`}`);
  }
}

const HEADLESSGL_INSTALL =
  'Install: apt-get install -y build-essential python3 pkg-config libx11-dev libxext-dev libxi-dev ' +
  'libgl1 libglx-mesa0 libgl1-mesa-dri xvfb xauth; npm install --save-optional gl@8.1.6; ' +
  'then run under an X display, e.g. xvfb-run -a npx rwkvify bench kernels';

/** Advice when gl is installed and loads but has no display to draw on. */
const HEADLESSGL_NEEDS_DISPLAY =
  'Run under an X display, e.g. xvfb-run -a npx rwkvify bench kernels (apt-get install -y xvfb xauth provides xvfb-run)';

const WEBGPU_INSTALL =
  'Install: npm install --save-optional webgpu062@npm:webgpu@0.6.2, and a driver Dawn accepts: a ' +
  'Vulkan GPU driver, or Mesa EGL/GLES (apt-get install -y libegl1 libegl-mesa0 libgles2 libgl1-mesa-dri)';

function requireOptional(name: string): unknown {
  return createRequire(import.meta.url)(name);
}

function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Starts cpu, webasm or headlessgl; throws GpuJsUnavailableError with the reason otherwise. */
export function startGpuJsSync(mode: Exclude<GpuJsMode, 'webgpu'>): GpuJsRuntime {
  const { GPU } = gpuJs();
  if (mode === 'webasm' && !GPU.isWebAssemblySupported) {
    throw new GpuJsUnavailableError(mode, 'this Node build has no WebAssembly SIMD', 'Use Node 20 or later');
  }
  if (mode === 'headlessgl') return startHeadlessGl();
  const runtime = new GpuJsRuntime(mode, new GPU({ mode }), {
    maxArrayElements: FLOAT_EXACT_INDEX_LIMIT,
    maxOutputSide: Number.POSITIVE_INFINITY,
  });
  return verifyRuntime(runtime);
}

/**
 * OpenGL users in this process. headlessgl (GLX through the gl addon) and Dawn's OpenGL ES
 * backend (EGL) cannot both make a context current. Measured under xvfb-run with Mesa 22.3: Dawn
 * after headlessgl finds no adapter (eglMakeCurrent EGL_BAD_ACCESS), and headlessgl after Dawn
 * kills the process with an X error (BadAccess in X_GLXMakeCurrent). So the second is refused.
 */
let headlessGlStarted = false;
let webGpuOnGles = false;

const ONE_GL_STACK = 'run the other one in a separate process';

function startHeadlessGl(): GpuJsRuntime {
  const { GPU, HeadlessGLKernel } = gpuJs();
  if (webGpuOnGles) {
    throw new GpuJsUnavailableError(
      'headlessgl',
      `webgpu already runs on Dawn's OpenGL ES backend in this process, and the two GL stacks cannot share it; ${ONE_GL_STACK}`,
      '',
    );
  }
  try {
    requireOptional('gl');
  } catch (error) {
    const firstLine = describeError(error).split('\n')[0];
    throw new GpuJsUnavailableError('headlessgl', `the gl package does not load (${firstLine})`, HEADLESSGL_INSTALL);
  }
  if (!GPU.isHeadlessGLSupported) {
    const display = process.env.DISPLAY ?? 'unset';
    throw new GpuJsUnavailableError(
      'headlessgl',
      `gl loaded but created no WebGL context (DISPLAY=${display})`,
      HEADLESSGL_NEEDS_DISPLAY,
    );
  }
  headlessGlStarted = true;
  const maxTextureSize = HeadlessGLKernel.features?.maxTextureSize ?? 4096;
  const runtime = new GpuJsRuntime('headlessgl', new GPU({ mode: 'headlessgl' }), {
    maxArrayElements: FLOAT_EXACT_INDEX_LIMIT,
    maxOutputSide: maxTextureSize,
  });
  return verifyRuntime(runtime);
}

interface DawnModule {
  create(flags: string[]): WebGpuLike;
  globals: Record<string, unknown>;
}

interface WebGpuAdapterLike {
  limits: { maxStorageBufferBindingSize: number; maxBufferSize: number };
}

interface WebGpuLike {
  requestAdapter(options?: Record<string, unknown>): Promise<WebGpuAdapterLike | null>;
  wgslLanguageFeatures?: unknown;
}

let webGpuAdapterLimits: WebGpuAdapterLike['limits'] | null = null;

/**
 * Installs `navigator.gpu` from Dawn (npm package webgpu@0.6.2, aliased webgpu062), because gpu.js
 * only looks for that global. Dawn's default backend (Vulkan) is tried first. On machines without a
 * Vulkan driver the OpenGL ES backend over Mesa works, but only with EGL_PLATFORM=surfaceless and
 * adapters of feature level 'compatibility', which the wrapper passes on every request.
 */
async function installNavigatorGpu(): Promise<void> {
  const existing = (globalThis as { navigator?: { gpu?: unknown } }).navigator;
  if (existing?.gpu !== undefined && webGpuAdapterLimits !== null) return;

  let dawn: DawnModule;
  try {
    dawn = (await import('webgpu062' as string)) as DawnModule;
  } catch (error) {
    throw new GpuJsUnavailableError('webgpu', `package webgpu062 does not load (${describeError(error)})`, WEBGPU_INSTALL);
  }
  Object.assign(globalThis, dawn.globals);

  let gpu = dawn.create([]);
  let options: Record<string, unknown> = {};
  let adapter = await gpu.requestAdapter(options);
  if (adapter === null) {
    if (headlessGlStarted) {
      throw new GpuJsUnavailableError(
        'webgpu',
        `Dawn found no Vulkan adapter, and its OpenGL ES backend cannot share this process with the running headlessgl; ${ONE_GL_STACK}`,
        '',
      );
    }
    process.env.EGL_PLATFORM ??= 'surfaceless';
    gpu = dawn.create(['backend=opengles']);
    options = { featureLevel: 'compatibility' };
    adapter = await gpu.requestAdapter(options);
    webGpuOnGles = adapter !== null;
  }
  if (adapter === null) {
    throw new GpuJsUnavailableError('webgpu', 'Dawn found no adapter on Vulkan or OpenGL ES', WEBGPU_INSTALL);
  }
  webGpuAdapterLimits = adapter.limits;

  const base = gpu;
  const wrapped = {
    requestAdapter: (extra?: Record<string, unknown>) => base.requestAdapter({ ...options, ...(extra ?? {}) }),
    getPreferredCanvasFormat: () => 'rgba8unorm',
    get wgslLanguageFeatures() {
      return base.wgslLanguageFeatures;
    },
  };
  Object.defineProperty(globalThis, 'navigator', { value: { gpu: wrapped }, configurable: true, writable: true });
}

/** Starts the webgpu mode, whose kernels return Promises; see backend.ts for how it is used. */
export async function startGpuJsWebGpu(): Promise<GpuJsRuntime> {
  const { GPU } = gpuJs();
  await installNavigatorGpu();
  if (!(await GPU.isWebGPUAvailable())) {
    throw new GpuJsUnavailableError('webgpu', 'gpu.js found no WebGPU adapter behind navigator.gpu', WEBGPU_INSTALL);
  }
  const limits = webGpuAdapterLimits ?? { maxStorageBufferBindingSize: 134217728, maxBufferSize: 134217728 };
  const maxBytes = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
  const runtime = new GpuJsRuntime('webgpu', new GPU({ mode: 'webgpu' }), {
    // gpu.js flattens multi-dimensional indices in float32 in the generated WGSL, so beyond 2^24
    // elements they round (measured: [16, 768] × [768, 50257] tiles of 43,690 columns were wrong
    // from column ~21,845 on, where column·K passes 2^24).
    maxArrayElements: Math.min(Math.floor(maxBytes / 4), FLOAT_EXACT_INDEX_LIMIT),
    maxOutputSide: Number.POSITIVE_INFINITY,
  });
  await runAsync(probeKernel(runtime));
  return runtime;
}

// ---------------------------------------------------------------------------------------------
// Probe: one small kernel proves the mode runs and is not a silent fallback.

function* probeKernel(runtime: GpuJsRuntime): Task<void> {
  const kernel = runtime.kernel('probe', 'function (a) { return a[this.thread.x] * 2; }', { output: [4] });
  const result = yield* launch(kernel, new Float32Array([1, 2, 3, -4]));
  const values = new Float32Array(4);
  yield* readInto(result, values, 0);

  const expected = [2, 4, 6, -8];
  if (values.some((value, i) => value !== expected[i])) {
    throw new GpuJsUnavailableError(runtime.mode, `probe kernel returned [${Array.from(values)}], expected [2,4,6,-8]`, '');
  }
  const kernelClass = kernelClassName(kernel);
  if (kernelClass !== KERNEL_CLASS[runtime.mode]) {
    throw new GpuJsUnavailableError(
      runtime.mode,
      `gpu.js ran the probe as ${kernelClass} instead of ${KERNEL_CLASS[runtime.mode]}`,
      '',
    );
  }
}

function verifyRuntime(runtime: GpuJsRuntime): GpuJsRuntime {
  runSync(probeKernel(runtime));
  return runtime;
}

/** Class name of the kernel gpu.js actually built (it may have fallen back to another mode). */
export function kernelClassName(kernel: IKernelRunShortcut): string {
  const inner = (kernel as unknown as { kernel?: { constructor: { name: string } } }).kernel;
  return inner?.constructor.name ?? 'unknown';
}

// ---------------------------------------------------------------------------------------------
// Drivers

/** A kernel sequence: yields kernel results and readbacks, returns R. */
export type Task<R> = Generator<unknown, R, unknown>;

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

/** Runs a task on a synchronous backend; a Promise reaching it means the backend is async. */
export function runSync<R>(task: Task<R>): R {
  let step = task.next();
  while (!step.done) {
    if (isPromiseLike(step.value)) {
      throw new Error('gpujs: a kernel returned a Promise on the synchronous path; use the async kernel API');
    }
    step = task.next(step.value);
  }
  return step.value;
}

/** Runs a task on any backend, awaiting each kernel result. */
export async function runAsync<R>(task: Task<R>): Promise<R> {
  let step = task.next();
  while (!step.done) step = task.next(await step.value);
  return step.value;
}

/** Calls a kernel and returns its result (array, texture or buffer handle). */
export function* launch(kernel: IKernelRunShortcut, ...args: unknown[]): Task<unknown> {
  const run = kernel as unknown as (...a: unknown[]) => unknown;
  return yield run(...args);
}

interface Readable {
  toArray(): unknown;
}

function isReadable(value: unknown): value is Readable {
  return typeof value === 'object' && value !== null && typeof (value as Readable).toArray === 'function';
}

/** Copies a kernel result (any nesting of Float32Arrays, or a device handle) into out[offset..]. */
export function* readInto(result: unknown, out: FloatArray, offset: number): Task<number> {
  const values = isReadable(result) ? yield result.toArray() : result;
  return flattenInto(values, out, offset);
}

function flattenInto(values: unknown, out: FloatArray, offset: number): number {
  if (values instanceof Float32Array || values instanceof Float64Array) {
    out.set(values, offset);
    return offset + values.length;
  }
  if (Array.isArray(values)) {
    let at = offset;
    for (const part of values) at = flattenInto(part, out, at);
    return at;
  }
  throw new Error(`gpujs: unexpected kernel result of type ${typeof values}`);
}

/**
 * Wraps flat data as a kernel argument of the given [x, y(, z)] size, indexed [z][y][x] inside
 * kernels. gpu.js 2.24's typings declare number[] for the value, but it takes typed arrays (and
 * uploads float32 without a copy), hence the cast.
 */
export function deviceInput(values: Float32Array, size: [number, number] | [number, number, number]): Input {
  return new (gpuJs().Input)(values as unknown as number[], size);
}

/** Frees a device-resident result (GL texture, WebGPU buffer); plain arrays need nothing. */
export function release(result: unknown): void {
  if (typeof result === 'object' && result !== null && typeof (result as { delete?: unknown }).delete === 'function') {
    (result as { delete(): void }).delete();
  }
}
