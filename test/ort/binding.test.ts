/**
 * The C-API binding's own contract, on the CPU provider: it refuses any library but ONNX Runtime
 * 1.29.0 in one line, turns ONNX Runtime's failures into typed errors with its message, keeps
 * device tensors where they are across runs, runs off the event loop, and releases what it makes.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BuiltModel, GraphBuilder } from '../../src/pipeline/onnx/graph.js';
import {
  CapiSession,
  loadOrtLibrary,
  ORT_VERSION,
  OrtError,
  OrtLibraryError,
} from '../../src/pipeline/ort/index.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'atelier-ort-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** y = x·w + x: a matmul big enough to take a while on the CPU, and an input the output depends on. */
function matmulModel(n: number): BuiltModel {
  const g = new GraphBuilder('mm');
  const x = g.input('x', 'float32', [n, n]);
  const w = g.constant(
    'w',
    'float32',
    [n, n],
    Float32Array.from({ length: n * n }, (_, i) => ((i * 7) % 13) / 13),
  );
  g.output(g.op('Add', [g.op('MatMul', [x, w]), x]), 'y', 'float32', [n, n]);
  return g.build();
}

/** A shared library that looks like ONNX Runtime of another version: OrtGetApiBase and nothing else. */
function fakeOrt(version: string): string {
  const source = join(dir, `fake-${version}.c`);
  const library = join(dir, `libfake-${version}.so`);
  writeFileSync(
    source,
    `#include <stddef.h>
static const void* get_api(unsigned v) { (void)v; return NULL; }
static const char* get_version(void) { return "${version}"; }
static struct { const void* (*get_api)(unsigned); const char* (*get_version)(void); } base = { get_api, get_version };
const void* OrtGetApiBase(void) { return &base; }
`,
  );
  execFileSync('cc', ['-shared', '-fPIC', '-o', library, source]);
  return library;
}

describe('loading ONNX Runtime', () => {
  it('takes onnxruntime-node’s own library at the version the slot table is for', () => {
    expect(loadOrtLibrary().version).toBe(ORT_VERSION);
  });

  it('refuses another version in one line naming the file, its version and the one needed', () => {
    const path = fakeOrt('1.30.0');
    expect(() => loadOrtLibrary(path)).toThrow(OrtLibraryError);
    expect(() => loadOrtLibrary(path)).toThrow(
      `${path} is ONNX Runtime 1.30.0; Atelier's C-API path needs exactly 1.29.0`,
    );
  });

  it('refuses a library that is not ONNX Runtime, and a missing one', () => {
    const source = join(dir, 'other.c');
    writeFileSync(source, 'int answer(void) { return 42; }\n');
    const other = join(dir, 'libother.so');
    execFileSync('cc', ['-shared', '-fPIC', '-o', other, source]);
    expect(() => loadOrtLibrary(other)).toThrow(`${other} is not ONNX Runtime: it exports no OrtGetApiBase`);
    expect(() => loadOrtLibrary(join(dir, 'absent.so'))).toThrow("ONNX Runtime's C library is missing");
  });
});

describe('CapiSession', () => {
  it('reports ONNX Runtime’s failures as OrtError with its code and message', async () => {
    const error = await CapiSession.create(new Uint8Array([1, 2, 3, 4]), { provider: 'cpu' }).catch((e) => e);
    expect(error).toBeInstanceOf(OrtError);
    expect(error.call).toBe('CreateSessionFromArray');
    expect(error.code).toBe('INVALID_PROTOBUF');
    expect(error.message).toMatch(/^CreateSessionFromArray: .*protobuf/i);

    const session = await CapiSession.create(matmulModel(4), { provider: 'cpu' });
    try {
      const t = session.deviceTensor('float32', [4, 4]);
      expect(() => session.binding().bindInput('nope', t)).toThrow(OrtError);
      expect(() => t.write(new Float32Array(3))).toThrow('Writing 12 bytes into a tensor of 64');
      await expect(
        session.run({ x: { type: 'float32', dims: [4, 5], data: new Float32Array(20) } }),
      ).rejects.toThrow(/RunWithBinding: .*(dimension|shape)/i);
    } finally {
      session.release();
    }
  });

  it('keeps bound tensors in place: writing new inputs between runs gives the new outputs', async () => {
    const n = 8;
    const session = await CapiSession.create(matmulModel(n), { provider: 'cpu' });
    try {
      const x = session.deviceTensor('float32', [n, n]);
      const y = session.deviceTensor('float32', [n, n]);
      const binding = session.binding().bindInput('x', x).bindOutput('y', y);
      for (let round = 0; round < 3; round++) {
        const input = Float32Array.from({ length: n * n }, () => Math.random() * 2 - 1);
        x.write(input);
        await binding.run();
        const expected = await session.run({ x: { type: 'float32', dims: [n, n], data: input } });
        expect(y.read()).toEqual(expected.y.data);
      }
      // A prefix read is what previews use.
      expect((y.read(4 * n) as Float32Array).length).toBe(n);
    } finally {
      session.release();
    }
  });

  it('runs on a worker thread: the event loop turns while a run computes', async () => {
    const n = 1024;
    const session = await CapiSession.create(matmulModel(n), { provider: 'cpu', intraOpThreads: 1 });
    try {
      const feeds = {
        x: { type: 'float32' as const, dims: [n, n], data: new Float32Array(n * n).fill(0.5) },
      };
      await session.run(feeds);
      // A run that blocked the thread would be settled before any setImmediate callback could fire.
      const tick = new Promise((resolve) => setImmediate(() => resolve('event loop')));
      const run = session.run(feeds);
      const first = await Promise.race([tick, run.then(() => 'run')]);
      expect(first).toBe('event loop');
      // Released while the run is still on its worker thread: freed once it returns, no crash.
      session.release();
      await expect(run).resolves.toHaveProperty('y');
      expect(() => session.deviceTensor('float32', [1])).toThrow('This session was released');
    } finally {
      session.release();
    }
  });

  it('releases what it makes: 10,000 rounds of tensors, bindings and runs do not grow the process', async () => {
    const n = 32;
    const session = await CapiSession.create(matmulModel(n), { provider: 'cpu' });
    const input = { x: { type: 'float32' as const, dims: [n, n], data: new Float32Array(n * n).fill(1) } };
    const round = async () => {
      const a = session.deviceTensor('float32', [n, n]);
      const b = session.deviceTensor('float32', [n, n]);
      a.write(input.x.data);
      const binding = session.binding().bindInput('x', a).bindOutput('y', b);
      await binding.run({ graphId: 1 });
      binding.release();
      a.release();
      b.release();
      await session.run(input);
    };
    try {
      for (let i = 0; i < 1000; i++) await round();
      const before = process.memoryUsage().rss;
      for (let i = 0; i < 10_000; i++) await round();
      const grown = process.memoryUsage().rss - before;
      // Each round allocates 3 tensors of 4 KB plus a binding and run options: leaking them would
      // add well over 120 MB; what remains is allocator and V8 noise.
      expect(grown).toBeLessThan(24 * 1024 * 1024);
    } finally {
      session.release();
    }
    for (let i = 0; i < 200; i++) (await CapiSession.create(matmulModel(4), { provider: 'cpu' })).release();
  }, 120_000);
});
