/**
 * Carries job events to the conversation that owns each job: the job's message is edited as it
 * moves (queue position, progress with previews, result, failure), through the adapter of its
 * platform. Edits of one message are serialized and throttled (progress at most once per
 * `minEditIntervalMs`, the latest state wins); final states are never dropped. A result is
 * confirmed to the scheduler (`markDelivered`) only once it is really posted, so a restart
 * re-posts what a crash swallowed — into the answer already sent when the process died before
 * recording it, if the adapter can find that answer (`ChatAdapter.findAnswer`).
 */
import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import { fitUploadLimit, previewMimeType } from '../src/images/index.js';
import type { JobEvent, JobRecord, JobResult, ReplyTarget } from '../src/jobs/types.js';
import type { Logger } from '../src/log.js';
import type { Store } from '../src/store/index.js';
import type { BotScheduler } from './core.js';
import { cancelledView, doneView, failedView, progressView, queuedView, startedView } from './presenter.js';
import type { ChatAdapter, ChatImage, ChatMessage, PostedMessage } from './types.js';

export interface MessengerOptions {
  /** Least time between two edits of one message (platform rate limits). @default 1500 */
  minEditIntervalMs?: number;
  /** Attach a preview every N steps (and at the last); 0: never. @default 5 */
  previewEverySteps?: number;
  /** A result of a job nobody attached a message to is posted anew after this. @default 10_000 */
  orphanAfterMs?: number;
  /** Lossy format when a PNG exceeds an upload cap. @default 'jpeg' */
  oversizeFormat?: 'jpeg' | 'webp';
}

interface Tracked {
  job: JobRecord;
  posted?: PostedMessage;
  /** The newest view not yet shown. */
  pending?: () => Promise<ChatMessage>;
  pendingFinal: boolean;
  /** The pending view is the result: confirm delivery once shown. */
  pendingResult: boolean;
  /** A final view has been shown: later events are ignored. */
  finished: boolean;
  lastEditAt: number;
  timer?: NodeJS.Timeout;
  /** Edits of this job's message, one after another. */
  chain: Promise<void>;
  startedAt?: number;
  /** Asking the adapter for the answer an earlier run sent but did not record (see #lookUp). */
  lookingUp?: boolean;
  /** Lookups that failed because the platform could not be asked (it is asked again). */
  lookupFailures?: number;
}

/** Tries at asking a platform for an unrecorded answer before posting the result anew. */
const LOOKUP_ATTEMPTS = 5;

export class JobMessenger {
  readonly #adapters = new Map<string, ChatAdapter>();
  readonly #jobs = new Map<string, Tracked>();
  readonly #forgotten = new Set<string>();
  /**
   * Jobs of an earlier run that no recorded message shows: the process may have died after the
   * answer was sent and before its id was recorded. Read at start; each is looked up once.
   */
  #unrecorded = new Set<string>();
  #stopped = false;
  readonly #options: Required<MessengerOptions>;
  readonly #onEvent = (event: JobEvent) => this.#handle(event);

  constructor(
    private readonly scheduler: BotScheduler,
    private readonly store: Store,
    private readonly logger: Logger,
    options: MessengerOptions = {},
  ) {
    this.#options = {
      minEditIntervalMs: options.minEditIntervalMs ?? 1500,
      previewEverySteps: options.previewEverySteps ?? 5,
      orphanAfterMs: options.orphanAfterMs ?? 10_000,
      oversizeFormat: options.oversizeFormat ?? 'jpeg',
    };
  }

  start(): void {
    this.#unrecorded = this.#jobsWithoutMessage();
    this.scheduler.on('job', this.#onEvent);
  }

  /** Stops listening; resolves when the edits under way are done. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.scheduler.off('job', this.#onEvent);
    for (const t of this.#jobs.values()) clearTimeout(t.timer);
    await Promise.allSettled([...this.#jobs.values()].map((t) => t.chain));
  }

  addAdapter(adapter: ChatAdapter): void {
    this.#adapters.set(adapter.platform, adapter);
  }

  adapterFor(platform: string): ChatAdapter | undefined {
    return this.#adapters.get(platform);
  }

  /**
   * The message now showing `jobId` (the bot's answer to the command). Recorded so buttons and
   * reactions on it find the job, and so a restart edits it rather than posting anew.
   */
  attach(jobId: string, posted: PostedMessage): void {
    const { platform, channelId, messageId, extra, threadId } = posted;
    this.scheduler.attachMessage(
      jobId,
      { platform, channelId, messageId, extra: { ...extra, ...(threadId ? { threadId } : {}) } },
      { messageId },
    );
    const tracked = this.#track(jobId);
    if (!tracked) return;
    tracked.posted = posted;
    tracked.lastEditAt = Date.now();
    if (tracked.pending) this.#schedule(tracked);
  }

  /** Stops showing `jobId` (a job whose first message could not be posted). */
  forget(jobId: string): void {
    const tracked = this.#jobs.get(jobId);
    clearTimeout(tracked?.timer);
    this.#forgotten.add(jobId);
    this.#jobs.delete(jobId);
  }

  /** Resolves when every edit queued so far for `jobId` has been made (tests, shutdown). */
  async settled(jobId: string): Promise<void> {
    await this.#jobs.get(jobId)?.chain;
  }

  /** Reads a result image from disk and fits it under the adapter's upload cap for `target`. */
  async resultImage(result: JobResult, index: number | 'grid', target: ReplyTarget): Promise<ChatImage> {
    const adapter = this.#adapters.get(target.platform);
    const source = index === 'grid' ? (result.gridPath ?? result.images[0].path) : result.images[index].path;
    const png = await readFile(source);
    const limit = adapter?.uploadLimit(target) ?? Number.POSITIVE_INFINITY;
    const fitted = await fitUploadLimit(png, limit, { lossyFormat: this.#options.oversizeFormat });
    const { width, height } = fitted.scaled
      ? await sharp(fitted.data).metadata()
      : await sharp(png).metadata();
    const seed = index === 'grid' ? result.images[0].seed : result.images[index].seed;
    const ext = fitted.format === 'jpeg' ? 'jpg' : fitted.format;
    return {
      data: fitted.data,
      filename: `atelier-${seed}${index === 'grid' && result.images.length > 1 ? '-grid' : ''}.${ext}`,
      mime: `image/${fitted.format}`,
      width,
      height,
    };
  }

  #track(jobId: string): Tracked | undefined {
    if (this.#forgotten.has(jobId)) return undefined;
    let tracked = this.#jobs.get(jobId);
    if (!tracked) {
      const job = this.scheduler.getJob(jobId);
      if (!job) return undefined;
      tracked = {
        job,
        pendingFinal: false,
        pendingResult: false,
        finished: false,
        lastEditAt: 0,
        chain: Promise.resolve(),
      };
      this.#jobs.set(jobId, tracked);
    }
    return tracked;
  }

  #handle(event: JobEvent): void {
    const tracked = this.#track(event.jobId);
    if (!tracked || tracked.finished) return;
    const job = () => this.scheduler.getJob(event.jobId) ?? tracked.job;
    switch (event.type) {
      case 'queued':
        tracked.pending = async () =>
          queuedView(job(), event.position, event.etaMs, { waitingForRunner: event.waitingForRunner });
        break;
      case 'started':
        tracked.startedAt = Date.now();
        tracked.pending = async () => startedView(job(), event.etaMs);
        break;
      case 'progress': {
        const every = this.#options.previewEverySteps;
        const withPreview =
          event.preview && every > 0 && (event.step % every === 0 || event.step === event.total);
        const preview = withPreview
          ? { data: event.preview!, filename: 'preview.webp', mime: previewMimeType(event.preview!) }
          : undefined;
        tracked.pending = async () => progressView(job(), event.step, event.total, preview);
        break;
      }
      case 'done': {
        const elapsed = tracked.startedAt ? Date.now() - tracked.startedAt : undefined;
        tracked.pending = async () => {
          const record = job();
          const image = await this.resultImage(event.result, 'grid', record.spec.reply);
          return doneView(record, event.result, image, elapsed);
        };
        break;
      }
      case 'failed':
        tracked.pending = async () => failedView(job(), event.userMessage);
        break;
      case 'cancelled':
        tracked.pending = async () => cancelledView(job(), event.by);
        break;
    }
    tracked.pendingFinal = event.type === 'done' || event.type === 'failed' || event.type === 'cancelled';
    tracked.pendingResult = event.type === 'done';
    if (tracked.pendingFinal) tracked.finished = true;
    this.#schedule(tracked);
  }

  #schedule(tracked: Tracked): void {
    if (!tracked.posted && !this.#restore(tracked)) {
      if (this.#lookUp(tracked)) return;
      // Not attached yet: the command's answer is on its way and flushes on attach. A final
      // state of a job no message ever showed (recovered after a crash) is posted anew.
      if (tracked.pendingFinal) {
        clearTimeout(tracked.timer);
        tracked.timer = setTimeout(() => this.#enqueueFlush(tracked), this.#wait(tracked));
      }
      return;
    }
    clearTimeout(tracked.timer);
    tracked.timer = undefined;
    if (tracked.pendingFinal) {
      this.#enqueueFlush(tracked);
      return;
    }
    const wait = tracked.lastEditAt + this.#options.minEditIntervalMs - Date.now();
    if (wait <= 0) this.#enqueueFlush(tracked);
    else tracked.timer = setTimeout(() => this.#enqueueFlush(tracked), wait);
  }

  #wait(tracked: Tracked): number {
    const age = Date.now() - tracked.job.createdAt;
    return Math.max(0, this.#options.orphanAfterMs - age);
  }

  /** Unfinished or unconfirmed jobs (all from before this start) whose message is not recorded. */
  #jobsWithoutMessage(): Set<string> {
    const ids = new Set<string>();
    for (const job of [...this.store.jobs.unfinished(), ...this.store.jobs.undelivered(0)]) {
      if (!job.spec.reply.messageId) ids.add(job.id);
    }
    return ids;
  }

  /**
   * A job of an earlier run that no recorded message shows may have been answered just before
   * that process died (the answer sent, its id not yet recorded). Before anything is posted
   * anew, its adapter is asked for that answer (`ChatAdapter.findAnswer`, from what the job's
   * reply target stored before the answer went out); found, it becomes the job's message and is
   * edited as usual. Events meanwhile wait. A platform that cannot be asked now is asked again
   * (a few times, backing off); a job nothing is found for is posted anew as before. True
   * while it looks.
   */
  #lookUp(tracked: Tracked): boolean {
    if (tracked.lookingUp) return true;
    const jobId = tracked.job.id;
    if (!this.#unrecorded.has(jobId)) return false;
    const adapter = this.#adapters.get(tracked.job.spec.reply.platform);
    if (!adapter?.findAnswer) {
      this.#unrecorded.delete(jobId);
      return false;
    }
    tracked.lookingUp = true;
    clearTimeout(tracked.timer);
    tracked.timer = undefined;
    adapter.findAnswer(tracked.job.spec.reply, jobId).then(
      (found) => {
        tracked.lookingUp = false;
        this.#unrecorded.delete(jobId);
        if (this.#stopped || this.#jobs.get(jobId) !== tracked || tracked.posted) return;
        if (!found) {
          if (tracked.pending) this.#schedule(tracked);
          return;
        }
        this.logger.info({ jobId }, 'found the unrecorded answer of a job: it shows the job from now on');
        try {
          this.attach(jobId, found);
        } catch (error) {
          this.logger.warn({ jobId, err: error }, 'could not record the answer found for a job');
        }
      },
      (error: unknown) => {
        tracked.lookingUp = false;
        const failures = (tracked.lookupFailures ?? 0) + 1;
        tracked.lookupFailures = failures;
        if (failures >= LOOKUP_ATTEMPTS) this.#unrecorded.delete(jobId);
        this.logger.warn({ jobId, err: error }, 'could not look for the unrecorded answer of a job');
        if (this.#stopped || this.#jobs.get(jobId) !== tracked || tracked.posted || !tracked.pending) return;
        const again = () => {
          tracked.timer = undefined;
          if (tracked.pending && !tracked.posted) this.#schedule(tracked);
        };
        tracked.timer = setTimeout(again, 1000 * 2 ** (failures - 1));
        tracked.timer.unref?.();
      },
    );
    return true;
  }

  /** After a restart the job's message is known from the store. */
  #restore(tracked: Tracked): boolean {
    const messageId = tracked.job.spec.reply.messageId;
    if (!messageId) return false;
    const stored = this.store.results.messagesOf(tracked.job.id).find((m) => m.messageId === messageId);
    if (!stored) return false;
    const { threadId, ...extra } = (stored.extra ?? {}) as { threadId?: string } & Record<string, unknown>;
    tracked.posted = {
      platform: stored.platform,
      channelId: stored.channelId,
      messageId: stored.messageId,
      ...(threadId ? { threadId } : {}),
      ...(tracked.job.spec.reply.teamId ? { teamId: tracked.job.spec.reply.teamId } : {}),
      extra,
    };
    return true;
  }

  #enqueueFlush(tracked: Tracked): void {
    tracked.timer = undefined;
    tracked.chain = tracked.chain.then(() => this.#flush(tracked));
  }

  async #flush(tracked: Tracked): Promise<void> {
    const render = tracked.pending;
    if (!render) return;
    const delivered = tracked.pendingResult;
    const transient = !tracked.pendingFinal;
    tracked.pending = undefined;
    tracked.pendingResult = false;
    const jobId = tracked.job.id;
    const adapter = this.#adapters.get(tracked.job.spec.reply.platform);
    if (!adapter) {
      this.logger.warn(
        { jobId, platform: tracked.job.spec.reply.platform },
        'no adapter for this job’s platform',
      );
      return;
    }
    try {
      const view = await render();
      tracked.lastEditAt = Date.now();
      if (tracked.posted) {
        try {
          const updated = transient
            ? await adapter.edit(tracked.posted, view, {
                transient,
                updated: (later) => this.#updatedLater(tracked, later),
              })
            : await adapter.edit(tracked.posted, view);
          if (updated) {
            tracked.posted = updated;
            this.#record(jobId, updated);
          }
        } catch (error) {
          if (!delivered) throw error;
          // The message is gone (deleted, token expired): post the result anew.
          this.logger.warn({ jobId, err: error }, 'could not edit the job message; posting the result anew');
          tracked.posted = await adapter.post(tracked.job.spec.reply, view);
          this.#record(jobId, tracked.posted);
        }
      } else {
        tracked.posted = await adapter.post(tracked.job.spec.reply, view);
        this.#record(jobId, tracked.posted);
      }
      if (delivered) this.scheduler.markDelivered(jobId);
    } catch (error) {
      this.logger.warn({ jobId, err: error }, 'could not update the job message');
    } finally {
      if (tracked.finished && !tracked.pending) this.#jobs.delete(jobId);
    }
  }

  /**
   * A progress edit the adapter showed later changed what the message holds (Slack: its preview
   * files): recorded like an edit's answer, so a restart finds them (and removes them with the
   * result). After a newer message took the job over, the old one's details are not recorded.
   */
  #updatedLater(tracked: Tracked, later: PostedMessage): void {
    const jobId = tracked.job.id;
    const current = tracked.posted;
    if (current && (current.channelId !== later.channelId || current.messageId !== later.messageId)) return;
    if (this.#jobs.get(jobId) === tracked) tracked.posted = later;
    try {
      this.#record(jobId, later);
    } catch (error) {
      this.logger.warn({ jobId, err: error }, 'could not record what the job message shows');
    }
  }

  #record(jobId: string, posted: PostedMessage): void {
    const { platform, channelId, messageId, extra, threadId } = posted;
    this.scheduler.attachMessage(
      jobId,
      { platform, channelId, messageId, extra: { ...extra, ...(threadId ? { threadId } : {}) } },
      { messageId },
    );
  }
}
