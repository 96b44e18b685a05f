/**
 * Configuration: `loadConfig()` once at start, then pass the typed `AtelierConfig` (or the slice a
 * module needs) down. See config/default.yaml for every setting and env.ts for the variables.
 */
export { type AdminSettings, isAdmin } from './admins.js';
export { type Environment, OPERATOR_VARIABLES } from './env.js';
export { type AtelierConfig, DEFAULTS_FILE, type LoadConfigOptions, loadConfig } from './load.js';
export { type EnabledPlatforms, enabledPlatforms } from './platforms.js';
export { type AtelierSettings, settingsSchema } from './schema.js';
export { maskedSecrets, maskSecret, SECRET_VARIABLES, type SecretName, type Secrets } from './secrets.js';
