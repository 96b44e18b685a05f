/**
 * Answers one interaction inside Discord's 3-second window, whatever the bot does. The bot is
 * called at once; if it has not answered after `deferAfterMs`, the interaction is deferred (a
 * public "thinking…" for commands, a silent acknowledgement for clicks) and the answer goes
 * out later as an edit or a follow-up. Calls are serialized, so a timer firing while the bot
 * answers cannot acknowledge twice.
 *
 * Discord's rules it follows (Receiving and Responding docs): one initial callback; the first
 * follow-up after a deferred reply fills the "thinking…" message and keeps its (public)
 * visibility — so a private answer after a public defer first turns the placeholder into a
 * plain message, then sends an ephemeral follow-up, then deletes the placeholder.
 * @see https://discord.com/developers/docs/interactions/receiving-and-responding
 */
import type { APIMessage } from 'discord.js';
import type { ChatForm, ChatMessage, PostedMessage } from '../../commands/types.js';
import { AtelierError } from '../../src/errors.js';
import type { ReplyTarget } from '../../src/jobs/types.js';
import { renderModal } from './modal.js';
import { type InteractionReference, postedMessage } from './references.js';
import { type RenderedMessage, renderMessage } from './render.js';
import type { DiscordTransport } from './transport.js';

export type InteractionKind = 'command' | 'component';

type State =
  /** Nothing sent yet. */
  | 'pending'
  /** Type 5 sent: a public "thinking…" message waits to be filled. */
  | 'deferred'
  /** Type 6 sent (a click acknowledged silently): answers are follow-ups. */
  | 'acknowledged'
  /** A message answered it: further answers are follow-ups. */
  | 'answered';

export interface ResponderOptions {
  id: string;
  kind: InteractionKind;
  reference: InteractionReference;
  where: ReplyTarget;
  transport: DiscordTransport;
  deferAfterMs: number;
  /** Told when a message could not be fully rendered (dropped buttons, cut text). */
  onDropped?: (dropped: string[]) => void;
}

/** A modal asked for after the interaction was already deferred (Discord refuses that). */
export class ModalTooLateError extends AtelierError {
  constructor() {
    super(
      'TIMEOUT',
      'modal after the interaction was acknowledged',
      'That took me too long to open the form. Please click again.',
    );
  }
}

/** Shown for a moment in place of a public "thinking…" message when the answer is private. */
const PRIVATE_PLACEHOLDER = '↪ answered privately';

export class InteractionResponder {
  readonly #options: ResponderOptions;
  #state: State = 'pending';
  #queue: Promise<unknown> = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;

  constructor(options: ResponderOptions) {
    this.#options = options;
  }

  /** Whether the interaction has been acknowledged in any way. */
  get acknowledged(): boolean {
    return this.#state !== 'pending';
  }

  /** Starts the window clock: defers if nothing was sent after `deferAfterMs`. */
  arm(): void {
    this.#timer = setTimeout(() => {
      this.#serial(() => this.#deferIfPending()).catch(() => {
        // Reported where it matters: the answer that follows fails too and is logged there.
      });
    }, this.#options.deferAfterMs);
    this.#timer.unref?.();
  }

  /** A public answer; the first one becomes the interaction's message. */
  reply(message: ChatMessage): Promise<PostedMessage> {
    return this.#serial(async () => {
      const rendered = this.#render(message, false);
      const { transport, reference } = this.#options;
      let sent: APIMessage;
      switch (this.#state) {
        case 'pending':
          sent = await transport.respondWithMessage(this.#handle(), rendered);
          break;
        case 'deferred':
          sent = await transport.editInteractionMessage(reference, '@original', rendered);
          break;
        default:
          sent = await transport.followUp(reference, rendered);
      }
      this.#state = 'answered';
      return postedMessage(this.#options.where, sent.id, reference);
    });
  }

  /** An answer only the invoker sees. */
  replyPrivately(message: ChatMessage): Promise<void> {
    return this.#serial(async () => {
      const rendered = this.#render(message, true);
      const { transport, reference } = this.#options;
      switch (this.#state) {
        case 'pending':
          await transport.respondWithMessage(this.#handle(), rendered);
          break;
        case 'deferred':
          await this.#replacePublicPlaceholder(rendered);
          break;
        default:
          await transport.followUp(reference, rendered);
      }
      this.#state = 'answered';
    });
  }

  /**
   * Opens a modal: only possible as the interaction's first answer (not after a defer), so a bot
   * that took longer than `deferAfterMs` gets an error asking the person to click again.
   */
  openModal(form: ChatForm): Promise<void> {
    return this.#serial(async () => {
      if (this.#state !== 'pending') throw new ModalTooLateError();
      await this.#options.transport.showModal(this.#handle(), renderModal(form));
      this.#state = 'answered';
    });
  }

  /**
   * After the bot is done: an interaction it never answered is closed quietly — a click is
   * acknowledged, a command's unfilled "thinking…" message is removed.
   */
  finish(): Promise<void> {
    this.#stopTimer();
    return this.#serial(async () => {
      const { transport, reference } = this.#options;
      if (this.#state === 'pending') {
        if (this.#options.kind === 'component') await transport.defer(this.#handle(), 'update');
        else await transport.respondWithMessage(this.#handle(), this.#render({ text: '✓' }, true));
        this.#state = 'answered';
      } else if (this.#state === 'deferred') {
        await transport.deleteInteractionMessage(reference, '@original');
        this.#state = 'answered';
      }
    });
  }

  #replacePublicPlaceholder(rendered: RenderedMessage): Promise<void> {
    const { transport, reference } = this.#options;
    return (async () => {
      await transport.editInteractionMessage(
        reference,
        '@original',
        this.#render({ text: PRIVATE_PLACEHOLDER }, false),
      );
      await transport.followUp(reference, rendered);
      await transport.deleteInteractionMessage(reference, '@original');
    })();
  }

  async #deferIfPending(): Promise<void> {
    if (this.#state !== 'pending') return;
    const kind = this.#options.kind === 'command' ? 'reply' : 'update';
    await this.#options.transport.defer(this.#handle(), kind);
    this.#state = kind === 'reply' ? 'deferred' : 'acknowledged';
  }

  #render(message: ChatMessage, ephemeral: boolean): RenderedMessage {
    const rendered = renderMessage(message, { ephemeral });
    if (rendered.dropped.length > 0) this.#options.onDropped?.(rendered.dropped);
    return rendered;
  }

  #handle() {
    return { id: this.#options.id, token: this.#options.reference.token };
  }

  #stopTimer(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Runs `task` after every earlier one; an answer that starts also stops the defer timer. */
  #serial<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(task);
    this.#queue = run.catch(() => {});
    return run;
  }
}
