/**
 * The distributed mode over BullMQ on Redis: the gateway's `RunnerPool` (./gateway.ts) and the
 * worker (./worker.ts), with the Redis layout in ./keys.ts and the heartbeat in ./registry.ts.
 * @module
 */
export { ClusterGateway, type ClusterGatewayOptions, type ClusterJobOutcome } from './gateway.js';
export { type ClusterKeys, clusterKeys } from './keys.js';
export { connectRedis, redactRedisUrl } from './redis.js';
export { readWorkers, type WorkerCard } from './registry.js';
export { type ClusterStatus, clusterStatus } from './status.js';
export { ClusterWorker, type ClusterWorkerOptions } from './worker.js';
