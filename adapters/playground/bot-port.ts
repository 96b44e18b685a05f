/**
 * What the playground needs from the Bot: the few calls it makes, picked from the class so unit
 * tests can stand in for it with a small double. The Bot's `app`, when there is one, gives the
 * database the conversation is kept in and the `playground.*` settings.
 */
import type { Bot } from '../../commands/bot.js';

export type PlaygroundBot = Partial<Pick<Bot, 'app'>> &
  Pick<
    Bot,
    | 'commands'
    | 'attach'
    | 'command'
    | 'action'
    | 'reaction'
    | 'autocomplete'
    | 'parseText'
    | 'recentResults'
    | 'resultImage'
  >;

export type ResultImage = NonNullable<Awaited<ReturnType<Bot['resultImage']>>>;
export type { GalleryEntry } from '../../commands/bot.js';
