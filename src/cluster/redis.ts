/**
 * Redis connections from `REDIS_URL` (a secret: it may hold a password). Only `redactRedisUrl`'s
 * form of it is ever logged.
 */
import { Redis } from 'ioredis';

export interface RedisConnectOptions {
  /** Shown in `CLIENT LIST` (`atelier:gateway`, `atelier:worker`). */
  name: string;
}

/**
 * A connection for BullMQ and our own keys. Commands wait while Redis is unreachable and are sent
 * when it is back (`maxRetriesPerRequest: null`, which BullMQ's blocking workers require).
 */
export function connectRedis(url: string, options: RedisConnectOptions): Redis {
  return new Redis(url, {
    connectionName: options.name,
    maxRetriesPerRequest: null,
    // Back off to at most 2 s between attempts: a restarted Redis is found again quickly.
    retryStrategy: (times) => Math.min(2000, 50 * 2 ** Math.min(times, 6)),
  });
}

/** `redis://user:****@host:6379/0`: where, never the password. */
export function redactRedisUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '****';
    return parsed.toString();
  } catch {
    return '(unparsable REDIS_URL)';
  }
}

/** Quits a connection, or drops it when Redis cannot be reached (quit would wait for it). */
export async function closeRedis(redis: Redis): Promise<void> {
  if (redis.status === 'end') return;
  if (redis.status !== 'ready') {
    redis.disconnect();
    return;
  }
  await redis.quit().catch(() => redis.disconnect());
}
