// Entry point of the `rwkvify` command (bin/rwkvify.js imports this file); see program.ts.
import { main } from './program.js';

process.exitCode = await main(process.argv);
