/**
 * What the Discord surface needs of the Bot (commands/bot.ts): the command list to register and
 * the four entry points it forwards to. Declared here, structurally, so the surface depends on
 * the Bot's contract rather than its class.
 */
import type {
  ChatAdapter,
  Choice,
  CommandArgs,
  CommandDef,
  Invocation,
  ReactionEvent,
} from '../../commands/types.js';
import type { Requester } from '../../src/jobs/types.js';

export interface SurfaceBot {
  readonly commands: readonly CommandDef[];
  /** Job progress and results for `adapter.platform` are sent through `adapter` from now on. */
  attach(adapter: ChatAdapter): void;
  /** `name` is `'atelier showcase'` for a subcommand. */
  command(invocation: Invocation, name: string, args: CommandArgs): Promise<void>;
  action(invocation: Invocation, customId: string): Promise<void>;
  reaction(event: ReactionEvent): Promise<void>;
  autocomplete(
    requester: Requester,
    command: string,
    option: string,
    partial: string,
  ): Choice[] | Promise<Choice[]>;
}
