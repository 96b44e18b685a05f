/**
 * The `serve` role, what `atelier serve` and `npm start` run: the whole bot in one process. The
 * core is created and its model loaded, the chat surfaces run on it until they resolve (SIGINT or
 * SIGTERM), then the core closes (scheduler, pipeline processes, store) whatever happened. The
 * `gateway` role runs its own core the same way (`runSurfaces`).
 */
import type { AtelierConfig } from '../config/index.js';
import { type AtelierApp, type CreateAppOptions, createApp } from './core.js';
import type { RoleHooks } from './roles.js';

export async function runServe(
  config: AtelierConfig,
  hooks: RoleHooks,
  options: CreateAppOptions = {},
): Promise<void> {
  await runSurfaces(await createApp(config, options), hooks);
}

/** Loads a role's core, runs the chat surfaces on it until they resolve, then closes the core. */
export async function runSurfaces(app: AtelierApp, hooks: RoleHooks): Promise<void> {
  try {
    await app.load();
    // The surfaces subscribe to job events first, then app.resume() runs the jobs left over.
    await hooks.surfaces({ app, config: app.config });
  } finally {
    await app.close();
  }
}
