// The demo's state file, `<out>/demo-state.json`: the run id, the settings and their hash, and
// each finished phase with its result. A re-run reads it to skip finished phases. A result is only
// used when it carries the current run id and settings hash, so no stale number is reported.
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import { InputError } from '../data/input-error.js';
import { nodeFileSystem, writeFileAtomic, type AtomicFileSystem } from '../io/atomic.js';
import { settingsHash, type DemoSettings } from './settings.js';

export const DEMO_STATE_FILE = 'demo-state.json';
const STATE_FORMAT = 1;

/** Phases in the order the demo runs them. */
export const DEMO_PHASES = ['data', 'convert', 'distill', 'baseline', 'eval-sotu', 'eval-moby', 'speed', 'report'] as const;
export type DemoPhase = (typeof DEMO_PHASES)[number];

/** Files and folders the demo writes into `<out>`; `--restart` removes exactly these. */
export const DEMO_OUTPUTS = ['student-init', 'distill', 'baseline', 'eval-sotu', 'eval-moby', 'moby-dick', 'report.json', 'report.html', DEMO_STATE_FILE] as const;

export interface PhaseRecord {
  runId: string;
  settingsHash: string;
  finishedAt: string;
  /** Seconds the phase took. */
  seconds: number;
  /** JSON result of the phase, when it has one (evaluation numbers, timings). */
  result?: unknown;
}

export interface DemoState {
  format: number;
  runId: string;
  settingsHash: string;
  settings: DemoSettings;
  createdAt: string;
  phases: Partial<Record<DemoPhase, PhaseRecord>>;
}

export function newDemoState(settings: DemoSettings): DemoState {
  return { format: STATE_FORMAT, runId: randomBytes(6).toString('hex'), settingsHash: settingsHash(settings), settings, createdAt: new Date().toISOString(), phases: {} };
}

/** Reads `<out>/demo-state.json`, or returns undefined when there is none. */
export function readDemoState(out: string): DemoState | undefined {
  const path = join(out, DEMO_STATE_FILE);
  if (!existsSync(path)) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new InputError(`demo: the state file "${path}" is not valid JSON (${(error as Error).message}); pass --restart to start the demo again`);
  }
  const state = parsed as Partial<DemoState>;
  if (state.format !== STATE_FORMAT || typeof state.runId !== 'string' || typeof state.settingsHash !== 'string' || typeof state.phases !== 'object' || state.settings === undefined) {
    throw new InputError(`demo: the state file "${path}" has format ${String(state.format)} or misses fields (expected format ${STATE_FORMAT}); pass --restart to start the demo again`);
  }
  return state as DemoState;
}

/** Writes the state atomically, so an interrupted write leaves the previous state intact. */
export function writeDemoState(out: string, state: DemoState, fileSystem: AtomicFileSystem = nodeFileSystem): void {
  writeFileAtomic(join(out, DEMO_STATE_FILE), JSON.stringify(state, null, 2) + '\n', fileSystem);
}

/** Returns the record of a finished phase of this run, or undefined when the phase must run. */
export function finishedPhase(state: DemoState, phase: DemoPhase): PhaseRecord | undefined {
  const record = state.phases[phase];
  if (record === undefined || record.runId !== state.runId || record.settingsHash !== state.settingsHash) return undefined;
  return record;
}

/** Returns a phase's result; throws when the phase has not finished in this run, so no stale number is read. */
export function phaseResult<T>(state: DemoState, phase: DemoPhase): T {
  const record = finishedPhase(state, phase);
  if (record === undefined) throw new Error(`demo: phase "${phase}" has no result for run ${state.runId} (settings ${state.settingsHash})`);
  return record.result as T;
}

/** Removes what an earlier demo wrote into `out` (the names in DEMO_OUTPUTS, nothing else). */
export function removeDemoOutputs(out: string): string[] {
  const removed: string[] = [];
  for (const name of DEMO_OUTPUTS) {
    const path = join(out, name);
    if (!existsSync(path)) continue;
    rmSync(path, { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

/** Names from DEMO_OUTPUTS (other than the state file) that exist in `out`. */
export function existingDemoOutputs(out: string): string[] {
  return DEMO_OUTPUTS.filter((name) => name !== DEMO_STATE_FILE && existsSync(join(out, name)));
}
