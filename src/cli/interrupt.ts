// Stopping long runs cleanly: the first Ctrl-C (or SIGTERM, which timeout, systemd and container
// stops send) asks the run to stop after its current step and save; a second one exits at once.

/** Exit code of a run stopped with Ctrl-C after saving its checkpoint (128 + SIGINT, as shells use). */
export const INTERRUPTED_EXIT_CODE = 130;

export interface InterruptMessages {
  /** Printed on the first signal: what the run does before it stops. */
  first: string;
  /** Printed on the second signal, just before exiting: what is kept on disk. */
  second: string;
}

/**
 * Runs `work` with SIGINT and SIGTERM handlers installed; `work` polls `stopRequested` between
 * steps. The handlers are removed when `work` settles.
 */
export async function withInterruptHandling<T>(messages: InterruptMessages, work: (stopRequested: () => boolean) => Promise<T>): Promise<T> {
  let stopRequested = false;
  const onInterrupt = (): void => {
    if (stopRequested) {
      process.stderr.write(`\n${messages.second}\n`);
      process.exit(INTERRUPTED_EXIT_CODE);
    }
    stopRequested = true;
    process.stderr.write(`\n${messages.first}\n`);
  };
  process.on('SIGINT', onInterrupt);
  process.on('SIGTERM', onInterrupt);
  try {
    return await work(() => stopRequested);
  } finally {
    process.off('SIGINT', onInterrupt);
    process.off('SIGTERM', onInterrupt);
  }
}
