// Crash-safe file replacement: write a temporary file next to the target, flush it to disk, then
// rename it over the target. rename(2) within one folder is atomic on POSIX file systems, so a
// reader sees either the old file or the complete new one, never a partial write.

import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { dirname } from 'node:path';

/** File-system calls that `writeFileAtomic` makes. Tests pass a copy with one failing call. */
export interface AtomicFileSystem {
  openSync(path: string, flags: string, mode: number): number;
  writeSync(fd: number, data: Uint8Array, offset: number, length: number): number;
  fsyncSync(fd: number): void;
  closeSync(fd: number): void;
  renameSync(from: string, to: string): void;
  unlinkSync(path: string): void;
}

/** Node's synchronous `fs` calls. */
export const nodeFileSystem: AtomicFileSystem = {
  openSync: (path, flags, mode) => fs.openSync(path, flags, mode),
  writeSync: (fd, data, offset, length) => fs.writeSync(fd, data, offset, length, null),
  fsyncSync: (fd) => fs.fsyncSync(fd),
  closeSync: (fd) => fs.closeSync(fd),
  renameSync: (from, to) => fs.renameSync(from, to),
  unlinkSync: (path) => fs.unlinkSync(path),
};

/** A failed atomic write. The target file, if it existed, still has its old contents. */
export class AtomicWriteError extends Error {
  override readonly name = 'AtomicWriteError';
  /** The target path. */
  readonly path: string;
  /** The errno code of the cause (ENOSPC, EACCES, ...), when it had one. */
  readonly code?: string;

  constructor(path: string, cause: unknown) {
    super(`writeFileAtomic: cannot write "${path}": ${describeFailure(path, cause)}`, { cause });
    this.path = path;
    this.code = errorCode(cause);
  }
}

/**
 * Replaces the file at `path` with `data` (a string is written as UTF-8), atomically. Steps: write
 * `path.<pid>.<random>.tmp` in the same folder, fsync it, rename it over `path`, then fsync the
 * folder so the rename itself survives a crash (skipped where the platform cannot fsync a folder).
 * On any failure the temporary file is removed and an AtomicWriteError is thrown.
 */
export function writeFileAtomic(
  path: string,
  data: Uint8Array | string,
  fileSystem: AtomicFileSystem = nodeFileSystem,
): void {
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  const tempPath = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  let fd: number | undefined;
  let tempCreated = false;

  try {
    // 'wx' fails if the name exists, so an unlikely name collision never clobbers another file.
    fd = fileSystem.openSync(tempPath, 'wx', 0o666);
    tempCreated = true;
    writeAll(fileSystem, fd, bytes);
    fileSystem.fsyncSync(fd);
    fileSystem.closeSync(fd);
    fd = undefined;
    fileSystem.renameSync(tempPath, path);
    tempCreated = false;
  } catch (error) {
    if (fd !== undefined) closeQuietly(fileSystem, fd);
    if (tempCreated) removeQuietly(fileSystem, tempPath);
    throw new AtomicWriteError(path, error);
  }

  syncFolder(fileSystem, dirname(path));
}

function writeAll(fileSystem: AtomicFileSystem, fd: number, bytes: Uint8Array): void {
  let written = 0;
  while (written < bytes.length) {
    const count = fileSystem.writeSync(fd, bytes, written, bytes.length - written);
    if (count <= 0) throw new Error(`write returned ${count} after ${written} of ${bytes.length} bytes`);
    written += count;
  }
}

/**
 * Flushes the folder entry of the renamed file. Best effort: the data is already safe in the
 * file, and some platforms (Windows) and file systems reject fsync on a folder.
 */
function syncFolder(fileSystem: AtomicFileSystem, folder: string): void {
  let fd: number | undefined;
  try {
    fd = fileSystem.openSync(folder, 'r', 0);
    fileSystem.fsyncSync(fd);
  } catch {
    // Not fatal, for the reasons above.
  } finally {
    if (fd !== undefined) closeQuietly(fileSystem, fd);
  }
}

function closeQuietly(fileSystem: AtomicFileSystem, fd: number): void {
  try {
    fileSystem.closeSync(fd);
  } catch {
    // The write already failed; that error is the one to report.
  }
}

function removeQuietly(fileSystem: AtomicFileSystem, path: string): void {
  try {
    fileSystem.unlinkSync(path);
  } catch {
    // The write already failed; that error is the one to report.
  }
}

function errorCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null || !('code' in error)) return undefined;
  const code = (error as { code: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

/** Builds the sentence that says what failed and what to do, from the cause's errno code. */
function describeFailure(path: string, cause: unknown): string {
  const folder = dirname(path);
  const code = errorCode(cause);
  const unchanged = `nothing was overwritten and "${path}" keeps its old contents`;

  switch (code) {
    case 'ENOSPC':
    case 'EDQUOT':
      return `the disk is full (${code}); ${unchanged}. Free some space and retry.`;
    case 'EACCES':
    case 'EPERM':
      return `the folder "${folder}" is not writable (${code}); ${unchanged}. Choose another folder or fix its permissions.`;
    case 'EROFS':
      return `the folder "${folder}" is on a read-only file system (EROFS); ${unchanged}.`;
    case 'ENOENT':
      return `the folder "${folder}" does not exist (ENOENT); create it first.`;
    case 'ENOTDIR':
      return `a component of "${folder}" is a file, not a folder (ENOTDIR).`;
    default: {
      const message = cause instanceof Error ? cause.message : String(cause);
      return `${message}; ${unchanged}.`;
    }
  }
}
