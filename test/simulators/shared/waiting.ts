import type { EventEmitter } from 'node:events';
import { SimulatorTimeoutError } from './errors.js';

export interface WaitOptions {
  /** Give up after this long; the rejection names what was awaited. @default the simulator's `waitTimeoutMs` */
  timeoutMs?: number;
}

interface WaitSpec<T> {
  /** Events after which `probe` is tried again. */
  events: readonly string[];
  /** Returns the awaited value once the condition holds, `undefined` before. Tried at once, then after each event. */
  probe: () => T | undefined;
  /** For the timeout message: "a message with 4 attachments in #general". */
  what: string;
  timeoutMs: number;
  /** Extra context for the timeout message (e.g. the messages seen so far). */
  describe?: () => string;
  /** Rejects early (e.g. the interaction expired) — return an Error to stop waiting. */
  abort?: () => Error | undefined;
}

/**
 * Resolves when `probe` finds what it looks for: checked first against the current state (so a
 * test never races the bot), then after every relevant event. No polling, no sleeps; the only
 * timer is the unref'd give-up timer.
 */
export function waitForState<T>(emitter: EventEmitter, spec: WaitSpec<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const check = (): boolean => {
      const failure = spec.abort?.();
      if (failure) {
        cleanup();
        reject(failure);
        return true;
      }
      const value = spec.probe();
      if (value === undefined) return false;
      cleanup();
      resolve(value);
      return true;
    };
    const listener = (): void => {
      check();
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new SimulatorTimeoutError(spec.what, spec.timeoutMs, spec.describe?.()));
    }, spec.timeoutMs);
    timer.unref();
    const cleanup = (): void => {
      clearTimeout(timer);
      for (const event of spec.events) emitter.off(event, listener);
    };
    for (const event of spec.events) emitter.on(event, listener);
    check();
  });
}

/** A promise with its resolve/reject exposed, for records that complete later (an ack, a retry). */
export class Deferred<T> {
  readonly promise: Promise<T>;
  resolve!: (value: T) => void;
  reject!: (error: Error) => void;
  settled = false;

  constructor() {
    this.promise = new Promise<T>((resolve, reject) => {
      this.resolve = (value) => {
        this.settled = true;
        resolve(value);
      };
      this.reject = (error) => {
        this.settled = true;
        reject(error);
      };
    });
    // A record nobody awaits must not crash the test run with an unhandled rejection.
    this.promise.catch(() => {});
  }
}
