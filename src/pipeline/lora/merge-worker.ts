/**
 * A LoRA merge worker thread (started by merge-kernel.ts's KernelPool): merges the rows it is
 * handed (native kernel when the pool names its library, else `mergeRows`) in the
 * SharedArrayBuffers the pool shares, and answers when they are done.
 */
import { parentPort } from 'node:worker_threads';
import { type KernelTables, type KernelTask, runRows } from './merge-kernel.js';

interface Request {
  task: KernelTask;
  tables: KernelTables;
  r0: number;
  r1: number;
  /** The CPU op library with the native kernel (loaded once per worker), or none. */
  library?: string;
}

const port = parentPort;
if (!port) throw new Error('merge-worker.ts runs as a worker thread (merge-kernel.ts starts it)');
port.on('message', (m: Request) => {
  try {
    runRows(m.task, m.tables, m.r0, m.r1, m.library);
    port.postMessage({ ok: true });
  } catch (error) {
    port.postMessage({ error: String((error as Error)?.stack || error) });
  }
});
