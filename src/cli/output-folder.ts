// Creating the output folder of a command (--out). Node's `mkdirSync(path, { recursive: true })`
// retries forever when mkdir(2) fails with ENOENT although the parent exists, which is what /proc
// returns (seen with Node 20.20 on Linux). So these functions create one missing folder at a time,
// each with a plain mkdir, and turn every failure into an error that names the path.

import { mkdirSync, rmSync, statSync, writeFileSync, type Stats } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

import { InputError } from '../data/input-error.js';

/** A folder that could not be created; the message names the path and the cause. */
export class FolderCreationError extends Error {
  override readonly name = 'FolderCreationError';
}

function reasonOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function errorCode(error: unknown): string | undefined {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * Returns the folders to create for `target`, outermost first: `target` and each missing
 * ancestor. Throws a FolderCreationError when an existing ancestor is not a folder.
 */
function missingFolders(target: string): string[] {
  const missing: string[] = [];
  let current = target;
  for (;;) {
    let stats: Stats | undefined;
    try {
      stats = statSync(current, { throwIfNoEntry: false });
    } catch (error) {
      // ENOTDIR means a component above `current` is a file; the walk up reaches it and reports it.
      if (errorCode(error) !== 'ENOTDIR') throw new FolderCreationError(`cannot inspect "${current}": ${reasonOf(error)}`);
    }
    if (stats !== undefined) {
      if (!stats.isDirectory()) throw new FolderCreationError(`"${current}" is a file, not a folder`);
      return missing;
    }
    missing.unshift(current);
    const parent = dirname(current);
    if (parent === current) return missing;
    current = parent;
  }
}

/** Returns true when `path` is an existing folder. */
function isFolder(path: string): boolean {
  try {
    return statSync(path, { throwIfNoEntry: false })?.isDirectory() === true;
  } catch {
    return false;
  }
}

/**
 * Creates the folder `path` and its missing ancestors, and returns its absolute path. Fails at
 * once, with a FolderCreationError naming the folder that could not be made and why, where
 * recursive mkdir would hang or report only the last errno.
 */
export function makeFolders(path: string): string {
  const target = resolve(path);
  for (const folder of missingFolders(target)) {
    try {
      mkdirSync(folder);
    } catch (error) {
      if (isFolder(folder)) continue; // another process created it in the meantime
      const parent = dirname(folder);
      if (errorCode(error) === 'ENOENT' && isFolder(parent)) {
        throw new FolderCreationError(
          `mkdir "${folder}" failed with ENOENT although "${parent}" exists, which means the file system there (such as /proc) does not allow new folders`,
        );
      }
      throw new FolderCreationError(reasonOf(error));
    }
  }
  return target;
}

/**
 * Creates the folder that a command option names (`--out`, or the option given as `option`) and
 * returns its absolute path. A failure is an InputError naming the option, the path and the cause.
 */
export function createOutputFolder(path: string, option = '--out'): string {
  let folder: string;
  try {
    folder = makeFolders(path);
  } catch (error) {
    if (!(error instanceof FolderCreationError)) throw error;
    throw new InputError(`cannot create the ${option} folder "${resolve(path)}": ${error.message}; choose another ${option} in a folder you can write to`);
  }
  try {
    probeWritable(folder);
  } catch (error) {
    throw new InputError(`cannot write to the ${option} folder "${folder}": ${reasonOf(error)}; choose another ${option} in a folder you can write to`);
  }
  return folder;
}

/**
 * Writes and removes a small file in `dir`, so an unwritable folder fails before any work. Mode
 * bits alone cannot tell: root ignores them, and read-only mounts or immutable folders refuse
 * root too.
 */
export function probeWritable(dir: string): void {
  const probe = join(dir, `.rwkvify-write-probe-${process.pid}`);
  writeFileSync(probe, 'probe');
  rmSync(probe);
}
