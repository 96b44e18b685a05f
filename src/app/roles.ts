/**
 * The processes Atelier runs as, one composition module per role beside this file. Every role is
 * made of the same parts (./core.ts: store, scheduler, executors, pipeline processes), composed
 * differently:
 *
 * | role      | module       | what runs in the process                                             |
 * | --------- | ------------ | -------------------------------------------------------------------- |
 * | `serve`   | ./serve.ts   | everything: chat surfaces, scheduler, store, a pipeline per GPU      |
 * | `gateway` | ./gateway.ts | chat surfaces, scheduler and store; jobs go to workers over BullMQ   |
 * | `worker`  | ./worker.ts  | one pipeline (one GPU) taking jobs from that queue; no chat or store |
 *
 * A role that talks to users takes its chat side as a `ChatSurfaces` function: the adapters are
 * wired on the adapters' side (adapters/serve.ts) and handed in by the entry point
 * (bin/atelier.js), because dependencies point `adapters → commands → src` and src/ never
 * imports adapters/.
 */
import type { AtelierConfig } from '../config/index.js';
import type { AtelierApp } from './core.js';

export type Role = 'serve' | 'gateway' | 'worker';

/** What the chat surfaces run on: a core whose model is loaded (`app.load()`). */
export interface ServeContext {
  app: AtelierApp;
  config: AtelierConfig;
}

/**
 * Starts the chat surfaces on a loaded core, resumes its job queue once they listen, and resolves
 * when the process should stop (adapters/serve.ts `serve`).
 */
export type ChatSurfaces = (context: ServeContext) => Promise<void>;

/** What the entry point gives the roles that src/ cannot import itself. */
export interface RoleHooks {
  surfaces: ChatSurfaces;
}
