/** Discord's epoch (2015-01-01T00:00:00Z), the zero of every snowflake's timestamp. */
const DISCORD_EPOCH = 1_420_070_400_000n;
/** Worker id 1 in bits 17–21, as a real Discord worker would stamp it. */
const WORKER_BITS = 1n << 17n;

let increment = 0n;

/**
 * A real-looking snowflake: 17–19 digits, timestamp in the top 42 bits. The length matters:
 * @discordjs/rest only treats 17–19-digit path segments as ids when it picks rate-limit buckets.
 */
export function snowflake(now = Date.now()): string {
  increment = (increment + 1n) & 0xfffn;
  return String(((BigInt(now) - DISCORD_EPOCH) << 22n) | WORKER_BITS | increment);
}

/** When a snowflake was made (ms since the Unix epoch). */
export function snowflakeTime(id: string): number {
  return Number((BigInt(id) >> 22n) + DISCORD_EPOCH);
}
