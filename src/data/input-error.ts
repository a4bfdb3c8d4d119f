// Errors caused by what the user passed in (paths, option values, file contents) rather than by a
// bug. The command line prints their message alone and exits with code 2; any other error is a bug
// and is printed with its stack.

/** An invalid path, option value or input file. The message states what is wrong and what to do. */
export class InputError extends Error {
  override readonly name = 'InputError';
}
