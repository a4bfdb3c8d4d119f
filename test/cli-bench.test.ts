// `rwkvify bench kernels` end to end: records, JSON shape and bad backend names.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..');
const cli = join(root, 'bin', 'rwkvify.js');

function run(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [cli, ...args], { cwd: root, encoding: 'utf8', timeout: 120_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('rwkvify bench kernels', () => {
  it('prints JSON records for one backend', () => {
    const result = run(['bench', 'kernels', '--backend', 'wasm', '--quick', '--json']);
    expect(result.status).toBe(0);
    const records = JSON.parse(result.stdout) as Array<Record<string, unknown>>;
    expect(records.map((r) => r.kernel)).toEqual(['matmul', 'matmul', 'matmul', 'wkv7']);
    for (const r of records) {
      expect(r.backend).toBe('wasm');
      expect(Object.keys(r).sort()).toEqual(['backend', 'gflops', 'kernel', 'maxAbsError', 'shape', 'usPerTokenHead']);
      expect(r.maxAbsError as number).toBeLessThan(1e-3);
    }
    expect(records[0].gflops as number).toBeGreaterThan(0);
    expect(records[3].usPerTokenHead as number).toBeGreaterThan(0);
  });

  it('rejects an unknown backend with exit code 2', () => {
    const result = run(['bench', 'kernels', '--backend', 'cuda', '--quick']);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('cuda');
  });

  it('rejects webgpu for training commands', () => {
    const result = run(['--backend', 'webgpu', 'tokenize', 'hello']);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('--backend webgpu: WebGPU returns results only asynchronously');
  });
});
