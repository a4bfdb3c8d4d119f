// Entry point of the `rwkvify` command (bin/rwkvify.js imports this file); see program.ts.
import { main } from './program.js';

// `rwkvify generate | head` closes the pipe early; that ends the output, it is not an error.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(0);
  throw error;
});

process.exitCode = await main(process.argv);
