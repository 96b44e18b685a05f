/**
 * Everything the scheduler can be told, in one object. The composition root maps the config
 * file onto it; the scheduler knows no config file. Validation throws TypeError naming the
 * option, the value and what is allowed (p-queue style).
 */
import pino from 'pino';
import type { Logger } from '../log.js';
import type { BucketRule } from '../store/types.js';
import { isRunnerPool, type JobRunner, type RunnerPool } from './runner.js';

export interface AdminList {
  /** `platform:userId` (one platform) or a bare `userId` (any platform). */
  userIds?: readonly string[];
  /** `platform:roleId` or a bare role id, matched against `Requester.roleIds`. */
  roleIds?: readonly string[];
}

export interface SchedulerOptions {
  /**
   * One runner per pipeline (GPU); jobs run on at most this many at once. The product passes a
   * `JobExecutor` per pipeline, or (the gateway) a `RunnerPool` whose runners follow the live
   * workers and may be none for a while.
   */
  readonly runners: readonly JobRunner[] | RunnerPool;

  /**
   * Images per user: `images` per `perMs`, at most `burst` at once. `false` turns it off.
   * @default { images: 10, perMs: 600_000, burst: 4 }
   */
  readonly userBucket?: BucketRule | false;

  /**
   * Images per team (Discord guild, Slack workspace), shared by its members. `false` turns it off.
   * @default false
   */
  readonly teamBucket?: BucketRule | false;

  /**
   * Most jobs one user may have waiting or running at once.
   * @default 3
   */
  readonly maxQueuedPerUser?: number;

  /**
   * Most jobs waiting in the whole queue (running ones not counted).
   * @default 100
   */
  readonly maxQueueSize?: number;

  /**
   * Users and roles exempt from every limit, who may also cancel anyone's job, see every job
   * and pause the queue.
   * @default {}
   */
  readonly admins?: AdminList;

  /**
   * A running job is stopped and fails after this long.
   * @default 600_000
   */
  readonly jobTimeoutMs?: number;

  /**
   * How many recent jobs the ETA's moving average covers.
   * @default 20
   */
  readonly etaWindow?: number;

  /**
   * ETA before any job has finished: ms per denoising step of one one-megapixel image.
   * @default 250
   */
  readonly initialMsPerStep?: number;

  /**
   * Positions of waiting jobs are re-sent (as `queued` events) at most this often; changes in
   * between are coalesced. 0 sends them after every change (coalesced within one tick).
   * @default 1000
   */
  readonly positionUpdateIntervalMs?: number;

  /**
   * A job found running at start-up (the bot died during it) is started again only while it has
   * been started fewer than this many times, so one job that crashes the bot cannot loop forever.
   * @default 3
   */
  readonly maxAttempts?: number;

  /**
   * At start-up, `done` events are sent again for jobs finished this recently whose result no
   * adapter confirmed posting (`Scheduler.markDelivered`): the bot may have died in between.
   * 0 turns this off.
   * @default 3_600_000
   */
  readonly redeliverWithinMs?: number;

  /**
   * The time source (ms since the epoch), for tests.
   * @default Date.now
   */
  readonly clock?: () => number;

  /**
   * Where job transitions are logged, one line each (src/log.ts `logJobTransition`).
   * @default a logger that drops everything
   */
  readonly logger?: Logger;

  /**
   * Whether transition lines include the prompt (user content; config `log.prompts`).
   * @default false
   */
  readonly logPrompts?: boolean;
}

export type ResolvedSchedulerOptions = Required<SchedulerOptions> & { admins: Required<AdminList> };

function describe(value: unknown): string {
  return `\`${typeof value === 'object' ? JSON.stringify(value) : String(value)}\` (${typeof value})`;
}

function expectNumber(name: string, value: number, min: number, integer: boolean): void {
  if (
    typeof value !== 'number' ||
    !Number.isFinite(value) ||
    value < min ||
    (integer && !Number.isInteger(value))
  ) {
    const kind = integer ? 'an integer' : 'a finite number';
    throw new TypeError(`Expected \`${name}\` to be ${kind} >= ${min}, got ${describe(value)}`);
  }
}

function expectBucket(name: string, rule: BucketRule | false): void {
  if (rule === false) return;
  if (typeof rule !== 'object' || rule === null) {
    throw new TypeError(
      `Expected \`${name}\` to be { images, perMs, burst } or false, got ${describe(rule)}`,
    );
  }
  expectNumber(`${name}.images`, rule.images, Number.MIN_VALUE, false);
  expectNumber(`${name}.perMs`, rule.perMs, 1, false);
  expectNumber(`${name}.burst`, rule.burst, 1, false);
}

/** `{ timeout: undefined }` means "the default", not "no value". */
function definedOnly<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as Partial<T>;
}

export function resolveSchedulerOptions(options: SchedulerOptions): ResolvedSchedulerOptions {
  const resolved: ResolvedSchedulerOptions = {
    userBucket: { images: 10, perMs: 600_000, burst: 4 },
    teamBucket: false,
    maxQueuedPerUser: 3,
    maxQueueSize: 100,
    jobTimeoutMs: 600_000,
    etaWindow: 20,
    initialMsPerStep: 250,
    positionUpdateIntervalMs: 1000,
    maxAttempts: 3,
    redeliverWithinMs: 3_600_000,
    clock: Date.now,
    logger: pino({ enabled: false }),
    logPrompts: false,
    ...definedOnly(options),
    runners: options.runners,
    admins: { userIds: options.admins?.userIds ?? [], roleIds: options.admins?.roleIds ?? [] },
  };
  if (
    !isRunnerPool(resolved.runners) &&
    (!Array.isArray(resolved.runners) || resolved.runners.length === 0)
  ) {
    throw new TypeError(
      `Expected \`runners\` to hold at least one JobRunner or be a RunnerPool, got ${describe(resolved.runners)}`,
    );
  }
  expectBucket('userBucket', resolved.userBucket);
  expectBucket('teamBucket', resolved.teamBucket);
  expectNumber('maxQueuedPerUser', resolved.maxQueuedPerUser, 1, true);
  expectNumber('maxQueueSize', resolved.maxQueueSize, 1, true);
  expectNumber('jobTimeoutMs', resolved.jobTimeoutMs, 1, false);
  expectNumber('etaWindow', resolved.etaWindow, 1, true);
  expectNumber('initialMsPerStep', resolved.initialMsPerStep, 0, false);
  expectNumber('positionUpdateIntervalMs', resolved.positionUpdateIntervalMs, 0, false);
  expectNumber('maxAttempts', resolved.maxAttempts, 1, true);
  expectNumber('redeliverWithinMs', resolved.redeliverWithinMs, 0, false);
  return resolved;
}
