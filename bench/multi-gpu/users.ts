/**
 * Simulated people on the playground: one WebSocket tab each, speaking the page's protocol
 * (adapters/playground/protocol.ts), so every job takes the product's real path — the typed
 * `/imagine` parsed by the Bot, the limits, the fair queue, the pipeline (or a worker), the result
 * edited into the job's message — in whichever mode the product runs. A person sends one command
 * at a time and waits for its answer, as the page's user does.
 */
import WebSocket from 'ws';
import type { ServerFrame, WireMessage } from '../../adapters/playground/protocol.js';

const CHANNEL = 'general';
/** The cancel button's custom id (commands/custom-id.ts): `at1:c:<jobId>`. */
const CANCEL_ID = /^at1:c:([0-9A-Za-z]{1,40})$/;
/** Any of our buttons names the job: `at1:<code>:<jobId>[:<index>]`. */
const BUTTON_JOB_ID = /^at1:[a-z]:([0-9A-Za-z]{1,40})(?::\d{1,2})?$/;

export function jobIdOf(message: WireMessage): string | undefined {
  for (const button of message.buttons.flat()) {
    const match = BUTTON_JOB_ID.exec(button.customId);
    if (match) return match[1];
  }
  return undefined;
}

/** Still moving (queued, starting, in progress): it carries a Cancel button. */
export function isUnfinished(message: WireMessage): boolean {
  return message.buttons.flat().some((b) => CANCEL_ID.test(b.customId));
}

export type Outcome = 'done' | 'failed' | 'cancelled';

export function outcomeOf(message: WireMessage): Outcome {
  if (message.result || message.image) return 'done';
  return message.text.includes('Cancelled') ? 'cancelled' : 'failed';
}

interface Waiter {
  match(message: WireMessage, isNew: boolean): boolean;
  resolve(message: WireMessage): void;
  reject(error: Error): void;
}

/** One browser tab of one person. */
export class Tab {
  readonly #socket: WebSocket;
  readonly #seen = new Set<string>();
  readonly #latest = new Map<string, WireMessage>();
  #waiters: Waiter[] = [];
  readonly problems: string[] = [];

  private constructor(
    socket: WebSocket,
    readonly userId: string,
  ) {
    this.#socket = socket;
    socket.on('message', (data) => this.#onFrame(JSON.parse(data.toString()) as ServerFrame));
    socket.on('close', () => this.#failAll(new Error(`tab ${userId}: the playground closed the socket`)));
  }

  /** Opens `/ws` on `baseUrl` and says hello as `name`; resolves after the welcome frame. */
  static async open(baseUrl: string, name: string): Promise<Tab> {
    const socket = new WebSocket(`${baseUrl.replace(/^http/, 'ws')}/ws`);
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve());
      socket.once('error', reject);
    });
    const welcome = new Promise<{ id: string; history: WireMessage[] }>((resolve, reject) => {
      const onFrame = (data: WebSocket.RawData) => {
        const frame = JSON.parse(data.toString()) as ServerFrame;
        if (frame.type === 'welcome') {
          socket.off('message', onFrame);
          resolve({ id: frame.user.id, history: frame.messages });
        } else if (frame.type === 'problem') reject(new Error(`hello as ${name}: ${frame.message}`));
      };
      socket.on('message', onFrame);
    });
    socket.send(JSON.stringify({ type: 'hello', name }));
    const { id, history } = await welcome;
    const tab = new Tab(socket, id);
    for (const message of history) tab.#seen.add(message.id);
    return tab;
  }

  /**
   * Types `text` (a `/command …`) and resolves with the bot's answer: the first new message that
   * answers this person (a job's message, or a private note such as a refusal).
   */
  command(text: string, timeoutMs = 120_000): Promise<WireMessage> {
    const answer = this.#wait((m, isNew) => isNew && m.interaction?.user.id === this.userId, timeoutMs, text);
    this.#socket.send(JSON.stringify({ type: 'say', channelId: CHANNEL, text }));
    return answer;
  }

  /** Resolves with the message `id` once it no longer carries a Cancel button (result, failure, cancel). */
  final(id: string, timeoutMs: number): Promise<WireMessage> {
    const now = this.#latest.get(id);
    if (now && !isUnfinished(now)) return Promise.resolve(now);
    return this.#wait((m) => m.id === id && !isUnfinished(m), timeoutMs, `the result of ${id}`);
  }

  close(): void {
    this.#failAll(new Error(`tab ${this.userId} closed`));
    this.#socket.close();
  }

  #wait(match: Waiter['match'], timeoutMs: number, what: string): Promise<WireMessage> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(new Error(`tab ${this.userId}: no answer to ${what} within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      const waiter: Waiter = {
        match,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      this.#waiters.push(waiter);
    });
  }

  #onFrame(frame: ServerFrame): void {
    if (frame.type === 'problem') {
      // The playground refused a frame of this tab (over its frame budget, say): nothing answers it.
      this.problems.push(frame.message);
      this.#failAll(new Error(`tab ${this.userId}: the playground said: ${frame.message}`));
      return;
    }
    if (frame.type !== 'message') return;
    const message = frame.message;
    const isNew = !this.#seen.has(message.id);
    this.#seen.add(message.id);
    if (message.interaction?.user.id !== this.userId) return;
    this.#latest.set(message.id, message);
    for (const waiter of [...this.#waiters]) {
      if (!waiter.match(message, isNew)) continue;
      this.#waiters = this.#waiters.filter((w) => w !== waiter);
      waiter.resolve(message);
    }
  }

  #failAll(error: Error): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const waiter of waiters) waiter.reject(error);
  }
}

/** One job as the person saw it. Times are Date.now() ms. */
export interface JobObservation {
  user: string;
  /** The command typed. */
  text: string;
  sentAt: number;
  answeredAt: number;
  /** The job's message (absent when refused). */
  messageId?: string;
  jobId?: string;
  outcome: Outcome | 'refused' | 'pending';
  finishedAt?: number;
  /** The refusal or failure as the person read it. */
  note?: string;
  width?: number;
  height?: number;
  imageUrl?: string;
  /** Sent to test a limit, not part of the load. */
  probe?: 'queue-cap' | 'rate-limit';
}

export interface LoadUserOptions {
  /** Jobs this person keeps waiting or running. */
  queued: number;
  /** The `/imagine …` line for this person's n-th job. */
  command(n: number): string;
  /** How long a job may take before the run is called stuck. */
  jobTimeoutMs: number;
  /** Told of every result, in the order they arrive. */
  onFinal?(job: JobObservation): void;
}

/**
 * A person who keeps `queued` jobs waiting or running: asks until that many are accepted, and
 * asks again each time one finishes, until `stop()`.
 */
export class LoadUser {
  readonly jobs: JobObservation[] = [];
  #sent = 0;
  #outstanding = 0;
  #active = false;
  #stopped = false;
  /** Commands of one person go one after another. */
  #chain: Promise<void> = Promise.resolve();
  /** What went wrong while the load ran (no answer in time, the socket closed). */
  error: Error | undefined;

  constructor(
    readonly tab: Tab,
    readonly options: LoadUserOptions,
  ) {}

  get userId(): string {
    return this.tab.userId;
  }

  get outstanding(): number {
    return this.#outstanding;
  }

  /** Asks until `queued` jobs are accepted (refusals are retried after a second). */
  fill(): Promise<void> {
    return this.#enqueue(async () => {
      while (this.#outstanding < this.options.queued && !this.error && !this.#stopped) await this.#ask();
    });
  }

  /** One more job than the cap allows; resolves with how the product answered it. */
  probeQueueCap(): Promise<JobObservation> {
    let observed: JobObservation | undefined;
    return this.#enqueue(async () => {
      observed = await this.#ask({ probe: 'queue-cap', retry: false });
    }).then(() => observed!);
  }

  /** From now on, every finished job is replaced at once. */
  start(): void {
    this.#active = true;
    void this.fill();
  }

  /** No more jobs are asked for; resolves when the command under way is answered. */
  async stop(): Promise<void> {
    this.#active = false;
    this.#stopped = true;
    await this.#chain;
  }

  #enqueue(step: () => Promise<void>): Promise<void> {
    const next = this.#chain.then(step).catch((error: unknown) => {
      this.error ??= error as Error;
    });
    this.#chain = next;
    return next;
  }

  async #ask(
    options: { probe?: JobObservation['probe']; retry?: boolean } = {},
  ): Promise<JobObservation | undefined> {
    const text = this.options.command(this.#sent++);
    const sentAt = Date.now();
    const answer = await this.tab.command(text);
    const observed: JobObservation = {
      user: this.userId,
      text,
      sentAt,
      answeredAt: Date.now(),
      outcome: 'pending',
      ...(options.probe ? { probe: options.probe } : {}),
    };
    this.jobs.push(observed);
    const jobId = answer.private ? undefined : jobIdOf(answer);
    if (!jobId) {
      observed.outcome = 'refused';
      observed.note = answer.text;
      if (options.retry !== false) await new Promise((resolve) => setTimeout(resolve, 1000));
      return observed;
    }
    observed.messageId = answer.id;
    observed.jobId = jobId;
    this.#outstanding++;
    void this.tab.final(answer.id, this.options.jobTimeoutMs).then(
      (message) => {
        observed.finishedAt = Date.now();
        observed.outcome = outcomeOf(message);
        if (observed.outcome === 'done') {
          observed.width = message.image?.width;
          observed.height = message.image?.height;
          observed.imageUrl = message.image?.url;
        } else observed.note = message.text;
        this.#outstanding--;
        this.options.onFinal?.(observed);
        if (this.#active) void this.fill();
      },
      (error: unknown) => {
        // Jobs still queued when the run ends are never answered: only a failure during the load counts.
        if (!this.#stopped) this.error ??= error as Error;
      },
    );
    return observed;
  }
}
