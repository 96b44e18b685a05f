/**
 * A ChatAdapter test double for the Bot's unit tests: records what the bot posted, edited,
 * deleted and told privately, and makes Invocations as an adapter would. Never product code.
 */
import { EventEmitter } from 'node:events';
import type { ChatAdapter, ChatMessage, Invocation, PostedMessage } from '../../commands/types.js';
import type { ReplyTarget, Requester } from '../../src/jobs/types.js';

export interface FakeMessage {
  posted: PostedMessage;
  history: { at: number; message: ChatMessage }[];
  deleted: boolean;
  current: ChatMessage;
}

export class FakeAdapter extends EventEmitter implements ChatAdapter {
  /** A platform the config knows admins for (`limits.admins.playground`). */
  constructor(readonly platform = 'playground') {
    super();
  }

  readonly messages: FakeMessage[] = [];
  readonly privateMessages: { userId: string; message: ChatMessage }[] = [];
  uploadBytes = 10 * 1024 * 1024;
  #next = 1;

  async post(target: ReplyTarget, message: ChatMessage): Promise<PostedMessage> {
    const posted: PostedMessage = {
      platform: this.platform,
      channelId: target.channelId,
      messageId: `m${this.#next++}`,
      ...(target.teamId ? { teamId: target.teamId } : {}),
    };
    const entry = { posted, history: [{ at: Date.now(), message }], deleted: false, current: message };
    this.messages.push(entry);
    this.emit('change', entry);
    return posted;
  }

  async edit(posted: PostedMessage, next: ChatMessage): Promise<void> {
    const entry = this.find(posted.messageId);
    if (!entry || entry.deleted) throw new Error(`unknown message ${posted.messageId}`);
    entry.history.push({ at: Date.now(), message: next });
    entry.current = next;
    this.emit('change', entry);
  }

  async delete(posted: PostedMessage): Promise<void> {
    const entry = this.find(posted.messageId);
    if (entry) entry.deleted = true;
    this.emit('change', entry);
  }

  async tellPrivately(_target: ReplyTarget, userId: string, message: ChatMessage): Promise<void> {
    this.privateMessages.push({ userId, message });
    this.emit('private', { userId, message });
  }

  uploadLimit(): number {
    return this.uploadBytes;
  }

  find(messageId: string): FakeMessage | undefined {
    return this.messages.find((m) => m.posted.messageId === messageId);
  }

  inChannel(channelId: string): FakeMessage[] {
    return this.messages.filter((m) => m.posted.channelId === channelId);
  }

  /** Resolves with the first message (now or later) whose current state matches. */
  waitFor(predicate: (m: FakeMessage) => boolean): Promise<FakeMessage> {
    const found = this.messages.find(predicate);
    if (found) return Promise.resolve(found);
    return new Promise((resolve) => {
      const onChange = (m: FakeMessage | undefined) => {
        if (m && predicate(m)) {
          this.off('change', onChange);
          resolve(m);
        }
      };
      this.on('change', onChange);
    });
  }

  waitForPrivate(userId: string, predicate: (text: string) => boolean = () => true): Promise<string> {
    const found = this.privateMessages.find((p) => p.userId === userId && predicate(p.message.text));
    if (found) return Promise.resolve(found.message.text);
    return new Promise((resolve) => {
      const onPrivate = (p: { userId: string; message: ChatMessage }) => {
        if (p.userId === userId && predicate(p.message.text)) {
          this.off('private', onPrivate);
          resolve(p.message.text);
        }
      };
      this.on('private', onPrivate);
    });
  }

  /** An Invocation from `user` in `channelId`, as a real adapter would make one. */
  invocation(user: string, channelId = 'general', teamId = 'team1'): Invocation {
    const requester: Requester = { platform: this.platform, userId: user, displayName: user, teamId };
    const where: ReplyTarget = { platform: this.platform, channelId, teamId };
    return {
      requester,
      where,
      reply: (message) => this.post(where, message),
      replyPrivately: (message) => this.tellPrivately(where, user, message),
    };
  }
}
