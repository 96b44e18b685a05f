/** What atelier-bench watches while a generation runs: GPU memory and the pipeline child's replies. */
import { type ChildProcess, spawn } from 'node:child_process';

/** Polls nvidia-smi for the GPU's memory in use; `peakGb` is the most seen since `reset()`. */
export class GpuMemory {
  #proc: ChildProcess | undefined;
  #peak = 0;
  #last = 0;

  start(): void {
    this.#proc = spawn(
      'nvidia-smi',
      ['--query-gpu=memory.used', '--format=csv,noheader,nounits', '-lms', '100'],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    // No nvidia-smi (a CPU smoke run): memory reads as 0.
    this.#proc.on('error', () => {});
    this.#proc.stdout?.setEncoding('utf8').on('data', (text: string) => {
      for (const line of text.split('\n')) {
        const mib = Number.parseFloat(line);
        if (Number.isFinite(mib)) {
          this.#last = mib;
          this.#peak = Math.max(this.#peak, mib);
        }
      }
    });
  }

  reset(): void {
    this.#peak = this.#last;
  }

  get peakGb(): number {
    return this.#peak / 1024;
  }

  get nowGb(): number {
    return this.#last / 1024;
  }

  stop(): void {
    this.#proc?.kill();
  }
}

export interface PingStats {
  count: number;
  p50: number;
  p99: number;
  max: number;
}

/** The nearest-rank percentile (p in 0..100) of unsorted samples. */
export function percentile(samples: number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)];
}

/**
 * Pings the pipeline child every `everyMs` whatever is outstanding, so the samples are the delays
 * of messages arriving at uniformly spread times: a step that blocks the child's thread for 180 ms
 * shows as pings waiting up to 180 ms, not as one slow sample. `stats(from, to)` keeps the pings
 * sent in a window (the denoising steps, without text encoding and VAE decode).
 */
export class PingMonitor {
  readonly #samples: { sent: number; ms: number }[] = [];
  readonly #pending = new Set<Promise<void>>();
  #failed = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    readonly ping: () => Promise<number>,
    readonly everyMs = 5,
  ) {}

  start(): void {
    this.#timer = setInterval(() => {
      const sent = performance.now();
      const p: Promise<void> = this.ping().then(
        (ms) => {
          this.#samples.push({ sent, ms });
        },
        () => {
          this.#failed++;
        },
      );
      this.#pending.add(p);
      void p.finally(() => this.#pending.delete(p));
    }, this.everyMs);
  }

  /** Stops pinging and waits for the answers still due (the child is free once its job is done). */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await Promise.all(this.#pending);
  }

  stats(from = -Infinity, to = Infinity): PingStats | undefined {
    const s = this.#samples.filter((p) => p.sent >= from && p.sent <= to).map((p) => p.ms);
    if (!s.length) return undefined;
    return { count: s.length, p50: percentile(s, 50), p99: percentile(s, 99), max: Math.max(...s) };
  }

  get failed(): number {
    return this.#failed;
  }
}

/** One line of `nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits`. */
export interface ComputeApp {
  pid: number;
  mib: number;
}

/** The processes nvidia-smi lists with their GPU memory (MiB); lines it cannot read are skipped. */
export function parseComputeApps(text: string): ComputeApp[] {
  const out: ComputeApp[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*(\d+)\s*,\s*(\d+(?:\.\d+)?)\s*$/.exec(line);
    if (m) out.push({ pid: Number(m[1]), mib: Number(m[2]) });
  }
  return out;
}

/**
 * GPU memory per process (nvidia-smi's compute-apps, polled every 100 ms): the pipeline child's own
 * peak, whatever else holds memory on the GPU (the card-emulating ballast, other processes). A
 * process nvidia-smi never listed (no NVIDIA driver, a container that hides PIDs) reads undefined.
 */
export class ProcessGpuMemory {
  #proc: ChildProcess | undefined;
  readonly #last = new Map<number, number>();
  readonly #peak = new Map<number, number>();

  start(): void {
    this.#proc = spawn(
      'nvidia-smi',
      ['--query-compute-apps=pid,used_memory', '--format=csv,noheader,nounits', '-lms', '100'],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    this.#proc.on('error', () => {});
    let partial = '';
    this.#proc.stdout?.setEncoding('utf8').on('data', (text: string) => {
      const lines = (partial + text).split('\n');
      partial = lines.pop() ?? '';
      this.record(parseComputeApps(lines.join('\n')));
    });
  }

  /** Takes readings (what the poller does with each line; tests call it directly). */
  record(apps: ComputeApp[]): void {
    for (const { pid, mib } of apps) {
      this.#last.set(pid, mib);
      this.#peak.set(pid, Math.max(this.#peak.get(pid) ?? 0, mib));
    }
  }

  /** Peaks start again from each process's last reading. */
  reset(): void {
    this.#peak.clear();
    for (const [pid, mib] of this.#last) this.#peak.set(pid, mib);
  }

  /** GiB: the most `pid` held since reset(). */
  peakGb(pid: number | undefined): number | undefined {
    const mib = pid === undefined ? undefined : this.#peak.get(pid);
    return mib === undefined ? undefined : mib / 1024;
  }

  nowGb(pid: number | undefined): number | undefined {
    const mib = pid === undefined ? undefined : this.#last.get(pid);
    return mib === undefined ? undefined : mib / 1024;
  }

  stop(): void {
    this.#proc?.kill();
  }
}
