/**
 * The fair GPU queue: round-robin over users, token-bucket limits, positions and ETAs, cancel,
 * timeouts, pause, and restart recovery. See `Scheduler` and `SchedulerOptions`.
 * @module
 */
export { formatDuration, formatWindow } from './duration.js';
export { JobCrashedError, JobTimeoutError, QueuePausedError } from './errors.js';
export { DurationEstimator, jobUnits } from './eta.js';
export type { FinalJobEvent, JobEventOf, SchedulerEvents } from './events.js';
export { isFinal } from './events.js';
export { FairQueue, type FairQueueAddOptions, type QueuePosition } from './fair-queue.js';
export type { AdminList, SchedulerOptions } from './options.js';
export { type EnqueueReceipt, type QueueEntry, type RecoveryReport, Scheduler } from './scheduler.js';
