/**
 * The seam between the scheduler and what runs a job: the scheduler owns one `JobRunner` per
 * pipeline (GPU) and knows nothing else of it. The product's runner is `JobExecutor`
 * (./executor.ts); tests and benchmarks pass their own.
 */
import type { JobRecord, JobResult } from '../jobs/types.js';
import type { Residency } from '../pipeline/types.js';

/** What a runner reports while a job runs; the scheduler turns it into `progress` events. */
export interface RunProgress {
  step: number;
  total: number;
  /** An encoded preview image (WebP/JPEG) for progress messages. */
  preview?: Uint8Array;
}

export interface RunContext {
  /** Aborted on cancel, timeout or shutdown; the runner stops as soon as it can. */
  signal: AbortSignal;
  onProgress(progress: RunProgress): void;
}

/** Turns one job into its result. The scheduler owns one runner per pipeline. */
export interface JobRunner {
  run(job: JobRecord, context: RunContext): Promise<JobResult>;
  /**
   * Which models its pipeline holds loaded (several models, config `models.list`): a job of another
   * model loads it first, which the ETA counts. Absent or undefined: one model, always loaded.
   */
  residency?(): Residency | undefined;
}

/**
 * Runners that come and go (the gateway's: one per live worker). The scheduler starts a job only
 * on a runner `current()` lists, reads it again on every change, and never runs more jobs at once
 * than it lists. A runner that leaves while it runs a job finishes that job and is not used again.
 */
export interface RunnerPool {
  /** The runners jobs may start on now. */
  current(): readonly JobRunner[];
  /** Calls `listener` after `current()` changed; returns the unsubscribe. */
  subscribe(listener: () => void): () => void;
}

export function isRunnerPool(runners: readonly JobRunner[] | RunnerPool): runners is RunnerPool {
  return !Array.isArray(runners) && typeof (runners as RunnerPool).current === 'function';
}
