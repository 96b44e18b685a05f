/**
 * Slack names reactions by shortcode (`arrows_counterclockwise`), with an optional skin tone
 * (`thumbsup::skin-tone-2`); the bot speaks Unicode. Only the reactions the bot acts on are
 * mapped; any other reaction is not passed on at all.
 */
const EMOJI_BY_NAME: Readonly<Record<string, string>> = {
  arrows_counterclockwise: '🔄',
  repeat: '🔁',
  recycle: '♻️',
  star: '⭐',
  star2: '🌟',
  x: '✖',
  heavy_multiplication_x: '✖',
  wastebasket: '🗑️',
};

/** The Unicode emoji for a Slack reaction name the bot understands, else undefined. */
export function emojiForReaction(name: string): string | undefined {
  const base = name.replace(/^:|:$/g, '').split('::')[0]!;
  return Object.hasOwn(EMOJI_BY_NAME, base) ? EMOJI_BY_NAME[base] : undefined;
}
