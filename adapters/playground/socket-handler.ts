/**
 * One tab's WebSocket: it says hello with a name, gets the feed so far, then sends what its person
 * does. A frame the server cannot use is answered with a `problem` frame, never by closing the tab.
 *
 * Each tab has its own budget: frames per minute (a token bucket, so a burst of clicks is fine),
 * bytes per frame, and characters per plain chat line (the lines every other tab receives). A tab
 * over budget is told so and its frames are dropped; no other tab notices.
 */
import type WebSocket from 'ws';
import type { BotPort } from '../../commands/port.js';
import { ValidationError } from '../../src/errors.js';
import type { Logger } from '../../src/log.js';
import type { ChannelHub } from './hub.js';
import { type Interactions, REACTION_EMOJIS } from './interactions.js';
import { type ClientFrame, parseClientFrame } from './protocol.js';
import { userFromName } from './users.js';

export interface ConnectionLimits {
  /** Frames a tab may send per minute, in bursts of up to a quarter of that (at least 10). */
  maxFramesPerMinute: number;
  /** Largest frame a tab may send. */
  maxFrameBytes: number;
  /** Longest plain chat line (commands may be longer: the bot answers them privately). */
  maxChatLength: number;
  /** The welcome frame carries at most this much of the feed (the newest messages). */
  welcomeMaxBytes: number;
}

export interface SocketContext {
  hub: ChannelHub;
  bot: Pick<BotPort, 'commands'>;
  interactions: Interactions;
  logger: Logger;
  limits: ConnectionLimits;
}

/** Autocomplete asks as a person types, so it costs a quarter of a frame. */
const AUTOCOMPLETE_COST = 0.25;
/** A tab over budget is told at most this often. */
const PROBLEM_INTERVAL_MS = 2000;

export function handleSocket(socket: WebSocket, context: SocketContext): void {
  const { hub, limits } = context;
  const bucket = new FrameBucket(limits.maxFramesPerMinute);
  let lastProblemAt = Number.NEGATIVE_INFINITY;
  const refuse = (message: string) => {
    const now = Date.now();
    if (now - lastProblemAt < PROBLEM_INTERVAL_MS) return;
    lastProblemAt = now;
    hub.sessions.send(socket, { type: 'problem', message });
  };
  hub.sessions.add(socket);
  socket.on('close', () => hub.sessions.remove(socket));
  socket.on('error', (error) => context.logger.debug({ err: error }, 'playground: socket error'));
  socket.on('message', (data, isBinary) => {
    const bytes = Array.isArray(data)
      ? data.reduce((n, b) => n + b.byteLength, 0)
      : (data as Buffer | ArrayBuffer).byteLength;
    if (bytes > limits.maxFrameBytes) {
      bucket.take(1);
      refuse(`That was too large for the playground (${kib(bytes)}; at most ${kib(limits.maxFrameBytes)}).`);
      return;
    }
    const frame = isBinary ? undefined : parseClientFrame(data.toString());
    if (!bucket.take(frame?.type === 'autocomplete' ? AUTOCOMPLETE_COST : 1)) {
      if (frame?.type !== 'autocomplete')
        refuse(
          `You are sending faster than the playground takes (${limits.maxFramesPerMinute} a minute); that was not sent. Wait a few seconds.`,
        );
      return;
    }
    if (!frame) {
      hub.sessions.send(socket, { type: 'problem', message: 'The server did not understand that frame.' });
      return;
    }
    if (frame.type === 'say' && !frame.text.trim().startsWith('/')) {
      const length = [...frame.text.trim()].length;
      if (length > limits.maxChatLength) {
        hub.sessions.send(socket, {
          type: 'problem',
          message: `Chat lines are at most ${limits.maxChatLength} characters (this one has ${length}); it was not sent.`,
        });
        return;
      }
    }
    dispatch(socket, frame, context).catch((error: unknown) => {
      context.logger.error({ err: error, frame: frame.type }, 'playground: frame failed');
    });
  });
}

async function dispatch(socket: WebSocket, frame: ClientFrame, context: SocketContext): Promise<void> {
  const { hub, interactions } = context;
  if (frame.type === 'hello') return hello(socket, frame.name, context);
  const user = hub.sessions.userOf(socket);
  if (!user) return hub.sessions.send(socket, { type: 'problem', message: 'Choose a name first.' });
  if (frame.type === 'autocomplete') {
    const choices = await interactions.autocomplete(user, frame);
    return hub.sessions.send(socket, { type: 'suggestions', requestId: frame.requestId, choices });
  }
  if (!hub.feed.hasChannel(frame.channelId))
    return hub.sessions.send(socket, {
      type: 'problem',
      message: `There is no #${frame.channelId} channel.`,
    });
  switch (frame.type) {
    case 'say':
      return interactions.say(user, frame);
    case 'click':
      // A form the bot opens for this click shows in this tab only.
      return interactions.click(user, frame, (form) =>
        hub.sessions.send(socket, { type: 'form', channelId: frame.channelId, form }),
      );
    case 'submit':
      return interactions.submit(user, frame);
    case 'react':
      return interactions.react(user, frame, true);
    case 'unreact':
      return interactions.react(user, frame, false);
  }
}

function hello(socket: WebSocket, name: string, { hub, bot, limits }: SocketContext): void {
  let user: ReturnType<typeof userFromName>;
  try {
    user = userFromName(name);
  } catch (error) {
    const message = error instanceof ValidationError ? error.userMessage : 'That name cannot be used.';
    hub.sessions.send(socket, { type: 'problem', message, field: 'name' });
    return;
  }
  hub.users.remember(user);
  hub.sessions.identify(socket, user);
  hub.sessions.send(socket, {
    type: 'welcome',
    user,
    channels: hub.feed.channels(),
    commands: [...bot.commands],
    reactionEmojis: [...REACTION_EMOJIS],
    messages: hub.feed.historyFor(user.id, limits.welcomeMaxBytes),
  });
}

/** A token bucket: `perMinute` frames a minute, bursts of a quarter of that (at least 10). */
class FrameBucket {
  readonly #capacity: number;
  readonly #perMs: number;
  #tokens: number;
  #at = Date.now();

  constructor(perMinute: number) {
    this.#capacity = Math.max(10, perMinute / 4);
    this.#perMs = perMinute / 60_000;
    this.#tokens = this.#capacity;
  }

  take(cost: number): boolean {
    const now = Date.now();
    this.#tokens = Math.min(this.#capacity, this.#tokens + (now - this.#at) * this.#perMs);
    this.#at = now;
    if (this.#tokens < cost) return false;
    this.#tokens -= cost;
    return true;
  }
}

function kib(bytes: number): string {
  return bytes >= 1024 * 1024
    ? `${(bytes / (1024 * 1024)).toFixed(1)} MiB`
    : `${Math.ceil(bytes / 1024)} KiB`;
}
