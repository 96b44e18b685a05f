/**
 * Deliveries: everything Slack sends the bot (slash commands, button clicks, events), over
 * signed HTTP or Socket Mode, with the ack measured against Slack's 3-second window. The ack's
 * content is applied as Slack would (a slash command's ack text becomes an ephemeral reply).
 */
import { randomUUID } from 'node:crypto';
import { SimulatorUsageError } from '../shared/errors.js';
import { type WaitOptions, waitForState } from '../shared/waiting.js';
import { triggerId } from './ids.js';
import type { ResolvedSlackOptions } from './options.js';
import { type SignatureMode, signatureHeaders } from './signing.js';
import type { SlackState } from './state.js';
import type { AckRecord, DeliveryKind, SlackBlock, SlackEphemeral, SlackMessage } from './types.js';

export interface SocketTransport {
  readonly connected: boolean;
  /** Sends an envelope; resolves with the ack payload, or undefined if none came within `timeoutMs`. */
  deliver(envelope: Record<string, unknown>, timeoutMs: number): Promise<{ payload: unknown } | undefined>;
}

/** What the bot posted to a delivery's response_url. */
export interface ResponsePost {
  at: number;
  body: Record<string, unknown>;
}

/** One thing sent to the bot, and how it answered. */
export class SlackDelivery {
  readonly id = randomUUID();
  sentAt = 0;
  transport: 'http' | 'socket' = 'http';
  ack: AckRecord | undefined;
  /** Socket Mode: when an ack came after the window had closed (Slack ignores it). */
  lateAckMs: number | undefined;
  /** HTTP: the request exactly as sent (body and headers), so it can be replayed byte for byte. */
  request: { body: string; headers: Record<string, string> } | undefined;
  /** A redelivery by Slack (`X-Slack-Retry-Num` over HTTP, `retry_attempt` over Socket Mode). */
  retry: { attempt: number; reason: string } | undefined;
  readonly responsePosts: ResponsePost[] = [];

  constructor(
    private readonly state: SlackState,
    readonly kind: DeliveryKind,
    /** The payload object as the bot's framework sees it. */
    readonly payload: Record<string, unknown>,
    readonly signature: SignatureMode,
    readonly user: string | null,
    readonly channel: string | null,
    /** For clicks: the message or ephemeral the button was on. */
    readonly container: { message: SlackMessage } | { ephemeral: SlackEphemeral } | null,
    private readonly waitTimeoutMs: number,
  ) {}

  /** Resolves once the bot acked, or Slack gave up (`timedOut`), or the request was refused (401). */
  waitForAck(options: WaitOptions = {}): Promise<AckRecord> {
    return waitForState(this.state.events, {
      events: ['ack'],
      probe: () => this.ack,
      what: `an ack for ${this.kind}`,
      timeoutMs: options.timeoutMs ?? this.waitTimeoutMs,
    });
  }

  /** Resolves with the first response_url post matching `predicate`. */
  waitForResponse(predicate: (post: ResponsePost) => boolean = () => true, options: WaitOptions = {}) {
    return waitForState(this.state.events, {
      events: ['apiCall'],
      probe: () => this.responsePosts.find(predicate),
      what: `a response_url post for ${this.kind}`,
      timeoutMs: options.timeoutMs ?? this.waitTimeoutMs,
    });
  }
}

interface ResponseUrlEntry {
  delivery: SlackDelivery;
  uses: number;
  createdAt: number;
  /** For slash commands: the ephemeral reply a later replace_original replaces. */
  lastEphemeral: SlackEphemeral | null;
}

export class SlackDeliveries {
  readonly all: SlackDelivery[] = [];
  readonly #triggers = new Map<string, { at: number; user: string | null; exchanged: boolean }>();
  readonly #responseUrls = new Map<string, ResponseUrlEntry>();
  socket: SocketTransport | undefined;
  baseUrl = '';

  /** Notes an ack that arrived after its window (Socket Mode). */
  lateAck(envelopeId: string): void {
    const delivery = this.all.find((d) => d.id === envelopeId);
    if (!delivery) return;
    delivery.lateAckMs = Date.now() - delivery.sentAt;
    this.state.events.emit('lateAck', delivery);
  }

  constructor(
    private readonly state: SlackState,
    private readonly options: ResolvedSlackOptions,
  ) {}

  /** A trigger_id for something `user` did (it opens a modal on their screen). */
  newTriggerId(user: string | null = null): string {
    const id = triggerId();
    this.#triggers.set(id, { at: Date.now(), user, exchanged: false });
    return id;
  }

  triggerIssuedAt(id: string): number | undefined {
    return this.#triggers.get(id)?.at;
  }

  /** The trigger, for views.open: when it was issued, for whom, and whether a view used it already. */
  trigger(id: string): { at: number; user: string | null; exchanged: boolean } | undefined {
    return this.#triggers.get(id);
  }

  /** A response_url for a delivery (usable 5 times within 30 minutes, as on Slack). */
  newResponseUrl(kind: 'commands' | 'actions'): { url: string; bind(delivery: SlackDelivery): void } {
    const id = randomUUID().replaceAll('-', '');
    return {
      url: `${this.baseUrl}/${kind}/${this.state.teamId}/${id}`,
      bind: (delivery) =>
        this.#responseUrls.set(id, { delivery, uses: 0, createdAt: Date.now(), lastEphemeral: null }),
    };
  }

  responseUrl(id: string): ResponseUrlEntry | undefined {
    return this.#responseUrls.get(id);
  }

  /**
   * Sends a delivery over Socket Mode (if connected and allowed) or signed HTTP. `exactHeaders`
   * sends these headers instead of signing afresh (a replay), always over HTTP.
   */
  send(
    delivery: SlackDelivery,
    http: { body: string; contentType: string; exactHeaders?: Record<string, string> },
    socketType: string | null,
  ): SlackDelivery {
    const useSocket =
      socketType !== null &&
      http.exactHeaders === undefined &&
      this.options.transport !== 'http' &&
      (this.options.transport === 'socket' || this.socket?.connected === true);
    if (useSocket && !this.socket?.connected) {
      throw new SimulatorUsageError('transport is "socket" but no Socket Mode connection is open');
    }
    if (!useSocket && !this.options.requestUrl) {
      throw new SimulatorUsageError(
        'no Request URL set and no Socket Mode connection: call s.setRequestUrl(url) or start Socket Mode',
      );
    }
    delivery.transport = useSocket ? 'socket' : 'http';
    this.all.push(delivery);
    delivery.sentAt = Date.now();
    const sending = useSocket ? this.#sendSocket(delivery, socketType!) : this.#sendHttp(delivery, http);
    this.state.events.emit('delivery', delivery);
    sending.then(
      (ack) => this.#acked(delivery, ack),
      (error: unknown) =>
        this.#acked(delivery, {
          status: null,
          body: String(error),
          ackMs: Date.now() - delivery.sentAt,
          timedOut: false,
        }),
    );
    return delivery;
  }

  async #sendHttp(
    delivery: SlackDelivery,
    http: { body: string; contentType: string; exactHeaders?: Record<string, string> },
  ): Promise<AckRecord> {
    const headers = http.exactHeaders ?? {
      'content-type': http.contentType,
      'user-agent': 'Slackbot 1.0 (+https://api.slack.com/robots)',
      ...signatureHeaders(http.body, this.options.signingSecret, delivery.signature),
      ...(delivery.retry
        ? {
            'x-slack-retry-num': String(delivery.retry.attempt),
            'x-slack-retry-reason': delivery.retry.reason,
          }
        : {}),
    };
    delivery.request = { body: http.body, headers };
    try {
      const response = await fetch(this.options.requestUrl!, {
        method: 'POST',
        headers,
        body: http.body,
        signal: AbortSignal.timeout(this.options.ackTimeoutMs),
      });
      const text = await response.text();
      return {
        status: response.status,
        body: parseMaybeJson(text),
        ackMs: Date.now() - delivery.sentAt,
        timedOut: false,
      };
    } catch (error) {
      if ((error as Error).name === 'TimeoutError') {
        return { status: null, body: undefined, ackMs: Date.now() - delivery.sentAt, timedOut: true };
      }
      throw error;
    }
  }

  async #sendSocket(delivery: SlackDelivery, type: string): Promise<AckRecord> {
    const envelope = {
      envelope_id: delivery.id,
      payload: delivery.payload,
      type,
      accepts_response_payload: type !== 'events_api',
      ...(type === 'events_api'
        ? { retry_attempt: delivery.retry?.attempt ?? 0, retry_reason: delivery.retry?.reason ?? '' }
        : {}),
    };
    const ack = await this.socket!.deliver(envelope, this.options.ackTimeoutMs);
    if (!ack) return { status: null, body: undefined, ackMs: Date.now() - delivery.sentAt, timedOut: true };
    return { status: 200, body: ack.payload, ackMs: Date.now() - delivery.sentAt, timedOut: false };
  }

  /** Records the ack and applies its content the way Slack does. */
  #acked(delivery: SlackDelivery, ack: AckRecord): void {
    delivery.ack = ack;
    if (delivery.kind === 'view_submission') applyViewAck(this.state, delivery, ack);
    if (ack.status === 200 && delivery.kind === 'slash_command' && delivery.user && delivery.channel) {
      const reply = ackReply(ack.body);
      if (reply) {
        if (reply.inChannel) {
          this.state.postMessage({
            channel: delivery.channel,
            user: this.state.bot.id,
            text: reply.text,
            blocks: reply.blocks,
          });
        } else {
          this.state.postEphemeral({
            channel: delivery.channel,
            user: delivery.user,
            text: reply.text,
            blocks: reply.blocks,
            threadTs: null,
            source: 'ack',
          });
        }
      }
    }
    this.state.events.emit('ack', delivery);
  }
}

/**
 * A view_submission ack: empty (or `response_action: clear`) closes the modal; `errors` keeps it
 * open with a message under each named input. Without a 200 in time the modal stays open and the
 * person sees Slack's own error.
 */
function applyViewAck(state: SlackState, delivery: SlackDelivery, ack: AckRecord): void {
  const id = (delivery.payload.view as { id?: string } | undefined)?.id;
  const view = id ? state.views.get(id) : undefined;
  if (!view || ack.status !== 200) return;
  const body = (ack.body && typeof ack.body === 'object' ? ack.body : {}) as Record<string, unknown>;
  if (body.response_action === 'errors' && body.errors && typeof body.errors === 'object') {
    view.errors = { ...(body.errors as Record<string, string>) };
    return;
  }
  view.state = 'submitted';
  view.errors = {};
  state.events.emit('viewClosed', view);
}

/** A slash command ack with a body is the command's reply: text or `{ text, blocks, response_type }`. */
function ackReply(body: unknown): { text: string; blocks: SlackBlock[]; inChannel: boolean } | undefined {
  if (typeof body === 'string')
    return body.length > 0 ? { text: body, blocks: [], inChannel: false } : undefined;
  if (!body || typeof body !== 'object') return undefined;
  const { text, blocks, response_type: responseType } = body as Record<string, unknown>;
  if (typeof text !== 'string' && !Array.isArray(blocks)) return undefined;
  return {
    text: typeof text === 'string' ? text : '',
    blocks: Array.isArray(blocks) ? (blocks as SlackBlock[]) : [],
    inChannel: responseType === 'in_channel',
  };
}

function parseMaybeJson(text: string): unknown {
  if (text.length === 0) return '';
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}
