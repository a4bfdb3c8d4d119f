// Helpers shared by the command-line tests: running `rwkvify` as a child process or in this
// process, a tiny English corpus, and a byte-level tokenizer that keeps test vocabularies small.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { vi } from 'vitest';

import { reportError } from '../../src/cli/program.js';
import { BYTE_TO_CHAR } from '../../src/tokenizer/byte-unicode.js';
import { END_OF_TEXT, Gpt2Tokenizer } from '../../src/tokenizer/index.js';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = join(REPO_ROOT, 'bin', 'rwkvify.js');

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `rwkvify ...args` in a child process to completion. */
export function runCli(args: readonly string[], timeoutMs = 50_000): CliResult {
  // SIGKILL, because a process stuck in a synchronous call never runs the SIGTERM handler that
  // pretrain, distill and demo install.
  const result = spawnSync(process.execPath, [BIN, ...args], { cwd: REPO_ROOT, encoding: 'utf8', timeout: timeoutMs, killSignal: 'SIGKILL' });
  if (result.error !== undefined) throw result.error;
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** Output of an in-process run: the exit code the command set, and what it printed. */
export interface InProcessResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `rwkvify ...args` in this process with the commands that `register` adds, capturing
 * console.log and stdout (joined with `stdoutSeparator`) and stderr. Errors go through the CLI's
 * own reportError, so the exit code is what a user would see.
 */
export async function runInProcess(
  register: (program: Command, setExitCode: (code: number) => void) => void,
  args: readonly string[],
  stdoutSeparator = '',
): Promise<InProcessResult> {
  let code = 0;
  const out: string[] = [];
  const err: string[] = [];
  const log = vi.spyOn(console, 'log').mockImplementation((...items: unknown[]) => void out.push(items.join(' ')));
  const write = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => out.push(String(chunk)) > 0);
  const writeErr = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => err.push(String(chunk)) > 0);
  try {
    const program = new Command().exitOverride();
    register(program, (c) => {
      code = c;
    });
    await program.parseAsync(['node', 'rwkvify', ...args]);
  } catch (error) {
    code = reportError(error);
  } finally {
    log.mockRestore();
    write.mockRestore();
    writeErr.mockRestore();
  }
  return { code, stdout: out.join(stdoutSeparator), stderr: err.join('') };
}

/** Flags of a pretraining run small enough for a test: 3 steps of 2 × 16 tokens. */
export const TINY_RUN = ['--arch', 'gpt2', '--preset', 'tiny', '--steps', '3', '--batch-size', '2', '--seq-len', '16', '--log-every', '1', '--warmup', '1', '--eval-batches', '2', '--eval-every', '2'];

/** Writes a small English corpus of `documents` files into `dir`. */
export function writeTinyCorpus(dir: string, documents = 4): void {
  const sentences = [
    'The cat sat on the mat and looked at the door.',
    'A dog ran across the park while the birds sang.',
    'She opened the window and the cold air came in.',
    'They walked to the river and sat under a tall tree.',
    'The old man told a story about the sea and the ships.',
  ];
  for (let d = 0; d < documents; d++) {
    const lines: string[] = [];
    for (let i = 0; i < 30; i++) lines.push(sentences[(i * 3 + d) % sentences.length]);
    writeFileSync(join(dir, `story-${d}.txt`), lines.join('\n') + '\n');
  }
}

/** Builds a tokenizer with one token per byte plus <|endoftext|> (vocabulary 257) and no merges. */
export function byteTokenizer(): Gpt2Tokenizer {
  const vocab = new Map<string, number>(BYTE_TO_CHAR.map((char, id) => [char, id]));
  vocab.set(END_OF_TEXT, 256);
  return Gpt2Tokenizer.fromVocabulary({ vocab, merges: [] }, 'byte-level test vocabulary');
}
