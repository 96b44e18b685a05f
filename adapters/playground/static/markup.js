/**
 * The bot's markdown subset as DOM nodes: **bold**, *italic*, `code`, <@id> mentions, <#channel>
 * links and newlines.
 * Built with createElement/textContent only, so no message can inject HTML.
 */

const TOKEN = /(`[^`\n]+`)|(\*\*[\s\S]+?\*\*)|(\*[^*\s][^*\n]*?\*)|(<@[^>\s]+>)|(<#[^>\s]+>)|(\n)/g;

/**
 * @param {string} text
 * @param {{ mentions: Record<string, string>, me?: string }} context
 * @returns {DocumentFragment}
 */
export function renderMarkup(text, context) {
  const fragment = document.createDocumentFragment();
  appendMarkup(fragment, text, context);
  return fragment;
}

function appendMarkup(parent, text, context) {
  let last = 0;
  for (const match of text.matchAll(TOKEN)) {
    if (match.index > last) parent.append(text.slice(last, match.index));
    last = match.index + match[0].length;
    const [token, code, bold, italic, mention, channel] = match;
    if (code) parent.append(element('code', code.slice(1, -1)));
    else if (bold) parent.append(nested('strong', bold.slice(2, -2), context));
    else if (italic) parent.append(nested('em', italic.slice(1, -1), context));
    else if (mention) parent.append(mentionNode(mention.slice(2, -1), context));
    else if (channel) parent.append(channelNode(channel.slice(2, -1)));
    else if (token === '\n') parent.append(document.createElement('br'));
  }
  if (last < text.length) parent.append(text.slice(last));
}

function nested(tag, inner, context) {
  const node = document.createElement(tag);
  appendMarkup(node, inner, context);
  return node;
}

function mentionNode(id, context) {
  const node = element('span', `@${context.mentions[id] ?? id}`);
  node.className = id === context.me ? 'mention mention-me' : 'mention';
  return node;
}

/** Slack writes `<#C123|name>`; the playground's channel ids are their names. */
function channelNode(reference) {
  const node = element('span', `#${reference.split('|').at(-1)}`);
  node.className = 'mention';
  return node;
}

function element(tag, text) {
  const node = document.createElement(tag);
  node.textContent = text;
  return node;
}

/** The text without markup, for announcements and titles. */
export function plainText(text, mentions) {
  return text
    .replace(/<@([^>\s]+)>/g, (_, id) => `@${mentions[id] ?? id}`)
    .replace(/<#([^>\s]+)>/g, (_, ref) => `#${ref.split('|').at(-1)}`)
    .replace(/\*\*|`/g, '')
    .replace(/(^|\W)\*(\S[^*]*)\*/g, '$1$2');
}
