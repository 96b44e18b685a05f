/**
 * Structured logs (pino, one JSON object per line) with secrets kept out twice over: known
 * secret-bearing keys are redacted by path, and every finished line is scrubbed of the configured
 * secret values and of anything shaped like a Discord, Slack or Hugging Face token, so a token
 * inside an error message or a URL is caught too.
 */
import pino, { type DestinationStream, type Logger, type LoggerOptions } from 'pino';
import type { JobRecord, JobState } from './jobs/types.js';

export type { Logger } from 'pino';

export const REDACTED = '[redacted]';

/** Keys that hold secrets wherever they appear (up to three levels deep). */
const SECRET_KEYS = [
  'token',
  'accessToken',
  'botToken',
  'appToken',
  'discordToken',
  'slackBotToken',
  'slackAppToken',
  'slackSigningSecret',
  'signingSecret',
  'hfToken',
  'secret',
  'secrets',
  'password',
  'apiKey',
  'authorization',
  'Authorization',
  'cookie',
  'Cookie',
];

const HEADER_PATHS = [
  'headers.authorization',
  'headers.Authorization',
  'headers.cookie',
  'headers["x-slack-signature"]',
];

export const REDACT_PATHS: readonly string[] = ['', '*.', '*.*.', '*.*.*.'].flatMap((prefix) =>
  [...SECRET_KEYS, ...HEADER_PATHS].map((key) => `${prefix}${key}`),
);

/**
 * Token shapes: Slack (xoxb-/xoxp-/xapp-…), Hugging Face (hf_…), Discord bot tokens (three
 * base64url parts), and `Bot …`/`Bearer …` credentials of realistic length.
 */
const TOKEN_PATTERNS: readonly RegExp[] = [
  /\bxox[abposr]-[A-Za-z0-9-]{8,}/g,
  /\bxapp-[A-Za-z0-9-]{8,}/g,
  /\bhf_[A-Za-z0-9]{20,}/g,
  /\b[MNO][A-Za-z\d_-]{23,27}\.[A-Za-z\d_-]{6}\.[A-Za-z\d_-]{27,}/g,
  /\b(Bot|Bearer) [A-Za-z0-9._~+/=-]{20,}/g,
];

export function scrubSecrets(line: string, secrets: readonly string[] = []): string {
  let scrubbed = line;
  for (const secret of secrets) {
    if (secret.length >= 6) scrubbed = scrubbed.split(secret).join(REDACTED);
  }
  for (const pattern of TOKEN_PATTERNS) scrubbed = scrubbed.replace(pattern, REDACTED);
  return scrubbed;
}

export interface CreateLoggerOptions {
  /** @default 'info' */
  level?: string;
  /** Secret values to remove from every line wherever they appear (e.g. Object.values(config.secrets)). */
  secrets?: readonly (string | undefined)[];
  /** Where lines go. @default stdout */
  destination?: DestinationStream;
  /** Extra fields on every line. */
  base?: Record<string, unknown>;
}

export function createLogger(options: CreateLoggerOptions = {}): Logger {
  const secrets = (options.secrets ?? []).filter(
    (secret): secret is string => typeof secret === 'string' && secret.length > 0,
  );
  const loggerOptions: LoggerOptions = {
    level: options.level ?? 'info',
    base: { pid: process.pid, ...options.base },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    redact: { paths: [...REDACT_PATHS], censor: REDACTED },
    hooks: { streamWrite: (line) => scrubSecrets(line, secrets) },
  };
  return options.destination ? pino(loggerOptions, options.destination) : pino(loggerOptions);
}

/** A logger for one part of the system; its lines carry `component` (and any other bindings). */
export function childLogger(
  parent: Logger,
  component: string,
  bindings: Record<string, unknown> = {},
): Logger {
  return parent.child({ component, ...bindings });
}

export interface JobTransitionOptions {
  /** @default Date.now() */
  now?: number;
  /** Prompts are user content; they are logged only when the operator asks (config `log.prompts`). */
  includePrompt?: boolean;
}

const FINISHED: readonly JobState[] = ['done', 'failed', 'cancelled'];

/**
 * One line per job state change, e.g.
 * `{"event":"job","jobId":"…","from":"running","to":"done","user":"discord:123","queueWaitMs":812,"runMs":20410,…}`.
 * Queue wait is creation → start (or → now while it has not started); run time is start → finish.
 */
export function logJobTransition(
  log: Logger,
  job: JobRecord,
  from: JobState | null,
  to: JobState,
  options: JobTransitionOptions = {},
): void {
  const now = options.now ?? Date.now();
  const { requester, params } = job.spec;
  const started = job.startedAt ?? (to === 'running' ? now : undefined);
  const finished = FINISHED.includes(to) ? (job.finishedAt ?? now) : undefined;
  const fields: Record<string, unknown> = {
    event: 'job',
    jobId: job.id,
    kind: job.spec.kind,
    from,
    to,
    user: `${requester.platform}:${requester.userId}`,
    team: requester.teamId,
    attempts: job.attempts,
    queueWaitMs: Math.max(0, (started ?? finished ?? now) - job.createdAt),
    runMs: started !== undefined && finished !== undefined ? Math.max(0, finished - started) : undefined,
    count: params.count,
    steps: params.steps,
    size: `${params.width}x${params.height}`,
  };
  if (job.error !== undefined && to === 'failed') fields.error = job.error;
  if (options.includePrompt) fields.prompt = params.prompt;
  const message = `job ${job.id} ${from ?? 'new'} → ${to}`;
  if (to === 'failed') log.warn(fields, message);
  else log.info(fields, message);
}
