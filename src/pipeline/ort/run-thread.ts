/**
 * One OS thread per session for its runs. ONNX Runtime's CUDA provider keeps its CUDA graphs (and
 * cuBLAS handles) per thread: runs spread over koffi's pool of async threads would capture the same
 * graph once per thread, each after warm-up runs of its own. A dedicated worker thread makes every
 * run of a session come from one thread, while the caller's event loop stays free.
 *
 * The worker is plain JavaScript (no TypeScript loader needed there): it loads the same library,
 * decodes the two slots it calls, and answers each request with the OrtStatus* of the call, which
 * the caller turns into an OrtError (a status can be read from any thread).
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { SLOTS } from './api.js';
import type { Handle, OrtRuntime } from './runtime.js';

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const koffi = require(workerData.koffi);
const lib = koffi.load(workerData.library);
const base = lib.func('void* OrtGetApiBase()')();
const getApi = koffi.decode(koffi.decode(base, 0, 'void*'), koffi.proto('void* AtelierRunThreadGetApi(uint32_t v)'));
const api = getApi(workerData.apiVersion);
const slot = (index, decl) => koffi.decode(koffi.decode(api, index * 8, 'void*'), koffi.proto(decl));
const run = slot(workerData.run, 'void* AtelierRunThreadRun(void* s, void* o, void* b)');
const sync = slot(workerData.sync, 'void* AtelierRunThreadSync(void* b)');
parentPort.on('message', (m) => {
  let status = null;
  try {
    if (m.op === 'run') status = run(m.session, m.options, m.binding);
    else status = sync(m.binding);
    parentPort.postMessage({ id: m.id, status: status ?? null });
  } catch (error) {
    parentPort.postMessage({ id: m.id, error: String(error && error.message || error) });
  }
});
`;

interface Reply {
  id: number;
  status?: Handle | null;
  error?: string;
}

export class RunThread {
  readonly #worker: Worker;
  readonly #pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  #next = 0;

  constructor(private readonly rt: OrtRuntime) {
    const require = createRequire(import.meta.url);
    this.#worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: {
        koffi: require.resolve('koffi'),
        library: rt.library.path,
        apiVersion: rt.library.apiVersion,
        run: SLOTS.RunWithBinding[0],
        sync: SLOTS.SynchronizeBoundOutputs[0],
      },
    });
    this.#worker.on('message', (reply: Reply) => {
      const waiter = this.#pending.get(reply.id);
      this.#pending.delete(reply.id);
      waiter?.resolve(reply);
    });
    this.#worker.on('error', (error) => this.#failAll(error));
    this.#worker.on('exit', (code) =>
      this.#failAll(new Error(`The ONNX Runtime run thread exited (${code})`)),
    );
    // An idle run thread must not keep the process alive.
    this.#worker.unref();
  }

  /** RunWithBinding on the session's thread. */
  run(session: Handle, runOptions: Handle, binding: Handle): Promise<void> {
    return this.#call('RunWithBinding', { op: 'run', session, options: runOptions, binding });
  }

  /** SynchronizeBoundOutputs on the session's thread (the stream its runs used). */
  synchronize(binding: Handle): Promise<void> {
    return this.#call('SynchronizeBoundOutputs', { op: 'sync', binding });
  }

  async terminate(): Promise<void> {
    await this.#worker.terminate();
  }

  async #call(name: string, message: Record<string, unknown>): Promise<void> {
    const id = this.#next++;
    this.#worker.ref();
    try {
      const reply = await new Promise<Reply>((resolve, reject) => {
        this.#pending.set(id, { resolve, reject });
        this.#worker.postMessage({ id, ...message });
      });
      if (reply.error) throw new Error(`${name} on the run thread: ${reply.error}`);
      this.rt.check(name, reply.status);
    } finally {
      if (this.#pending.size === 0) this.#worker.unref();
    }
  }

  #failAll(error: Error): void {
    for (const { reject } of this.#pending.values()) reject(error);
    this.#pending.clear();
  }
}
