/**
 * Discord's error bodies, as documented under "JSON Error Codes" and seen on the wire:
 * `{ message, code }`, plus `errors` (nested per field, leaves `{ _errors: [{ code, message }] }`)
 * for 50035 "Invalid Form Body". @discordjs/rest turns these into `DiscordAPIError`s whose
 * message flattens the field paths, e.g. `0.options[2].choices[BASE_TYPE_MAX_LENGTH]: …`.
 */
export interface DiscordErrorBody {
  message: string;
  code: number;
  errors?: Record<string, unknown>;
}

export class DiscordHttpError extends Error {
  constructor(
    readonly status: number,
    readonly body: DiscordErrorBody,
  ) {
    super(`${status} ${body.code}: ${body.message}`);
  }
}

const error = (status: number, code: number, message: string) =>
  new DiscordHttpError(status, { message, code });

export const DiscordErrors = {
  unauthorized: () => error(401, 0, '401: Unauthorized'),
  notFound: () => error(404, 0, '404: Not Found'),
  methodNotAllowed: () => error(405, 0, '405: Method Not Allowed'),
  unknownApplication: () => error(404, 10002, 'Unknown Application'),
  unknownChannel: () => error(404, 10003, 'Unknown Channel'),
  unknownGuild: () => error(404, 10004, 'Unknown Guild'),
  unknownMember: () => error(404, 10007, 'Unknown Member'),
  unknownMessage: () => error(404, 10008, 'Unknown Message'),
  unknownUser: () => error(404, 10013, 'Unknown User'),
  unknownEmoji: () => error(400, 10014, 'Unknown Emoji'),
  unknownWebhook: () => error(404, 10015, 'Unknown Webhook'),
  unknownInteraction: () => error(404, 10062, 'Unknown interaction'),
  unknownCommand: () => error(404, 10063, 'Unknown application command'),
  requestTooLarge: () => error(413, 40005, 'Request entity too large'),
  alreadyAcknowledged: () => error(400, 40060, 'Interaction has already been acknowledged.'),
  missingAccess: () => error(403, 50001, 'Missing Access'),
  cannotActOnDm: () => error(403, 50003, 'Cannot execute action on a DM channel'),
  cannotEditOthersMessage: () => error(403, 50005, 'Cannot edit a message authored by another user'),
  emptyMessage: () => error(400, 50006, 'Cannot send an empty message'),
  missingPermissions: () => error(403, 50013, 'Missing Permissions'),
  invalidWebhookToken: () => error(401, 50027, 'Invalid Webhook Token'),
  invalidFormBody: (errors: FormErrors) =>
    new DiscordHttpError(400, { message: 'Invalid Form Body', code: 50035, errors: errors.toJSON() }),
};

export type FieldPath = readonly (string | number)[];

/** Collects field errors into Discord's nested `errors` object. */
export class FormErrors {
  readonly #root: Record<string, unknown> = {};
  #count = 0;

  add(path: FieldPath, code: string, message: string): void {
    let node = this.#root;
    for (const key of path) {
      const name = String(key);
      node[name] ??= {};
      node = node[name] as Record<string, unknown>;
    }
    node._errors ??= [];
    const leaf = node._errors as { code: string; message: string }[];
    leaf.push({ code, message });
    this.#count += 1;
  }

  get isEmpty(): boolean {
    return this.#count === 0;
  }

  toJSON(): Record<string, unknown> {
    return this.#root;
  }

  /** Throws Discord's 50035 when anything was added. */
  throwIfAny(): void {
    if (!this.isEmpty) throw DiscordErrors.invalidFormBody(this);
  }
}

/** Discord's wording for the common string/array length errors. */
export const LengthErrors = {
  between: (min: number, max: number) => ({
    code: 'BASE_TYPE_BAD_LENGTH',
    message: `Must be between ${min} and ${max} in length.`,
  }),
  atMost: (max: number) => ({ code: 'BASE_TYPE_MAX_LENGTH', message: `Must be ${max} or fewer in length.` }),
  required: () => ({ code: 'BASE_TYPE_REQUIRED', message: 'This field is required' }),
};
