import { randomBytes } from 'node:crypto';
import { type APIInteraction, InteractionResponseType, type InteractionType } from 'discord-api-types/v10';
import type { WaitOptions } from '../shared/waiting.js';
import { waitForState } from '../shared/waiting.js';
import type { SimModal } from './rest/modal.js';
import { snowflake } from './snowflake.js';
import type { DiscordState } from './state.js';
import type { InteractionCallbackRecord, InteractionKind, SimChannel, SimMessage, SimUser } from './types.js';

/** Raised by `waitForResponse` when the bot let the 3-second window pass. */
export class InteractionExpiredError extends Error {
  override name = 'InteractionExpiredError';
}

/**
 * One interaction sent to the bot, and everything the bot did about it. Tests hold it to wait
 * for the answer and to assert it came in time:
 * `const i = await d.slash('imagine', { prompt: 'cat' }); const r = await i.waitForResponse();`
 */
export class InteractionHandle {
  readonly id = snowflake();
  /** Interaction tokens are opaque; this one is URL-safe like Discord's. */
  readonly token = `sim.${randomBytes(48).toString('base64url')}`;
  /** When the INTERACTION_CREATE frame was written to the bot's socket. */
  sentAt = 0;
  expired = false;
  readonly callbacks: InteractionCallbackRecord[] = [];
  /** The original response message: created by a type 4/5 callback, or the clicked message (6/7). */
  originalMessageId: string | null;
  readonly followUpIds: string[] = [];
  /** Raw payload as dispatched. */
  payload: APIInteraction = {} as APIInteraction;
  /** The modal the bot answered with (callback type 9), as the person sees it. */
  modal: SimModal | null = null;
  /** The modal was submitted (`d.submitModal`): Discord closes it, so it cannot be sent twice. */
  modalSubmitted = false;

  constructor(
    private readonly state: DiscordState,
    readonly kind: InteractionKind,
    readonly type: InteractionType,
    readonly user: SimUser,
    readonly channel: SimChannel,
    /** For component interactions: the message whose button was clicked. */
    readonly message: SimMessage | null,
    private readonly timing: { timeoutMs: number; tokenTtlMs: number; waitTimeoutMs: number },
  ) {
    this.originalMessageId = null;
  }

  /** The first successful callback, once the bot answered. */
  get response(): InteractionCallbackRecord | undefined {
    return this.callbacks.find((c) => c.status < 300);
  }

  get acknowledged(): boolean {
    return this.response !== undefined;
  }

  /** Milliseconds the bot took to acknowledge (undefined while it has not). */
  get ackLatencyMs(): number | undefined {
    return this.response?.latencyMs;
  }

  /** Whether the 3-second window is over without an answer (checked lazily too, so fake timers work). */
  isExpired(now = Date.now()): boolean {
    if (!this.expired && !this.acknowledged && this.sentAt > 0 && now - this.sentAt > this.timing.timeoutMs) {
      this.markExpired();
    }
    return this.expired;
  }

  /** Whether the token still allows edits and follow-ups (15 minutes after the interaction). */
  tokenValid(now = Date.now()): boolean {
    return now - this.sentAt <= this.timing.tokenTtlMs;
  }

  markExpired(): void {
    if (this.expired || this.acknowledged) return;
    this.expired = true;
    this.state.events.emit('interactionExpired', this);
  }

  /** Resolves with the bot's first successful answer; rejects if the window passed without one. */
  waitForResponse(options: WaitOptions = {}): Promise<InteractionCallbackRecord> {
    return waitForState(this.state.events, {
      events: ['interactionCallback', 'interactionExpired'],
      probe: () => this.response,
      abort: () =>
        this.expired
          ? new InteractionExpiredError(
              `interaction ${this.kind} ${this.describe()} was not answered within ${this.timing.timeoutMs} ms`,
            )
          : undefined,
      what: `the bot to answer ${this.describe()}`,
      timeoutMs: options.timeoutMs ?? this.timing.waitTimeoutMs,
    });
  }

  /** Resolves with the modal the bot opened; rejects if it answered otherwise or not in time. */
  async waitForModal(options: WaitOptions = {}): Promise<SimModal> {
    const response = await this.waitForResponse(options);
    if (!this.modal) {
      throw new Error(`${this.describe()} was answered with callback type ${response.type}, not a modal (9)`);
    }
    return this.modal;
  }

  /** Resolves once Discord would have expired the interaction (the bot never answered). */
  waitForExpiry(options: WaitOptions = {}): Promise<this> {
    return waitForState(this.state.events, {
      events: ['interactionExpired'],
      probe: () => (this.expired ? this : undefined),
      what: `${this.describe()} to expire`,
      timeoutMs: options.timeoutMs ?? this.timing.timeoutMs + this.timing.waitTimeoutMs,
    });
  }

  /** The original response message (or the clicked message for component interactions). */
  original(): SimMessage | undefined {
    return this.originalMessageId ? this.state.messages.get(this.originalMessageId) : undefined;
  }

  /**
   * Resolves when the original response satisfies `predicate` — e.g. the deferred reply was
   * edited to carry the image: `await i.waitForOriginal((m) => m.attachments.length > 0)`.
   */
  waitForOriginal(predicate: (message: SimMessage) => boolean = () => true, options: WaitOptions = {}) {
    return waitForState(this.state.events, {
      events: ['messageCreate', 'messageUpdate', 'interactionCallback'],
      probe: () => {
        const message = this.original();
        return message && !message.deleted && predicate(message) ? message : undefined;
      },
      what: `the original response of ${this.describe()} to match`,
      describe: () => `original now: ${JSON.stringify(summary(this.original()))}`,
      timeoutMs: options.timeoutMs ?? this.timing.waitTimeoutMs,
    });
  }

  followUps(): SimMessage[] {
    // By the interaction id the message carries from its creation, not `followUpIds` alone: that
    // list is appended after the create event has fired, so a wait probing on that event missed it.
    const ids = new Set(this.followUpIds);
    for (const m of this.state.messages.values()) {
      if (m.interactionId === this.id && m.id !== this.originalMessageId) ids.add(m.id);
    }
    return [...ids].map((id) => this.state.messages.get(id)!).filter((m) => !m.deleted);
  }

  /** Resolves with the first follow-up matching `predicate`. */
  waitForFollowUp(predicate: (message: SimMessage) => boolean = () => true, options: WaitOptions = {}) {
    return waitForState(this.state.events, {
      events: ['messageCreate', 'messageUpdate'],
      probe: () => this.followUps().find(predicate),
      what: `a follow-up to ${this.describe()}`,
      timeoutMs: options.timeoutMs ?? this.timing.waitTimeoutMs,
    });
  }

  /** Whether a follow-up should fill the "thinking…" placeholder of a deferred reply instead (Discord does this). */
  get awaitsDeferredContent(): boolean {
    return (
      this.response?.type === InteractionResponseType.DeferredChannelMessageWithSource &&
      this.original()?.history.length === 1
    );
  }

  describe(): string {
    const data = (this.payload as { data?: { name?: string; custom_id?: string } }).data;
    const what = data?.name
      ? `/${data.name}`
      : data?.custom_id
        ? `${this.kind === 'modal' ? 'modal' : 'button'} ${data.custom_id}`
        : this.kind;
    return `${what} by ${this.user.username}`;
  }
}

function summary(message: SimMessage | undefined) {
  if (!message) return null;
  return {
    content: message.content,
    flags: message.flags,
    attachments: message.attachments.map((a) => a.filename),
    buttons: message.buttons.map((b) => b.customId ?? b.url),
  };
}
