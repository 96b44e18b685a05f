/**
 * The composition: how config, store, scheduler, executors and pipeline processes make a running
 * Atelier, per role (./roles.ts). Only the entry points import it (src/cli, bin/, tests and
 * benchmarks); commands/ declare what they need of it (commands/core.ts) and adapters/ receive it.
 * @module
 */
export { type AtelierApp, appLogger, type CreateAppOptions, createApp } from './core.js';
export { type CreateGatewayOptions, createGatewayApp, type GatewayApp, runGateway } from './gateway.js';
export { engineOptions, pipelineOptions, schedulerOptions, validationOptionsFromConfig } from './options.js';
export type { ChatSurfaces, Role, RoleHooks, ServeContext } from './roles.js';
export { runServe } from './serve.js';
export { type RunWorkerOptions, runWorker } from './worker.js';
