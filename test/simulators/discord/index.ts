/**
 * @module A Discord simulator for end-to-end tests of the real discord.js client.
 * See test/simulators/README.md.
 */
export { SimulatorTimeoutError, SimulatorUsageError } from '../shared/errors.js';
export type { FailureHandle, InjectedFailure } from '../shared/failures.js';
export type { WaitOptions } from '../shared/waiting.js';
export type { GatewaySessionInfo } from './gateway.js';
export type { OptionFile, OptionValue } from './interaction-payloads.js';
export { InteractionExpiredError, InteractionHandle } from './interactions.js';
export { DEFAULT_UPLOAD_LIMIT_BYTES, type DiscordSimulatorOptions } from './options.js';
export { COMMAND_LIMITS } from './rest/command-validation.js';
export { MESSAGE_LIMITS } from './rest/message-validation.js';
export type { SimModal, SimTextInput } from './rest/modal.js';
export { DISCORD_ROUTES, type DiscordRoute } from './rest/routes.js';
export {
  type ClickOptions,
  type DiscordChannels,
  DiscordSimulator,
  type DiscordUsers,
  type InteractionOptions,
  startDiscordSimulator,
} from './simulator.js';
export type { DiscordEventMap, ReactionEvent } from './state.js';
export type * from './types.js';
