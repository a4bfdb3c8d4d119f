import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { AtomicWriteError, nodeFileSystem, writeFileAtomic, type AtomicFileSystem } from '../src/io/atomic.js';

/** Builds an errno-style error like the ones Node's fs functions throw. */
function errnoError(code: string, message: string): NodeJS.ErrnoException {
  const error: NodeJS.ErrnoException = new Error(`${code}: ${message}`);
  error.code = code;
  return error;
}

/** Asserts that `run` throws an AtomicWriteError whose message contains every fragment. */
function expectWriteFailure(run: () => void, ...fragments: string[]): AtomicWriteError {
  let caught: unknown;
  try {
    run();
  } catch (error) {
    caught = error;
  }
  expect(caught, 'expected an AtomicWriteError, but nothing was thrown').toBeInstanceOf(AtomicWriteError);
  const error = caught as AtomicWriteError;
  for (const fragment of fragments) expect(error.message).toContain(fragment);
  return error;
}

describe('writeFileAtomic', () => {
  let folder: string;
  let target: string;

  beforeEach(() => {
    folder = mkdtempSync(join(tmpdir(), 'rwkvify-atomic-'));
    target = join(folder, 'checkpoint.bin');
  });

  afterEach(() => {
    rmSync(folder, { recursive: true, force: true });
  });

  it('creates a new file with the given bytes', () => {
    writeFileAtomic(target, new Uint8Array([1, 2, 3]));

    expect(Array.from(readFileSync(target))).toEqual([1, 2, 3]);
    expect(readdirSync(folder)).toEqual(['checkpoint.bin']);
  });

  it('replaces an existing file and writes strings as UTF-8', () => {
    writeFileSync(target, 'old contents');
    writeFileAtomic(target, 'nouveau é');

    expect(readFileSync(target, 'utf8')).toBe('nouveau é');
    expect(readdirSync(folder)).toEqual(['checkpoint.bin']);
  });

  it('writes an empty file', () => {
    writeFileAtomic(target, new Uint8Array(0));
    expect(readFileSync(target).length).toBe(0);
  });

  it('keeps the old file and no temporary file when the disk fills up', () => {
    writeFileSync(target, 'old contents');
    let calls = 0;
    // Writes a few bytes, then fails the way a full disk does.
    const fullDisk: AtomicFileSystem = {
      ...nodeFileSystem,
      writeSync: (fd, data, offset, length) => {
        calls++;
        if (calls > 1) throw errnoError('ENOSPC', 'no space left on device, write');
        return nodeFileSystem.writeSync(fd, data, offset, Math.min(length, 3));
      },
    };

    const error = expectWriteFailure(
      () => writeFileAtomic(target, new Uint8Array(100), fullDisk),
      `"${target}"`,
      'the disk is full (ENOSPC)',
      'nothing was overwritten',
    );
    expect(error.code).toBe('ENOSPC');
    expect(error.path).toBe(target);
    expect((error.cause as NodeJS.ErrnoException).code).toBe('ENOSPC');
    expect(readFileSync(target, 'utf8')).toBe('old contents');
    expect(readdirSync(folder)).toEqual(['checkpoint.bin']);
  });

  it('removes the temporary file when the rename fails', () => {
    writeFileSync(target, 'old contents');
    const failingRename: AtomicFileSystem = {
      ...nodeFileSystem,
      renameSync: () => {
        throw errnoError('EXDEV', 'cross-device link not permitted, rename');
      },
    };

    expectWriteFailure(() => writeFileAtomic(target, 'new', failingRename), 'EXDEV', 'nothing was overwritten');
    expect(readFileSync(target, 'utf8')).toBe('old contents');
    expect(readdirSync(folder)).toEqual(['checkpoint.bin']);
  });

  it('removes the temporary file when fsync fails', () => {
    const failingSync: AtomicFileSystem = {
      ...nodeFileSystem,
      fsyncSync: () => {
        throw errnoError('EIO', 'i/o error, fsync');
      },
    };

    expectWriteFailure(() => writeFileAtomic(target, 'new', failingSync), 'EIO');
    expect(readdirSync(folder)).toEqual([]);
  });

  it('says the folder is not writable on EACCES', () => {
    const readOnlyFolder: AtomicFileSystem = {
      ...nodeFileSystem,
      openSync: () => {
        throw errnoError('EACCES', 'permission denied, open');
      },
    };

    const error = expectWriteFailure(
      () => writeFileAtomic(target, 'new', readOnlyFolder),
      `the folder "${folder}" is not writable (EACCES)`,
    );
    expect(error.code).toBe('EACCES');
    expect(readdirSync(folder)).toEqual([]);
  });

  it('fails cleanly when the parent is a file', () => {
    const parentFile = join(folder, 'not-a-folder');
    writeFileSync(parentFile, 'x');

    const error = expectWriteFailure(() => writeFileAtomic(join(parentFile, 'model.bin'), 'data'), 'is a file, not a folder (ENOTDIR)');
    expect(error.code).toBe('ENOTDIR');
    expect(readdirSync(folder)).toEqual(['not-a-folder']);
  });

  it('says a missing folder must be created', () => {
    expectWriteFailure(() => writeFileAtomic(join(folder, 'missing', 'model.bin'), 'data'), 'does not exist (ENOENT); create it first');
  });

  it('succeeds when the folder cannot be fsynced', () => {
    // Windows and some file systems reject fsync on a folder, and the write must still succeed.
    const noFolderSync: AtomicFileSystem = {
      ...nodeFileSystem,
      openSync: (path, flags, mode) => {
        if (flags === 'r') throw errnoError('EISDIR', 'illegal operation on a directory, open');
        return nodeFileSystem.openSync(path, flags, mode);
      },
    };

    writeFileAtomic(target, 'new', noFolderSync);
    expect(readFileSync(target, 'utf8')).toBe('new');
  });
});
