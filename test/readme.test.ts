// Runs the TypeScript examples of README.md exactly as written, so the README cannot drift from
// the library.
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..');
const readme = readFileSync(join(root, 'README.md'), 'utf8');
const examples = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);

describe('README', () => {
  it('has at least one TypeScript example', () => {
    expect(examples.length).toBeGreaterThan(0);
  });

  examples.forEach((code, i) => {
    it(`example ${i + 1} runs`, () => {
      // The examples import from './src/…', so the file must sit in the repository root.
      const file = join(root, `.readme-example-${process.pid}-${i}.ts`);
      writeFileSync(file, code);
      try {
        execFileSync(process.execPath, ['--import', 'tsx', file], { cwd: root, stdio: 'pipe', timeout: 60_000 });
      } finally {
        rmSync(file, { force: true });
      }
    });
  });
});
