/**
 * What `atelier doctor` shows of the cluster: whether Redis answers (its version), the workers
 * alive (host, device, model, busy) and BullMQ's queue depth. One short-lived connection that
 * gives up at once instead of retrying; the URL is shown only redacted.
 */
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { clusterKeys, QUEUE_NAME } from './keys.js';
import { readWorkers, type WorkerCard } from './registry.js';

export interface ClusterStatus {
  redisVersion: string;
  workers: WorkerCard[];
  counts: Record<string, number>;
}

export async function clusterStatus(url: string, prefix: string, timeoutMs = 3000): Promise<ClusterStatus> {
  const redis = new Redis(url, {
    connectionName: 'atelier:doctor',
    lazyConnect: true,
    connectTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  redis.on('error', () => {});
  try {
    await redis.connect();
    const info = await redis.info('server');
    const redisVersion = /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown';
    const keys = clusterKeys(prefix);
    const workers = await readWorkers(redis, keys);
    const queue = new Queue(QUEUE_NAME, { connection: redis, prefix: keys.prefix });
    try {
      const counts = await queue.getJobCounts('wait', 'active', 'completed', 'failed');
      return { redisVersion, workers, counts };
    } finally {
      await queue.close();
    }
  } finally {
    redis.disconnect();
  }
}
