/**
 * Where the cluster's state lives in Redis, beside BullMQ's own keys: one prefix per Atelier (so
 * two bots can share one Redis), one BullMQ queue, and a few keys and channels of our own.
 *
 * | key / channel                   | written by | what                                              |
 * | ------------------------------- | ---------- | ------------------------------------------------- |
 * | `<prefix>:jobs:*`               | BullMQ     | the queue: waiting, active (locked), completed     |
 * | `<prefix>:workers`              | workers    | a set of worker ids (stale ids pruned by readers)  |
 * | `<prefix>:worker:<id>`          | workers    | a worker's card (JSON), expires unless heartbeated |
 * | `<prefix>:result:<jobId>`       | workers    | a finished job's images (hash of PNG bytes)        |
 * | `<prefix>:cancel:<jobId>`       | gateway    | the job is cancelled (a worker checks it)          |
 * | channel `<prefix>:workers`      | workers    | a worker came or left: re-read the set now         |
 * | channel `<prefix>:progress`     | workers    | step k/n and previews (lossy by design)            |
 * | channel `<prefix>:cancel`       | gateway    | a job id to stop now                               |
 * | channel `__keyevent@<db>__:expired` | Redis  | a key expired: a worker's card means it is gone    |
 */
export const QUEUE_NAME = 'jobs';

export interface ClusterKeys {
  /** BullMQ's `prefix` option. */
  prefix: string;
  workers: string;
  worker(id: string): string;
  result(jobId: string): string;
  cancel(jobId: string): string;
  channels: { workers: string; progress: string; cancel: string };
}

export function clusterKeys(prefix: string): ClusterKeys {
  return {
    prefix,
    workers: `${prefix}:workers`,
    worker: (id) => `${prefix}:worker:${id}`,
    result: (jobId) => `${prefix}:result:${jobId}`,
    cancel: (jobId) => `${prefix}:cancel:${jobId}`,
    channels: { workers: `${prefix}:workers`, progress: `${prefix}:progress`, cancel: `${prefix}:cancel` },
  };
}

/** How long result and cancel keys outlive a gateway that never collected them. */
export const LEFTOVER_TTL_SECONDS = 24 * 3600;
