/**
 * The fair GPU queue: round-robin over users, token-bucket limits, positions and ETAs, cancel,
 * timeouts, pause, and restart recovery. See `Scheduler` and `SchedulerOptions`. It runs jobs
 * through `JobRunner`s (./runner.ts); the product's is `JobExecutor` (./executor.ts, imported
 * from there: it brings sharp and the image code).
 * @module
 */
export { formatDuration, formatWindow } from './duration.js';
export { JobCrashedError, JobTimeoutError, QueuePausedError } from './errors.js';
export { DurationEstimator, jobUnits } from './eta.js';
export type { FinalJobEvent, JobEventOf, SchedulerEvents } from './events.js';
export { isFinal } from './events.js';
export { FairQueue, type FairQueueAddOptions, type QueuePosition } from './fair-queue.js';
export type { AdminList, SchedulerOptions } from './options.js';
export {
  isRunnerPool,
  type JobRunner,
  type RunContext,
  type RunnerPool,
  type RunProgress,
} from './runner.js';
export { type EnqueueReceipt, type QueueEntry, type RecoveryReport, Scheduler } from './scheduler.js';
