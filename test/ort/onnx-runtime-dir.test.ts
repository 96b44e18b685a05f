/**
 * `models.onnxRuntimeDir`: ONNX Runtime run from a folder outside node_modules (where a CUDA provider
 * survives `npm ci`), loaded before onnxruntime-node by the process that runs sessions.
 */
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadOrtLibrary, onnxRuntimeDirFiles, useOnnxRuntimeDir } from '../../src/pipeline/ort/library.js';
import { probeProvider } from '../../src/pipeline/process/provider-probe.js';

const dirs: string[] = [];
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), 'atelier-ort-'));
  dirs.push(dir);
  return dir;
};
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** A folder holding a copy of onnxruntime-node's own library (what an operator would put there). */
function copiedRuntime(): string {
  const dir = tempDir();
  copyFileSync(loadOrtLibrary().path, join(dir, 'libonnxruntime.so.1'));
  return dir;
}

describe('models.onnxRuntimeDir', () => {
  it('runs onnxruntime-node on the folder’s library, not on its own copy', async () => {
    const dir = copiedRuntime();
    const { library } = await probeProvider({ provider: 'cpu', onnxRuntimeDir: dir });
    expect(library).toBe(join(dir, 'libonnxruntime.so.1'));
    // Without the key the same probe runs the package's own copy.
    expect((await probeProvider({ provider: 'cpu' })).library).toBe(loadOrtLibrary().path);
  });

  it('names the key and the files a CUDA folder lacks', async () => {
    const dir = copiedRuntime();
    expect(onnxRuntimeDirFiles('cuda')).toContain('libonnxruntime_providers_cuda.so');
    expect(() => useOnnxRuntimeDir(dir, 'cuda')).toThrow(
      `models.onnxRuntimeDir: ${dir} lacks libonnxruntime_providers_shared.so, libonnxruntime_providers_cuda.so`,
    );
    await expect(probeProvider({ provider: 'cuda', onnxRuntimeDir: tempDir() })).rejects.toThrow(
      /models\.onnxRuntimeDir: .* lacks libonnxruntime\.so\.1, libonnxruntime_providers_shared\.so/,
    );
  });

  it('refuses a file that is not ONNX Runtime, naming the key', () => {
    const dir = tempDir();
    copyFileSync('/bin/true', join(dir, 'libonnxruntime.so.1'));
    expect(() => useOnnxRuntimeDir(dir, 'cpu')).toThrow(/^models\.onnxRuntimeDir: .*libonnxruntime\.so\.1/);
  });
});
