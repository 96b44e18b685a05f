/** Errors the scheduler adds to src/errors.ts, with the codes that file already reserves. */
import { AtelierError } from '../errors.js';
import { formatDuration } from './duration.js';

/** New jobs are refused because an admin paused image generation for this team. */
export class QueuePausedError extends AtelierError {
  constructor(userMessage = 'An admin has paused image generation here for now.') {
    super('QUEUE_PAUSED', 'new jobs are paused for this team', userMessage);
  }
}

/** A running job passed the per-job time limit and was stopped. */
export class JobTimeoutError extends AtelierError {
  constructor(readonly timeoutMs: number) {
    super(
      'TIMEOUT',
      `job timed out after ${timeoutMs} ms`,
      `Your job took longer than ${formatDuration(timeoutMs)} and was stopped. Try fewer images or steps.`,
    );
  }
}

/** A job that was running when the bot died several times in a row is given up on. */
export class JobCrashedError extends AtelierError {
  constructor(readonly attempts: number) {
    super(
      'PIPELINE',
      `job was running during ${attempts} crashes or restarts; not starting it again`,
      'This job was interrupted too many times and was dropped. Please try again, maybe with a different prompt.',
    );
  }
}
