/**
 * Typed errors. Every error the core raises on purpose carries a stable `code`, a `userMessage`
 * that a chat user can read (shown privately), and the data an adapter or operator needs to act
 * on it. Anything else is wrapped once by `asAtelierError` so callers handle one type.
 */

export type ErrorCode =
  | 'VALIDATION'
  | 'RATE_LIMITED'
  | 'QUEUE_FULL'
  | 'USER_QUEUE_FULL'
  | 'QUEUE_PAUSED'
  | 'NOT_FOUND'
  | 'FORBIDDEN'
  | 'CANCELLED'
  | 'TIMEOUT'
  | 'CONFIG'
  | 'MODEL'
  | 'PIPELINE'
  | 'NO_MODEL'
  | 'STORE'
  | 'UNKNOWN';

export class AtelierError extends Error {
  readonly code: ErrorCode;
  /** Safe to show to the chat user who caused it. */
  readonly userMessage: string;

  constructor(code: ErrorCode, message: string, userMessage?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.userMessage = userMessage ?? message;
  }
}

/** A user's input is not acceptable; `field` names the option, the message says what is allowed. */
export class ValidationError extends AtelierError {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super('VALIDATION', message);
  }
}

export type LimitName = 'user' | 'team' | 'user-queue' | 'queue';

/** A rate limit or queue cap refused the job; `retryAfterMs` says when trying again can succeed. */
export class RateLimitedError extends AtelierError {
  constructor(
    readonly limit: LimitName,
    readonly retryAfterMs: number,
    userMessage: string,
  ) {
    super(
      limit === 'queue' ? 'QUEUE_FULL' : limit === 'user-queue' ? 'USER_QUEUE_FULL' : 'RATE_LIMITED',
      userMessage,
    );
  }
}

export class NotFoundError extends AtelierError {
  constructor(what: string, userMessage?: string) {
    super('NOT_FOUND', `${what} not found`, userMessage ?? `I can't find ${what} any more.`);
  }
}

export class ForbiddenError extends AtelierError {
  constructor(userMessage: string) {
    super('FORBIDDEN', userMessage);
  }
}

/** An operator's configuration is wrong: one line naming the key, the value and what is allowed. */
export class ConfigError extends AtelierError {
  constructor(
    readonly key: string,
    message: string,
  ) {
    super('CONFIG', message, 'The bot is misconfigured; an admin has been told.');
  }
}

/** Model files are missing, corrupt or unusable; `file` names the file or setting at fault. */
export class ModelError extends AtelierError {
  constructor(
    readonly file: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super('MODEL', message, 'The image model could not be used; an admin has been told.', options);
  }
}

/**
 * The data dir or its database cannot be used (unwritable, not a SQLite file, damaged); `file`
 * names it and the message says what the operator can do, in one line.
 */
export class StoreError extends AtelierError {
  constructor(
    readonly file: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super('STORE', message, 'The bot cannot use its database; an admin has been told.', options);
  }
}

export class CancelledError extends AtelierError {
  constructor(message = 'cancelled') {
    super('CANCELLED', message, 'The job was cancelled.');
  }
}

export class PipelineError extends AtelierError {
  constructor(message: string, userMessage?: string, options?: { cause?: unknown }) {
    super(
      'PIPELINE',
      message,
      userMessage ?? 'Something went wrong while making the image. Please try again.',
      options,
    );
  }
}

export function asAtelierError(error: unknown): AtelierError {
  if (error instanceof AtelierError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new AtelierError('UNKNOWN', message, 'Something went wrong. Please try again.', { cause: error });
}
