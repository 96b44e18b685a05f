/**
 * One message of the feed as a list item: who said it (and what it answers), the text, a progress
 * preview, the image, the buttons, the reaction bar under results, and the private-note footer.
 */
import { plainText, renderMarkup } from './markup.js';

/** Largest shown side of a result and of a progress preview, in CSS pixels. */
const RESULT_BOX = 512;
const PREVIEW_BOX = 160;

const REACTION_TITLES = {
  '🔄': 'Reroll: same prompt, new seed',
  '⭐': 'Share to the showcase channel',
  '✖': 'Delete (the author only)',
};

/**
 * @param {any} message a WireMessage
 * @param {{ me: string | undefined, reactionEmojis: string[], onButton: Function, onReact: Function, onOpenImage: Function, onDismiss: Function }} view
 */
export function renderMessage(message, view) {
  const item = document.createElement('li');
  item.className = 'message';
  item.dataset.id = message.id;
  if (message.private) item.classList.add('private');
  if (message.author.bot) item.classList.add('from-bot');
  if (message.text.includes(`<@${view.me}>`)) item.classList.add('mentions-me');

  if (message.interaction) item.append(interactionLine(message.interaction));
  item.append(avatar(message.author));

  const body = div('body');
  body.append(header(message));
  const text = div('text');
  text.append(renderMarkup(message.text, { mentions: message.mentions, me: view.me }));
  body.append(text);
  if (message.preview) body.append(previewFigure(message.preview));
  if (message.image) body.append(imageFigure(message, view));
  if (message.buttons.length > 0) body.append(buttonRows(message, view));
  if (message.result) body.append(reactionBar(message, view));
  if (message.private) body.append(privateNote(message, view));
  item.append(body);
  return item;
}

function interactionLine(interaction) {
  const line = div('interaction');
  const name = document.createElement('span');
  name.className = 'interaction-user';
  name.textContent = interaction.user.name;
  line.append(avatar(interaction.user, 'avatar-tiny'), name, ` ${interaction.action}`);
  return line;
}

/** A coloured initial; the bot gets its mark. */
export function avatar(user, extraClass) {
  const node = document.createElement('span');
  node.className = `avatar ${extraClass ?? ''}`.trim();
  node.setAttribute('aria-hidden', 'true');
  if (user.bot) {
    node.classList.add('avatar-bot');
    const mark = document.createElement('img');
    mark.src = '/favicon.svg';
    mark.alt = '';
    node.append(mark);
  } else {
    node.textContent = [...user.name][0]?.toUpperCase() ?? '?';
    node.style.setProperty('--hue', String(hue(user.id)));
  }
  return node;
}

function header(message) {
  const head = document.createElement('header');
  const author = document.createElement('span');
  author.className = 'author';
  author.textContent = message.author.name;
  if (!message.author.bot) author.style.setProperty('--hue', String(hue(message.author.id)));
  head.append(author);
  if (message.author.bot) {
    const badge = document.createElement('span');
    badge.className = 'badge';
    badge.textContent = 'BOT';
    head.append(badge);
  }
  const time = document.createElement('time');
  const created = new Date(message.createdAt);
  time.dateTime = created.toISOString();
  time.title = created.toLocaleString();
  time.textContent = created.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  head.append(time);
  return head;
}

function previewFigure(preview) {
  const figure = document.createElement('figure');
  figure.className = 'preview';
  // Previews are small on purpose (a latent's size); they are shown enlarged, like a thumbnail.
  figure.append(image(preview, 'preview-image', PREVIEW_BOX, { enlarge: true }));
  const caption = document.createElement('figcaption');
  caption.textContent = 'Preview';
  figure.append(caption);
  return figure;
}

function imageFigure(message, view) {
  const figure = document.createElement('figure');
  figure.className = 'result';
  const open = document.createElement('button');
  open.type = 'button';
  open.className = 'image-open';
  open.setAttribute('aria-label', `Open full size: ${message.image.alt}`);
  open.append(image(message.image, 'result-image', RESULT_BOX));
  open.addEventListener('click', () =>
    view.onOpenImage(message.image.url, message.image.alt, plainText(message.text, message.mentions)),
  );
  figure.append(open);
  return figure;
}

/**
 * The picture shown within `box` pixels (enlarged to fill it with `enlarge`), keeping its aspect ratio. Setting the shown size before
 * it loads reserves its room, so the feed does not jump; the picture itself stays full size.
 */
function image(wire, className, box, { enlarge = false } = {}) {
  const img = document.createElement('img');
  img.className = className;
  img.src = wire.url;
  img.alt = wire.alt;
  img.decoding = 'async';
  if (wire.width && wire.height) {
    const fit = Math.min(box / wire.width, box / wire.height);
    const scale = enlarge ? fit : Math.min(1, fit);
    img.width = Math.round(wire.width * scale);
    img.height = Math.round(wire.height * scale);
  }
  return img;
}

function buttonRows(message, view) {
  const rows = div('buttons');
  for (const row of message.buttons) {
    const line = div('button-row');
    line.setAttribute('role', 'group');
    for (const button of row) {
      const node = document.createElement('button');
      node.type = 'button';
      node.className = `chat-button ${button.style}`;
      node.textContent = button.emoji ? `${button.emoji} ${button.label}` : button.label;
      node.addEventListener('click', () => view.onButton(message, button, node));
      line.append(node);
    }
    rows.append(line);
  }
  return rows;
}

function reactionBar(message, view) {
  const bar = div('reactions');
  bar.setAttribute('role', 'group');
  bar.setAttribute('aria-label', 'Reactions');
  for (const emoji of view.reactionEmojis) {
    const users = message.reactions.find((r) => r.emoji === emoji)?.userIds ?? [];
    const mine = view.me !== undefined && users.includes(view.me);
    const chip = document.createElement('button');
    chip.type = 'button';
    chip.className = 'reaction';
    chip.dataset.emoji = emoji;
    chip.setAttribute('aria-pressed', String(mine));
    chip.title = REACTION_TITLES[emoji] ?? emoji;
    chip.setAttribute('aria-label', `${chip.title}${users.length ? ` (${users.length})` : ''}`);
    const symbol = document.createElement('span');
    symbol.textContent = emoji;
    chip.append(symbol);
    if (users.length > 0) {
      const count = document.createElement('span');
      count.className = 'count';
      count.textContent = String(users.length);
      chip.append(count);
    }
    chip.addEventListener('click', () => view.onReact(message, emoji, mine));
    bar.append(chip);
  }
  return bar;
}

function privateNote(message, view) {
  const note = document.createElement('p');
  note.className = 'private-note';
  note.append('👁 Only you can see this · ');
  const dismiss = document.createElement('button');
  dismiss.type = 'button';
  dismiss.className = 'link-button';
  dismiss.textContent = 'Dismiss message';
  dismiss.addEventListener('click', () => view.onDismiss(message));
  note.append(dismiss);
  return note;
}

function div(className) {
  const node = document.createElement('div');
  node.className = className;
  return node;
}

/** A stable hue per user id, so a person keeps their colour across tabs and reloads. */
export function hue(id) {
  let h = 0;
  for (const char of id) h = (h * 31 + char.codePointAt(0)) % 360;
  return h;
}
