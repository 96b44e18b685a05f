/**
 * Errors the simulators raise at the TEST (not at the bot): misuse of the harness, or a wait that
 * never came true. They are plain Errors on purpose: they are not product errors and must never
 * be confused with `AtelierError`s the bot under test raises.
 */

/** A test asked the simulator for something impossible (unknown command, a button not on the message, …). */
export class SimulatorUsageError extends Error {
  override name = 'SimulatorUsageError';
}

/** A `waitFor…` helper gave up; the message says what was awaited and what was seen instead. */
export class SimulatorTimeoutError extends Error {
  override name = 'SimulatorTimeoutError';
  constructor(
    readonly what: string,
    readonly timeoutMs: number,
    detail?: string,
  ) {
    super(`timed out after ${timeoutMs} ms waiting for ${what}${detail ? `\n${detail}` : ''}`);
  }
}
