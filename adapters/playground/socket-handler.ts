/**
 * One tab's WebSocket: it says hello with a name, gets the feed so far, then sends what its person
 * does. A frame the server cannot use is answered with a `problem` frame, never by closing the tab.
 */
import type WebSocket from 'ws';
import { ValidationError } from '../../src/errors.js';
import type { Logger } from '../../src/log.js';
import type { PlaygroundBot } from './bot-port.js';
import type { ChannelHub } from './hub.js';
import { type Interactions, REACTION_EMOJIS } from './interactions.js';
import { type ClientFrame, parseClientFrame } from './protocol.js';
import { userFromName } from './users.js';

export interface SocketContext {
  hub: ChannelHub;
  bot: PlaygroundBot;
  interactions: Interactions;
  logger: Logger;
}

export function handleSocket(socket: WebSocket, context: SocketContext): void {
  const { hub } = context;
  hub.sessions.add(socket);
  socket.on('close', () => hub.sessions.remove(socket));
  socket.on('error', (error) => context.logger.debug({ err: error }, 'playground: socket error'));
  socket.on('message', (data, isBinary) => {
    const frame = isBinary ? undefined : parseClientFrame(data.toString());
    if (!frame) {
      hub.sessions.send(socket, { type: 'problem', message: 'The server did not understand that frame.' });
      return;
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
      return interactions.click(user, frame);
    case 'react':
      return interactions.react(user, frame, true);
    case 'unreact':
      return interactions.react(user, frame, false);
  }
}

function hello(socket: WebSocket, name: string, { hub, bot }: SocketContext): void {
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
    messages: hub.feed.historyFor(user.id),
  });
}
