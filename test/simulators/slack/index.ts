/**
 * @module A Slack simulator for end-to-end tests of the real Bolt app (HTTP and Socket Mode).
 * See test/simulators/README.md.
 */
export { SimulatorTimeoutError, SimulatorUsageError } from '../shared/errors.js';
export type { FailureHandle, InjectedFailure } from '../shared/failures.js';
export type { WaitOptions } from '../shared/waiting.js';
export { type ResponsePost, SlackDelivery } from './delivery.js';
export type { SlackSimulatorOptions } from './options.js';
export type { SignatureMode } from './signing.js';
export {
  type ClickOptions,
  type SendOptions,
  type SlackChannels,
  SlackSimulator,
  type SlackUsers,
  type SlashOptions,
  startSlackSimulator,
} from './simulator.js';
export type { SlackEventMap, SlackReactionEvent } from './state.js';
export type * from './types.js';
export { type SlackView, type SlackViewInput, VIEW_LIMITS } from './views.js';
export { SLACK_LIMITS } from './web-api/chat-methods.js';
