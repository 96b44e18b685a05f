/**
 * The tour never hits a wall, as a chat user sees it: the playground operator is an admin by
 * default, refusals from /imagine offer fewer images (buttons never do), /queue says what is left,
 * and a typo of a typed command gets "did you mean".
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Bot } from '../../commands/bot.js';
import { parseCommandText } from '../../commands/text-args.js';
import { FakeAdapter } from '../helpers/fake-adapter.js';
import { startTestApp, type TestApp } from '../helpers/test-app.js';

let app: TestApp | undefined;
let bot: Bot | undefined;
afterEach(async () => {
  await bot?.stop();
  await app?.dispose();
  bot = undefined;
  app = undefined;
});

async function start(env: Record<string, string> = {}, platform = 'playground') {
  app = await startTestApp({ ATELIER_QUEUE__MAX_QUEUED_PER_USER: '10', ...env });
  bot = new Bot(app);
  const chat = new FakeAdapter(platform);
  bot.attach(chat);
  bot.start();
  return { bot, chat };
}

describe('the tour', () => {
  it('with the defaults, the playground operator is an admin: 4 + 4 + 4 images are never refused', async () => {
    const { bot, chat } = await start();
    const inv = chat.invocation('newcomer');
    expect(app!.scheduler.isAdmin(inv.requester)).toBe(true);
    for (let i = 0; i < 3; i++) await bot.command(inv, 'imagine', { prompt: `fox ${i}`, count: 4 });
    expect(chat.privateMessages.map((p) => p.message.text)).toEqual([]);
    expect(chat.messages).toHaveLength(3);
  });

  it('configured otherwise, /imagine offers fewer images and /queue says what is left', async () => {
    const { bot, chat } = await start({ ATELIER_LIMITS__ADMINS__PLAYGROUND__USER_IDS: 'someone-else' });
    const inv = chat.invocation('alice');
    await bot.command(inv, 'imagine', { prompt: 'three foxes', count: 3 });
    await bot.command(inv, 'imagine', { prompt: 'four foxes', count: 4 });
    await bot.command(inv, 'queue', {});
    const said = chat.privateMessages.map((p) => p.message.text);
    expect(said[0]).toMatch(
      /^⚠️ You have 1 of the 4 images you can make at once left; they come back one every 1 min/,
    );
    expect(said[0]).toMatch(/Or ask for 1 image now \(count 1\)\.$/);
    expect(said[1]).toMatch(/You can make 1 more image now, the next in (59|1 min)/);
  });
});

describe('typos of typed commands', () => {
  it('/imgine gets "did you mean /imagine?"', async () => {
    const { bot } = await start();
    expect(() => bot.parseText('/imgine a fox')).toThrow(
      /Unknown command \/imgine; did you mean \/imagine\?/,
    );
    expect(() => parseCommandText(bot.commands, '/qeue')).toThrow(/did you mean \/queue\?/);
    expect(() => bot.parseText('/zzzzzz')).toThrow(/Unknown command \/zzzzzz\. Try \/imagine/);
  });
});
