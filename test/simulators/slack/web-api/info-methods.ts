/** auth.test, conversations.info, users.info, reactions.*, views.open, apps.connections.open. */
import { channelJson, userJson } from '../serialize.js';
import { openView, viewProblems } from '../views.js';
import { jsonArg, type MethodDefinition, type MethodDeps, requireString, SlackApiError } from './methods.js';

/** Slack reaction names are shortcodes (`arrows_counterclockwise`), never the emoji character. */
const REACTION_NAME = /^[a-z0-9_+'-]+(::skin-tone-[2-6])?$/;

export function infoMethods(deps: MethodDeps): Record<string, MethodDefinition> {
  const { state, options } = deps;

  const reactionTarget = (args: Record<string, unknown>) => {
    const channel = requireString(args, 'channel', 'channel_not_found');
    if (!state.channels.has(channel)) throw new SlackApiError('channel_not_found');
    const message = state.message(channel, requireString(args, 'timestamp', 'message_not_found'));
    if (!message) throw new SlackApiError('message_not_found');
    const name = requireString(args, 'name', 'invalid_name').replace(/^:|:$/g, '');
    if (!REACTION_NAME.test(name)) throw new SlackApiError('invalid_name');
    return { message, name };
  };

  return {
    'auth.test': {
      handle: () => ({
        url: `https://${options.teamDomain}.slack.com/`,
        team: options.teamName,
        user: state.bot.name,
        team_id: state.teamId,
        user_id: state.bot.id,
        bot_id: state.botId,
        is_enterprise_install: false,
      }),
    },
    'conversations.info': {
      handle: ({ args }) => {
        const channel = state.channels.get(requireString(args, 'channel', 'channel_not_found'));
        if (!channel) throw new SlackApiError('channel_not_found');
        return { channel: channelJson(channel) };
      },
    },
    'users.info': {
      handle: ({ args }) => {
        const user = state.users.get(requireString(args, 'user', 'user_not_found'));
        if (!user) throw new SlackApiError('user_not_found');
        return { user: userJson(state, user) };
      },
    },
    'reactions.add': {
      handle: ({ args }) => {
        const { message, name } = reactionTarget(args);
        if (!state.addReaction(message, name, state.bot.id)) throw new SlackApiError('already_reacted');
        return {};
      },
    },
    'reactions.remove': {
      handle: ({ args }) => {
        const { message, name } = reactionTarget(args);
        if (!state.removeReaction(message, name, state.bot.id)) throw new SlackApiError('no_reaction');
        return {};
      },
    },
    'views.open': {
      handle: ({ args }) => {
        const id = requireString(args, 'trigger_id', 'invalid_trigger_id');
        const trigger = deps.deliveries.trigger(id);
        if (trigger === undefined) throw new SlackApiError('invalid_trigger_id');
        // trigger_ids expire after 3 seconds, and open one view.
        if (Date.now() - trigger.at > options.ackTimeoutMs) throw new SlackApiError('expired_trigger_id');
        if (trigger.exchanged) throw new SlackApiError('exchanged_trigger_id');
        const view = jsonArg<Record<string, unknown>>(args, 'view');
        if (!view || typeof view !== 'object') throw new SlackApiError('invalid_arguments');
        const problems = viewProblems(view);
        if (problems.length > 0) {
          throw new SlackApiError('invalid_arguments', { response_metadata: { messages: problems } });
        }
        trigger.exchanged = true;
        const opened = openView(state, view, trigger.user ?? '');
        state.views.set(opened.id, opened);
        state.events.emit('viewOpened', opened);
        return { view: opened.json };
      },
    },
    'apps.connections.open': {
      token: 'app',
      handle: () => ({ url: deps.socketUrl() }),
    },
  };
}
