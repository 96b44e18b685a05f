/**
 * Scheduler events. Every JobEvent is emitted twice: under its own type (`queued`, `started`,
 * `progress`, `done`, `failed`, `cancelled`) and under `job`, for listeners that want the
 * whole stream. Queue-wide events: `paused`, `resumed` (with the admin's `platform:userId`) and
 * `idle` (nothing waiting or running).
 *
 * Events may arrive before `enqueue()` resolves (a job that finds the queue empty starts at
 * once), so an adapter should key its state by job id, not by the receipt.
 */
import type { JobEvent, JobEventType } from '../jobs/types.js';

export type JobEventOf<T extends JobEventType> = Extract<JobEvent, { type: T }>;

/** The event that ends a job: exactly one per job. */
export type FinalJobEvent = JobEventOf<'done' | 'failed' | 'cancelled'>;

export interface SchedulerEvents {
  job: [event: JobEvent];
  /** A job's position or ETA at enqueue, and again whenever its position changes. */
  queued: [event: JobEventOf<'queued'>];
  started: [event: JobEventOf<'started'>];
  progress: [event: JobEventOf<'progress'>];
  done: [event: JobEventOf<'done'>];
  failed: [event: JobEventOf<'failed'>];
  /** `by` is the user id of whoever cancelled it. */
  cancelled: [event: JobEventOf<'cancelled'>];
  paused: [by: string];
  resumed: [by: string];
  idle: [];
}

export function isFinal(event: JobEvent): event is FinalJobEvent {
  return event.type === 'done' || event.type === 'failed' || event.type === 'cancelled';
}
