/**
 * The `gateway` role (`atelier serve --role gateway`, or config `cluster.role: gateway`): the chat
 * surfaces, the scheduler and the store as in `serve`, but no pipeline: the scheduler's runners
 * are the cluster's live workers (src/cluster/gateway.ts), one per job they can take at once, so
 * fairness, limits and their messages are exactly the embedded mode's. Jobs, progress and results
 * travel through BullMQ on Redis (REDIS_URL).
 */
import { ClusterGateway, type ClusterGatewayOptions, redactRedisUrl } from '../cluster/index.js';
import type { AtelierConfig } from '../config/index.js';
import { ConfigError, PipelineError } from '../errors.js';
import { REFERENCE_MODEL_DEFAULTS } from '../jobs/validate.js';
import type { Logger } from '../log.js';
import type { Pipeline, PipelineInfo } from '../pipeline/types.js';
import { Scheduler } from '../scheduler/index.js';
import { openStore } from '../store/index.js';
import { type AtelierApp, appLogger } from './core.js';
import { schedulerOptions, validationOptionsFromConfig } from './options.js';
import type { RoleHooks } from './roles.js';
import { runSurfaces } from './serve.js';

export interface GatewayApp extends AtelierApp {
  cluster: ClusterGateway;
}

export interface CreateGatewayOptions {
  logger?: Logger;
  /** Overrides for tests. */
  cluster?: Pick<ClusterGatewayOptions, 'watchIntervalMs' | 'cancelGraceMs'>;
  /** How long `load()` waits for Redis before letting the surfaces start without it. @default 5000 */
  connectWaitMs?: number;
}

/** REDIS_URL, or a ConfigError saying where to set it. */
export function requireRedisUrl(config: AtelierConfig, role: string): string {
  const url = config.secrets.redisUrl;
  if (!url) {
    throw new ConfigError(
      'REDIS_URL',
      `config: the ${role} role needs Redis: set REDIS_URL (e.g. redis://127.0.0.1:6379) in the environment or in .env`,
    );
  }
  return url;
}

/**
 * What the gateway knows of the model: the first live worker's (model name, default steps and
 * guidance), else the reference defaults until a worker has come. It generates nothing.
 */
function workersModel(cluster: ClusterGateway): Pipeline {
  return {
    async load() {},
    async dispose() {},
    info(): PipelineInfo {
      const card = cluster.workers[0];
      return {
        model: card?.model ?? '(no worker yet)',
        executionProvider: 'cluster',
        components: [],
        defaults: card?.defaults ?? REFERENCE_MODEL_DEFAULTS,
        ...(card?.models ? { models: card.models } : {}),
      };
    },
    async generate() {
      throw new PipelineError('the gateway runs no pipeline: jobs go to the workers');
    },
  };
}

export async function createGatewayApp(
  config: AtelierConfig,
  options: CreateGatewayOptions = {},
): Promise<GatewayApp> {
  const redisUrl = requireRedisUrl(config, 'gateway');
  const logger = options.logger ?? appLogger(config);
  const store = openStore({ dataDir: config.dataDir });
  const cluster = new ClusterGateway({
    redisUrl,
    prefix: config.cluster.prefix,
    store,
    logger,
    ...options.cluster,
  });
  const scheduler = new Scheduler(store, schedulerOptions(config, cluster, logger));
  const pipeline = workersModel(cluster);
  let connecting: Promise<void> | undefined;
  // Redis down at start must not keep the chat surfaces down: the scheduler takes jobs anyway
  // (they wait, with no runner, until workers are seen) and the cluster connects when it can.
  const load = async () => {
    if (connecting) return;
    connecting = cluster.start().then(
      () =>
        logger.info(
          { redis: redactRedisUrl(redisUrl), workers: cluster.workers.length },
          'gateway: connected',
        ),
      (error: unknown) =>
        logger.error({ err: (error as Error).message }, 'gateway: could not start the cluster'),
    );
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<'slow'>((resolve) => {
      timer = setTimeout(() => resolve('slow'), options.connectWaitMs ?? 5000);
    });
    if ((await Promise.race([connecting, waited])) === 'slow') {
      logger.warn(
        { redis: redactRedisUrl(redisUrl) },
        'gateway: Redis not reachable yet; jobs are taken and wait for a worker',
      );
    }
    clearTimeout(timer);
  };
  const resume = async () => {
    await load();
    return scheduler.start();
  };
  return {
    config,
    logger,
    store,
    scheduler,
    pipeline,
    cluster,
    validation: () => {
      // The workers' models (models.list), as the first live worker serves them.
      const models = pipeline.info().models;
      return validationOptionsFromConfig(
        config,
        pipeline.info().defaults,
        models?.length ? { models } : undefined,
      );
    },
    load,
    resume,
    start: resume,
    async close() {
      // Jobs running on workers go on; the next start collects their results.
      cluster.detach();
      await scheduler.stop();
      await cluster.close();
      store.close();
    },
  };
}

/** Like `runServe`, on a gateway core. */
export async function runGateway(
  config: AtelierConfig,
  hooks: RoleHooks,
  options: CreateGatewayOptions = {},
): Promise<void> {
  await runSurfaces(await createGatewayApp(config, options), hooks);
}
