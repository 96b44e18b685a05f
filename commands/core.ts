/**
 * What the bot needs of the core, declared on the bot's side: commands/ depend on this contract,
 * never on the composition (src/app/), which satisfies it structurally (`AtelierApp` does, and so
 * must any role that serves chat).
 */
import type { AtelierConfig } from '../src/config/index.js';
import type { ValidationOptions } from '../src/jobs/validate.js';
import type { Logger } from '../src/log.js';
import type { Scheduler } from '../src/scheduler/index.js';
import type { Store } from '../src/store/index.js';

/** The scheduler calls commands make: queueing, cancelling, listing, pausing, following jobs. */
export type BotScheduler = Pick<
  Scheduler,
  | 'enqueue'
  | 'cancel'
  | 'getJob'
  | 'list'
  | 'size'
  | 'pending'
  | 'isPaused'
  | 'pause'
  | 'resume'
  | 'isAdmin'
  | 'allowance'
  | 'attachMessage'
  | 'markDelivered'
  | 'on'
  | 'off'
>;

export interface BotCore {
  readonly config: AtelierConfig;
  readonly logger: Logger;
  /** Results, team and user settings; job rows for galleries. */
  readonly store: Store;
  readonly scheduler: BotScheduler;
  /** How chat input becomes JobParams (config ranges, the loaded model's own defaults). */
  validation(): ValidationOptions;
}
