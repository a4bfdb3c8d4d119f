// Trainer output: fixed-format log lines (one per interval, greppable), a metrics JSONL file with
// full-precision values, and a progress display on stderr.

import { appendFileSync, existsSync, readFileSync } from 'node:fs';

import { writeFileAtomic } from '../io/atomic.js';

// ---------------------------------------------------------------------------------------------------
// Log lines

/** Formats `step 120/600 | loss 2.3456 | lr 3.0e-4 | 1,234 tok/s`; a null rate prints as "-". */
export function formatStepLine(step: number, totalSteps: number, loss: number, lr: number, tokensPerSecond: number | null): string {
  const rate = tokensPerSecond === null ? '-' : Math.round(tokensPerSecond).toLocaleString('en-US');
  return `step ${step}/${totalSteps} | loss ${loss.toFixed(4)} | lr ${lr.toExponential(1)} | ${rate} tok/s`;
}

/** Formats `eval step 120 | val loss 2.3456 | val ppl 10.45`. */
export function formatEvalLine(step: number, valLoss: number): string {
  return `eval step ${step} | val loss ${valLoss.toFixed(4)} | val ppl ${Math.exp(valLoss).toFixed(2)}`;
}

/** Formats seconds as "45s", "3m07s" or "2h05m". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

// ---------------------------------------------------------------------------------------------------
// Metrics file

/** One line of metrics.jsonl. */
export type MetricsRecord =
  | { kind: 'train'; step: number; loss: number; lr: number; gradNorm: number; tokens: number; tokensPerSecond: number | null; time: string }
  | { kind: 'eval'; step: number; valLoss: number; valPerplexity: number; time: string };

/** Appends records to a JSONL file, one JSON object per line. */
export class MetricsFile {
  constructor(readonly path: string) {}

  append(record: MetricsRecord): void {
    appendFileSync(this.path, JSON.stringify(record) + '\n');
  }

  /** Returns all records in the file ([] when it does not exist). */
  read(): MetricsRecord[] {
    if (!existsSync(this.path)) return [];
    return readFileSync(this.path, 'utf8')
      .split('\n')
      .filter((line) => line.trim().length > 0)
      .map((line) => JSON.parse(line) as MetricsRecord);
  }

  /**
   * Drops records after `step`. A resumed run starts from its last checkpoint, so the records an
   * interrupted run wrote after that checkpoint would otherwise appear twice.
   */
  truncateAfter(step: number): void {
    if (!existsSync(this.path)) return;
    const kept = this.read().filter((record) => record.step <= step);
    writeFileAtomic(this.path, kept.map((record) => JSON.stringify(record) + '\n').join(''));
  }
}

// ---------------------------------------------------------------------------------------------------
// Progress display

/** Output stream of the progress display: a stream with an optional TTY flag, as process.stderr is. */
export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
}

const BAR_WIDTH = 30;

/**
 * Shows training progress on a stream. On a terminal it redraws one bar line in place
 * (`[#####.....] 120/600 20% ETA 3m07s`). Elsewhere it writes a plain line each time `line` is
 * called, because carriage returns would turn a log file into one long line.
 */
export class Progress {
  private drawn = false;
  private readonly startTime: number;

  constructor(
    private readonly stream: ProgressStream,
    private readonly totalSteps: number,
    private readonly startStep: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.startTime = now();
  }

  get interactive(): boolean {
    return this.stream.isTTY === true;
  }

  /** Estimated seconds left, from the mean time per step since this display started. */
  private etaSeconds(step: number): number {
    const done = step - this.startStep;
    if (done <= 0) return Number.NaN;
    const perStep = (this.now() - this.startTime) / 1000 / done;
    return perStep * (this.totalSteps - step);
  }

  /** Redraws the bar (terminal only). */
  update(step: number): void {
    if (!this.interactive) return;
    const fraction = Math.min(1, step / this.totalSteps);
    const filled = Math.round(fraction * BAR_WIDTH);
    const bar = '#'.repeat(filled) + '.'.repeat(BAR_WIDTH - filled);
    const percent = Math.floor(fraction * 100);
    this.stream.write(`\r\x1b[K[${bar}] ${step}/${this.totalSteps} ${percent}% ETA ${formatDuration(this.etaSeconds(step))}`);
    this.drawn = true;
  }

  /** Writes a plain progress line (non-terminal only), for log files. */
  line(step: number): void {
    if (this.interactive) return;
    const elapsed = (this.now() - this.startTime) / 1000;
    const percent = ((100 * step) / this.totalSteps).toFixed(1);
    this.stream.write(`progress ${step}/${this.totalSteps} (${percent}%) | elapsed ${formatDuration(elapsed)} | ETA ${formatDuration(this.etaSeconds(step))}\n`);
  }

  /** Erases the bar so that other output starts on a clean line. */
  clear(): void {
    if (!this.drawn) return;
    this.stream.write('\r\x1b[K');
    this.drawn = false;
  }
}
