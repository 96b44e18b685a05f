/**
 * Slack wants every slash command and click acknowledged within 3 seconds, and a slash command's
 * ack may carry its answer. The gate acks exactly once: with the bot's private answer when that
 * comes quickly (one request instead of two), else empty when the bot posts publicly, finishes,
 * or `deadlineMs` passes — whichever is first.
 * @see https://docs.slack.dev/interactivity/handling-user-interaction#acknowledgment_response
 */

/** What Bolt's ack() takes for a slash command: nothing, or an ephemeral answer. */
export interface AckAnswer {
  response_type: 'ephemeral';
  text: string;
  blocks?: unknown[];
}

export type AckFunction = (answer?: AckAnswer) => Promise<void>;

export class AckGate {
  /** Resolves true once the ack went out, false if sending it failed. */
  #acked: Promise<boolean> | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly ack: AckFunction,
    deadlineMs: number,
    private readonly onError: (error: unknown) => void,
  ) {
    this.#timer = setTimeout(() => void this.empty(), deadlineMs);
  }

  get acked(): boolean {
    return this.#acked !== undefined;
  }

  /**
   * Acks with `answer` if nothing was acked yet. Resolves true when the answer reached Slack this
   * way, false when it must go another way (already acked, or the ack failed).
   */
  answer(answer: AckAnswer): Promise<boolean> {
    if (this.#acked) return Promise.resolve(false);
    return this.#send(answer);
  }

  /** Acks with no answer unless acked already; resolves once the ack went out (or failed). */
  async empty(): Promise<void> {
    await (this.#acked ?? this.#send(undefined));
  }

  #send(answer: AckAnswer | undefined): Promise<boolean> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#acked = this.ack(answer).then(
      () => true,
      (error: unknown) => {
        this.onError(error);
        return false;
      },
    );
    return this.#acked;
  }
}
