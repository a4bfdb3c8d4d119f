#!/usr/bin/env node
// Entry point of the `rwkvify` command. The sources are TypeScript; tsx compiles them on load so
// the command never runs a stale build.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');
