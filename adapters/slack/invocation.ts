/**
 * One slash command or button click as the bot sees it. Public answers are new channel messages
 * (the job message that is edited later); private ones ride on the slash command's ack when
 * they come quickly, else go through the interaction's response_url (ephemeral, and it works even
 * where the bot is not a member), and last through chat.postEphemeral.
 */
import type { RespondFn } from '@slack/bolt';
import type { ChatForm, ChatMessage, Invocation, PostedMessage } from '../../commands/types.js';
import type { ReplyTarget, Requester } from '../../src/jobs/types.js';
import type { Logger } from '../../src/log.js';
import type { AckGate } from './ack-gate.js';
import { renderMessage } from './blocks.js';
import type { SlackChatAdapter } from './chat-adapter.js';
import { renderModal } from './modal.js';

export interface SlackInteraction {
  requester: Requester;
  /** Whether the requester administers the workspace: a users.info lookup, made only when asked. */
  isTeamAdmin?: () => Promise<boolean>;
  where: ReplyTarget;
  /** Slash commands: the ack that may still carry the first private answer. */
  gate?: AckGate;
  /** Bolt's respond(): posts to the interaction's response_url. */
  respond?: RespondFn;
  /** Button clicks: the trigger_id that lets the bot open a modal for this person (3 s). */
  triggerId?: string;
}

export class SlackInvocation implements Invocation {
  constructor(
    private readonly interaction: SlackInteraction,
    private readonly adapter: SlackChatAdapter,
    private readonly logger: Logger,
  ) {}

  get requester(): Requester {
    return this.interaction.requester;
  }

  get where(): ReplyTarget {
    return this.interaction.where;
  }

  async isTeamAdmin(): Promise<boolean> {
    return (await this.interaction.isTeamAdmin?.()) === true;
  }

  /** A modal (views.open) where the interaction came with a trigger_id (button clicks). */
  get openForm(): ((form: ChatForm) => Promise<void>) | undefined {
    const { triggerId } = this.interaction;
    if (!triggerId) return undefined;
    return (form) => this.adapter.openView(triggerId, renderModal(form, this.where));
  }

  async reply(message: ChatMessage): Promise<PostedMessage> {
    await this.interaction.gate?.empty();
    return this.adapter.post(this.where, message);
  }

  async replyPrivately(message: ChatMessage): Promise<void> {
    const { text, blocks } = renderMessage({ ...message, image: undefined });
    const { gate, respond } = this.interaction;
    if (gate && (await gate.answer({ response_type: 'ephemeral', text, blocks }))) return;
    if (respond) {
      try {
        await respond({ response_type: 'ephemeral', replace_original: false, text, blocks });
        return;
      } catch (error) {
        this.logger.warn(
          { err: error },
          'slack: response_url refused a private answer; using chat.postEphemeral',
        );
      }
    }
    await this.adapter.tellPrivately(this.where, this.requester.userId, message);
  }
}
