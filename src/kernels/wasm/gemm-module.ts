// Generates the WebAssembly GEMM module: a register-blocked SIMD micro-kernel, panel packing and a
// task loop that every thread runs on the same shared memory.
//
// Algorithm (the Goto/BLIS scheme): op(A) is packed into strips of MR rows, stored k-major
// ([K][MR] per strip), and op(B) into strips of NR columns ([K][NR] per strip). Short edge strips
// are padded with zeros. Transposes therefore cost only in packing. The micro-kernel keeps an
// MR x NR tile of C in v128 locals and, for each k, multiplies a broadcast element of the A strip
// with the NR/4 vectors of the B strip. A compute task owns one tile of C (several strips each
// way) and walks K in blocks of KC. The A strips of the tile then stay in L2, and one B strip
// stays in L1 while the kernel sweeps over them.
//
// Work is split into tasks claimed through one atomic counter: first the packing tasks, then the
// compute tasks, which wait until all packing is done. Threads that start late or run slowly
// simply claim fewer tasks.
import { wasm } from './wasm-api.js';
import { ValType, type FunctionDefinition, encodeModule } from './wasm-binary.js';
import { control, f32, f32x4, FunctionBuilder, i32, i64, local, memory, seq, v128, type Code } from './wasm-code.js';
import {
  CONTROL_ERROR,
  Job,
  JOB_ADDRESS,
  OPERAND_B_OFFSET,
  STATS_ADDRESS,
  TASK_INDEX_BITS,
  type GemmConfig,
} from './gemm-layout.js';

const { i32: I32, v128: V128 } = ValType;

/** Function indices inside the module, in the order they are defined. */
const FN_MICRO_KERNEL = 0;
const FN_ADD_TILE = 1;
const FN_PACK_STRIP_A = 2;
const FN_PACK_STRIP_B = 3;
const FN_PACK_TASK = 4;
const FN_COMPUTE_TASK = 5;

const get = local.get;
const c = i32.const;

/** Reads job field `slot` (an i32 at JOB_ADDRESS + 4 * slot). */
function jobField(slot: number): Code {
  return i32.load(c(0), JOB_ADDRESS + 4 * slot);
}

/**
 * Micro-kernel `(pa, pb, kc, pc, ldc, overwrite)`: C[MR x NR] at byte address pc with row stride
 * ldc bytes gets sum over k < kc of A strip[k][i] * B strip[k][j], added to C unless overwrite is
 * non-zero.
 */
function buildMicroKernel(config: GemmConfig): FunctionDefinition {
  const { mr, nr, kUnroll } = config;
  const vectorsPerRow = nr / 4;
  const fb = new FunctionBuilder([I32, I32, I32, I32, I32, I32]);
  const [pa, pb, kc, pc, ldc, overwrite] = [0, 1, 2, 3, 4, 5].map((p) => fb.param(p));

  const acc: number[][] = [];
  for (let i = 0; i < mr; i++) {
    acc.push(Array.from({ length: vectorsPerRow }, () => fb.local(V128)));
  }
  const bVec = Array.from({ length: vectorsPerRow }, () => fb.local(V128));
  const aVec = fb.local(V128);
  const row = fb.local(I32);
  const paEnd = fb.local(I32);

  const step = (u: number): Code => {
    const parts: Code[] = [];
    for (let j = 0; j < vectorsPerRow; j++) {
      parts.push(local.set(bVec[j], v128.load(get(pb), (u * nr + 4 * j) * 4)));
    }
    for (let i = 0; i < mr; i++) {
      parts.push(local.set(aVec, v128.load32Splat(get(pa), (u * mr + i) * 4)));
      for (let j = 0; j < vectorsPerRow; j++) {
        const product = config.fusedMultiplyAdd
          ? f32x4.relaxedMadd(get(aVec), get(bVec[j]), get(acc[i][j]))
          : f32x4.add(get(acc[i][j]), f32x4.mul(get(aVec), get(bVec[j])));
        parts.push(local.set(acc[i][j], product));
      }
    }
    return seq(...parts);
  };
  const advance = (steps: number): Code =>
    seq(local.set(pa, i32.add(get(pa), c(steps * mr * 4))), local.set(pb, i32.add(get(pb), c(steps * nr * 4))));

  // The loops stop when pa reaches an end address, which saves a counter update per step.
  const zeroAccumulators = seq(...acc.flat().map((v) => local.set(v, v128.zero())));
  const unrolledLoop = seq(
    local.set(paEnd, i32.add(get(pa), i32.mul(i32.sub(get(kc), i32.remU(get(kc), c(kUnroll))), c(mr * 4)))),
    control.if(
      i32.ne(get(pa), get(paEnd)),
      control.loop(
        seq(
          ...Array.from({ length: kUnroll }, (_, u) => step(u)),
          advance(kUnroll),
          control.brIf(0, i32.ne(get(pa), get(paEnd))),
        ),
      ),
    ),
  );
  const remainderLoop = seq(
    local.set(paEnd, i32.add(get(pa), i32.mul(i32.remU(get(kc), c(kUnroll)), c(mr * 4)))),
    control.if(
      i32.ne(get(pa), get(paEnd)),
      control.loop(seq(step(0), advance(1), control.brIf(0, i32.ne(get(pa), get(paEnd))))),
    ),
  );

  const storeRows = (addToC: boolean): Code => {
    const parts: Code[] = [local.set(row, get(pc))];
    for (let i = 0; i < mr; i++) {
      for (let j = 0; j < vectorsPerRow; j++) {
        const value = addToC ? f32x4.add(v128.load(get(row), 16 * j), get(acc[i][j])) : get(acc[i][j]);
        parts.push(v128.store(get(row), value, 16 * j));
      }
      parts.push(local.set(row, i32.add(get(row), get(ldc))));
    }
    return seq(...parts);
  };

  return {
    name: 'microKernel',
    params: fb.params,
    results: [],
    locals: fb.locals,
    body: seq(zeroAccumulators, unrolledLoop, remainderLoop, control.if(get(overwrite), storeRows(false), storeRows(true))),
    exported: true,
  };
}

/**
 * `(src, dst, ldc, rows, cols, overwrite)`: copies or adds the top-left rows x cols of a dense
 * MR x NR tile at src into C at dst (row stride ldc bytes). Used for edge tiles, which the
 * micro-kernel computes in full into a scratch tile.
 */
function buildAddTile(config: GemmConfig): FunctionDefinition {
  const fb = new FunctionBuilder([I32, I32, I32, I32, I32, I32]);
  const [src, dst, ldc, rows, cols, overwrite] = [0, 1, 2, 3, 4, 5].map((p) => fb.param(p));
  const i = fb.local(I32);
  const j = fb.local(I32);
  const from = fb.local(I32);
  const to = fb.local(I32);

  const element = seq(
    local.set(from, i32.add(get(src), i32.shl(i32.add(i32.mul(get(i), c(config.nr)), get(j)), c(2)))),
    local.set(to, i32.add(i32.add(get(dst), i32.mul(get(i), get(ldc))), i32.shl(get(j), c(2)))),
    control.if(
      get(overwrite),
      f32.store(get(to), f32.load(get(from))),
      f32.store(get(to), f32.add(f32.load(get(to)), f32.load(get(from)))),
    ),
  );
  return {
    name: 'addTile',
    params: fb.params,
    results: [],
    locals: fb.locals,
    body: fb.forRange(i, c(0), get(rows), 1, fb.forRange(j, c(0), get(cols), 1, element)),
    exported: false,
  };
}

/**
 * `(dst, src, laneStep, kStep, valid, K)`: packs one strip of `width` lanes (rows of op(A) or
 * columns of op(B)) into dst as [K][width] floats. Lane l, step k is read at
 * src + l * laneStep + k * kStep (bytes). Lanes at or past `valid` are filled with zeros.
 */
function buildPackStrip(name: string, width: number): FunctionDefinition {
  const fb = new FunctionBuilder([I32, I32, I32, I32, I32, I32]);
  const [dst, src, laneStep, kStep, valid, K] = [0, 1, 2, 3, 4, 5].map((p) => fb.param(p));
  const lane = fb.local(I32);
  const from = fb.local(I32);
  const to = fb.local(I32);
  const k = fb.local(I32);
  const rowBytes = width * 4;

  // Lanes adjacent in memory and a full strip: copy `width` floats per k with v128 moves.
  const vectorCopy = seq(
    local.set(from, get(src)),
    local.set(to, get(dst)),
    local.set(k, get(K)),
    fb.countDown(
      k,
      seq(
        ...Array.from({ length: width / 4 }, (_, v) => v128.store(get(to), v128.load(get(from), 16 * v), 16 * v)),
        local.set(from, i32.add(get(from), get(kStep))),
        local.set(to, i32.add(get(to), c(rowBytes))),
      ),
    ),
  );

  // General case: one lane at a time, one float per k.
  const copyLane = seq(
    local.set(from, i32.add(get(src), i32.mul(get(lane), get(laneStep)))),
    local.set(k, get(K)),
    fb.countDown(
      k,
      seq(
        f32.store(get(to), f32.load(get(from))),
        local.set(from, i32.add(get(from), get(kStep))),
        local.set(to, i32.add(get(to), c(rowBytes))),
      ),
    ),
  );
  const zeroLane = seq(
    local.set(k, get(K)),
    fb.countDown(k, seq(f32.store(get(to), f32.const(0)), local.set(to, i32.add(get(to), c(rowBytes))))),
  );
  const laneByLane = fb.forRange(
    lane,
    c(0),
    c(width),
    1,
    seq(
      local.set(to, i32.add(get(dst), i32.shl(get(lane), c(2)))),
      control.if(i32.ltU(get(lane), get(valid)), copyLane, zeroLane),
    ),
  );

  const body =
    width % 4 === 0
      ? control.if(
          i32.and(i32.eq(get(laneStep), c(4)), i32.eq(get(valid), c(width))),
          vectorCopy,
          control.if(
            i32.and(i32.eq(get(kStep), c(4)), i32.eq(get(valid), c(width))),
            buildTransposeCopy(fb, width, { dst, src, laneStep, K }),
            laneByLane,
          ),
        )
      : laneByLane;
  return { name, params: fb.params, results: [], locals: fb.locals, body, exported: false };
}

/**
 * Packs lanes whose k steps are contiguous in memory: op(A) with A not transposed, op(B) with B
 * transposed. Each group of 4 lanes x 4 k is loaded as four v128, transposed with shuffles and
 * stored as four k-rows of the strip. The last K mod 4 steps are copied one float at a time.
 */
function buildTransposeCopy(
  fb: FunctionBuilder,
  width: number,
  p: { dst: number; src: number; laneStep: number; K: number },
): Code {
  const group = fb.local(I32);
  const to = fb.local(I32);
  const blocks = fb.local(I32);
  const rest = fb.local(I32);
  const rowPointers = [fb.local(I32), fb.local(I32), fb.local(I32), fb.local(I32)];
  const rows = [fb.local(V128), fb.local(V128), fb.local(V128), fb.local(V128)];
  const low = [fb.local(V128), fb.local(V128)];
  const high = [fb.local(V128), fb.local(V128)];
  const rowBytes = width * 4;

  const advanceRows = (bytes: number): Code =>
    seq(...rowPointers.map((pointer) => local.set(pointer, i32.add(get(pointer), c(bytes)))));
  const transposeBlock = seq(
    ...rows.map((row, i) => local.set(row, v128.load(get(rowPointers[i])))),
    // low[0] = (r0[0] r1[0] r0[1] r1[1]) and high[0] = (r0[2] r1[2] r0[3] r1[3]), likewise for rows 2, 3.
    local.set(low[0], v128.shuffle32(get(rows[0]), get(rows[1]), [0, 4, 1, 5])),
    local.set(high[0], v128.shuffle32(get(rows[0]), get(rows[1]), [2, 6, 3, 7])),
    local.set(low[1], v128.shuffle32(get(rows[2]), get(rows[3]), [0, 4, 1, 5])),
    local.set(high[1], v128.shuffle32(get(rows[2]), get(rows[3]), [2, 6, 3, 7])),
    v128.store(get(to), v128.shuffle32(get(low[0]), get(low[1]), [0, 1, 4, 5]), 0),
    v128.store(get(to), v128.shuffle32(get(low[0]), get(low[1]), [2, 3, 6, 7]), rowBytes),
    v128.store(get(to), v128.shuffle32(get(high[0]), get(high[1]), [0, 1, 4, 5]), 2 * rowBytes),
    v128.store(get(to), v128.shuffle32(get(high[0]), get(high[1]), [2, 3, 6, 7]), 3 * rowBytes),
    advanceRows(16),
    local.set(to, i32.add(get(to), c(4 * rowBytes))),
  );
  const copyRemainder = seq(
    ...rowPointers.map((pointer, i) => f32.store(get(to), f32.load(get(pointer)), 4 * i)),
    advanceRows(4),
    local.set(to, i32.add(get(to), c(rowBytes))),
  );

  const oneGroup = seq(
    ...rowPointers.map((pointer, i) =>
      local.set(pointer, i32.add(get(p.src), i32.mul(i32.add(i32.mul(get(group), c(4)), c(i)), get(p.laneStep)))),
    ),
    local.set(to, i32.add(get(p.dst), i32.mul(get(group), c(16)))),
    local.set(blocks, i32.shrU(get(p.K), c(2))),
    control.if(get(blocks), fb.countDown(blocks, transposeBlock)),
    local.set(rest, i32.and(get(p.K), c(3))),
    control.if(get(rest), fb.countDown(rest, copyRemainder)),
  );
  return fb.forRange(group, c(0), c(width / 4), 1, oneGroup);
}

/** Job fields of one operand: A's slots, or B's at OPERAND_B_OFFSET. */
function operandField(slotOfA: number, isB: boolean): Code {
  return jobField(slotOfA + (isB ? OPERAND_B_OFFSET : 0));
}

/**
 * `(t)`: packing task t. Tasks [0, countA * tasksPerMatrixA) pack A, the rest pack B. Within a
 * matrix, a task covers a run of strips and a run of k. The caller picks the grid so that each
 * task reads one contiguous range of the raw operand: whole rows of a k-contiguous operand
 * (runs of strips, every k), or whole k-rows otherwise (runs of k, every strip).
 */
function buildPackTask(config: GemmConfig): FunctionDefinition {
  const fb = new FunctionBuilder([I32]);
  const t = fb.param(0);
  const [matrix, chunk, strip, stripEnd, k0, kCount] = [0, 1, 2, 3, 4, 5].map(() => fb.local(I32));
  const [laneStep, kStep, lane0, dstBase, srcBase, tasksA] = [0, 1, 2, 3, 4, 5].map(() => fb.local(I32));
  const [minA, minB] = [fb.local(I32), fb.local(I32)];
  const K = jobField(Job.K);

  const packOperand = (isB: boolean, index: Code): Code => {
    const field = (slot: number): Code => operandField(slot, isB);
    const width = isB ? config.nr : config.mr;
    const lanes = jobField(isB ? Job.N : Job.M);
    // op(A)[m][k] sits at m * K + k, or at k * M + m when A is stored transposed.
    // op(B)[k][n] sits at k * N + n, or at n * K + k when B is stored transposed.
    const kContiguous = isB ? jobField(Job.transB) : i32.eqz(jobField(Job.transA));
    return seq(
      local.set(matrix, i32.divU(index, field(Job.tasksPerMatrixA))),
      local.set(chunk, i32.remU(index, field(Job.tasksPerMatrixA))),
      local.set(strip, i32.mul(i32.divU(get(chunk), field(Job.kChunksA)), field(Job.stripsPerTaskA))),
      local.set(stripEnd, i32.minU(i32.add(get(strip), field(Job.stripsPerTaskA)), field(Job.stripsA), minA, minB)),
      local.set(k0, i32.mul(i32.remU(get(chunk), field(Job.kChunksA)), field(Job.kPerTaskA))),
      local.set(kCount, i32.minU(field(Job.kPerTaskA), i32.sub(K, get(k0)), minA, minB)),
      control.if(
        kContiguous,
        seq(local.set(laneStep, i32.shl(K, c(2))), local.set(kStep, c(4))),
        seq(local.set(laneStep, c(4)), local.set(kStep, i32.shl(lanes, c(2)))),
      ),
      local.set(
        dstBase,
        i32.add(
          i32.add(field(Job.packA), i32.mul(get(matrix), field(Job.packedABytes))),
          i32.mul(get(k0), c(width * 4)),
        ),
      ),
      local.set(
        srcBase,
        i32.add(i32.add(field(Job.rawA), i32.mul(get(matrix), field(Job.strideA))), i32.mul(get(k0), get(kStep))),
      ),
      fb.forRange(
        strip,
        get(strip),
        get(stripEnd),
        1,
        seq(
          local.set(lane0, i32.mul(get(strip), c(width))),
          control.call(
            isB ? FN_PACK_STRIP_B : FN_PACK_STRIP_A,
            i32.add(get(dstBase), i32.mul(get(strip), i32.mul(K, c(width * 4)))),
            i32.add(get(srcBase), i32.mul(get(lane0), get(laneStep))),
            get(laneStep),
            get(kStep),
            i32.minU(c(width), i32.sub(lanes, get(lane0)), minA, minB),
            get(kCount),
          ),
        ),
      ),
    );
  };

  return {
    name: 'packTask',
    params: fb.params,
    results: [],
    locals: fb.locals,
    body: seq(
      local.set(tasksA, i32.mul(jobField(Job.countA), jobField(Job.tasksPerMatrixA))),
      control.if(
        i32.ltU(get(t), get(tasksA)),
        packOperand(false, get(t)),
        packOperand(true, i32.sub(get(t), get(tasksA))),
      ),
    ),
    exported: false,
  };
}

/**
 * `(t, tid)`: compute task t, one tile of C of one batch entry. Loops over K blocks, then B strips,
 * then A strips, so one B strip is reused from L1 by every A strip of the tile.
 */
function buildComputeTask(config: GemmConfig): FunctionDefinition {
  const { mr, nr } = config;
  const fb = new FunctionBuilder([I32, I32]);
  const [t, tid] = [fb.param(0), fb.param(1)];
  const L = (): number => fb.local(I32);
  const [batchEntry, rest, tileM, tileN] = [L(), L(), L(), L()];
  const [stripM0, stripM1, stripN0, stripN1] = [L(), L(), L(), L()];
  const [aBase, bBase, cBase, scratch] = [L(), L(), L(), L()];
  const [k0, kc, overwrite, sm, sn] = [L(), L(), L(), L(), L()];
  const [pa, pb, pc, rows, cols, ldc] = [L(), L(), L(), L(), L(), L()];
  const [minA, minB] = [L(), L()];
  const M = jobField(Job.M);
  const N = jobField(Job.N);
  const K = jobField(Job.K);
  const tilesPerBatch = i32.mul(jobField(Job.tilesM), jobField(Job.tilesN));

  const locateTile = seq(
    local.set(batchEntry, i32.divU(get(t), tilesPerBatch)),
    local.set(rest, i32.remU(get(t), tilesPerBatch)),
    local.set(tileM, i32.divU(get(rest), jobField(Job.tilesN))),
    local.set(tileN, i32.remU(get(rest), jobField(Job.tilesN))),
    local.set(stripM0, i32.mul(get(tileM), jobField(Job.tileStripsM))),
    local.set(stripM1, i32.minU(i32.add(get(stripM0), jobField(Job.tileStripsM)), jobField(Job.stripsA), minA, minB)),
    local.set(stripN0, i32.mul(get(tileN), jobField(Job.tileStripsN))),
    local.set(stripN1, i32.minU(i32.add(get(stripN0), jobField(Job.tileStripsN)), jobField(Job.stripsB), minA, minB)),
    // A broadcast operand (batch stride 0) was packed once: countA is 1 and the remainder is 0.
    local.set(
      aBase,
      i32.add(jobField(Job.packA), i32.mul(i32.remU(get(batchEntry), jobField(Job.countA)), jobField(Job.packedABytes))),
    ),
    local.set(
      bBase,
      i32.add(jobField(Job.packB), i32.mul(i32.remU(get(batchEntry), jobField(Job.countB)), jobField(Job.packedBBytes))),
    ),
    local.set(cBase, i32.add(jobField(Job.out), i32.mul(get(batchEntry), jobField(Job.outMatrixBytes)))),
    local.set(scratch, i32.add(jobField(Job.scratch), i32.mul(get(tid), c(mr * nr * 4)))),
    local.set(ldc, i32.shl(N, c(2))),
  );

  const microTile = seq(
    local.set(pa, i32.add(get(aBase), i32.mul(i32.add(i32.mul(get(sm), K), get(k0)), c(mr * 4)))),
    local.set(rows, i32.minU(c(mr), i32.sub(M, i32.mul(get(sm), c(mr))), minA, minB)),
    local.set(pc, i32.add(get(cBase), i32.shl(i32.add(i32.mul(i32.mul(get(sm), c(mr)), N), i32.mul(get(sn), c(nr))), c(2)))),
    control.if(
      i32.and(i32.eq(get(rows), c(mr)), i32.eq(get(cols), c(nr))),
      control.call(FN_MICRO_KERNEL, get(pa), get(pb), get(kc), get(pc), get(ldc), get(overwrite)),
      seq(
        control.call(FN_MICRO_KERNEL, get(pa), get(pb), get(kc), get(scratch), c(nr * 4), c(1)),
        control.call(FN_ADD_TILE, get(scratch), get(pc), get(ldc), get(rows), get(cols), get(overwrite)),
      ),
    ),
  );

  const bStrip = seq(
    local.set(pb, i32.add(get(bBase), i32.mul(i32.add(i32.mul(get(sn), K), get(k0)), c(nr * 4)))),
    local.set(cols, i32.minU(c(nr), i32.sub(N, i32.mul(get(sn), c(nr))), minA, minB)),
    fb.forRange(sm, get(stripM0), get(stripM1), 1, microTile),
  );

  const kBlock = seq(
    local.set(kc, i32.minU(jobField(Job.kc), i32.sub(K, get(k0)), minA, minB)),
    local.set(overwrite, i32.and(jobField(Job.overwrite), i32.eqz(get(k0)))),
    fb.forRange(sn, get(stripN0), get(stripN1), 1, bStrip),
  );

  return {
    name: 'computeTask',
    params: fb.params,
    results: [],
    locals: fb.locals,
    body: seq(
      locateTile,
      local.set(k0, c(0)),
      control.loop(seq(kBlock, control.brIf(0, i32.ltU(local.tee(k0, i32.add(get(k0), get(kc))), K)))),
    ),
    exported: false,
  };
}

/**
 * `run(tid)`: claims and runs tasks of the current job until none are left. Every thread calls it.
 * A packing task first waits until the caller has copied its raw data in (rawReady), and compute
 * tasks wait until packDone reaches packBarrier: every packing task done and C copied in.
 */
function buildRun(): FunctionDefinition {
  const fb = new FunctionBuilder([I32]);
  const tid = fb.param(0);
  const claimed = fb.local(I32);
  const t = fb.local(I32);
  const packTasks = fb.local(I32);
  const computeTasks = fb.local(I32);
  const barrier = fb.local(I32);
  const seen = fb.local(I32);
  const field = (slot: number): Code => c(JOB_ADDRESS + 4 * slot);
  const statsAddress = i32.add(c(STATS_ADDRESS), i32.shl(get(tid), c(2)));

  /** Adds 1 to the counter at `doneSlot` and wakes its waiters when it reaches `total`. */
  const finish = (doneSlot: number, total: Code): Code =>
    control.if(
      i32.eq(i32.add(i32.atomicAdd(field(doneSlot), c(1)), c(1)), total),
      control.drop(memory.atomicNotify(field(doneSlot), c(-1))),
    );

  /**
   * Blocks while the counter at `slot` is below `target`. Every 100 ms it checks whether a worker
   * trapped, which would leave the counter short forever, and then returns from run.
   */
  const waitUntil = (slot: number, target: Code): Code =>
    control.block(
      control.loop(
        seq(
          control.brIf(1, i32.geU(local.tee(seen, i32.atomicLoad(field(slot))), target)),
          control.if(i32.atomicLoad(c(4 * CONTROL_ERROR)), control.return()),
          control.drop(memory.atomicWait32(field(slot), get(seen), i64.const(100_000_000))),
          control.br(0),
        ),
      ),
    );

  const claimLoop = control.loop(
    seq(
      local.set(claimed, i32.atomicAdd(field(Job.claim), c(1))),
      local.set(t, i32.and(get(claimed), c((1 << TASK_INDEX_BITS) - 1))),
      // A claim made after its job finished carries an old sequence number, so it returns.
      // The task counts are read before the sequence check. The caller stores the new sequence
      // before the new counts, so counts read under a matching sequence belong to this claim.
      local.set(packTasks, i32.atomicLoad(field(Job.packTasks))),
      local.set(computeTasks, i32.atomicLoad(field(Job.computeTasks))),
      control.if(
        i32.ne(i32.shrU(get(claimed), c(TASK_INDEX_BITS)), i32.atomicLoad(field(Job.sequence))),
        control.return(),
      ),
      control.if(i32.geU(get(t), i32.add(get(packTasks), get(computeTasks))), control.return()),
      local.set(barrier, i32.add(get(packTasks), c(1))),
      i32.store(statsAddress, i32.add(i32.load(statsAddress), c(1))),
      control.if(
        i32.ltU(get(t), get(packTasks)),
        seq(
          waitUntil(Job.rawReady, i32.add(get(t), c(1))),
          control.call(FN_PACK_TASK, get(t)),
          finish(Job.packDone, get(barrier)),
        ),
        seq(
          waitUntil(Job.packDone, get(barrier)),
          control.call(FN_COMPUTE_TASK, i32.sub(get(t), get(packTasks)), get(tid)),
          finish(Job.computeDone, get(computeTasks)),
        ),
      ),
      control.br(0),
    ),
  );

  return { name: 'run', params: fb.params, results: [], locals: fb.locals, body: claimLoop, exported: true };
}

/**
 * Returns whether this runtime accepts relaxed-SIMD f32x4.relaxed_madd. Node 20 (V8 11.3) rejects
 * it unless started with --experimental-wasm-relaxed-simd.
 */
export function relaxedSimdSupported(): boolean {
  const fb = new FunctionBuilder([I32]);
  const address = get(fb.param(0));
  const body = v128.store(address, f32x4.relaxedMadd(v128.load(address), v128.load(address), v128.load(address)));
  const probe = { name: 'probe', params: fb.params, results: [], locals: fb.locals, body, exported: false };
  return wasm.validate(encodeModule({ initialPages: 1, maximumPages: 1, shared: true }, [probe]));
}

/** Builds the module bytes for `config`; it imports a shared memory as `env.memory`. */
export function buildGemmModule(config: GemmConfig, maximumPages: number): Uint8Array {
  if (config.nr % 4 !== 0 || config.mr < 1 || config.kUnroll < 1) {
    throw new Error(
      `buildGemmModule: nr must be a multiple of 4 and mr, kUnroll at least 1, got mr=${config.mr} nr=${config.nr} kUnroll=${config.kUnroll}`,
    );
  }
  if (config.fusedMultiplyAdd === true && !relaxedSimdSupported()) {
    throw new Error(
      'buildGemmModule: fusedMultiplyAdd needs relaxed SIMD, which this runtime rejects; ' +
        'start Node 20 with --experimental-wasm-relaxed-simd or turn fusedMultiplyAdd off',
    );
  }
  const functions = [
    buildMicroKernel(config),
    buildAddTile(config),
    buildPackStrip('packStripA', config.mr),
    buildPackStrip('packStripB', config.nr),
    buildPackTask(config),
    buildComputeTask(config),
    buildRun(),
  ];
  return encodeModule({ initialPages: 1, maximumPages, shared: true }, functions);
}
