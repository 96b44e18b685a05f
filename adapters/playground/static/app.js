/**
 * The playground page: keeps the channels' messages as the server sends them, shows the current
 * channel, and turns what the person does (typing, buttons, reactions) into frames.
 */
import { Composer } from './composer.js';
import { Connection } from './connection.js';
import { FormDialog } from './form-dialog.js';
import { Gallery } from './gallery.js';
import { plainText } from './markup.js';
import { avatar, renderMessage } from './message-view.js';

const NAME_KEY = 'atelier.name';
const CHANNEL_KEY = 'atelier.channel';
/** Within this distance of the bottom the feed follows new messages. */
const STICK_PX = 80;
/** A clicked button rests this long, so a double click is one action. */
const BUTTON_REST_MS = 1200;

const $ = (id) => document.getElementById(id);

/** Whether the feed follows new content (the reader is at the bottom); see keepingBottom. */
let stuck = true;

const state = {
  me: undefined,
  channels: ['general'],
  channel: sessionStorage.getItem(CHANNEL_KEY) ?? 'general',
  messages: new Map(),
  unread: new Set(),
  reactionEmojis: ['🔄', '⭐', '✖'],
  choiceRequests: new Map(),
  nextRequestId: 1,
};

const nameInput = $('name-input');
// Each tab is its own person: the name lives in sessionStorage, so two tabs can be two people.
if (!sessionStorage.getItem(NAME_KEY))
  sessionStorage.setItem(NAME_KEY, `guest-${Math.floor(1000 + Math.random() * 9000)}`);
nameInput.value = sessionStorage.getItem(NAME_KEY);

const connection = new Connection({
  url: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`,
  // A reconnect speaks as the name last set, not whatever is half-typed in the field.
  hello: () => ({ type: 'hello', name: sessionStorage.getItem(NAME_KEY) }),
  onFrame,
  onStatus: showStatus,
});

const composer = new Composer({
  form: $('composer'),
  input: $('message-input'),
  list: $('suggestions'),
  hint: $('composer-hint'),
  onSend: (text) => {
    if (!state.me) {
      notice('Choose a name first (bottom left).');
      return false;
    }
    const sent = connection.send({ type: 'say', channelId: state.channel, text });
    if (!sent) notice('Not connected; reconnecting. Your message is still in the box.');
    return sent;
  },
  requestChoices: (command, option, partial) =>
    new Promise((resolve) => {
      const requestId = state.nextRequestId++;
      state.choiceRequests.set(requestId, resolve);
      if (!connection.send({ type: 'autocomplete', requestId, command, option, partial })) resolve([]);
    }),
});

const formDialog = new FormDialog({
  dialog: $('form-dialog'),
  form: $('form-dialog-form'),
  title: $('form-dialog-title'),
  fields: $('form-dialog-fields'),
  submit: $('form-dialog-submit'),
  cancel: $('form-dialog-cancel'),
  onSubmit: (frame, values) => {
    const sent = connection.send({
      type: 'submit',
      channelId: frame.channelId,
      formId: frame.form.id,
      values,
    });
    if (!sent) notice('Not connected; try again in a moment. Your text is still in the form.');
    return sent;
  },
});

const gallery = new Gallery({
  panel: $('gallery'),
  list: $('gallery-items'),
  title: $('gallery-title'),
  empty: $('gallery-empty'),
  onOpen: openImage,
});

const view = {
  get me() {
    return state.me?.id;
  },
  get reactionEmojis() {
    return state.reactionEmojis;
  },
  onButton(message, button, node) {
    if (
      !connection.send({
        type: 'click',
        channelId: message.channelId,
        messageId: message.id,
        customId: button.customId,
      })
    )
      return notice('Not connected; try again in a moment.');
    node.disabled = true;
    setTimeout(() => {
      node.disabled = false;
    }, BUTTON_REST_MS);
  },
  onReact(message, emoji, mine) {
    connection.send({
      type: mine ? 'unreact' : 'react',
      channelId: message.channelId,
      messageId: message.id,
      emoji,
    });
  },
  onOpenImage: openImage,
  onDismiss(message) {
    state.messages.delete(message.id);
    removeItem(message.id);
  },
};

// ---- frames from the server -----------------------------------------------------------------

function onFrame(frame) {
  switch (frame.type) {
    case 'welcome':
      return welcome(frame);
    case 'message':
      return upsert(frame.message);
    case 'delete':
      state.messages.delete(frame.messageId);
      return removeItem(frame.messageId);
    case 'reactions': {
      const message = state.messages.get(frame.messageId);
      if (!message) return;
      message.reactions = frame.reactions;
      return replaceItem(message);
    }
    case 'channels':
      state.channels = frame.channels;
      return renderChannels();
    case 'suggestions': {
      const resolve = state.choiceRequests.get(frame.requestId);
      state.choiceRequests.delete(frame.requestId);
      return resolve?.(frame.choices);
    }
    case 'form':
      return formDialog.open(frame);
    case 'problem':
      if (frame.field === 'name') $('name-problem').textContent = frame.message;
      return notice(frame.message);
  }
}

function welcome(frame) {
  state.me = frame.user;
  document.body.dataset.user = frame.user.id;
  state.channels = frame.channels;
  state.reactionEmojis = frame.reactionEmojis;
  if (!state.channels.includes(state.channel)) state.channel = state.channels[0] ?? 'general';
  state.messages = new Map(frame.messages.map((m) => [m.id, m]));
  nameInput.value = frame.user.name;
  sessionStorage.setItem(NAME_KEY, frame.user.name);
  $('name-problem').textContent = '';
  $('me-avatar').replaceWith(Object.assign(avatar(frame.user), { id: 'me-avatar' }));
  composer.setCommands(frame.commands);
  renderChannels();
  selectChannel(state.channel);
}

function upsert(message) {
  const previous = state.messages.get(message.id);
  state.messages.set(message.id, message);
  if (message.channelId !== state.channel) {
    if (!previous) {
      state.unread.add(message.channelId);
      renderChannels();
    }
    return;
  }
  const mine = message.author.id === state.me?.id || message.interaction?.user.id === state.me?.id;
  // The answer to something this person did is what they are looking for: bring it into view.
  if (!previous && mine) stuck = true;
  if (previous) replaceItem(message);
  else appendItem(message);
  if (message.result && !previous?.result) {
    gallery.changed();
    announce(`Result ready: ${message.image?.alt ?? ''}`);
  } else if (!previous && (!mine || message.private)) {
    announce(`${message.author.name}: ${plainText(message.text, message.mentions)}`);
  }
}

// ---- the feed ---------------------------------------------------------------------------------

const feed = $('feed');
const list = $('messages');

function selectChannel(channelId) {
  state.channel = channelId;
  sessionStorage.setItem(CHANNEL_KEY, channelId);
  state.unread.delete(channelId);
  $('channel-name').textContent = channelId;
  document.title = `#${channelId} · Atelier playground`;
  composer.setChannel(channelId);
  gallery.setChannel(channelId);
  renderChannels();
  const shown = [...state.messages.values()]
    .filter((m) => m.channelId === channelId)
    .sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1));
  list.replaceChildren(...shown.map((m) => renderMessage(m, view)));
  $('feed-empty').hidden = shown.length > 0;
  stuck = true;
  feed.scrollTop = feed.scrollHeight;
}

function appendItem(message) {
  keepingBottom(() => list.append(renderMessage(message, view)));
  $('feed-empty').hidden = true;
}

function replaceItem(message) {
  const old = list.querySelector(`li[data-id="${CSS.escape(message.id)}"]`);
  if (!old) return message.channelId === state.channel ? appendItem(message) : undefined;
  const focused =
    document.activeElement && old.contains(document.activeElement)
      ? focusKey(document.activeElement)
      : undefined;
  keepingBottom(() => {
    const next = renderMessage(message, view);
    old.replaceWith(next);
    // Keyboard users keep their place when the message they are on is edited (progress, reactions).
    if (focused) next.querySelector(focused)?.focus();
  });
}

function removeItem(messageId) {
  list.querySelector(`li[data-id="${CSS.escape(messageId)}"]`)?.remove();
  $('feed-empty').hidden = list.children.length > 0;
}

function focusKey(element) {
  if (element.dataset.emoji) return `.reaction[data-emoji="${CSS.escape(element.dataset.emoji)}"]`;
  if (element.classList.contains('image-open')) return '.image-open';
  return undefined;
}

/**
 * The feed follows new content while the reader is at the bottom, and stays where they scrolled
 * to otherwise. Content also grows after it is added (pictures and emoji fonts load), so a resize
 * of the list re-applies the rule.
 */
feed.addEventListener('scroll', () => {
  stuck = feed.scrollHeight - feed.scrollTop - feed.clientHeight < STICK_PX;
});
const follow = new ResizeObserver(() => {
  if (stuck) feed.scrollTop = feed.scrollHeight;
});
follow.observe(list);
follow.observe(feed);

function keepingBottom(change) {
  change();
  if (stuck) feed.scrollTop = feed.scrollHeight;
}

// ---- channels, name, panels -------------------------------------------------------------------

function renderChannels() {
  const items = state.channels.map((id) => {
    const li = document.createElement('li');
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'channel-link';
    button.textContent = id;
    if (id === state.channel) button.setAttribute('aria-current', 'page');
    // The '#' is drawn by CSS; the label says what it means.
    button.setAttribute('aria-label', `${id} channel`);
    if (state.unread.has(id)) {
      button.classList.add('unread');
      button.setAttribute('aria-label', `${id} channel, new messages`);
    }
    button.addEventListener('click', () => {
      selectChannel(id);
      document.body.classList.remove('show-sidebar');
      $('message-input').focus();
    });
    li.append(button);
    return li;
  });
  $('channel-list').replaceChildren(...items);
  // On narrow screens the list hides behind the menu button, which then carries the unread dot.
  $('menu-toggle').classList.toggle('has-unread', state.unread.size > 0);
}

$('identity').addEventListener('submit', (event) => {
  event.preventDefault();
  const name = nameInput.value.trim();
  if (!name) {
    $('name-problem').textContent = 'Type a name first.';
    return;
  }
  if (name === state.me?.name) return;
  // Kept (in sessionStorage) once the server accepts it, in welcome().
  connection.send({ type: 'hello', name });
});
nameInput.addEventListener('change', () => $('identity').requestSubmit());

$('gallery-toggle').addEventListener('click', () => toggleGallery());
$('gallery-close').addEventListener('click', () => toggleGallery(false));
$('menu-toggle').addEventListener('click', () => document.body.classList.toggle('show-sidebar'));

function toggleGallery(show = $('gallery').hidden) {
  $('gallery').hidden = !show;
  $('gallery-toggle').setAttribute('aria-expanded', String(show));
  if (show) gallery.load();
}

const lightbox = $('lightbox');
function openImage(url, alt, caption) {
  const img = $('lightbox-image');
  img.src = url;
  img.alt = alt;
  $('lightbox-caption').textContent = caption;
  $('lightbox-download').href = url;
  lightbox.showModal();
}
$('lightbox-close').addEventListener('click', () => lightbox.close());
lightbox.addEventListener('click', (event) => {
  if (event.target === lightbox) lightbox.close();
});

// ---- status -----------------------------------------------------------------------------------

function showStatus(status) {
  const node = $('connection-status');
  node.dataset.status = status;
  node.textContent =
    status === 'online' ? '' : status === 'connecting' ? 'Connecting…' : 'Offline — reconnecting…';
}

let noticeTimer;
/** A short line above the message box for things only this tab needs to know. */
function notice(text) {
  const node = $('notice');
  if (node.hidden === false && node.textContent === text) return;
  node.textContent = text;
  node.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => {
    node.hidden = true;
  }, 6000);
}

function announce(text) {
  $('announcer').textContent = text.slice(0, 300);
}
