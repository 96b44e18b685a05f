/**
 * The bot's small markdown subset (`**bold**`, `*italic*`, `` `code` ``, `<@id>` mentions) in
 * Slack's mrkdwn: `*bold*`, `_italic_`, `` `code` ``, `<@U…>`. Everything else is escaped as Slack
 * asks (`&`, `<`, `>`), so a prompt containing `<!channel>` or `<https://…|link>` shows as typed
 * and never pings or links anyone.
 * @see https://docs.slack.dev/messaging/formatting-message-text#escaping
 */

/** `<@U123>` / `<#C123>` (optionally `|label`) are the only angle-bracket forms kept. */
const MENTION = /<([@#][A-Za-z0-9]+)(\|[^<>]*)?>/g;
const CODE_SPAN = /`[^`\n]+`/g;
/** Private-use characters stand in for `*` of bold while italics are converted. */
const BOLD_MARK = '\uE000';

export function escapeMrkdwn(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
}

function escapeKeepingMentions(text: string): string {
  let out = '';
  let last = 0;
  for (const match of text.matchAll(MENTION)) {
    out += escapeMrkdwn(text.slice(last, match.index));
    out += `<${match[1]}${match[2] ? escapeMrkdwn(match[2]) : ''}>`;
    last = match.index + match[0].length;
  }
  return out + escapeMrkdwn(text.slice(last));
}

function convertEmphasis(text: string): string {
  return text
    .replace(/\*\*(?=\S)([^\n]*?\S)\*\*/g, `${BOLD_MARK}$1${BOLD_MARK}`)
    .replace(/(?<![*\w])\*(?=\S)([^*\n]*?\S)\*(?![*\w])/g, '_$1_')
    .replaceAll(BOLD_MARK, '*');
}

/** Converts the bot's markdown subset to Slack mrkdwn; code spans are left unformatted. */
export function toMrkdwn(markdown: string): string {
  let out = '';
  let last = 0;
  for (const match of markdown.matchAll(CODE_SPAN)) {
    out += convertEmphasis(escapeKeepingMentions(markdown.slice(last, match.index)));
    out += escapeMrkdwn(match[0]);
    last = match.index + match[0].length;
  }
  return out + convertEmphasis(escapeKeepingMentions(markdown.slice(last)));
}

/** Plain text for places that show no formatting (notifications, alt text): markers removed. */
export function toPlainText(markdown: string): string {
  return markdown
    .replace(/\*\*(?=\S)([^\n]*?\S)\*\*/g, '$1')
    .replace(/(?<![*\w])\*(?=\S)([^*\n]*?\S)\*(?![*\w])/g, '$1')
    .replace(/`([^`\n]+)`/g, '$1');
}
