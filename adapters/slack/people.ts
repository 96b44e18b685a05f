/**
 * What the bot knows of people beyond the ids Slack sends: their display name (a reaction
 * carries no name) and whether they administer the workspace. Both come from users.info, whose
 * answers are remembered for `cacheMs` (one call per person and minute at most; users.info is
 * Tier 4). Without the `users:read` scope, or on any failure or a slow answer, the id stands in
 * for the name and the person is not a workspace admin.
 *
 * A workspace admin (`is_admin`), owner (`is_owner`) or primary owner (`is_primary_owner`) is a
 * team admin to the bot, as a Discord member with Manage Server is: they may change their
 * workspace's Atelier settings (`/atelier showcase`, `/atelier limits`). Only for the workspace
 * the bot is installed in: someone from another organisation (Slack Connect) is an admin of
 * theirs, not of this one.
 */
import type { webApi } from '@slack/bolt';

const REMEMBERED = 5000;
/** A command or reaction should not wait long on a lookup (the WebClient retries for minutes). */
const LOOKUP_TIMEOUT_MS = 2000;
export const DEFAULT_USER_CACHE_MS = 60_000;

interface Person {
  name: string | undefined;
  teamId: string | undefined;
  workspaceAdmin: boolean;
  at: number;
}

export interface SlackPeopleOptions {
  /** How long a users.info answer is remembered. @default 60_000 */
  cacheMs?: number;
}

export class SlackPeople {
  readonly #names = new Map<string, string>();
  readonly #people = new Map<string, Person>();
  readonly #lookups = new Map<string, Promise<Person | undefined>>();
  readonly #cacheMs: number;

  constructor(
    private readonly client: webApi.WebClient,
    options: SlackPeopleOptions = {},
  ) {
    this.#cacheMs = options.cacheMs ?? DEFAULT_USER_CACHE_MS;
  }

  /** Remembers a name the platform already told us (slash commands and clicks carry one). */
  remember(userId: string, name: string | undefined): void {
    if (!name) return;
    this.#names.delete(userId);
    this.#names.set(userId, name);
    if (this.#names.size > REMEMBERED) this.#names.delete(this.#names.keys().next().value!);
  }

  async displayName(userId: string): Promise<string> {
    const known = this.#names.get(userId);
    if (known) return known;
    const person = await this.#person(userId);
    return person?.name ?? userId;
  }

  /**
   * Whether `userId` is an admin, owner or primary owner of workspace `teamId` (the one the
   * interaction came from, which must be the bot's own, `homeTeamId`, when that is known).
   */
  async isWorkspaceAdmin(
    userId: string,
    teamId: string | undefined,
    homeTeamId?: string | undefined,
  ): Promise<boolean> {
    if (!teamId || (homeTeamId && teamId !== homeTeamId)) return false;
    const person = await this.#person(userId);
    return person?.workspaceAdmin === true && person.teamId === teamId;
  }

  /** users.info, remembered for `cacheMs`; one lookup per person at a time; never throws. */
  async #person(userId: string): Promise<Person | undefined> {
    const known = this.#people.get(userId);
    if (known && Date.now() - known.at < this.#cacheMs) return known;
    let lookup = this.#lookups.get(userId);
    if (!lookup) {
      lookup = this.#lookup(userId).finally(() => this.#lookups.delete(userId));
      this.#lookups.set(userId, lookup);
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), LOOKUP_TIMEOUT_MS);
    });
    const person = await Promise.race([lookup, timeout]);
    clearTimeout(timer);
    return person;
  }

  async #lookup(userId: string): Promise<Person | undefined> {
    let person: Person;
    try {
      const { user } = await this.client.users.info({ user: userId });
      const name = user?.profile?.display_name || user?.real_name || user?.name || undefined;
      this.remember(userId, name);
      person = {
        name,
        teamId: user?.team_id,
        workspaceAdmin:
          !user?.deleted &&
          !user?.is_bot &&
          Boolean(user?.is_admin || user?.is_owner || user?.is_primary_owner),
        at: Date.now(),
      };
    } catch {
      // A name is a courtesy, and nobody is an admin by default: remembered as such for a while,
      // so a missing scope does not cost a call per interaction.
      person = { name: undefined, teamId: undefined, workspaceAdmin: false, at: Date.now() };
    }
    this.#people.delete(userId);
    this.#people.set(userId, person);
    if (this.#people.size > REMEMBERED) this.#people.delete(this.#people.keys().next().value!);
    return person;
  }
}
